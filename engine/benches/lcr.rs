//! Least-cost routing over a 1,000,000-prefix deck: build time and memory
//! (printed), longest-prefix lookups, and ranking across five trunks.

use std::collections::HashSet;
use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchboard_engine::lcr::{Deck, Health, Rate, Table, TrunkDeck};

/// Deterministic digits (a linear congruential generator), so every run
/// measures the same deck.
struct Digits(u64);

impl Digits {
    fn next(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| {
                self.0 = self
                    .0
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                char::from(b'0' + ((self.0 >> 33) % 10) as u8)
            })
            .collect()
    }
}

fn prefixes(n: usize, seed: u64) -> Vec<String> {
    let mut g = Digits(seed);
    let mut seen = HashSet::with_capacity(n);
    while seen.len() < n {
        let len = 6 + seen.len() % 7; // 6 to 12 digits (each length has room for its share)
        seen.insert(g.next(len));
    }
    seen.into_iter().collect()
}

fn rate(i: usize) -> Rate {
    Rate {
        per_minute: 1_000 + (i % 50_000) as i64,
        connect_fee: 0,
        first_increment: 60,
        next_increment: 6,
    }
}

fn lookups(c: &mut Criterion) {
    let p = prefixes(1_000_000, 7);
    #[allow(
        clippy::disallowed_methods,
        reason = "a benchmark reads the clock; the engine does not"
    )]
    let started = Instant::now();
    let Ok(deck) = Deck::from_rows(p.iter().enumerate().map(|(i, s)| (s.as_str(), rate(i)))) else {
        return;
    };
    eprintln!(
        "deck: {} prefixes built in {:?}, ~{} MiB",
        deck.len(),
        started.elapsed(),
        deck.memory() / (1 << 20)
    );
    // Destinations: half start with a deck prefix, half are random.
    let mut g = Digits(99);
    let dests: Vec<String> = (0..4096)
        .map(|i| {
            if i % 2 == 0 {
                format!("{}{}", p[i * 197 % p.len()], g.next(4))
            } else {
                g.next(11)
            }
        })
        .collect();
    let hits = dests.iter().filter(|d| deck.longest(d).is_some()).count();
    eprintln!("{hits} of {} destinations match a prefix", dests.len());

    let mut group = c.benchmark_group("lcr");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("longest_prefix_1m", |b| {
        b.iter(|| {
            i = (i + 1) % dests.len();
            deck.longest(black_box(&dests[i]))
        })
    });

    let trunks: Vec<TrunkDeck> = (0..5)
        .map(|t| TrunkDeck {
            trunk: format!("trunk-{t}"),
            priority: t,
            weight: 1,
            deck: Deck::from_rows(
                prefixes(200_000, 100 + u64::from(t))
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (s.as_str(), rate(i)))
                    .collect::<Vec<_>>(),
            )
            .unwrap_or_default(),
        })
        .collect();
    let table = Table { trunks };
    let health = |_: &str| {
        Some(Health {
            up: true,
            registered: true,
            channels: 1,
            max_channels: 100,
            cps_ok: true,
        })
    };
    group.bench_function("rank_5_trunks_200k_each", |b| {
        b.iter(|| {
            i = (i + 1) % dests.len();
            table.candidates(black_box(&dests[i]), health)
        })
    });
    group.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);

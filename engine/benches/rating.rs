//! Rating: the charge of a call and the longest call a balance affords,
//! under a plan of 100,000 prefixes (per second, 30/6 and 60/60 billing).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchboard_engine::lcr::{Deck, Rate};
use switchboard_engine::rating::{OnNet, Plan};

fn plan() -> Plan {
    let rows: Vec<(String, Rate)> = (0..100_000u64)
        .map(|i| {
            let prefix = format!("{}", 1_000_000 + i * 7);
            let (first, next) = match i % 3 {
                0 => (1, 1),
                1 => (30, 6),
                _ => (60, 60),
            };
            (
                prefix,
                Rate {
                    per_minute: 5_000 + (i as i64 % 90_000),
                    connect_fee: (i as i64 % 4) * 10_000,
                    first_increment: first,
                    next_increment: next,
                },
            )
        })
        .collect();
    Plan {
        name: "bench".into(),
        deck: Deck::from_rows(rows.iter().map(|(p, r)| (p.as_str(), *r))).expect("deck"),
        minimum_secs: 0,
        onnet: OnNet::Free,
    }
}

fn bench(c: &mut Criterion) {
    let plan = plan();
    let numbers: Vec<String> = (0..1024u64)
        .map(|i| format!("+{}{:05}", 1_000_000 + (i * 97 % 100_000) * 7, i))
        .collect();
    let mut g = c.benchmark_group("rating");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("tariff lookup + charge of a 97 s call", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            let t = plan.pstn(black_box(&numbers[i])).expect("rated");
            black_box(t.charge(black_box(97)))
        })
    });
    let t = plan.pstn(&numbers[5]).expect("rated");
    g.bench_function("affordable seconds for a balance", |b| {
        b.iter(|| black_box(t.affordable_secs(black_box(123_456))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Store throughput: CDR writes, number-registry lookups and call holds
//! (set, then settled) per second, against the embedded store or a
//! ScyllaDB (or Cassandra) cluster, with the same code.
//!
//! ```sh
//! cargo run --release -p switchboard-schema --example store_bench -- embedded /tmp/sbdata
//! cargo run --release -p switchboard-schema --example store_bench -- scylla://10.0.0.1:9042/switchboard?dc=seoul
//! ```
//! Env: `CDRS` (default 20000), `LOOKUPS` (default 50000), `HOLDS`
//! (default 5000), `CONCURRENCY` (default 64). Run `switchboard migrate` first for ScyllaDB. Prints one
//! line per operation: count, seconds, operations per second, p50/p99 µs.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use switchboard_schema as schema;

use schema::model::{AccountKind, Cdr, Hold, LedgerEntry, NumberRecord, NumberState, PriceClass};
use schema::store::Store;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cdr(i: usize, run: u64) -> Cdr {
    Cdr {
        call_id: format!("bench-{run}-{i}"),
        payer: format!("payer{}", i % 1000),
        caller: "100".into(),
        callee: "+82212345678".into(),
        center: "seoul".into(),
        result: "answered".into(),
        status: 200,
        cause: None,
        disconnect: Some("caller".into()),
        attempts: Vec::new(),
        setup_ms: run * 1000 + i as u64,
        ring_ms: Some(200),
        answer_ms: Some(2_000),
        end_ms: 60_000,
        billed_secs: 58,
        price: 58,
        cost_micros: 30_000,
        currency: "USD".into(),
        media: None,
        digits: String::new(),
        callback: None,
        direction: String::new(),
        peer: None,
        peer_micros: 0,
        correlation: None,
    }
}

/// Run `n` operations `op(i)` with `concurrency` in flight; (seconds, p50, p99 µs).
async fn measure<F, Fut>(n: usize, concurrency: usize, op: F) -> (f64, u64, u64)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (op, next) = (op.clone(), next.clone());
            tokio::spawn(async move {
                let mut took = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        return took;
                    }
                    let t = Instant::now();
                    op(i).await;
                    took.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut all: Vec<Duration> = Vec::with_capacity(n);
    for w in workers {
        all.extend(w.await.unwrap_or_default());
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let q = |f: f64| {
        all.get(((all.len() as f64 * f) as usize).min(all.len().saturating_sub(1)))
            .map_or(0, |d| d.as_micros() as u64)
    };
    (secs, q(0.5), q(0.99))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let store: Arc<dyn Store> =
        match args.first().map(String::as_str) {
            Some("embedded") => {
                let dir = args.get(1).ok_or("embedded DIR")?;
                Arc::new(schema::embedded::Embedded::open(std::path::Path::new(dir))?)
            }
            Some(uri) if uri.starts_with("scylla://") => {
                let cfg = schema::scylla::ScyllaConfig::parse(uri)?;
                // MIGRATE=dc=rf[,…]: create the keyspace first.
                if let Ok(spec) = std::env::var("MIGRATE") {
                    let replication = schema::scylla::parse_replication(&spec)?;
                    schema::scylla::migrate(&cfg, &replication).await?;
                }
                Arc::new(schema::scylla::Scylla::connect(&cfg).await?)
            }
            _ => return Err(
                "usage: store_bench embedded DIR | store_bench scylla://HOST:PORT/KEYSPACE?dc=DC"
                    .into(),
            ),
        };
    let (cdrs, lookups, concurrency) = (
        env("CDRS", 20_000),
        env("LOOKUPS", 50_000),
        env("CONCURRENCY", 64),
    );
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let report = |what: &str, n: usize, (secs, p50, p99): (f64, u64, u64)| {
        println!(
            "{what:<16} {n:>8} in {secs:>7.2} s  {:>9.0}/s  p50 {p50} µs  p99 {p99} µs  (concurrency {concurrency})",
            n as f64 / secs
        );
    };

    let s = store.clone();
    let took = measure(cdrs, concurrency, move |i| {
        let s = s.clone();
        async move {
            let _ = s.put_cdr(&cdr(i, run)).await;
        }
    })
    .await;
    report("CDR writes", cdrs, took);

    // A registry of 10,000 numbers, then lookups of random ones.
    for i in 0..10_000 {
        let _ = store
            .insert_number(&NumberRecord {
                number: format!("8231{run:06}{i:04}").chars().take(15).collect(),
                kind: AccountKind::Individual,
                country: "KR".into(),
                area: "31".into(),
                price_class: PriceClass::Standard,
                price: 1000,
                state: NumberState::Available,
                version: 0,
                did: None,
            })
            .await;
    }
    let s = store.clone();
    let took = measure(lookups, concurrency, move |i| {
        let s = s.clone();
        let n: String = format!("8231{run:06}{:04}", (i * 7919) % 10_000)
            .chars()
            .take(15)
            .collect();
        async move {
            let _ = s.number(&n).await;
        }
    })
    .await;
    report("number lookups", lookups, took);

    // Holds: a call's authorisation, one compare-and-set on its payer's
    // balance (1,000 payers, so calls of one payer contend now and then),
    // then its settlement (the charge posted, the hold dropped).
    let holds = env("HOLDS", 5_000);
    for p in 0..1_000 {
        let _ = store
            .post(&LedgerEntry {
                account: format!("bench-{run}-{p}"),
                key: "top-up".into(),
                amount: 1_000_000,
                reason: "top-up".into(),
                at: run,
            })
            .await;
    }
    let s = store.clone();
    let took = measure(holds, concurrency, move |i| {
        let s = s.clone();
        async move {
            let hold = Hold {
                account: format!("bench-{run}-{}", i % 1_000),
                id: format!("call-{i}"),
                amount: 100,
                expires_at: run + 3_600,
            };
            if let Ok(o) = s.put_hold(&hold, 0, run).await
                && o.set
            {
                let charge = LedgerEntry {
                    account: hold.account.clone(),
                    key: format!("call:{i}"),
                    amount: -50,
                    reason: "call".into(),
                    at: run,
                };
                let _ = s.release_hold(&hold.account, &hold.id, Some(&charge)).await;
            }
        }
    })
    .await;
    report("holds + settles", holds, took);
    Ok(())
}

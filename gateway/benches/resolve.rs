//! Resolution throughput on the embedded store holding 10,000 sold numbers:
//! the directory lookup (what the ENUM responder does per query) and a whole
//! `GET /api/v1/resolve/…` through the API's filter (no socket).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use schema::embedded::Embedded;
use schema::model::{Account, AccountKind, NumberRecord, NumberState, PriceClass};
use schema::store::Store;
use switchboard_gateway::api::{Api, ApiConfig, system_clock};
use switchboard_gateway::api_filter;

const N: u64 = 10_000;

async fn fill(store: &dyn Store) {
    for i in 0..N {
        let id = format!("{}", 1_000_000_000 + i);
        let nsn = format!("2{}", 2000_0000 + i);
        store
            .insert_account(&Account {
                contact_pstn: Some(format!("+82{nsn}")),
                uris: vec![format!("sip:m{i}@example.com"), format!("tel:+82{nsn}")],
                ..Account::new(
                    &id,
                    &format!("m{i}@example.com"),
                    AccountKind::Individual,
                    &format!("member {i}"),
                )
            })
            .await
            .ok();
        store
            .insert_number(&NumberRecord {
                number: format!("{nsn}*82"),
                kind: AccountKind::Individual,
                country: "KR".into(),
                area: "2".into(),
                price_class: PriceClass::Standard,
                price: 1000,
                state: NumberState::Sold {
                    account: id,
                    since: 0,
                },
                version: 0,
                did: None,
            })
            .await
            .ok();
    }
}

fn resolution(c: &mut Criterion) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let Ok(dir) = tempfile::tempdir() else { return };
    let Ok(store) = Embedded::open(dir.path()) else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(store);
    rt.block_on(fill(store.as_ref()));
    let mut cfg = ApiConfig::new("127.0.0.1:5060".into(), "switchboard".into());
    cfg.directory.home = engine::numbering::RegionId::KR;
    let directory = cfg.directory.clone();
    let api = Arc::new(Api::new(store.clone(), cfg, system_clock()));
    let filter = api_filter(api);

    // Every lookup below is a hit: check one of each kind first.
    let hit = rt.block_on(directory.resolve_digits(store.as_ref(), "82220001234"));
    assert!(matches!(hit, Ok(Some(_))), "{hit:?}");
    let res = rt.block_on(
        warp::test::request()
            .path("/api/v1/resolve/220001234*82")
            .reply(&filter),
    );
    assert_eq!(res.status(), 200);

    let mut g = c.benchmark_group("resolve");
    g.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    g.bench_function("enum_digits", |b| {
        b.iter(|| {
            i = (i + 7919) % N;
            let digits = format!("822{}", 2000_0000 + i);
            rt.block_on(directory.resolve_digits(store.as_ref(), black_box(&digits)))
                .ok()
                .flatten()
        })
    });
    g.bench_function("http_get", |b| {
        b.iter(|| {
            i = (i + 7919) % N;
            let path = format!("/api/v1/resolve/2{}*82", 2000_0000 + i);
            rt.block_on(warp::test::request().path(&path).reply(&filter))
                .status()
        })
    });
    g.finish();
}

criterion_group!(benches, resolution);
criterion_main!(benches);

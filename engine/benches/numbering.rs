//! Classification throughput: what the edge and the router pay per dialled
//! string, by form.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchboard_engine::numbering::{CarrierFormat, Plan, RegionId, classify};

fn plan() -> Plan {
    Plan {
        carriers: vec![CarrierFormat {
            name: "othervoip".into(),
            prefix: "5000".into(),
            len: 8..=10,
            strip: 4,
            add: "+4930".into(),
        }],
        ..Plan::default()
    }
}

fn classification(c: &mut Criterion) {
    let p = plan();
    let mut g = c.benchmark_group("classify");
    g.throughput(Throughput::Elements(1));
    for (name, input, from) in [
        ("individual", "2-1234-5678 82", RegionId::US),
        ("individual_star", "212345678*82", RegionId::US),
        ("company_suffix", "700-1234 #82", RegionId::US),
        ("pstn_e164", "+44 20 7946 0958", RegionId::KR),
        ("pstn_national", "02-1234-5678", RegionId::KR),
        ("carrier", "5000 1234 56", RegionId::KR),
        ("alias_email", "kim@example.com", RegionId::KR),
        ("rejected", "123456", RegionId::KR),
    ] {
        g.bench_function(name, |b| b.iter(|| classify(black_box(input), from, &p)));
    }
    g.finish();
}

criterion_group!(benches, classification);
criterion_main!(benches);

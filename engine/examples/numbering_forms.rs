//! Prints how each sample input is classified and written: the tables of
//! docs/numbering.md come from this (`cargo run -p switchboard-engine
//! --example numbering_forms`).

use switchboard_engine::numbering::{Dialled, Plan, classify, region};

fn main() {
    let plan = Plan::default();
    let samples = [
        ("KR", "2-1234-5678 82"),
        ("KR", "02-1234-5678"),
        ("KR", "010-1234-5678"),
        ("US", "(202) 555-0143 1"),
        ("US", "202.555.0143"),
        ("GB", "20 7946 0958 44"),
        ("GB", "020 7946 0958"),
        ("JP", "3-1234-5678 81"),
        ("JP", "03-1234-5678"),
        ("DE", "30 12345678 49"),
        ("DE", "030 12345678"),
        ("US", "+82 2 1234 5678"),
        ("KR", "7001234"),
        ("KR", "7001234 #1"),
        ("KR", "20255501431"),
        ("KR", "kim@example.com"),
    ];
    for (from, input) in samples {
        let Some(r) = region(from) else { continue };
        let line = match classify(input, r, &plan) {
            Ok(Dialled::Individual(i)) => format!(
                "individual | `{}` | `{}` | {}",
                i.canonical(),
                i.display(),
                i.pstn()
            ),
            Ok(Dialled::Company(c)) => format!(
                "company | `{}` | `{}` | office: {}",
                c.canonical(),
                c.display(),
                c.cc.map_or("caller's country, else default".into(), |cc| format!(
                    "+{cc}"
                ))
            ),
            Ok(Dialled::Pstn(p)) => {
                format!("PSTN | `{}` | | {}", p.e164, p.region.unwrap_or_default())
            }
            Ok(Dialled::Alias(a)) => {
                format!("alias | `{a:?}` | | resolved through the alias table")
            }
            Ok(Dialled::Carrier { carrier, number }) => {
                format!("carrier | `{number}` | | {carrier}")
            }
            Err(e) => format!("refused | | | {e}"),
        };
        println!("| {from} | `{input}` | {line} |");
    }
}

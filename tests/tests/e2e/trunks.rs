//! Calls to PSTN and other carriers' numbers handed to SIPp instances playing
//! carrier trunks on their own loopback ports, with different rate decks:
//! least-cost choice, number translation, failover on 503 and none on 486.

use std::net::SocketAddr;
use std::sync::Arc;

use actors::config::{Routing, TrunkRoute};
use engine::lcr::{Deck, Rate, Table, TrunkDeck};
use engine::numbering::{CarrierFormat, Plan, RegionId};
use engine::routing::{NumberFormat, Translation};
use switchboard_tests::{Env, Sipp, free_port};

struct Trunks {
    seoul_a: u16,
    seoul_b: u16,
    generic: u16,
    carrier: u16,
}

fn rate(per_minute: i64) -> Rate {
    Rate {
        per_minute,
        connect_fee: 0,
        first_increment: 60,
        next_increment: 6,
    }
}

fn deck(prefix: &str, per_minute: i64) -> Deck {
    Deck::from_rows([(prefix, rate(per_minute))]).unwrap()
}

/// Three PSTN trunks: two with a Seoul price (822), the cheaper wanting the
/// national format; a cheaper but generic one (82) in E.164 with `+`; and
/// another carrier's peering trunk.
fn routing(t: &Trunks) -> Routing {
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let route = |name: &str, port: u16, format| TrunkRoute {
        name: name.into(),
        addr: addr(port),
        translation: Translation {
            format,
            ..Translation::default()
        },
    };
    let entry = |name: &str, deck| TrunkDeck {
        trunk: name.into(),
        priority: 0,
        weight: 1,
        deck,
    };
    Routing {
        plan: Plan {
            carriers: vec![CarrierFormat {
                name: "othervoip".into(),
                prefix: "5000".into(),
                len: 8..=10,
                strip: 4,
                add: "4930".into(),
            }],
            ..Plan::default()
        },
        home: RegionId::KR,
        trunks: vec![
            route("seoul-a", t.seoul_a, NumberFormat::National),
            route("seoul-b", t.seoul_b, NumberFormat::E164),
            route("generic", t.generic, NumberFormat::E164Plus),
            route("othervoip", t.carrier, NumberFormat::E164),
        ],
        lcr: Table {
            trunks: vec![
                entry("seoul-b", deck("822", 30_000)),
                entry("seoul-a", deck("822", 20_000)),
                entry("generic", deck("82", 5_000)),
            ],
        },
        ..Routing::default()
    }
}

async fn env() -> (Env, Trunks) {
    let t = Trunks {
        seoul_a: free_port(),
        seoul_b: free_port(),
        generic: free_port(),
        carrier: free_port(),
    };
    let r = routing(&t);
    let env = Env::start(&["100"], |cfg| cfg.routing = Arc::new(r))
        .await
        .unwrap();
    (env, t)
}

fn trunk(
    env: &Env,
    port: u16,
    scenario: &str,
    vars: &[(&str, &str)],
) -> switchboard_tests::SippChild {
    let sc = env.scenario(scenario, vars).unwrap();
    Sipp::new(env.work.path(), &sc, port).spawn().unwrap()
}

fn caller(env: &Env, dialled: &str, scenario: &str, vars: &[(&str, &str)]) -> Sipp {
    let sc = env.scenario(scenario, vars).unwrap();
    let mut s = env.sipp_as(&sc, "100", free_port()).unwrap();
    s.args(["-s", dialled]);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pstn_call_goes_to_the_cheapest_trunk_for_the_longest_prefix_in_its_format() {
    let (env, t) = env().await;
    // seoul-a: the longest prefix (822) at the lower of the two Seoul prices;
    // it wants the national format.
    let a = trunk(
        &env,
        t.seoul_a,
        "trunk_answer.xml",
        &[("RURI", "0212345678")],
    );
    caller(&env, "+82212345678", "uac.xml", &[("HOLD", "300")])
        .run()
        .await
        .unwrap();
    a.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_fails_over_to_the_next_trunk_and_the_call_completes() {
    let (env, t) = env().await;
    let a = trunk(
        &env,
        t.seoul_a,
        "trunk_refuse.xml",
        &[
            ("RURI", "0212345678"),
            ("STATUS", "503"),
            ("REASON", "Service Unavailable"),
        ],
    );
    // Next in rank: seoul-b (same prefix, dearer), E.164 without '+'.
    let b = trunk(
        &env,
        t.seoul_b,
        "trunk_answer.xml",
        &[("RURI", "82212345678")],
    );
    caller(&env, "02-1234-5678", "uac.xml", &[("HOLD", "300")])
        .run()
        .await
        .unwrap();
    a.wait().await.unwrap();
    b.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_486_does_not_fail_over() {
    let (env, t) = env().await;
    // Stand in for seoul-b: any INVITE reaching it would be a wrong failover.
    let watch = tokio::net::UdpSocket::bind(("127.0.0.1", t.seoul_b))
        .await
        .unwrap();
    let a = trunk(
        &env,
        t.seoul_a,
        "trunk_refuse.xml",
        &[
            ("RURI", "0212345678"),
            ("STATUS", "486"),
            ("REASON", "Busy Here"),
        ],
    );
    caller(&env, "+82212345678", "uac_final.xml", &[("FINAL", "486")])
        .run()
        .await
        .unwrap();
    a.wait().await.unwrap();
    let mut buf = [0u8; 2048];
    // The caller has its 486: a failover would have sent its INVITE before.
    assert!(
        watch.try_recv(&mut buf).is_err(),
        "seoul-b was tried after a 486: {}",
        String::from_utf8_lossy(&buf)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_carriers_number_arrives_at_its_peering_trunk_in_its_system() {
    let (env, t) = env().await;
    // 5000 1234 56 → strip 5000, add 4930 (the carrier's own numbering).
    let c = trunk(
        &env,
        t.carrier,
        "trunk_answer.xml",
        &[("RURI", "4930123456")],
    );
    caller(&env, "5000123456", "uac.xml", &[("HOLD", "300")])
        .run()
        .await
        .unwrap();
    c.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_with_no_route_gets_404() {
    let (env, _t) = env().await;
    // A UK number: no deck has a prefix for it.
    caller(&env, "+442079460958", "uac_final.xml", &[("FINAL", "404")])
        .run()
        .await
        .unwrap();
}

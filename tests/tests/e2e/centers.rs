//! Communication centers, one per country (seed 004): a call is handled by
//! the center of the callee's country and a PSTN call leaves through that
//! center's trunks; a center's crash restarts it with its trunks and
//! touches neither its calls in progress nor the other centers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actors::config::{CenterSpec, Routing, TrunkRoute};
use engine::lcr::{Deck, Rate, Table, TrunkDeck};
use engine::numbering::RegionId;
use engine::routing::{NumberFormat, Translation};
use switchboard_tests::{Env, Sipp, eventually, free_port};

fn deck(rows: &[(&str, i64)]) -> Deck {
    Deck::from_rows(rows.iter().map(|(p, per_minute)| {
        (
            *p,
            Rate {
                per_minute: *per_minute,
                connect_fee: 0,
                first_increment: 60,
                next_increment: 6,
            },
        )
    }))
    .unwrap()
}

/// Seoul (82) owns trunk `kr`, which also prices US numbers cheaply; New
/// York (1) owns trunk `us`, for New York numbers (1212) only.
async fn env(kr: u16, us: u16, tweak: impl FnOnce(&mut actors::NodeConfig)) -> Env {
    let route = |name: &str, port: u16| {
        let mut r = TrunkRoute::new(
            name,
            SocketAddr::from(([127, 0, 0, 1], port)),
            Translation {
                format: NumberFormat::E164,
                ..Translation::default()
            },
        );
        r.options_interval = None; // SIPp carriers that expect INVITEs only
        r
    };
    let center = |name: &str, cc, region, trunk: &str| CenterSpec {
        name: name.into(),
        cc,
        region,
        trunks: vec![trunk.into()],
        runs_on: Vec::new(),
        runs_in: None,
    };
    let entry = |trunk: &str, deck| TrunkDeck {
        trunk: trunk.into(),
        priority: 0,
        weight: 1,
        deck,
    };
    let routing = Routing {
        home: RegionId::KR,
        trunks: vec![route("kr", kr), route("us", us)],
        centers: vec![
            center("seoul", 82, RegionId::KR, "kr"),
            center("newyork", 1, RegionId::US, "us"),
        ],
        lcr: Table {
            trunks: vec![
                entry("kr", deck(&[("82", 10_000), ("1", 1_000)])),
                entry("us", deck(&[("1212", 9_000)])),
            ],
        }
        .into(),
        ..Routing::default()
    };
    Env::start(&["100"], |cfg| {
        cfg.routing = Arc::new(routing);
        tweak(cfg);
    })
    .await
    .unwrap()
}

fn caller(env: &Env, dialled: &str, scenario: &str, vars: &[(&str, &str)]) -> Sipp {
    let sc = env.scenario(scenario, vars).unwrap();
    let mut s = env.sipp_as(&sc, "100", free_port()).unwrap();
    s.args(["-s", dialled]);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pstn_call_leaves_through_the_trunks_of_the_callee_country_center() {
    let (kr, us) = (free_port(), free_port());
    let env = env(kr, us, |_| {}).await;
    // kr prices US numbers at a ninth of us, but it belongs to Seoul: a
    // call into the US is New York's, and leaves through us.
    let watch = tokio::net::UdpSocket::bind(("127.0.0.1", kr))
        .await
        .unwrap();
    let sc = env
        .scenario("trunk_answer.xml", &[("RURI", "12125550100")])
        .unwrap();
    let trunk = Sipp::new(env.work.path(), &sc, us).spawn().unwrap();
    caller(&env, "+12125550100", "uac.xml", &[("HOLD", "200")])
        .run()
        .await
        .unwrap();
    trunk.wait().await.unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        watch.try_recv(&mut buf).is_err(),
        "Seoul's trunk was offered a US call: {}",
        String::from_utf8_lossy(&buf)
    );
    // A Seoul number still goes out through kr.
    drop(watch);
    let sc = env
        .scenario("trunk_answer.xml", &[("RURI", "82212345678")])
        .unwrap();
    let trunk = Sipp::new(env.work.path(), &sc, kr).spawn().unwrap();
    caller(&env, "+82212345678", "uac.xml", &[("HOLD", "200")])
        .run()
        .await
        .unwrap();
    trunk.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_center_crash_restarts_it_with_its_trunks_and_spares_its_calls_and_the_others() {
    let (kr, us) = (free_port(), free_port());
    // The first INVITE to +13105550100 panics the center that takes it
    // (New York's).
    let env = env(kr, us, |c| c.panic_center_on = Some("+13105550100".into())).await;
    let before = env.node().tree().await;
    assert_eq!(
        before
            .iter()
            .map(|c| (c.name.as_str(), c.trunks.len()))
            .collect::<Vec<_>>(),
        [("seoul", 1), ("newyork", 1)]
    );
    // The us carrier takes two calls: one across the crash, one after it.
    let sc = env
        .scenario("trunk_answer.xml", &[("RURI", "12125550100")])
        .unwrap();
    let mut trunk = Sipp::new(env.work.path(), &sc, us);
    trunk.args(["-m", "2"]);
    let trunk = trunk.spawn().unwrap();
    let long = caller(&env, "+12125550100", "uac.xml", &[("HOLD", "4000")])
        .spawn()
        .unwrap();
    eventually("the long call is up", Duration::from_secs(5), || async {
        env.node().active_calls().await == 1
    })
    .await
    .unwrap();
    // The crash takes the first INVITE; its retransmission reaches the
    // restarted center, which challenges it and finds no route (no deck
    // has 1310): the caller gets its 404 from the new center.
    caller(&env, "+13105550100", "uac_final.xml", &[("FINAL", "404")])
        .run()
        .await
        .unwrap();
    let after = env.node().tree().await;
    assert_eq!(before[0], after[0], "Seoul and its trunk untouched");
    assert_ne!(before[1].actor, after[1].actor, "New York restarted");
    assert_eq!(after[1].trunks.len(), 1);
    assert_eq!(after[1].trunks[0].0, "us");
    assert_ne!(
        before[1].trunks[0].1, after[1].trunks[0].1,
        "its trunk restarted with it"
    );
    // New calls go through the restarted center and trunk, and the call
    // that was up during the crash ends normally (BYE answered 200).
    caller(&env, "+12125550100", "uac.xml", &[("HOLD", "200")])
        .run()
        .await
        .unwrap();
    long.wait().await.unwrap();
    trunk.wait().await.unwrap();
}

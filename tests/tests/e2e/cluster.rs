//! Two nodes of one cluster sharing a store (issue 21): a member whose
//! phone registered through node B is called by a member on node A; A
//! hands the call to B over SIP (signed), B delivers it down the phone's
//! own flow without billing it; once B is dead, calls to its phones get
//! 480 at once; a forged hand-over is refused.

use std::sync::Arc;
use std::time::Duration;

use actors::config::NodeConfig;
use switchboard_tests::{Env, eventually, free_port};

const SECRET: &[u8] = b"the cluster's shared secret";

fn node(name: &str) -> impl FnOnce(&mut NodeConfig) {
    let name = name.to_owned();
    move |c: &mut NodeConfig| {
        c.node_name = name;
        c.cluster.region = "seoul".into();
        c.cluster.secret = Some(Arc::from(SECRET));
        c.cluster.dead_after = Duration::from_secs(3);
    }
}

/// Nodes `a` and `b` on one store, each knowing the other alive.
async fn two_nodes() -> (Env, Env) {
    let a = Env::start(&["100", "500"], node("a")).await.unwrap();
    let b = a.sibling(node("b")).await.unwrap();
    know_each_other(&a, &b, Duration::from_secs(10)).await;
    (a, b)
}

/// Wait until nodes `a` and `b` each see both alive.
async fn know_each_other(a: &Env, b: &Env, within: Duration) {
    for env in [a, b] {
        eventually("both nodes known", within, || async {
            let now = actors::clock::unix_now();
            let c = &env.node().transport.cluster;
            ["a", "b"]
                .iter()
                .all(|n| c.sibling(n, now).is_some_and(|(_, alive)| alive))
        })
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_reaches_a_phone_held_by_another_node_and_is_billed_once() {
    let (a, b) = two_nodes().await;
    a.top_up("100", 10_000).await;
    // 500's phone registers through node b.
    let port = free_port();
    b.register("500", port).await.unwrap();
    let bound = schema::store::Store::bindings(a.store.as_ref(), "500", actors::clock::unix_now())
        .await
        .unwrap();
    assert_eq!(bound[0].node, "b", "{bound:?}");
    let sc = b.scenario("uas.xml", &[]).unwrap();
    let phone = b.sipp(&sc, port).spawn().unwrap();
    // 100 calls 500 through node a.
    let sc = a.scenario("uac.xml", &[("HOLD", "500")]).unwrap();
    let mut caller = a.sipp_as(&sc, "100", free_port()).unwrap();
    caller.args(["-s", "500"]);
    caller.run().await.unwrap();
    phone.wait().await.unwrap();
    let at_a = a.call_report(|r| r.callee == "500").await;
    assert_eq!((at_a.result, at_a.status), ("answered", 200), "{at_a:?}");
    assert_eq!(at_a.peer, None, "a placed it for its member");
    let at_b = b.call_report(|r| r.callee == "500").await;
    assert_eq!(
        (at_b.result, at_b.peer.as_deref()),
        ("answered", Some("node:a")),
        "b delivered it for a: {at_b:?}"
    );
    // One record for the payer; b's is a transit, paid by nobody.
    let paid = a.cdrs(Some("100")).await;
    assert_eq!(paid.len(), 1, "{paid:?}");
    let all = a.cdrs(None).await;
    let transit: Vec<_> = all
        .iter()
        .filter(|c| c.peer.as_deref() == Some("node:a"))
        .collect();
    assert_eq!(transit.len(), 1, "{all:?}");
    assert_eq!(transit[0].price, 0, "{:?}", transit[0]);
    assert_eq!(
        transit[0].correlation.as_deref(),
        Some(paid[0].call_id.as_str()),
        "the transit names the payer's record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_phone_on_a_dead_node_fails_at_once() {
    let (a, mut b) = two_nodes().await;
    b.register("500", free_port()).await.unwrap();
    b.node
        .take()
        .unwrap()
        .shutdown(Duration::from_millis(200))
        .await;
    eventually("b dead to a", Duration::from_secs(10), || async {
        let now = actors::clock::unix_now();
        a.node()
            .transport
            .cluster
            .sibling("b", now)
            .is_some_and(|(_, alive)| !alive)
    })
    .await
    .unwrap();
    let sc = a
        .scenario(
            "uac_final.xml",
            &[("FINAL", "480"), ("REASON", "Temporarily Unavailable")],
        )
        .unwrap();
    let mut caller = a.sipp_as(&sc, "100", free_port()).unwrap();
    caller.args(["-s", "500"]);
    // The scenario fails unless the answer is 480.
    caller.run().await.unwrap();
}

/// The first final answer of `env` to a hand-over INVITE for `user` sent
/// from 127.0.0.1 with a marker of `origin` signed with `secret`.
async fn hand_over(env: &Env, secret: &[u8], origin: &str, user: &str) -> String {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sock.local_addr().unwrap();
    let sip = env.sip();
    let now = actors::clock::unix_now();
    let marker = engine::cluster::sign(secret, origin, user, now);
    let invite = format!(
        "INVITE sip:{user}@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-hand1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:100@{sip}>;tag=f1\r\nTo: <sip:{user}@{sip}>\r\n\
         Call-ID: hand-over-{user}\r\nCSeq: 1 INVITE\r\nContact: <sip:100@{me}>\r\n\
         X-Switchboard-Node: {marker}\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(invite.as_bytes(), sip).await.unwrap();
    let mut buf = vec![0u8; 4096];
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let (n, _) = sock.recv_from(&mut buf).await.unwrap();
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            if !text.starts_with("SIP/2.0 1") {
                return text;
            }
        }
    })
    .await
    .expect("an answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_hand_over_is_refused() {
    let (a, _b) = two_nodes().await;
    // Signed with another key, claiming to be b.
    let status = hand_over(&a, b"not the cluster's secret", "b", "500").await;
    assert!(status.starts_with("SIP/2.0 403 "), "{status}");
}

/// A sibling's hand-over of an off-net call to a node whose center has
/// moved away (placed on a node z, as after z came back from a takeover):
/// 503, retryable, and never handed on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_over_for_a_center_that_runs_elsewhere_gets_503() {
    let a = Env::start(&["100"], |c: &mut NodeConfig| {
        node("a")(c);
        let mut r = (*c.routing).clone();
        r.centers.push(actors::config::CenterSpec {
            name: "newyork".into(),
            cc: 1,
            region: engine::numbering::RegionId::US,
            trunks: Vec::new(),
            runs_on: vec!["z".into()],
            runs_in: None,
        });
        c.routing = Arc::new(r);
    })
    .await
    .unwrap();
    let b = a.sibling(node("b")).await.unwrap();
    know_each_other(&a, &b, Duration::from_secs(10)).await;
    let status = hand_over(&a, SECRET, "b", "+12125550100").await;
    assert!(status.starts_with("SIP/2.0 503 "), "{status}");
}

/// The same hand-over with the store a real CQL cluster of two regions
/// (`ops/test.sh` runs it with the Cassandra cluster it starts): node a
/// reads and writes through seoul, node b through virginia. Member 500's
/// phone registers through b; 100 calls it through a; the call is answered,
/// b's record is a transit and the payer has exactly one CDR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a CQL cluster: SCYLLA_URI and SCYLLA_URI_REMOTE (ops/test.sh sets them)"]
async fn two_regions_on_the_cql_cluster_hand_a_call_over() {
    use schema::scylla::{Scylla, ScyllaConfig, migrate};
    use schema::store::Store;
    let keyspace = format!("switchboard_e2e_{}", std::process::id());
    let cfg_of = |var: &str| {
        let mut c = ScyllaConfig::parse(&std::env::var(var).expect(var)).unwrap();
        c.keyspace.clone_from(&keyspace);
        c
    };
    let (seoul, virginia) = (cfg_of("SCYLLA_URI"), cfg_of("SCYLLA_URI_REMOTE"));
    let replication = schema::scylla::parse_replication(
        &std::env::var("SCYLLA_REPLICATION").unwrap_or_else(|_| "seoul=1,virginia=1".into()),
    )
    .unwrap();
    migrate(&seoul, &replication).await.unwrap();
    let in_seoul: Arc<dyn Store> = Arc::new(Scylla::connect(&seoul).await.unwrap());
    let in_virginia: Arc<dyn Store> = Arc::new(Scylla::connect(&virginia).await.unwrap());
    for n in ["100", "500"] {
        switchboard_tests::add_member(in_seoul.as_ref(), n)
            .await
            .unwrap();
    }
    // Nodes on the cluster, wrapped in test environments for their SIPp
    // helpers (their own embedded stores stay unused).
    let start = |name: &str, store: Arc<dyn Store>| {
        let name = name.to_owned();
        async move {
            let mut cfg = switchboard_tests::node_config();
            node(&name)(&mut cfg);
            let data = tempfile::tempdir().unwrap();
            Env {
                node: Some(actors::start(cfg.clone(), store).await.unwrap()),
                store: Arc::new(schema::embedded::Embedded::open(data.path()).unwrap()),
                data,
                work: tempfile::tempdir().unwrap(),
                cfg,
            }
        }
    };
    let a = start("a", in_seoul.clone()).await;
    let b = start("b", in_virginia.clone()).await;
    know_each_other(&a, &b, Duration::from_secs(20)).await;
    let port = free_port();
    b.register("500", port).await.unwrap();
    let sc = b.scenario("uas.xml", &[]).unwrap();
    let phone = b.sipp(&sc, port).spawn().unwrap();
    let sc = a.scenario("uac.xml", &[("HOLD", "500")]).unwrap();
    let mut caller = a.sipp_as(&sc, "100", free_port()).unwrap();
    caller.args(["-s", "500"]);
    caller.run().await.unwrap();
    phone.wait().await.unwrap();
    let at_b = b.call_report(|r| r.callee == "500").await;
    assert_eq!(
        (at_b.result, at_b.peer.as_deref()),
        ("answered", Some("node:a")),
        "{at_b:?}"
    );
    let query = switchboard_tests::every_cdr_of(Some("100"));
    eventually("the payer's CDR", Duration::from_secs(10), || async {
        in_virginia.cdrs(&query).await.is_ok_and(|c| c.len() == 1)
    })
    .await
    .unwrap();
    let paid = in_seoul.cdrs(&query).await.unwrap();
    assert_eq!(paid.len(), 1, "one CDR for the payer: {paid:?}");
    assert_eq!(paid[0].result, "answered");
}

/// Centers placed by region: Seoul's (82, trunk `kr`) runs on the seoul
/// node a, New York's (1, trunk `us`) on the virginia node b. A US number
/// dialled on a leaves through b's `us` trunk (a hands it over, signed,
/// with the caller's proven number, which b's trunk is shown); `kr` is
/// never offered it; a bills it, b's record is a transit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pstn_call_goes_through_the_node_that_runs_its_countrys_center() {
    use actors::config::{CenterSpec, Routing, TrunkRoute};
    use engine::lcr::{Deck, Rate, Table, TrunkDeck};
    use engine::numbering::RegionId;
    use engine::routing::{NumberFormat, Translation};
    let (kr, us) = (free_port(), free_port());
    let route = |name: &str, port: u16| {
        let mut r = TrunkRoute::new(
            name,
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Translation {
                format: NumberFormat::E164,
                ..Translation::default()
            },
        );
        r.options_interval = None;
        r.trusted = true;
        r
    };
    let deck = |prefix: &str| TrunkDeck {
        trunk: String::new(),
        priority: 0,
        weight: 1,
        deck: Deck::from_rows([(
            prefix,
            Rate {
                per_minute: 1_000,
                connect_fee: 0,
                first_increment: 60,
                next_increment: 6,
            },
        )])
        .unwrap(),
    };
    let center = |name: &str, cc, region, trunk: &str, runs_in: &str| CenterSpec {
        name: name.into(),
        cc,
        region,
        trunks: vec![trunk.into()],
        runs_on: Vec::new(),
        runs_in: Some(runs_in.into()),
    };
    let routing = Arc::new(Routing {
        home: RegionId::KR,
        trunks: vec![route("kr", kr), route("us", us)],
        centers: vec![
            center("seoul", 82, RegionId::KR, "kr", "seoul"),
            center("newyork", 1, RegionId::US, "us", "virginia"),
        ],
        lcr: Table {
            trunks: vec![
                TrunkDeck {
                    trunk: "kr".into(),
                    ..deck("1")
                },
                TrunkDeck {
                    trunk: "us".into(),
                    ..deck("1212")
                },
            ],
        }
        .into(),
        ..Routing::default()
    });
    let placed = |name: &'static str, region: &'static str| {
        let routing = routing.clone();
        move |c: &mut NodeConfig| {
            node(name)(c);
            c.cluster.region = region.into();
            c.routing = routing;
        }
    };
    let a = Env::start(&["100"], placed("a", "seoul")).await.unwrap();
    let b = a.sibling(placed("b", "virginia")).await.unwrap();
    eventually(
        "a knows b runs New York",
        Duration::from_secs(10),
        || async {
            a.node()
                .transport
                .cluster
                .runner_of(&routing.centers[1], actors::clock::unix_now())
                .is_some_and(|n| n.name == "b")
        },
    )
    .await
    .unwrap();
    let watch = tokio::net::UdpSocket::bind(("127.0.0.1", kr))
        .await
        .unwrap();
    // 100's proven number goes with the call: b's trunk is shown it in
    // From and asserted, as a's own trunks would be.
    a.add_account("100", "100@example.com", |acc| {
        acc.contact_pstn = Some("+82311234567".into());
        acc.contact_verified = acc.contact_pstn.clone();
    })
    .await;
    let sc = b
        .scenario(
            "trunk_identity.xml",
            &[
                ("RURI", "12125550100"),
                ("FROM", "82311234567"),
                ("PAI", "82311234567"),
            ],
        )
        .unwrap();
    let trunk = switchboard_tests::Sipp::new(b.work.path(), &sc, us)
        .spawn()
        .unwrap();
    let sc = a.scenario("uac.xml", &[("HOLD", "300")]).unwrap();
    let mut caller = a.sipp_as(&sc, "100", free_port()).unwrap();
    caller.args(["-s", "+12125550100"]);
    caller.run().await.unwrap();
    trunk.wait().await.unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        watch.try_recv(&mut buf).is_err(),
        "kr was offered a US call"
    );
    let at_b = b.call_report(|r| r.callee == "+12125550100").await;
    assert_eq!(
        (at_b.result, at_b.peer.as_deref()),
        ("answered", Some("node:a")),
        "{at_b:?}"
    );
    assert_eq!(
        at_b.attempts.first().map(|t| t.trunk.as_str()),
        Some("us"),
        "{at_b:?}"
    );
    let paid = a.cdrs(Some("100")).await;
    assert_eq!(paid.len(), 1, "one CDR for the payer: {paid:?}");
}

//! IPv6 (RFC 5118, issue 19.12): an engine on [::1] takes registrations,
//! calls with anchored media and trunk calls from SIPp over IPv6.

use std::net::SocketAddr;
use std::sync::Arc;

use actors::config::{Routing, TrunkRoute};
use actors::media::{A, B};
use engine::lcr::{Deck, Rate, Table, TrunkDeck};
use engine::routing::{NumberFormat, Translation};
use schema::store::Store as _;
use switchboard_tests::{Env, free_media_port, free_port};

const G711A: &str = "/usr/share/sip-tester/g711a.pcap";
const G711A_PACKETS: u64 = 236;

async fn v6_env(tweak: impl FnOnce(&mut actors::NodeConfig)) -> Env {
    Env::start(&["100", "200"], |c| {
        c.sip_addr = "[::1]:0".parse().unwrap();
        c.media.bind = "::1".parse().unwrap();
        c.media.ports = (32000, 32999);
        tweak(c);
    })
    .await
    .unwrap()
}

/// `name` with its SDP checks for IPv4 made IPv6 checks of `::1`.
fn v6_scenario(env: &Env, name: &str, vars: &[(&str, &str)]) -> std::path::PathBuf {
    let sc = env.scenario(name, vars).unwrap();
    let text = std::fs::read_to_string(&sc)
        .unwrap()
        .replace("c=IN IP4 ::1", "c=IN IP6 ::1")
        .replace("m=audio 3[0-9]{4}", "m=audio 32[0-9]{3}");
    std::fs::write(&sc, text).unwrap();
    sc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_registers_and_calls_over_ipv6_with_anchored_media() {
    let env = v6_env(|_| {}).await;
    assert!(env.sip().is_ipv6());
    let port = free_port();
    env.register("200", port).await.unwrap();
    assert_eq!(env.bindings("200").await.unwrap(), 1);
    let callee_mp = free_media_port();
    let sc = v6_scenario(
        &env,
        "uas_media.xml",
        &[("MEDIA_IP", "::1"), ("WAIT", "20000"), ("RING", "0")],
    );
    let mut uas = env.sipp(&sc, port);
    uas.args(["-mp", &callee_mp.to_string(), "-rtp_echo"]);
    let uas = uas.spawn().unwrap();
    let sc = v6_scenario(
        &env,
        "uac_media.xml",
        &[
            ("MEDIA_IP", "::1"),
            ("PCAP", G711A),
            ("HOLD", "8000"),
            ("SDP_PORT", "[media_port]"),
            ("SENDER_LINE", ""),
        ],
    );
    let mut c = env.sipp_as(&sc, "100", free_port()).unwrap();
    c.args(["-s", "200", "-mp", &free_media_port().to_string()]);
    c.run().await.unwrap();
    uas.wait().await.unwrap();
    let r = env.call_report(|r| r.callee == "200").await;
    let m = r.media.expect("media report");
    assert_eq!(m[A].relayed, G711A_PACKETS, "caller → callee over IPv6");
    assert_eq!(m[B].relayed, G711A_PACKETS, "callee's echo → caller");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pstn_call_reaches_a_trunk_over_ipv6() {
    let trunk_port = free_port();
    let env = v6_env(|c| {
        let mut t = TrunkRoute::new(
            "v6",
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, trunk_port)),
            Translation {
                format: NumberFormat::E164,
                ..Translation::default()
            },
        );
        t.options_interval = None;
        let rate = Rate {
            per_minute: 0,
            connect_fee: 0,
            first_increment: 60,
            next_increment: 6,
        };
        c.routing = Arc::new(Routing {
            trunks: vec![t],
            lcr: Table {
                trunks: vec![TrunkDeck {
                    trunk: "v6".into(),
                    priority: 0,
                    weight: 1,
                    deck: Deck::from_rows([("82", rate)]).unwrap(),
                }],
            }
            .into(),
            ..Routing::default()
        });
    })
    .await;
    let sc = env
        .scenario("trunk_answer.xml", &[("RURI", "82212345678")])
        .unwrap();
    let trunk = env.sipp(&sc, trunk_port).spawn().unwrap();
    let sc = env.scenario("uac.xml", &[("HOLD", "200")]).unwrap();
    let mut c = env.sipp_as(&sc, "100", free_port()).unwrap();
    c.args(["-s", "+82212345678"]);
    c.run().await.unwrap();
    trunk.wait().await.unwrap();
}

/// Over TCP on IPv6: a phone registers over a TCP connection to [::1] and
/// a call from a UDP phone reaches it over TCP (the engine connects to its
/// bracketed IPv6 Contact).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_registered_over_tcp_on_ipv6_is_called_over_tcp() {
    let env = v6_env(|_| {}).await;
    let port = free_port();
    let sc = env.scenario("register.xml", &[("FINAL", "200")]).unwrap();
    let mut reg = env.sipp_as(&sc, "200", port).unwrap();
    reg.args(["-t", "t1"]);
    reg.run().await.unwrap();
    let bindings = env
        .store
        .bindings("200", actors::clock::unix_now())
        .await
        .unwrap();
    assert_eq!(bindings[0].source, format!("tcp:[::1]:{port}"));
    let sc = env.scenario("uas.xml", &[]).unwrap();
    let mut uas = env.sipp(&sc, port);
    uas.args(["-t", "t1"]);
    let uas = uas.spawn().unwrap();
    let sc = env.scenario("uac.xml", &[("HOLD", "200")]).unwrap();
    let mut c = env.sipp_as(&sc, "100", free_port()).unwrap();
    c.args(["-s", "200"]);
    c.run().await.unwrap();
    uas.wait().await.unwrap();
}

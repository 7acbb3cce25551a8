//! Calls to PSTN and other carriers' numbers handed to SIPp instances playing
//! carrier trunks on their own loopback ports, with different rate decks:
//! least-cost choice, number translation, failover on 503 and none on 486.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
    let route = |name: &str, port: u16, format| {
        let mut r = TrunkRoute::new(
            name,
            addr(port),
            Translation {
                format,
                ..Translation::default()
            },
        );
        // These carriers are SIPp scenarios that expect only INVITEs.
        r.options_interval = None;
        r
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
        }
        .into(),
        ..Routing::default()
    }
}

fn ports() -> Trunks {
    Trunks {
        seoul_a: free_port(),
        seoul_b: free_port(),
        generic: free_port(),
        carrier: free_port(),
    }
}

/// An engine with [`routing`] for trunks at `t`, seoul-a adjusted by `seoul_a`.
async fn start(t: &Trunks, seoul_a: impl FnOnce(&mut TrunkRoute)) -> Env {
    let mut r = routing(t);
    if let Some(a) = r.trunks.iter_mut().find(|x| x.name == "seoul-a") {
        seoul_a(a);
    }
    Env::start(&["100"], |cfg| cfg.routing = Arc::new(r))
        .await
        .unwrap()
}

/// An engine with [`routing`] on fresh ports, seoul-a adjusted by `seoul_a`.
async fn env_with(seoul_a: impl FnOnce(&mut TrunkRoute)) -> (Env, Trunks) {
    let t = ports();
    (start(&t, seoul_a).await, t)
}

/// A call to a Seoul number is carried by seoul-b and seoul-a sees nothing
/// of it (`why` seoul-a must be passed over).
async fn passed_over_for_seoul_b(env: &Env, t: &Trunks, why: &str) {
    let watch = tokio::net::UdpSocket::bind(("127.0.0.1", t.seoul_a))
        .await
        .unwrap();
    let b = trunk(
        env,
        t.seoul_b,
        "trunk_answer.xml",
        &[("RURI", "82212345678")],
    );
    caller(env, "+82212345678", "uac.xml", &[("HOLD", "200")])
        .run()
        .await
        .unwrap();
    b.wait().await.unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        watch.try_recv(&mut buf).is_err(),
        "{why}: {}",
        String::from_utf8_lossy(&buf)
    );
}

async fn env() -> (Env, Trunks) {
    env_with(|_| {}).await
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_with_two_channels_never_carries_a_third_call() {
    let (env, t) = env_with(|a| a.max_channels = 2).await;
    let mut a = Sipp::new(
        env.work.path(),
        &env.scenario("trunk_answer.xml", &[("RURI", "0212345678")])
            .unwrap(),
        t.seoul_a,
    );
    a.args(["-m", "2"]);
    let a = a.spawn().unwrap();
    let b = trunk(
        &env,
        t.seoul_b,
        "trunk_answer.xml",
        &[("RURI", "82212345678")],
    );
    // Three calls at once, each held 2 s: the third finds seoul-a full.
    let mut c = caller(&env, "+82212345678", "uac.xml", &[("HOLD", "2000")]);
    c.args(["-m", "3", "-l", "3", "-r", "20"]);
    c.run().await.unwrap();
    a.wait().await.unwrap();
    b.wait().await.unwrap();
    let live = live(&env, "seoul-a");
    switchboard_tests::eventually(
        "channels given back",
        std::time::Duration::from_secs(5),
        || {
            let live = live.clone();
            async move { live.channels() == 0 }
        },
    )
    .await
    .unwrap();
}

/// Answer what arrives on `sock` with `status` (echoing the headers a
/// response needs); returns the first line of every request seen.
async fn answer_all(
    sock: Arc<tokio::net::UdpSocket>,
    status: &'static str,
    seen: Arc<parking_lot::Mutex<Vec<String>>>,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            return;
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let first = text.lines().next().unwrap_or("").to_owned();
        if first.starts_with("SIP/2.0") || first.starts_with("ACK ") {
            continue;
        }
        seen.lock().push(first.clone());
        let code = if first.starts_with("OPTIONS ") {
            "200 OK"
        } else {
            status
        };
        let mut out = format!("SIP/2.0 {code}\r\n");
        for line in text.lines() {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("via:")
                || lower.starts_with("from:")
                || lower.starts_with("call-id:")
                || lower.starts_with("cseq:")
            {
                out.push_str(line);
                out.push_str("\r\n");
            } else if lower.starts_with("to:") {
                out.push_str(line);
                out.push_str(";tag=trunk1\r\n");
            }
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        let _ = sock.send_to(out.as_bytes(), from).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_that_stops_answering_options_is_skipped_until_it_answers_again() {
    let (env, t) = env_with(|a| {
        a.options_interval = Some(std::time::Duration::from_millis(200));
        a.options_timeout = std::time::Duration::from_millis(150);
        a.down_after = 2;
    })
    .await;
    // seoul-a is a socket that says nothing for now.
    let sock = Arc::new(
        tokio::net::UdpSocket::bind(("127.0.0.1", t.seoul_a))
            .await
            .unwrap(),
    );
    let live = live(&env, "seoul-a");
    let patience = std::time::Duration::from_secs(10);
    let l = live.clone();
    switchboard_tests::eventually("seoul-a marked down", patience, || {
        let l = l.clone();
        async move { !l.is_up() }
    })
    .await
    .unwrap();
    let mut probe = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut probe).await.unwrap();
    assert!(
        String::from_utf8_lossy(&probe[..n]).starts_with("OPTIONS sip:127.0.0.1:"),
        "keep-alives are OPTIONS"
    );

    // While it is down, calls go to the next trunk.
    let b = trunk(
        &env,
        t.seoul_b,
        "trunk_answer.xml",
        &[("RURI", "82212345678")],
    );
    caller(&env, "+82212345678", "uac.xml", &[("HOLD", "200")])
        .run()
        .await
        .unwrap();
    b.wait().await.unwrap();

    // It answers again: up, and the next call is its (it refuses it: 486).
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    tokio::spawn(answer_all(sock.clone(), "486 Busy Here", seen.clone()));
    let l = live.clone();
    switchboard_tests::eventually("seoul-a up again", patience, || {
        let l = l.clone();
        async move { l.is_up() }
    })
    .await
    .unwrap();
    caller(&env, "+82212345678", "uac_final.xml", &[("FINAL", "486")])
        .run()
        .await
        .unwrap();
    let invites: Vec<String> = seen
        .lock()
        .iter()
        .filter(|l| l.starts_with("INVITE"))
        .cloned()
        .collect();
    assert_eq!(invites.len(), 1, "{invites:?}");
    assert!(
        invites[0].starts_with("INVITE sip:0212345678@"),
        "{}",
        invites[0]
    );
}

/// Member 100's account, with its PSTN number +82 31 123 4567, proven.
async fn caller_with_number(env: &Env) {
    env.add_account("100", "100@example.com", |a| {
        a.contact_pstn = Some("+82311234567".into());
        a.contact_verified = a.contact_pstn.clone();
    })
    .await;
}

/// Issue 19.5: a number the member declared but did not prove is not
/// presented, not even to a trusted trunk: From names the member's SIP
/// user and no P-Asserted-Identity is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverified_contact_number_is_never_presented() {
    let (env, t) = env_with(|a| a.trusted = true).await;
    env.add_account("100", "100@example.com", |a| {
        a.contact_pstn = Some("+82311234567".into());
    })
    .await;
    let a = trunk(
        &env,
        t.seoul_a,
        "trunk_untrusted.xml",
        &[("RURI", "0212345678"), ("FROM", "100")],
    );
    caller(&env, "+82212345678", "uac.xml", &[("HOLD", "200")])
        .run()
        .await
        .unwrap();
    a.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trunk_sees_the_callers_number_in_its_own_format_and_asserted() {
    // Asserted identity goes to trusted trunks only (they are not by default).
    let (env, t) = env_with(|a| a.trusted = true).await;
    caller_with_number(&env).await;
    // seoul-a wants the national format: the caller's +82 31 123 4567 is 0311234567.
    let a = trunk(
        &env,
        t.seoul_a,
        "trunk_identity.xml",
        &[
            ("RURI", "0212345678"),
            ("FROM", "0311234567"),
            ("PAI", "0311234567"),
        ],
    );
    caller(&env, "+82212345678", "uac.xml", &[("HOLD", "200")])
        .run()
        .await
        .unwrap();
    a.wait().await.unwrap();
}

/// A trunk not marked trusted (the default, issue 19.5) is shown the
/// caller's number in From but no P-Asserted-Identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_trunk_is_not_asserted_the_callers_identity() {
    let (env, t) = env().await;
    caller_with_number(&env).await;
    let a = trunk(
        &env,
        t.seoul_a,
        "trunk_untrusted.xml",
        &[("RURI", "0212345678"), ("FROM", "0311234567")],
    );
    caller(&env, "+82212345678", "uac.xml", &[("HOLD", "200")])
        .run()
        .await
        .unwrap();
    a.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_that_challenges_gets_the_configured_credentials() {
    let (env, t) =
        env_with(|a| a.credentials = Some(("acme-customer".into(), "trunk-secret".into()))).await;
    let a = trunk(
        &env,
        t.seoul_a,
        "trunk_auth.xml",
        &[("USER", "acme-customer"), ("PASSWORD", "trunk-secret")],
    );
    caller(&env, "+82212345678", "uac.xml", &[("HOLD", "200")])
        .run()
        .await
        .unwrap();
    a.wait().await.unwrap();
}

fn registering(a: &mut TrunkRoute) {
    a.credentials = Some(("acme-customer".into(), "trunk-secret".into()));
    a.register = Some(actors::config::TrunkRegistration {
        user: "acme-customer".into(),
        expires: std::time::Duration::from_secs(600),
        retry: std::time::Duration::from_secs(30),
    });
}

fn live(env: &Env, name: &str) -> Arc<actors::trunk::TrunkLive> {
    env.node()
        .transport
        .trunks
        .get(name)
        .map(|l| l.clone())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_that_wants_registration_is_registered_with_digest_and_refreshed() {
    let t = ports();
    // The registrar listens before the engine starts: the first REGISTER
    // goes out at once.
    let work = tempfile::tempdir().unwrap();
    let sc = work.path().join("trunk_register.xml");
    let text =
        std::fs::read_to_string(switchboard_tests::scenarios_dir().join("trunk_register.xml"))
            .unwrap()
            .replace("__USER__", "acme-customer")
            .replace("__PASSWORD__", "trunk-secret");
    std::fs::write(&sc, text).unwrap();
    let registrar = Sipp::new(work.path(), &sc, t.seoul_a).spawn().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let env = start(&t, registering).await;
    // Challenge, credentials, 2 s grant, refresh at 1 s, challenge,
    // credentials, one hour: the registrar's scenario checks each step.
    registrar.wait().await.unwrap();
    assert!(live(&env, "seoul-a").is_registered());
    // Registered, it carries calls (the cheapest for 822).
    let a = trunk(
        &env,
        t.seoul_a,
        "trunk_answer.xml",
        &[("RURI", "0212345678")],
    );
    caller(&env, "+82212345678", "uac.xml", &[("HOLD", "200")])
        .run()
        .await
        .unwrap();
    a.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_that_refuses_registration_is_skipped() {
    let t = ports();
    let work = tempfile::tempdir().unwrap();
    let sc = switchboard_tests::scenarios_dir().join("trunk_register_refuse.xml");
    let registrar = Sipp::new(work.path(), &sc, t.seoul_a).spawn().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let env = start(&t, registering).await;
    registrar.wait().await.unwrap();
    assert!(!live(&env, "seoul-a").is_registered());
    // The next attempt is 30 s away: seoul-a is passed over for seoul-b.
    passed_over_for_seoul_b(&env, &t, "an unregistered trunk was offered a call").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_trunk_gets_its_calls_over_tcp() {
    let (env, t) = env_with(|a| a.transport = actors::config::SipTransport::Tcp).await;
    // SIPp listening on TCP only: the INVITE, ACK and BYE must come over it.
    let sc = env
        .scenario("trunk_answer.xml", &[("RURI", "0212345678")])
        .unwrap();
    let mut a = Sipp::new(env.work.path(), &sc, t.seoul_a);
    a.args(["-t", "t1"]);
    let a = a.spawn().unwrap();
    switchboard_tests::eventually(
        "SIPp listening on TCP",
        std::time::Duration::from_secs(10),
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", t.seoul_a))
                .await
                .is_ok()
        },
    )
    .await
    .unwrap();
    caller(&env, "+82212345678", "uac.xml", &[("HOLD", "300")])
        .run()
        .await
        .unwrap();
    a.wait().await.unwrap();
}

/// RFC 3261 §8.1.3.1: a TCP trunk that refuses the connection answers, in
/// effect, 503 at once, and the call fails over to the next trunk (before,
/// the INVITE waited for Timer B and the attempt ended 408).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_trunk_that_refuses_the_connection_fails_over_with_503() {
    let (env, t) = env_with(|a| a.transport = actors::config::SipTransport::Tcp).await;
    // Nothing listens on TCP at seoul-a.
    let b = trunk(
        &env,
        t.seoul_b,
        "trunk_answer.xml",
        &[("RURI", "82212345678")],
    );
    caller(&env, "+82212345678", "uac.xml", &[("HOLD", "200")])
        .run()
        .await
        .unwrap();
    b.wait().await.unwrap();
    let report = env.call_report(|r| r.status == 200).await;
    let attempts: Vec<_> = report
        .attempts
        .iter()
        .map(|a| (a.trunk.as_str(), a.status))
        .collect();
    assert_eq!(
        attempts,
        [("seoul-a", Some(503)), ("seoul-b", Some(200))],
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_without_a_codec_of_the_offer_is_skipped() {
    // seoul-a takes G.711 A-law only; the caller offers PCMU and DTMF.
    let (env, t) = env_with(|a| a.codecs = vec!["PCMA".to_owned()].into()).await;
    passed_over_for_seoul_b(&env, &t, "a trunk was offered codecs it does not take").await;
}

/// seoul-a goes silent in the middle of a call: the call still ends when
/// its caller hangs up (nothing waits on the dead trunk), and the next call
/// fails over to seoul-b when seoul-a does not answer (408), so no call is
/// stuck and each has its CDR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_that_goes_silent_mid_run_leaves_no_call_stuck() {
    let (env, t) = env().await;
    let a = trunk(
        &env,
        t.seoul_a,
        "trunk_answer.xml",
        &[("RURI", "0212345678")],
    );
    let first = caller(&env, "+82212345678", "uac.xml", &[("HOLD", "1500")])
        .spawn()
        .unwrap();
    switchboard_tests::eventually("the call up", Duration::from_secs(10), || async {
        env.node().calls_up() == 1
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(a); // seoul-a is gone: no answer to anything any more.
    first.wait().await.unwrap();
    // The next call: seoul-a never answers its INVITE; seoul-b takes it.
    let b = trunk(
        &env,
        t.seoul_b,
        "trunk_answer.xml",
        &[("RURI", "82212345678")],
    );
    let mut second = caller(&env, "+82212345678", "uac.xml", &[("HOLD", "200")]);
    second
        .args(["-recv_timeout", "40000"])
        .limit(Duration::from_secs(60));
    second.run().await.unwrap();
    b.wait().await.unwrap();
    switchboard_tests::eventually("no call stuck", Duration::from_secs(30), || async {
        env.node().calls_up() == 0
    })
    .await
    .unwrap();
    let report = env
        .call_report(|r| r.status == 200 && r.attempts.len() == 2)
        .await;
    let attempts: Vec<_> = report
        .attempts
        .iter()
        .map(|a| (a.trunk.as_str(), a.status))
        .collect();
    assert_eq!(attempts, [("seoul-a", Some(408)), ("seoul-b", Some(200))]);
}

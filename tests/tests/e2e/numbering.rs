//! The numbering service against real peers: curl over HTTP, dig over DNS
//! (ENUM), and SIPp phones registering with credentials set through the API
//! ("flash card" roaming) and receiving the member's calls.

use std::net::SocketAddr;
use std::sync::Arc;

use schema::store::Store;
use serde_json::{Value, json};
use switchboard_tests::{Env, REALM, Sipp, free_port, password};
use tokio::process::Command;

const ADMIN: &str = "operator-secret-0123456789";

struct Edge {
    http: SocketAddr,
    dns: SocketAddr,
    _dns_server: hickory_server::ServerFuture<gateway::enum_dns::EnumHandler>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn edge(env: &Env) -> Edge {
    edge_with(env, gateway::enum_dns::PER_SOURCE_PER_S).await
}

/// [`edge`] whose ENUM answers `per_s` UDP queries a second per source.
async fn edge_with(env: &Env, per_s: u32) -> Edge {
    let store: Arc<dyn Store> = env.store.clone();
    let mut cfg = gateway::api::ApiConfig::new(env.sip().to_string(), REALM.into());
    cfg.admin_token = Some(ADMIN.into());
    cfg.directory.home = engine::numbering::RegionId::KR;
    let api = Arc::new(gateway::api::Api::new(
        store.clone(),
        cfg.clone(),
        gateway::api::system_clock(),
    ));
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .build_recorder()
        .handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (http, server) = gateway::serve("127.0.0.1:0".parse().unwrap(), metrics, api, async {
        let _ = stopped.await;
    })
    .unwrap();
    tokio::spawn(server);
    let handler = gateway::enum_dns::EnumHandler::new(store, cfg.directory, "e164.arpa.".into())
        .with_rate(per_s);
    let (dns, dns_server) = gateway::enum_dns::serve("127.0.0.1:0".parse().unwrap(), handler)
        .await
        .unwrap();
    Edge {
        http,
        dns,
        _dns_server: dns_server,
        _stop: stop,
    }
}

/// curl; returns (status, JSON body or Null).
async fn curl(
    edge: &Edge,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    curl_at(edge.http, method, path, token, body).await
}

/// A JSON request to the API at `http` with curl: its status and body
/// (`null` when not JSON).
pub(crate) async fn curl_at(
    http: impl std::fmt::Display,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut c = Command::new("curl");
    c.args([
        "-s",
        "-m",
        "10",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
    ]);
    if let Some(t) = token {
        c.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        c.args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &b.to_string(),
        ]);
    }
    c.arg(format!("http://{http}{path}"));
    let out = c.output().await.expect("curl (ops/install-test-deps.sh)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (
        status.trim().parse().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

async fn dig(edge: &Edge, name: &str, extra: &[&str]) -> String {
    let out = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &edge.dns.port().to_string(),
            "+time=3",
            "+tries=1",
        ])
        .args(extra)
        .args([name, "NAPTR"])
        .output()
        .await
        .expect("dig (dnsutils, ops/install-test-deps.sh)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The operator loads `2 1234 5678 82`; Kim signs up with her Seoul
/// number, is credited 5,000 and buys it (1,000). Her id and token.
async fn kim_buys_her_number(edge: &Edge) -> (String, String) {
    let (s, v) = curl(
        edge,
        "POST",
        "/api/v1/inventory",
        Some(ADMIN),
        Some(json!({"numbers": [{"number": "2 1234 5678 82", "area": "2"}]})),
    )
    .await;
    assert_eq!((s, v["added"].as_u64()), (200, Some(1)), "{v}");
    let (s, v) = curl(
        edge,
        "POST",
        "/api/v1/signup",
        None,
        Some(json!({
        "login": "kim@example.com", "password": "correct horse battery", "kind": "individual",
        "name": "Kim", "language": "ko", "contact_pstn": "02-1234-5678"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let id = v["member"]["id"].as_str().unwrap().to_owned();
    let tok = v["token"].as_str().unwrap().to_owned();
    let (s, _) = curl(
        edge,
        "POST",
        &format!("/api/v1/members/{id}/topups"),
        Some(ADMIN),
        Some(json!({"key": "card-1", "amount": 5000})),
    )
    .await;
    assert_eq!(s, 200);
    // The operator vouches for the member's PSTN number (a verification
    // call is tested in tests/e2e/verify.rs).
    let (s, v) = curl(
        edge,
        "PUT",
        &format!("/api/v1/members/{id}/contact/verified"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, h) = curl(
        edge,
        "POST",
        "/api/v1/numbers/212345678*82/hold",
        Some(&tok),
        None,
    )
    .await;
    assert_eq!(s, 201, "{h}");
    let (s, v) = curl(
        edge,
        "POST",
        "/api/v1/numbers/212345678*82/confirm",
        Some(&tok),
        Some(json!({"hold": h["hold"]})),
    )
    .await;
    assert_eq!((s, v["balance"].as_i64()), (200, Some(4000)), "{v}");
    (id, tok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bought_number_resolves_over_http_and_enum_and_rings_the_roaming_phone() {
    let env = Env::start(&["100"], |_| {}).await.unwrap();
    let edge = edge(&env).await;

    // The operator loads numbers; a member signs up, is credited, buys its individual number.
    let (id, tok) = kim_buys_her_number(&edge).await;
    let uris = json!([
        "sip:kim@example.com",
        "tel:+82212345678",
        "mailto:kim@example.com",
        "https://kim.example.com/card"
    ]);
    let (s, _) = curl(
        &edge,
        "PATCH",
        "/api/v1/members/me",
        Some(&tok),
        Some(json!({"uris": uris})),
    )
    .await;
    assert_eq!(s, 200);
    // Added by the operator (a member's own request waits for its proof:
    // tests/e2e/aliases.rs).
    let (s, _) = curl(
        &edge,
        "PUT",
        &format!("/api/v1/members/{id}/aliases/kim.example.com"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, 200);

    // HTTP resolution: number and alias, the member's order.
    for q in ["%2B82-2-1234-5678", "2-1234-5678%2082", "kim.example.com"] {
        let (s, v) = curl(&edge, "GET", &format!("/api/v1/resolve/{q}"), None, None).await;
        assert_eq!((s, &v["uris"]), (200, &uris), "{q}: {v}");
    }

    // ENUM: NAPTR records in the member's order, over UDP and TCP.
    let name = "8.7.6.5.4.3.2.1.2.2.8.e164.arpa.";
    for transport in [&["+short"][..], &["+short", "+tcp"][..]] {
        let answer = dig(&edge, name, transport).await;
        let lines: Vec<&str> = answer.lines().collect();
        assert_eq!(
            lines,
            [
                r#"100 10 "u" "E2U+sip" "!^.*$!sip:kim@example.com!" ."#,
                r#"100 20 "u" "E2U+pstn:tel" "!^.*$!tel:+82212345678!" ."#,
                r#"100 30 "u" "E2U+email:mailto" "!^.*$!mailto:kim@example.com!" ."#,
                r#"100 40 "u" "E2U+web:https" "!^.*$!https://kim.example.com/card!" ."#,
            ],
            "{transport:?}: {answer}"
        );
    }
    let full = dig(&edge, name, &[]).await;
    assert!(
        full.contains("status: NOERROR") && full.contains(" aa"),
        "authoritative: {full}"
    );
    let unknown = dig(&edge, "9.9.9.9.2.2.8.e164.arpa.", &[]).await;
    assert!(unknown.contains("status: NXDOMAIN"), "{unknown}");
    let outside = dig(&edge, "1.2.example.com.", &[]).await;
    assert!(outside.contains("status: REFUSED"), "{outside}");

    // Roaming: any SIP phone registers with the member's credentials (set
    // through the API) and receives the member's calls.
    let (s, v) = curl(
        &edge,
        "PUT",
        "/api/v1/members/me/sip",
        Some(&tok),
        Some(json!({"password": password(&id)})),
    )
    .await;
    assert_eq!((s, v["username"].as_str()), (200, Some(id.as_str())), "{v}");
    let (s, doc) = curl(
        &edge,
        "GET",
        "/api/v1/members/me/provisioning",
        Some(&tok),
        None,
    )
    .await;
    assert_eq!(
        (s, doc["registrar"].as_str()),
        (200, Some(format!("sip:{}", env.sip()).as_str()))
    );
    let phone_port = free_port();
    env.register(&id, phone_port).await.unwrap();
    assert_eq!(env.bindings(&id).await.unwrap(), 1);
    let uas = Sipp::new(
        env.work.path(),
        &env.scenario("uas.xml", &[]).unwrap(),
        phone_port,
    )
    .spawn()
    .unwrap();
    let sc = env.scenario("uac.xml", &[("HOLD", "300")]).unwrap();
    let mut caller = env.sipp_as(&sc, "100", free_port()).unwrap();
    caller.args(["-s", &id]);
    caller.run().await.unwrap();
    uas.wait().await.unwrap();

    // A wrong password is challenged again and binds nothing.
    let reg = env.scenario("register.xml", &[("FINAL", "401")]).unwrap();
    let csv = env.csv(&[&id, "x", "3600"]).unwrap();
    let mut s = Sipp::new(env.work.path(), &reg, free_port());
    s.args([
        "-inf",
        &csv.to_string_lossy(),
        "-au",
        &id,
        "-ap",
        "wrong-password",
        &env.sip().to_string(),
    ]);
    s.run().await.unwrap();
    assert_eq!(
        env.bindings(&id).await.unwrap(),
        1,
        "still only the roaming phone"
    );
}

/// ENUM over UDP is no amplifier (issue 19.7): an answer larger than the
/// asker can take (512 bytes without EDNS) comes back empty with TC set and
/// whole over TCP, and a source gets at most its rate of answers a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enum_over_udp_truncates_to_the_askers_size_and_limits_each_source() {
    let env = Env::start(&[], |_| {}).await.unwrap();
    let edge = edge_with(&env, 10).await;
    let (_, tok) = kim_buys_her_number(&edge).await;
    // Eight long URIs: some 900 bytes of NAPTR records.
    let uris: Vec<String> = (0..8)
        .map(|i| format!("https://kim.example.com/{i}/{}", "card".repeat(20)))
        .collect();
    let (s, v) = curl(
        &edge,
        "PATCH",
        "/api/v1/members/me",
        Some(&tok),
        Some(json!({"uris": uris})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let name = "8.7.6.5.4.3.2.1.2.2.8.e164.arpa.";
    let small = dig(&edge, name, &["+noedns", "+ignore"]).await;
    assert!(
        small.contains(" tc"),
        "truncated for a 512-byte asker: {small}"
    );
    assert!(small.contains("ANSWER: 0"), "{small}");
    let tcp = dig(&edge, name, &["+tcp", "+short"]).await;
    assert_eq!(tcp.lines().count(), 8, "whole over TCP: {tcp}");
    let big = dig(&edge, name, &["+bufsize=4096", "+short", "+ignore"]).await;
    assert_eq!(
        big.lines().count(),
        8,
        "whole for an asker that takes 4096: {big}"
    );

    // A burst of 100 queries from one source: at most its rate answered.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let query = |id: u16| {
        use hickory_server::proto::op::{Message, Query};
        use hickory_server::proto::rr::{Name, RecordType};
        let mut m = Message::new();
        m.set_id(id).set_recursion_desired(false);
        m.add_query(Query::query(
            Name::from_ascii("9.9.9.9.2.2.8.e164.arpa.").unwrap(),
            RecordType::NAPTR,
        ));
        m.to_vec().unwrap()
    };
    for id in 0..100u16 {
        sock.send_to(&query(id), edge.dns).await.unwrap();
    }
    let mut answered = 0;
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok(_)) = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        sock.recv_from(&mut buf),
    )
    .await
    {
        answered += 1;
    }
    // Ten a second: the burst spans one window, or a few on a slow machine.
    assert!((10..=40).contains(&answered), "answered {answered} of 100");
    // The next second it is answered again.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    sock.send_to(&query(500), edge.dns).await.unwrap();
    let again =
        tokio::time::timeout(std::time::Duration::from_secs(2), sock.recv_from(&mut buf)).await;
    assert!(matches!(again, Ok(Ok(_))), "answered in the next second");
}

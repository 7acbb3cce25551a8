//! `switchboard-load` against real peers on loopback: SIPp as UAS and UAC,
//! itself, and the engine (in process, with members and digest auth).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failure is the test's failure"
)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use switchboard_tests::{Env, free_port};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard-load");

/// Run `switchboard-load` to completion (bounded); exit code, stdout,
/// stderr.
async fn load(args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("switchboard-load finishes within 90 s")
    .expect("switchboard-load runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn spawn_load(args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("switchboard-load starts")
}

async fn finish(child: Child) -> (i32, String) {
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("finishes within 90 s")
        .expect("waits");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn report(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("report written")).expect("report is JSON")
}

/// SIPp with a built-in scenario, bounded by `-timeout`.
fn sipp(dir: &Path, args: &[&str]) -> Child {
    Command::new("sipp")
        .args(args)
        .args([
            "-nostdin",
            "-timeout",
            "60s",
            "-timeout_error",
            "-trace_stat",
            "-stf",
            "stat.csv",
            "-trace_err",
            "-error_file",
            "errors.log",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("sipp runs (ops/install-test-deps.sh installs sip-tester)")
}

/// Successful and failed calls from SIPp's statistics file.
fn sipp_counts(dir: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(dir.join("stat.csv")).expect("sipp statistics");
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(';').collect()).collect();
    let (head, last) = (&rows[0], rows.last().expect("a row"));
    let col = |name: &str| -> u64 {
        let i = head.iter().position(|h| *h == name).expect("column");
        last[i].parse().expect("number")
    };
    (col("SuccessfulCall(C)"), col("FailedCall(C)"))
}

async fn sipp_done(mut child: Child, dir: &Path) {
    let status = tokio::time::timeout(Duration::from_secs(90), child.wait())
        .await
        .expect("sipp finishes")
        .expect("sipp waits");
    let errors = std::fs::read_to_string(dir.join("errors.log")).unwrap_or_default();
    assert!(
        status.success(),
        "sipp failed: {status}\n{}",
        errors.chars().take(3000).collect::<String>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_against_sipp_uas_match_its_counts_and_report_with_charts() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let uas = sipp(
        dir.path(),
        &[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            "40",
        ],
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let json = dir.path().join("r.json");
    let html = dir.path().join("r.html");
    let target = format!("127.0.0.1:{port}");
    let (code, out, err) = load(&[
        "call",
        &target,
        "-r",
        "40",
        "-m",
        "40",
        "--hold",
        "100",
        "-q",
        "--json",
        json.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    sipp_done(uas, dir.path()).await;
    let r = report(&json);
    assert_eq!(r["started"], 40);
    assert_eq!(r["succeeded"], 40);
    assert_eq!(sipp_counts(dir.path()), (40, 0));
    for label in ["INVITE→180", "INVITE→200", "BYE→200"] {
        assert_eq!(
            r["latency"][label]["count"], 40,
            "{label}: {}",
            r["latency"]
        );
    }
    assert!(!r["timeline"].as_array().unwrap().is_empty());
    let page = std::fs::read_to_string(&html).unwrap();
    for id in ["chart-rate", "chart-concurrency", "chart-latency"] {
        assert!(
            page.contains(&format!("<figure id=\"{id}\"><svg")),
            "{id} missing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_uac_calls_are_answered_and_counted_alike() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let json = dir.path().join("a.json");
    let answer = spawn_load(&[
        "answer",
        "-p",
        &port.to_string(),
        "-m",
        "30",
        "-d",
        "60",
        "--ring",
        "20",
        "-q",
        "--json",
        json.to_str().unwrap(),
    ]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let uac = sipp(
        dir.path(),
        &[
            "-sn",
            "uac",
            &format!("127.0.0.1:{port}"),
            "-i",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
            "-r",
            "30",
            "-m",
            "30",
            "-d",
            "100",
        ],
    );
    sipp_done(uac, dir.path()).await;
    let (code, out) = finish(answer).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(sipp_counts(dir.path()), (30, 0));
    let r = report(&json);
    assert_eq!(
        (r["started"].as_u64(), r["succeeded"].as_u64()),
        (Some(30), Some(30))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipps_own_uac_and_uas_scenarios_replay_against_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let dump = |name: &str| -> PathBuf {
        let out = std::process::Command::new("sipp")
            .args(["-sd", name])
            .output()
            .expect("sipp -sd");
        let p = dir.path().join(format!("{name}.xml"));
        std::fs::write(&p, out.stdout).unwrap();
        p
    };
    let (uac, uas) = (dump("uac"), dump("uas"));
    let port = free_port();
    let json = dir.path().join("uas.json");
    let server = spawn_load(&[
        "replay",
        uas.to_str().unwrap(),
        "-p",
        &port.to_string(),
        "-m",
        "20",
        "-d",
        "60",
        "-q",
        "--json",
        json.to_str().unwrap(),
    ]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, out, err) = load(&[
        "replay",
        uac.to_str().unwrap(),
        &format!("127.0.0.1:{port}"),
        "-r",
        "20",
        "-m",
        "20",
        "--hold",
        "50",
        "-q",
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("20 succeeded, 0 failed"), "{out}");
    let (code, out) = finish(server).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(report(&json)["succeeded"], 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_outside_the_subset_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.xml");
    std::fs::write(
        &p,
        "<scenario>\n<send><![CDATA[\nOPTIONS sip:[service]@[remote_ip] SIP/2.0\nContent-Length: 0\n]]></send>\n<recv response=\"200\">\n  <action><ereg regexp=\".*\" search_in=\"msg\" assign_to=\"1\"/></action>\n</recv>\n</scenario>\n",
    )
    .unwrap();
    let (code, out, err) = load(&[
        "replay",
        p.to_str().unwrap(),
        "127.0.0.1:9",
        "-m",
        "1",
        "-q",
    ])
    .await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("line 7: <action>"), "{err}");
    assert!(out.is_empty(), "nothing may run: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_and_calls_through_the_engine_with_digest_auth() {
    let members: Vec<String> = (300..340).map(|n| n.to_string()).collect();
    let mut all: Vec<&str> = members.iter().map(String::as_str).collect();
    all.extend(["100", "200"]);
    let env = Env::start(&all, |_| {}).await.unwrap();
    let target = env.sip().to_string();
    // 40 members, digest auth each (the password of N is pw-N).
    let (code, out, err) = load(&[
        "register", &target, "--from", "300-339", "-r", "200", "-m", "40", "-q",
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("40 succeeded, 0 failed"), "{out}");
    assert_eq!(env.bindings("300").await.unwrap(), 1);
    assert_eq!(env.bindings("339").await.unwrap(), 1);
    // A wrong password is counted as the 401 it gets, and binds nothing.
    let (code, out, _) = load(&[
        "register",
        &target,
        "--from",
        "100",
        "--password",
        "wrong",
        "-m",
        "1",
        "-q",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(out.contains("{\"401\": 1}"), "{out}");
    assert_eq!(env.bindings("100").await.unwrap(), 0);
    // Member 200 registers from the port it will answer on; 100 calls it.
    let port = free_port();
    let (code, out, _) = load(&[
        "register",
        &target,
        "--from",
        "200",
        "-p",
        &port.to_string(),
        "-m",
        "1",
        "-q",
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("c.json");
    let answer = spawn_load(&[
        "answer",
        "-p",
        &port.to_string(),
        "-m",
        "25",
        "-d",
        "60",
        "-q",
    ]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, out, err) = load(&[
        "call",
        &target,
        "--from",
        "100",
        "--to",
        "200",
        "-r",
        "25",
        "-m",
        "25",
        "--hold",
        "100",
        "-q",
        "--json",
        json.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out) = finish(answer).await;
    assert_eq!(code, 0, "{out}");
    let r = report(&json);
    assert_eq!(r["succeeded"], 25);
    // Each call met the engine's 407 first.
    assert_eq!(r["latency"]["INVITE→200"]["count"], 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_callee_is_counted_by_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let answer = spawn_load(&[
        "answer",
        "-p",
        &port.to_string(),
        "--status",
        "486",
        "-m",
        "10",
        "-d",
        "60",
        "-q",
    ]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let json = dir.path().join("b.json");
    let (code, out, _) = load(&[
        "call",
        &format!("127.0.0.1:{port}"),
        "-r",
        "20",
        "-m",
        "10",
        "-q",
        "--json",
        json.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 1, "{out}");
    let r = report(&json);
    assert_eq!(r["failures"]["486"], 10, "{r}");
    assert_eq!(r["succeeded"], 0);
    // The busy side saw its ACKs: every one of its calls completed.
    let (code, out) = finish(answer).await;
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_call_replays_to_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("call.pcap");
    let port = free_port();
    let tcpdump = start_capture(&pcap, port).await;
    let uas = sipp(
        dir.path(),
        &[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            "1",
        ],
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, out, e) = load(&[
        "call",
        &format!("127.0.0.1:{port}"),
        "-m",
        "1",
        "--hold",
        "200",
        "-q",
    ])
    .await;
    assert_eq!(code, 0, "{out}{e}");
    sipp_done(uas, dir.path()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_capture(tcpdump).await;
    // Replay the capture against a fresh SIPp UAS, twice as fast.
    let port2 = free_port();
    let dir2 = tempfile::tempdir().unwrap();
    let uas = sipp(
        dir2.path(),
        &[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &port2.to_string(),
            "-m",
            "3",
        ],
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let json = dir.path().join("p.json");
    let (code, out, e) = load(&[
        "pcap",
        pcap.to_str().unwrap(),
        &format!("127.0.0.1:{port2}"),
        "--scale",
        "0.5",
        "-m",
        "3",
        "-r",
        "10",
        "-q",
        "--json",
        json.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "{out}{e}");
    sipp_done(uas, dir2.path()).await;
    assert_eq!(sipp_counts(dir2.path()), (3, 0));
    let r = report(&json);
    assert_eq!(r["succeeded"], 3);
    assert_eq!(r["latency"]["INVITE→200"]["count"], 3);
}

/// tcpdump on loopback for UDP `port`, once it listens.
async fn start_capture(file: &Path, port: u16) -> Child {
    let mut tcpdump = Command::new("tcpdump")
        .args([
            "-i",
            "lo",
            "--immediate-mode",
            "-U",
            "-w",
            file.to_str().unwrap(),
            "udp",
            "port",
            &port.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("tcpdump runs (ops/install-test-deps.sh installs it)");
    let mut err = tcpdump.stderr.take().unwrap();
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains("listening") {
            let n = err.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("tcpdump starts listening");
    // Keep its stderr open: tcpdump dies of SIGPIPE on a closed one.
    tcpdump.stderr = Some(err);
    // "listening" comes a moment before the capture filter is in place.
    tokio::time::sleep(Duration::from_millis(500)).await;
    tcpdump
}

/// SIGINT makes tcpdump flush and close the file.
async fn stop_capture(mut tcpdump: Child) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = std::process::Command::new("kill")
        .args(["-INT", &tcpdump.id().unwrap().to_string()])
        .status();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcpdump.wait()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_registration_replays_with_a_fresh_digest_answer() {
    let env = Env::start(&["200"], |_| {}).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("reg.pcap");
    let target = env.sip().to_string();
    let tcpdump = start_capture(&pcap, env.sip().port()).await;
    let (code, out, _) = load(&["register", &target, "--from", "200", "-m", "1", "-q"]).await;
    assert_eq!(code, 0, "{out}");
    stop_capture(tcpdump).await;
    // The captured nonce is stale by now; the replay answers a new challenge.
    let p = pcap.to_str().unwrap();
    let (code, out, e) = load(&[
        "pcap",
        p,
        &target,
        "--password",
        "pw-200",
        "-m",
        "2",
        "-r",
        "5",
        "-q",
    ])
    .await;
    assert_eq!(code, 0, "{out}{e}");
    assert!(out.contains("2 succeeded, 0 failed"), "{out}");
    let (code, out, _) = load(&["pcap", p, &target, "--password", "wrong", "-m", "1", "-q"]).await;
    assert_eq!(code, 1);
    assert!(out.contains("{\"401\": 1}"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_tcp_both_ways_with_sipp() {
    // switchboard-load calls a SIPp UAS over TCP.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let uas = sipp(
        dir.path(),
        &[
            "-sn",
            "uas",
            "-t",
            "t1",
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            "15",
        ],
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let target = format!("127.0.0.1:{port}");
    let (code, out, err) = load(&[
        "call", &target, "-t", "tcp", "-r", "30", "-m", "15", "--hold", "50", "-q",
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("15 succeeded, 0 failed"), "{out}");
    sipp_done(uas, dir.path()).await;
    assert_eq!(sipp_counts(dir.path()), (15, 0));
    // A SIPp UAC calls switchboard-load's answer over TCP.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let answer = spawn_load(&[
        "answer",
        "-t",
        "tcp",
        "-p",
        &port.to_string(),
        "-m",
        "15",
        "-d",
        "60",
        "-q",
    ]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let uac = sipp(
        dir.path(),
        &[
            "-sn",
            "uac",
            "-t",
            "t1",
            &format!("127.0.0.1:{port}"),
            "-i",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
            "-r",
            "30",
            "-m",
            "15",
            "-d",
            "50",
        ],
    );
    sipp_done(uac, dir.path()).await;
    assert_eq!(sipp_counts(dir.path()), (15, 0));
    let (code, out) = finish(answer).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("15 succeeded, 0 failed"), "{out}");
}

/// `click`: forty clicks through an edge and engine in process; every one is
/// accepted, its visitor's INVITE reaches the tool's UAS, which answers both
/// legs of each call until the engine ends it, and the report says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn click_places_a_call_per_click_and_times_each_visitors_invite() {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use schema::store::Store;

    let uas = free_port();
    let mut trunk = actors::config::TrunkRoute::new(
        "pstn",
        SocketAddr::from(([127, 0, 0, 1], uas)),
        engine::routing::Translation::default(),
    );
    trunk.options_interval = None;
    let rate = engine::lcr::Rate {
        per_minute: 1_000,
        connect_fee: 0,
        first_increment: 1,
        next_increment: 1,
    };
    let routing = actors::config::Routing {
        trunks: vec![trunk],
        lcr: engine::lcr::Table {
            trunks: vec![engine::lcr::TrunkDeck {
                trunk: "pstn".into(),
                priority: 0,
                weight: 1,
                deck: engine::lcr::Deck::from_rows([("1", rate)]).unwrap(),
            }],
        }
        .into(),
        ..actors::config::Routing::default()
    };
    let env = Env::start(&[], |c| {
        c.routing = Arc::new(routing);
        c.max_call_duration = Duration::from_secs(1);
        c.media.ports = (37000, 37999);
    })
    .await
    .unwrap();
    env.add_account("100", "owner@example.com", |_| {}).await;
    let mut cfg = gateway::api::ApiConfig::new(env.sip().to_string(), "switchboard".into());
    cfg.admin_token = Some("operator-secret-0123456789".into());
    cfg.clicks.per_address_per_minute = 1_000;
    cfg.clicks.per_card_per_minute = 1_000;
    cfg.clicks.concurrent_per_card = 1_000;
    cfg.clicks.concurrent_per_owner = 1_000;
    let api = Arc::new(
        gateway::api::Api::new(
            env.store.clone() as Arc<dyn Store>,
            cfg,
            gateway::api::system_clock(),
        )
        .with_dialer(env.node().dialer()),
    );
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .build_recorder()
        .handle();
    let (_, server) = gateway::serve(http, metrics, api, std::future::pending()).unwrap();
    tokio::spawn(server);
    let post = |path: &str, token: &str, body: &str| {
        let (path, token, body) = (path.to_owned(), token.to_owned(), body.to_owned());
        async move {
            let out = Command::new("curl")
                .args(["-sf", "-X", "POST", &format!("http://{http}/api/v1/{path}")])
                .args(["-H", &format!("authorization: Bearer {token}")])
                .args(["-H", "content-type: application/json", "-d", &body])
                .output()
                .await
                .unwrap();
            assert!(out.status.success(), "POST {path}");
            serde_json::from_slice::<Value>(&out.stdout).unwrap()
        }
    };
    let key = post("members/100/api-keys", "operator-secret-0123456789", "").await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let card = post(
        "members/100/cards",
        &key,
        r#"{"info":{"name":"Owner","phones":[{"label":"Desk","number":"+16465550199","button_id":""}]}}"#,
    )
    .await;
    let (code, out, err) = load(&[
        "click",
        "--http",
        &http.to_string(),
        "--key",
        &key,
        "--card",
        card["id"].as_str().unwrap(),
        "--button",
        card["info"]["phones"][0]["button_id"].as_str().unwrap(),
        "--uas",
        &format!("127.0.0.1:{uas}"),
        "-r",
        "20",
        "-m",
        "40",
        "-d",
        "10",
        "--json",
        "-q",
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["sent"], 40, "{r}");
    assert_eq!(r["accepted"], 40, "{r}");
    assert_eq!(r["invites"], 40, "{r}");
    // Both legs of every call answered, and ended by the engine's BYE.
    assert_eq!(r["legs_answered"], 80, "{r}");
    assert_eq!(r["legs_ended"], 80, "{r}");
    let [p50, p99, max] = [0, 1, 2].map(|i| r["invite_us"][i].as_u64().unwrap());
    assert!(0 < p50 && p50 <= p99 && p99 <= max, "{r}");
}

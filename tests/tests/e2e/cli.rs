//! The `switchboard` binary: `member add` while `serve` runs on the same data
//! directory, configuration precedence, `/metrics` and `/healthz`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use switchboard_tests::{Sipp, free_port, password};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// target/<profile>/switchboard, next to this test's deps folder.
pub(crate) fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let bin = dir.join("switchboard");
    assert!(
        bin.exists(),
        "{} missing: build the workspace first (cargo build)",
        bin.display()
    );
    bin
}

pub(crate) async fn http_get(addr: &str, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_and_version() {
    let out = Command::new(binary()).arg("--help").output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for word in ["serve", "member"] {
        assert!(text.contains(word), "{text}");
    }
    let out = Command::new(binary())
        .arg("--version")
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("switchboard "));
    let bad = Command::new(binary())
        .args(["member", "add", "--number", "12ab", "--password", "secret1"])
        .output()
        .await
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("digits"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_added_while_serving_can_register_at_once() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let sip_port = free_port();
    let http_port = free_port();
    let config = work.path().join("switchboard.toml");
    // The file says one HTTP port, the flag another, the environment a third:
    // the environment wins (flags over file, environment over both).
    std::fs::write(&config, "[http]\nlisten = \"127.0.0.1:1\"\n").unwrap();
    let mut serve = Command::new(binary())
        .args([
            "serve",
            "--config",
            &config.to_string_lossy(),
            "--sip",
            &format!("127.0.0.1:{sip_port}"),
        ])
        .args([
            "--http",
            "127.0.0.1:2",
            "--data",
            &data.path().to_string_lossy(),
        ])
        .env("SWITCHBOARD_HTTP", format!("127.0.0.1:{http_port}"))
        .env("SWITCHBOARD_ENUM", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    let banner = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        banner.contains(&format!("127.0.0.1:{http_port}"))
            && banner.contains("ENUM udp+tcp 127.0.0.1:"),
        "{banner}"
    );

    let pw = password("700");
    let add = Command::new(binary())
        .args([
            "member",
            "add",
            "--number",
            "700",
            "--password",
            &pw,
            "--name",
            "Seven",
        ])
        .args(["--data", &data.path().to_string_lossy()])
        .output()
        .await
        .unwrap();
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let again = Command::new(binary())
        .args([
            "member",
            "add",
            "--number",
            "700",
            "--password",
            &pw,
            "--data",
            &data.path().to_string_lossy(),
        ])
        .output()
        .await
        .unwrap();
    assert!(!again.status.success(), "a number is added once");

    let sc = switchboard_tests::scenarios_dir().join("register.xml");
    let sc_text = std::fs::read_to_string(sc)
        .unwrap()
        .replace("__FINAL__", "200");
    let sc = work.path().join("register.xml");
    std::fs::write(&sc, sc_text).unwrap();
    let csv = work.path().join("u.csv");
    std::fs::write(&csv, format!("SEQUENTIAL\n700;{pw};3600;\n")).unwrap();
    let mut s = Sipp::new(work.path(), &sc, free_port());
    s.args([
        "-inf",
        &csv.to_string_lossy(),
        "-au",
        "700",
        "-ap",
        &pw,
        &format!("127.0.0.1:{sip_port}"),
    ]);
    s.run().await.unwrap();

    let list = Command::new(binary())
        .args(["member", "list", "--data", &data.path().to_string_lossy()])
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains("700\tSeven\t1 contact(s)"));

    let health = http_get(&format!("127.0.0.1:{http_port}"), "/healthz").await;
    assert!(
        health.contains("200 OK") && health.contains("\"ok\""),
        "{health}"
    );
    let metrics = http_get(&format!("127.0.0.1:{http_port}"), "/metrics").await;
    assert!(
        metrics.contains("switchboard_registers_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchboard_sip_messages_in_total{kind=\"REGISTER\"} 2"),
        "{metrics}"
    );
    let missing = http_get(&format!("127.0.0.1:{http_port}"), "/nope").await;
    assert!(
        missing.contains("404") && missing.contains("\"code\":\"not_found\""),
        "{missing}"
    );

    // SIGTERM stops it cleanly.
    let pid = serve.id().unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await;
    let status = tokio::time::timeout(Duration::from_secs(10), serve.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_import_loads_the_inventory_and_reports_bad_rows() {
    let data = tempfile::tempdir().unwrap();
    let csv = data.path().join("numbers.csv");
    std::fs::write(
        &csv,
        "number,country,area,price_class,price\n\
         2-1234-5678 82,,2,,\n\
         7007777,KR,2,premium,25000\n\
         7001234,,,,\n",
    )
    .unwrap();
    let run = || {
        Command::new(binary())
            .args([
                "numbers",
                "import",
                "--data",
                &data.path().to_string_lossy(),
            ])
            .arg(&csv)
            .output()
    };
    let out = run().await.unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a refused row fails the import: {stdout}"
    );
    assert!(
        stdout.contains("2 added, 0 already there, 1 refused"),
        "{stdout}"
    );
    assert!(
        stderr.contains("row 3: company base 7001234 needs a country"),
        "{stderr}"
    );
    // Loading again adds nothing and changes nothing.
    let out = run().await.unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 added, 2 already there"));
    let store = schema::embedded::Embedded::open(data.path()).unwrap();
    use schema::store::Store as _;
    let r = store.number("7007777").await.unwrap().unwrap();
    assert_eq!((r.price, r.country.as_str()), (25000, "KR"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_rate_deck_stops_serve_with_its_row() {
    let work = tempfile::tempdir().unwrap();
    let deck = work.path().join("seoul.csv");
    std::fs::write(&deck, "prefix,per_minute\n822,20000\n82x,1\n").unwrap();
    let config = work.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[[trunks]]\nname = \"seoul\"\naddress = \"127.0.0.1:5999\"\nformat = \"national\"\nrates = \"{}\"\n",
            deck.display()
        ),
    )
    .unwrap();
    let out = Command::new(binary())
        .args(["serve", "--config", &config.to_string_lossy()])
        .args(["--data", &work.path().join("data").to_string_lossy()])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("trunk seoul") && err.contains("row 2: prefix \"82x\" is not 1 to 15 digits"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn centers_that_do_not_hold_together_stop_serve_with_the_reason() {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("switchboard.toml");
    let trunk = "[[trunks]]\nname = \"seoul\"\naddress = \"127.0.0.1:5999\"\n";
    for (centers, reason) in [
        (
            "[[centers]]\nname = \"seoul\"\ncountry_code = 82\ntrunks = [\"sesoul\"]\n",
            "center seoul: no trunk named sesoul",
        ),
        (
            "[[centers]]\nname = \"a\"\ncountry_code = 82\ntrunks = [\"seoul\"]\n\
             [[centers]]\nname = \"b\"\ncountry_code = 1\ntrunks = [\"seoul\"]\n",
            "trunk seoul is owned by both a and b",
        ),
        (
            "[[centers]]\nname = \"x\"\ncountry_code = 999\n",
            "center x: no region for country code 999",
        ),
    ] {
        std::fs::write(&config, format!("{trunk}{centers}")).unwrap();
        let out = Command::new(binary())
            .args(["serve", "--config", &config.to_string_lossy()])
            .args(["--data", &work.path().join("data").to_string_lossy()])
            .output()
            .await
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(reason), "{reason}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_rate_deck_wins_over_the_configured_file() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let file_deck = work.path().join("seoul.csv");
    std::fs::write(&file_deck, "prefix,per_minute\n822,20000\n").unwrap();
    let config = work.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nadmin_token = \"operator-secret-0123456789\"\n[numbering]\nhome_country = \"KR\"\n\
             [[trunks]]\nname = \"seoul\"\naddress = \"127.0.0.1:5999\"\nformat = \"national\"\n\
             options_interval_s = 0\nrates = \"{}\"\n",
            file_deck.display()
        ),
    )
    .unwrap();
    let imported = work.path().join("new.csv");
    std::fs::write(
        &imported,
        "prefix,per_minute,connect_fee\n822,11111,500\n82,30000,0\n",
    )
    .unwrap();
    let cfg = config.to_string_lossy().to_string();
    let data_s = data.to_string_lossy().to_string();
    let out = Command::new(binary())
        .args([
            "rates", "import", "--trunk", "seoul", "--config", &cfg, "--data", &data_s,
        ])
        .arg(&imported)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("stored 2 prefixes for trunk seoul (version 1)")
    );
    let wrong = Command::new(binary())
        .args([
            "rates", "import", "--trunk", "nope", "--config", &cfg, "--data", &data_s,
        ])
        .arg(&imported)
        .output()
        .await
        .unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("no trunk nope"));

    let http_port = free_port();
    let _serve = serve(&cfg, &data_s, free_port(), http_port).await;
    let addr = format!("127.0.0.1:{http_port}");
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(
        b"GET /api/v1/routes/02-1234-5678 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer operator-secret-0123456789\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert!(
        reply.contains("\"per_minute\":11111") && reply.contains("\"connect_fee\":500"),
        "{reply}"
    );
    assert!(reply.contains("\"number\":\"0212345678\""), "{reply}");
}

/// `switchboard serve` on loopback ports with `config` and `data`, once it
/// has printed its banner (ENUM on an ephemeral port).
async fn serve(config: &str, data: &str, sip_port: u16, http_port: u16) -> tokio::process::Child {
    try_serve(config, data, sip_port, http_port)
        .await
        .expect("serve printed its banner")
}

/// [`serve`], or `None` when it stopped before its banner (a port another
/// test took between `free_port` and the bind).
async fn try_serve(
    config: &str,
    data: &str,
    sip_port: u16,
    http_port: u16,
) -> Option<tokio::process::Child> {
    try_serve_at(
        "127.0.0.1",
        config,
        data,
        (sip_port, http_port),
        Stdio::null(),
    )
    .await
}

/// [`try_serve`] with SIP, HTTP and ENUM on loopback address `ip` and
/// its log to `log`.
pub(crate) async fn try_serve_at(
    ip: &str,
    config: &str,
    data: &str,
    (sip_port, http_port): (u16, u16),
    log: impl Into<Stdio>,
) -> Option<tokio::process::Child> {
    let mut serve = Command::new(binary())
        .args(["serve", "--config", config, "--data", data])
        .args(["--sip", &format!("{ip}:{sip_port}")])
        .args(["--http", &format!("{ip}:{http_port}")])
        .env("SWITCHBOARD_ENUM", format!("{ip}:0"))
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()?;
    Some(serve)
}

/// `switchboard serve` with member 100 and a trunk "ny" (US 1212) at
/// `trunk_port`; `trunk` adds keys to the trunk, `head` sections before.
struct TrunkNode {
    data: tempfile::TempDir,
    work: tempfile::TempDir,
    config: PathBuf,
    sip_port: u16,
    http_port: u16,
    trunk_port: u16,
    serve: tokio::process::Child,
}

impl TrunkNode {
    async fn start(trunk: &str, head: &str) -> TrunkNode {
        TrunkNode::start_funded(trunk, head, None).await
    }

    /// [`TrunkNode::start`], member 100 credited `top_up` minor units
    /// before the engine starts.
    async fn start_funded(trunk: &str, head: &str, top_up: Option<i64>) -> TrunkNode {
        let data = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let (sip_port, http_port, trunk_port) = (free_port(), free_port(), free_port());
        let deck = work.path().join("ny.csv");
        std::fs::write(&deck, "prefix,per_minute\n1212,9000\n").unwrap();
        let config = work.path().join("switchboard.toml");
        std::fs::write(
            &config,
            format!(
                "{head}[numbering]\nhome_country = \"US\"\n\n[[trunks]]\nname = \"ny\"\n\
                 address = \"127.0.0.1:{trunk_port}\"\n{trunk}rates = \"{}\"\n\
                 options_interval_s = 0\n",
                deck.display()
            ),
        )
        .unwrap();
        let dir = data.path().to_string_lossy().to_string();
        let add = Command::new(binary())
            .args([
                "member",
                "add",
                "--number",
                "100",
                "--password",
                &password("100"),
            ])
            .args(["--data", &dir])
            .output()
            .await
            .unwrap();
        assert!(add.status.success());
        if let Some(amount) = top_up {
            use schema::store::Store as _;
            let store = schema::embedded::Embedded::open(data.path()).unwrap();
            store
                .post(&schema::model::LedgerEntry {
                    account: "100".into(),
                    key: "topup:100".into(),
                    amount,
                    reason: "test top-up".into(),
                    at: 0,
                })
                .await
                .unwrap();
        }
        // Fresh ports when another test took one meanwhile.
        let (mut sip_port, mut http_port) = (sip_port, http_port);
        let mut started = None;
        for _ in 0..3 {
            started = try_serve(&config.to_string_lossy(), &dir, sip_port, http_port).await;
            if started.is_some() {
                break;
            }
            (sip_port, http_port) = (free_port(), free_port());
        }
        let serve = started.expect("serve printed its banner");
        std::fs::write(
            work.path().join("u.csv"),
            format!("SEQUENTIAL\n100;{};3600;\n", password("100")),
        )
        .unwrap();
        TrunkNode {
            data,
            work,
            config,
            sip_port,
            http_port,
            trunk_port,
            serve,
        }
    }

    /// Start `serve` again on the same data, configuration and ports.
    async fn restart(&mut self) {
        let dir = self.data.path().to_string_lossy().to_string();
        self.serve = serve(
            &self.config.to_string_lossy(),
            &dir,
            self.sip_port,
            self.http_port,
        )
        .await;
    }

    /// Wait until trunk "ny" has answered `n` calls.
    async fn answered(&self, n: f64) {
        let http = format!("127.0.0.1:{}", self.http_port);
        switchboard_tests::eventually("calls answered", Duration::from_secs(10), || async {
            let text = http_get(&http, "/metrics").await;
            metric(&text, "switchboard_trunk_answered_total{trunk=\"ny\"}") == Some(n)
        })
        .await
        .unwrap();
    }

    /// Send `signal` (`TERM`, `9`) to `serve`.
    async fn signal(&self, signal: &str) {
        let pid = self.serve.id().unwrap();
        let _ = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .await;
    }

    /// The CDR rows `cdrs export` prints (the header left out).
    async fn cdr_rows(&self) -> Vec<String> {
        let out = Command::new(binary())
            .args([
                "cdrs",
                "export",
                "--data",
                &self.data.path().to_string_lossy(),
            ])
            .output()
            .await
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        text.split("\r\n")
            .filter(|l| !l.is_empty())
            .skip(1)
            .map(str::to_owned)
            .collect()
    }

    /// Member 100 calling +1 212 555 0100 with `scenario`.
    fn call(&self, scenario: &std::path::Path) -> Sipp {
        let csv = self.work.path().join("u.csv");
        let mut s = Sipp::new(self.work.path(), scenario, free_port());
        s.args(["-inf", &csv.to_string_lossy(), "-au", "100"])
            .args(["-ap", &password("100"), "-s", "+12125550100"])
            .args([&format!("127.0.0.1:{}", self.sip_port)]);
        s
    }
}

/// A copy of scenario `name` in `dir` with `__KEY__` placeholders replaced.
pub(crate) fn scenario_in(dir: &std::path::Path, name: &str, vars: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(switchboard_tests::scenarios_dir().join(name)).unwrap();
    for (k, v) in vars {
        text = text.replace(&format!("__{k}__"), v);
    }
    let out = dir.join(format!("{}-{name}", rand::random::<u32>()));
    std::fs::write(&out, text).unwrap();
    out
}

/// The value of the metric line starting with `name{labels}`.
pub(crate) fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_trunk_metrics_count_attempts_answers_failures_and_channels() {
    let mut n = TrunkNode::start("format = \"e164\"\n", "").await;
    let (work, trunk_port, http_port) = (&n.work, n.trunk_port, n.http_port);
    let call = |scenario: &PathBuf| n.call(scenario);
    // One answered call, then one the trunk refuses with 486.
    let sc = scenario_in(work.path(), "trunk_answer.xml", &[("RURI", "12125550100")]);
    let trunk = Sipp::new(work.path(), &sc, trunk_port).spawn().unwrap();
    call(&scenario_in(work.path(), "uac.xml", &[("HOLD", "200")]))
        .run()
        .await
        .unwrap();
    trunk.wait().await.unwrap();
    let sc = scenario_in(
        work.path(),
        "trunk_refuse.xml",
        &[
            ("RURI", "12125550100"),
            ("STATUS", "486"),
            ("REASON", "Busy Here"),
        ],
    );
    let trunk = Sipp::new(work.path(), &sc, trunk_port).spawn().unwrap();
    call(&scenario_in(
        work.path(),
        "uac_final.xml",
        &[("FINAL", "486")],
    ))
    .run()
    .await
    .unwrap();
    trunk.wait().await.unwrap();

    let text = http_get(&format!("127.0.0.1:{http_port}"), "/metrics").await;
    let m = |series: &str| metric(&text, series);
    assert_eq!(
        m("switchboard_trunk_attempts_total{trunk=\"ny\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        m("switchboard_trunk_answered_total{trunk=\"ny\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        m("switchboard_trunk_failures_total{trunk=\"ny\",code=\"486\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        m("switchboard_trunk_channels{trunk=\"ny\"}"),
        Some(0.0),
        "{text}"
    );
    // Post-dial delay: both calls rang; duration: the answered one.
    assert_eq!(
        m("switchboard_trunk_post_dial_delay_seconds_count{trunk=\"ny\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        m("switchboard_trunk_call_seconds_count{trunk=\"ny\"}"),
        Some(1.0),
        "{text}"
    );
    n.serve.kill().await.unwrap();
}

/// `switchboard cdrs export` writes every CDR of a payer as CSV, across
/// pages, and its prices add up to the store's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdrs_export_writes_every_record_as_csv_that_adds_up() {
    use schema::store::Store as _;
    let data = tempfile::tempdir().unwrap();
    {
        let store = schema::embedded::Embedded::open(data.path()).unwrap();
        for i in 0..2500u64 {
            let payer = if i % 10 == 0 { "200" } else { "100" };
            let cdr = schema::model::Cdr {
                call_id: format!("call-{i}"),
                payer: payer.into(),
                caller: payer.into(),
                callee: "300".into(),
                center: "us".into(),
                result: "answered".into(),
                status: 200,
                cause: None,
                disconnect: Some("callee".into()),
                attempts: vec![],
                setup_ms: 1_700_000_000_000 + i,
                ring_ms: None,
                answer_ms: Some(1_700_000_000_000 + i),
                end_ms: 1_700_000_060_000 + i,
                billed_secs: 60,
                price: (i % 7) as i64,
                cost_micros: 0,
                currency: "USD".into(),
                media: None,
                digits: String::new(),
                callback: None,
                direction: String::new(),
                peer: None,
                peer_micros: 0,
                correlation: None,
            };
            store.put_cdr(&cdr).await.unwrap();
        }
    }
    let out = Command::new(binary())
        .args([
            "cdrs",
            "export",
            "--payer",
            "100",
            "--data",
            &data.path().to_string_lossy(),
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let price = header.iter().position(|h| *h == "price").unwrap();
    let ids = header.iter().position(|h| *h == "call_id").unwrap();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2250, "every one of 100's, across three pages");
    assert!(rows.iter().all(|r| r.len() == header.len()));
    let mut unique: Vec<&str> = rows.iter().map(|r| r[ids]).collect();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 2250, "none twice");
    let total: i64 = rows.iter().map(|r| r[price].parse::<i64>().unwrap()).sum();
    let want: i64 = (0..2500i64).filter(|i| i % 10 != 0).map(|i| i % 7).sum();
    assert_eq!(total, want);
    assert!(String::from_utf8_lossy(&out.stderr).contains("2250 CDRs"));
}

/// `switchboard plans import` stores a sell plan whole, or refuses the file
/// naming the bad row and storing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_import_stores_a_whole_plan_or_names_the_bad_row() {
    use schema::store::Store as _;
    let data = tempfile::tempdir().unwrap();
    let csv = data.path().join("gold.csv");
    let run = || {
        Command::new(binary())
            .args([
                "plans",
                "import",
                "--name",
                "gold",
                "--data",
                &data.path().to_string_lossy(),
            ])
            .arg(&csv)
            .output()
    };
    std::fs::write(&csv, "prefix,per_minute\n82,100\nx1,5\n").unwrap();
    let out = run().await.unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("row 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&csv, "prefix,per_minute,connect_fee,first_increment,next_increment\n82,100,0,30,6\n1,20,0,60,60\n").unwrap();
    let out = run().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 prefixes (version 1)"));
    let store = schema::embedded::Embedded::open(data.path()).unwrap();
    let (text, version) = store.plan("gold").await.unwrap().unwrap();
    assert_eq!(version, 1);
    assert!(text.contains("82,100,0,30,6"));
}

/// SIGTERM drains: a new call gets 503 with Retry-After, the call up goes
/// on to its own end (its BYE is answered), its CDR is written as the
/// caller's hang-up, and the process exits 0 once no call is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_refuses_new_calls_and_lets_calls_up_finish() {
    let mut n = TrunkNode::start("", "[calls]\ndrain_s = 30\n\n").await;
    let trunk_port = n.trunk_port;
    let work = tempfile::tempdir().unwrap();
    let sc = scenario_in(
        work.path(),
        "trunk_answer.xml",
        &[("RURI", "\\+12125550100")],
    );
    let trunk = Sipp::new(work.path(), &sc, trunk_port).spawn().unwrap();
    let up = n
        .call(&scenario_in(work.path(), "uac.xml", &[("HOLD", "3000")]))
        .spawn()
        .unwrap();
    n.answered(1.0).await;
    n.signal("TERM").await;
    // The engine still answers, but takes no new call.
    n.call(&scenario_in(work.path(), "uac_shed.xml", &[]))
        .run()
        .await
        .unwrap();
    // The call up ends by itself: BYE answered 200 by the draining engine.
    up.wait().await.unwrap();
    trunk.wait().await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), n.serve.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    let rows = n.cdr_rows().await;
    assert_eq!(rows.len(), 1, "one CDR, the call that was up: {rows:?}");
    assert!(
        rows[0].contains("answered") && rows[0].contains("caller"),
        "ended by its caller, not released by the shutdown: {rows:?}"
    );
}

/// kill -9 with calls up, then a restart: the call that had ended keeps
/// its one CDR and its one charge; each call that was up gets exactly one
/// (`lost`) CDR, is charged the talk time up to the node's last heartbeat
/// (never more than it held), and its far end gets a BYE (the trunk's
/// scenario completes only if it does); no hold is left, the ledger still
/// sums to the balance, nothing is left in progress, and a second restart
/// adds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_every_call_has_exactly_one_cdr_and_one_charge() {
    let work = tempfile::tempdir().unwrap();
    // A sell plan: 1 cent a second to the US, by the second.
    let plan = work.path().join("plan.csv");
    std::fs::write(
        &plan,
        "prefix,per_minute,connect_fee,first_increment,next_increment\n1,600000,0,1,1\n",
    )
    .unwrap();
    let head = format!(
        "[billing]\nplan = \"{}\"\nchunk_s = 60\n\n[calls]\ncheckpoint_after_s = 1\n\n",
        plan.display()
    );
    let mut n = TrunkNode::start_funded("", &head, Some(10_000)).await;
    let sc = scenario_in(
        work.path(),
        "trunk_answer.xml",
        &[("RURI", "\\+12125550100")],
    );
    let mut trunk = Sipp::new(work.path(), &sc, n.trunk_port);
    trunk.args(["-m", "4"]);
    let trunk = trunk.spawn().unwrap();
    // One call that ends, then three that stay up.
    n.call(&scenario_in(work.path(), "uac.xml", &[("HOLD", "100")]))
        .run()
        .await
        .unwrap();
    let mut up = n.call(&scenario_in(work.path(), "uac.xml", &[("HOLD", "20000")]));
    up.args(["-m", "3", "-r", "10"]);
    let _up = up.spawn().unwrap();
    n.answered(4.0).await;
    // Let the calls be up for a while: a call up for a second is recorded
    // at the next sweep (every second), heartbeats every second.
    tokio::time::sleep(Duration::from_secs(3)).await;
    n.signal("9").await;
    let _ = n.serve.wait().await;

    assert_eq!(
        n.cdr_rows().await.len(),
        1,
        "before the restart: the ended call"
    );
    n.restart().await;
    // The restarted node sent BYE to the trunk's three legs: its scenario
    // (INVITE, answer, BYE each) completes all four calls.
    trunk.wait().await.unwrap();
    let rows = n.cdr_rows().await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    // Again: nothing new.
    n.serve.kill().await.unwrap();
    let _ = n.serve.wait().await;
    n.restart().await;
    assert_eq!(n.cdr_rows().await.len(), 4);
    n.serve.kill().await.unwrap();
    let _ = n.serve.wait().await;

    use schema::store::Store as _;
    let store = schema::embedded::Embedded::open(n.data.path()).unwrap();
    let cdrs = store
        .cdrs(&switchboard_tests::every_cdr_of(Some("100")))
        .await
        .unwrap();
    let ids: std::collections::BTreeSet<&str> = cdrs.iter().map(|c| c.call_id.as_str()).collect();
    assert_eq!(ids.len(), 4, "one CDR per call: {cdrs:?}");
    assert_eq!(cdrs.iter().filter(|c| c.result == "answered").count(), 1);
    let lost: Vec<_> = cdrs.iter().filter(|c| c.result == "lost").collect();
    assert_eq!(lost.len(), 3, "{cdrs:?}");
    for c in &lost {
        // Up about 3 s before the kill: charged what the last heartbeat
        // proves (at least 1 s, at most the 60 s it held).
        assert!(c.answer_ms.is_some(), "{c:?}");
        assert!((1..=60).contains(&c.billed_secs), "{c:?}");
        assert_eq!(c.price, i64::from(c.billed_secs), "1 cent a second: {c:?}");
    }
    // Every CDR's price is in the ledger exactly once.
    let ledger = store.ledger("100").await.unwrap();
    for c in &cdrs {
        let posted: Vec<_> = ledger
            .iter()
            .filter(|e| e.key == format!("call:{}", c.call_id))
            .collect();
        assert_eq!(posted.len(), usize::from(c.price > 0), "{c:?} {ledger:?}");
        assert!(posted.iter().all(|e| -e.amount == c.price), "{c:?}");
    }
    let balance = store.balance("100").await.unwrap();
    assert_eq!(balance, ledger.iter().map(|e| e.amount).sum::<i64>());
    assert_eq!(balance, 10_000 - cdrs.iter().map(|c| c.price).sum::<i64>());
    assert!(
        store
            .holds("100", actors::clock::unix_now())
            .await
            .unwrap()
            .is_empty(),
        "no hold left"
    );
    assert!(
        store
            .open_calls(&format!("127.0.0.1:{}", n.sip_port))
            .await
            .unwrap()
            .is_empty(),
        "nothing left in progress"
    );
}

/// A Content-Length near 2^64 over TCP (issue 19.1): the engine closes that
/// connection, keeps answering /healthz and SIP on other connections, and
/// still stops on SIGTERM. Unchecked frame arithmetic wrapped it to a
/// zero-length frame that spun the connection's reader for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_length_near_2_pow_64_closes_its_connection_and_stalls_nothing() {
    let mut n = TrunkNode::start("", "").await;
    let sip = format!("127.0.0.1:{}", n.sip_port);
    let mut bad = tokio::net::TcpStream::connect(&sip).await.unwrap();
    bad.write_all(b"OPTIONS sip:a@b SIP/2.0\r\nl: 18446744073709551564\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), bad.read_to_end(&mut sink)).await;
    assert!(
        matches!(closed, Ok(Ok(_))),
        "the engine closes an unframeable stream"
    );
    let health = http_get(&format!("127.0.0.1:{}", n.http_port), "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // A well-formed request on a new connection is still served.
    let mut good = tokio::net::TcpStream::connect(&sip).await.unwrap();
    let local = good.local_addr().unwrap();
    good.write_all(
        format!(
            "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKbig1\r\n\
             From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: big1\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut reply = vec![0u8; 4096];
    let got = tokio::time::timeout(Duration::from_secs(5), good.read(&mut reply))
        .await
        .unwrap()
        .unwrap();
    let reply = String::from_utf8_lossy(&reply[..got]);
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");
    n.signal("TERM").await;
    let status = tokio::time::timeout(Duration::from_secs(20), n.serve.wait())
        .await
        .expect("SIGTERM stops the engine")
        .unwrap();
    assert!(status.success(), "{status}");
}

/// Two `switchboard serve` processes of one region on one store (issue
/// 21.5): node b has a call up to the trunk and is killed (-9); once its
/// heartbeat is older than `dead_after_s`, node a takes over: the far end
/// gets its BYE (the trunk's scenario completes only then), the call gets
/// one `lost` CDR and one charge; b restarted recovers nothing more (a's
/// claim on that run), and nothing is left in progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_calls_are_recovered_once_by_a_sibling() {
    let work = tempfile::tempdir().unwrap();
    let plan = work.path().join("plan.csv");
    std::fs::write(
        &plan,
        "prefix,per_minute,connect_fee,first_increment,next_increment\n1,600000,0,1,1\n",
    )
    .unwrap();
    let node = |name: &str| {
        format!(
            "[node]\nname = \"{name}\"\nregion = \"us\"\n\n\
             [cluster]\nsecret = \"the test cluster's shared secret\"\ndead_after_s = 3\n\n\
             [billing]\nplan = \"{}\"\nchunk_s = 60\n\n[calls]\ncheckpoint_after_s = 1\n\n",
            plan.display()
        )
    };
    let mut b = TrunkNode::start_funded("", &node("b"), Some(10_000)).await;
    // Node a: the same configuration but its name, on the same data.
    let text = std::fs::read_to_string(&b.config).unwrap();
    let a_config = work.path().join("a.toml");
    std::fs::write(&a_config, text.replace("name = \"b\"", "name = \"a\"")).unwrap();
    let dir = b.data.path().to_string_lossy().to_string();
    let (a_sip, a_http) = (free_port(), free_port());
    let mut a = serve(&a_config.to_string_lossy(), &dir, a_sip, a_http).await;

    let sc = scenario_in(
        work.path(),
        "trunk_answer.xml",
        &[("RURI", "\\+12125550100")],
    );
    let trunk = Sipp::new(work.path(), &sc, b.trunk_port).spawn().unwrap();
    let _up = b
        .call(&scenario_in(work.path(), "uac.xml", &[("HOLD", "30000")]))
        .spawn()
        .unwrap();
    b.answered(1.0).await;
    // Up long enough to be recorded with its answer (a call up a second is
    // rewritten at the next sweep) and proven by a heartbeat after it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    b.signal("9").await;
    let _ = b.serve.wait().await;
    // a sends the far end its BYE, writes the CDR and charges the call.
    tokio::time::timeout(Duration::from_secs(30), trunk.wait())
        .await
        .expect("the sibling released the call within its takeover time")
        .unwrap();
    switchboard_tests::eventually("the lost CDR", Duration::from_secs(10), || async {
        b.cdr_rows().await.len() == 1
    })
    .await
    .unwrap();
    let taken = metric(
        &http_get(&format!("127.0.0.1:{a_http}"), "/metrics").await,
        "switchboard_node_takeovers_total",
    );
    assert_eq!(taken, Some(1.0), "a took b's run over");
    // b comes back: a has recovered that run, b adds nothing.
    b.restart().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    b.serve.kill().await.unwrap();
    let _ = b.serve.wait().await;
    a.kill().await.unwrap();
    let _ = a.wait().await;
    use schema::store::Store as _;
    let store = schema::embedded::Embedded::open(b.data.path()).unwrap();
    let cdrs = store
        .cdrs(&switchboard_tests::every_cdr_of(Some("100")))
        .await
        .unwrap();
    assert_eq!(cdrs.len(), 1, "{cdrs:?}");
    assert_eq!(cdrs[0].result, "lost", "{cdrs:?}");
    assert!(cdrs[0].billed_secs >= 1, "{cdrs:?}");
    let charges: Vec<_> = store
        .ledger("100")
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.key == format!("call:{}", cdrs[0].call_id))
        .collect();
    assert_eq!(charges.len(), 1, "charged once: {charges:?}");
    assert_eq!(-charges[0].amount, cdrs[0].price);
    assert!(store.open_calls("b").await.unwrap().is_empty());
    assert!(
        store
            .holds("100", actors::clock::unix_now())
            .await
            .unwrap()
            .is_empty(),
        "no hold left"
    );
}

/// [`a_dead_nodes_calls_are_recovered_once_by_a_sibling`] on the CQL
/// cluster (`ops/test.sh` runs it on its Cassandra cluster): two
/// `switchboard serve` of the seoul region on one keyspace, the New York
/// center placed on b; kill -9 of b with a call up: a releases the far
/// end, one `lost` CDR, one charge; a takes the center over (a new US call
/// on a leaves through its own trunk), a call to a phone that registered
/// through b gets 480 at once; b restarted adds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a CQL cluster: SCYLLA_URI (ops/test.sh sets it)"]
async fn a_dead_nodes_calls_are_recovered_once_on_the_cql_cluster() {
    use schema::store::Store as _;
    let keyspace = format!("switchboard_takeover_{}", std::process::id());
    let mut cfg =
        schema::scylla::ScyllaConfig::parse(&std::env::var("SCYLLA_URI").unwrap()).unwrap();
    cfg.keyspace.clone_from(&keyspace);
    let replication = schema::scylla::parse_replication(
        &std::env::var("SCYLLA_REPLICATION").unwrap_or_else(|_| "seoul=1".into()),
    )
    .unwrap();
    schema::scylla::migrate(&cfg, &replication).await.unwrap();
    let store = schema::scylla::Scylla::connect(&cfg).await.unwrap();
    for n in ["100", "500"] {
        switchboard_tests::add_member(&store, n).await.unwrap();
    }
    store
        .post(&schema::model::LedgerEntry {
            account: "100".into(),
            key: "topup:100".into(),
            amount: 10_000,
            reason: "test top-up".into(),
            at: 0,
        })
        .await
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let plan = work.path().join("plan.csv");
    std::fs::write(
        &plan,
        "prefix,per_minute,connect_fee,first_increment,next_increment\n1,600000,0,1,1\n",
    )
    .unwrap();
    let deck = work.path().join("ny.csv");
    std::fs::write(&deck, "prefix,per_minute\n1212,9000\n").unwrap();
    let trunk_port = free_port();
    let uri = format!(
        "scylla://{}/{keyspace}?dc={}",
        cfg.nodes.join(","),
        cfg.local_dc.clone().unwrap_or_default()
    );
    let config = |name: &str| {
        let path = work.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "[node]\nname = \"{name}\"\nregion = \"seoul\"\n\n\
                 [cluster]\nsecret = \"the test cluster's shared secret\"\ndead_after_s = 3\n\n\
                 [store]\nscylla = \"{uri}\"\n\n\
                 [billing]\nplan = \"{}\"\nchunk_s = 60\n\n[calls]\ncheckpoint_after_s = 1\n\n\
                 [numbering]\nhome_country = \"US\"\n\n\
                 [[centers]]\nname = \"newyork\"\ncountry_code = 1\ntrunks = [\"ny\"]\n\
                 runs_on = [\"b\"]\n\n[[trunks]]\nname = \"ny\"\n\
                 address = \"127.0.0.1:{trunk_port}\"\nrates = \"{}\"\noptions_interval_s = 0\n",
                plan.display(),
                deck.display()
            ),
        )
        .unwrap();
        path.to_string_lossy().to_string()
    };
    let (a_cfg, b_cfg) = (config("a"), config("b"));
    let unused = tempfile::tempdir().unwrap();
    let dir = unused.path().to_string_lossy().to_string();
    let (a_sip, a_http, b_sip, b_http) = (free_port(), free_port(), free_port(), free_port());
    let mut a = serve(&a_cfg, &dir, a_sip, a_http).await;
    let mut b = serve(&b_cfg, &dir, b_sip, b_http).await;
    std::fs::write(
        work.path().join("u.csv"),
        format!("SEQUENTIAL\n100;{};3600;\n", password("100")),
    )
    .unwrap();
    // 500's phone registers through b.
    std::fs::write(
        work.path().join("p.csv"),
        format!("SEQUENTIAL\n500;{};3600;\n", password("500")),
    )
    .unwrap();
    let as_500 = |scenario: &PathBuf| {
        let mut s = Sipp::new(work.path(), scenario, free_port());
        s.args(["-inf", &work.path().join("p.csv").to_string_lossy()])
            .args(["-au", "500", "-ap", &password("500")]);
        s
    };
    let mut reg = as_500(&scenario_in(
        work.path(),
        "register.xml",
        &[("FINAL", "200")],
    ));
    reg.args([&format!("127.0.0.1:{b_sip}")]);
    reg.run().await.unwrap();
    let sc = scenario_in(
        work.path(),
        "trunk_answer.xml",
        &[("RURI", "\\+12125550100")],
    );
    let trunk = Sipp::new(work.path(), &sc, trunk_port).spawn().unwrap();
    let csv = work.path().join("u.csv");
    let mut call = Sipp::new(
        work.path(),
        &scenario_in(work.path(), "uac.xml", &[("HOLD", "30000")]),
        free_port(),
    );
    call.args(["-inf", &csv.to_string_lossy(), "-au", "100"])
        .args(["-ap", &password("100"), "-s", "+12125550100"])
        .args([&format!("127.0.0.1:{b_sip}")]);
    let _up = call.spawn().unwrap();
    switchboard_tests::eventually("the call answered", Duration::from_secs(15), || async {
        let text = http_get(&format!("127.0.0.1:{b_http}"), "/metrics").await;
        metric(&text, "switchboard_trunk_answered_total{trunk=\"ny\"}") == Some(1.0)
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = b.id().unwrap();
    let _ = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .await;
    let _ = b.wait().await;
    tokio::time::timeout(Duration::from_secs(40), trunk.wait())
        .await
        .expect("the sibling released the call within its takeover time")
        .unwrap();
    let query = switchboard_tests::every_cdr_of(Some("100"));
    switchboard_tests::eventually("the lost CDR", Duration::from_secs(10), || async {
        store.cdrs(&query).await.is_ok_and(|c| c.len() == 1)
    })
    .await
    .unwrap();
    // New York's center runs on a now: a new US call leaves through a's
    // own trunk.
    let trunk = Sipp::new(work.path(), &sc, trunk_port).spawn().unwrap();
    let mut call = Sipp::new(
        work.path(),
        &scenario_in(work.path(), "uac.xml", &[("HOLD", "300")]),
        free_port(),
    );
    call.args(["-inf", &csv.to_string_lossy(), "-au", "100"])
        .args(["-ap", &password("100"), "-s", "+12125550100"])
        .args([&format!("127.0.0.1:{a_sip}")]);
    call.run().await.unwrap();
    trunk.wait().await.unwrap();
    let on_a = metric(
        &http_get(&format!("127.0.0.1:{a_http}"), "/metrics").await,
        "switchboard_trunk_answered_total{trunk=\"ny\"}",
    );
    assert_eq!(on_a, Some(1.0), "a placed it on its trunk");
    // 500's phone is on dead b: 480 at once (the scenario fails on
    // anything else).
    let mut refused = Sipp::new(
        work.path(),
        &scenario_in(
            work.path(),
            "uac_final.xml",
            &[("FINAL", "480"), ("REASON", "Temporarily Unavailable")],
        ),
        free_port(),
    );
    refused
        .args(["-inf", &csv.to_string_lossy(), "-au", "100"])
        .args(["-ap", &password("100"), "-s", "500"])
        .args([&format!("127.0.0.1:{a_sip}")]);
    refused.run().await.unwrap();
    // b comes back: a has recovered that run, b adds nothing.
    let mut b = serve(&b_cfg, &dir, b_sip, b_http).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    b.kill().await.unwrap();
    a.kill().await.unwrap();
    let all = store.cdrs(&query).await.unwrap();
    let cdrs: Vec<_> = all.iter().filter(|c| c.result == "lost").cloned().collect();
    assert_eq!(cdrs.len(), 1, "{all:?}");
    assert!(
        all.iter()
            .any(|c| c.result == "answered" && c.callee.contains("12125550100")),
        "{all:?}"
    );
    let charges: Vec<_> = store
        .ledger("100")
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.key == format!("call:{}", cdrs[0].call_id))
        .collect();
    assert_eq!(charges.len(), 1, "charged once: {charges:?}");
    assert_eq!(-charges[0].amount, cdrs[0].price);
    assert!(store.open_calls("b").await.unwrap().is_empty());
}

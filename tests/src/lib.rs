//! Helpers for the end-to-end tests: an engine on loopback with a temporary
//! data directory ([`Env`]), SIPp runs bounded in time ([`Sipp`]), and
//! bounded polling ([`eventually`]).
//!
//! Every peer runs on 127.0.0.1; every run stops by itself (`-m`, `-timeout`,
//! and a process-level deadline).

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use actors::{NodeConfig, NodeHandle};
use anyhow::{Context, Result, bail};
use engine::sip::digest::Algorithm;
use schema::embedded::Embedded;
use schema::model::Member;
use schema::store::Store;
use tokio::process::{Child, Command};

pub mod faulty;

/// The scenario folder in the repository.
pub fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

/// A UDP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral UDP port on loopback")
}

/// Log to the test output once per process (RUST_LOG controls it).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// An engine on loopback with its own data directory and members.
pub struct Env {
    /// The running node (taken by `restart`/`shutdown`).
    pub node: Option<NodeHandle>,
    /// The store, shared with the node.
    pub store: Arc<Embedded>,
    /// Data directory.
    pub data: tempfile::TempDir,
    /// Scratch folder for scenario copies, CSV files and SIPp logs.
    pub work: tempfile::TempDir,
    /// The configuration the node was started with.
    pub cfg: NodeConfig,
}

/// A test node's configuration: SIP on an ephemeral loopback port, T1 of
/// 250 ms.
pub fn node_config() -> NodeConfig {
    let mut cfg = NodeConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)));
    cfg.timers.t1 = Duration::from_millis(250);
    cfg
}

/// A query for the first 100 CDRs of `payer` (of everyone with `None`),
/// of all time.
pub fn every_cdr_of(payer: Option<&str>) -> schema::model::CdrQuery {
    schema::model::CdrQuery {
        payer: payer.map(str::to_owned),
        from_ms: 0,
        to_ms: u64::MAX / 2,
        after: None,
        limit: 100,
    }
}

/// Realm used by test members.
pub const REALM: &str = "switchboard";

/// The password of test member `number`.
pub fn password(number: &str) -> String {
    format!("pw-{number}")
}

impl Env {
    /// Start an engine on 127.0.0.1 (ephemeral port) with `members`
    /// (password from [`password`]) and `tweak` applied to the defaults.
    pub async fn start(members: &[&str], tweak: impl FnOnce(&mut NodeConfig)) -> Result<Env> {
        Env::start_with(members, |c, _| tweak(c)).await
    }

    /// [`Env::start`] whose `tweak` also sees the store (for settings that
    /// read it, such as billing notices).
    pub async fn start_with(
        members: &[&str],
        tweak: impl FnOnce(&mut NodeConfig, &Arc<Embedded>),
    ) -> Result<Env> {
        Env::start_wrapped(members, tweak, |s| s as Arc<dyn Store>).await
    }

    /// [`Env::start`] on a store that refuses writes when told to (the
    /// node writes through it; `Env::store` reads the real one).
    pub async fn start_faulty(
        members: &[&str],
        tweak: impl FnOnce(&mut NodeConfig),
    ) -> Result<(Env, Arc<faulty::Faulty>)> {
        let mut handle = None;
        let env = Env::start_wrapped(
            members,
            |c, _| tweak(c),
            |s| {
                let f = faulty::Faulty::new(s);
                handle = Some(f.clone());
                f as Arc<dyn Store>
            },
        )
        .await?;
        Ok((env, handle.context("store wrapped")?))
    }

    async fn start_wrapped(
        members: &[&str],
        tweak: impl FnOnce(&mut NodeConfig, &Arc<Embedded>),
        wrap: impl FnOnce(Arc<Embedded>) -> Arc<dyn Store>,
    ) -> Result<Env> {
        init_tracing();
        let data = tempfile::tempdir()?;
        let work = tempfile::tempdir()?;
        let store = Arc::new(Embedded::open(data.path())?);
        for n in members {
            add_member(store.as_ref(), n).await?;
        }
        let mut cfg = node_config();
        tweak(&mut cfg, &store);
        let node = actors::start(cfg.clone(), wrap(store.clone())).await?;
        Ok(Env {
            node: Some(node),
            store,
            data,
            work,
            cfg,
        })
    }

    /// A second node sharing this one's store (as nodes share a cluster's
    /// keyspace), configured by `tweak`.
    pub async fn sibling(&self, tweak: impl FnOnce(&mut NodeConfig)) -> Result<Env> {
        let data = tempfile::tempdir()?;
        let work = tempfile::tempdir()?;
        let store = Arc::new(Embedded::open(self.data.path())?);
        let mut cfg = node_config();
        tweak(&mut cfg);
        let node = actors::start(cfg.clone(), store.clone() as Arc<dyn Store>).await?;
        Ok(Env {
            node: Some(node),
            store,
            data,
            work,
            cfg,
        })
    }

    /// The engine's SIP address.
    pub fn sip(&self) -> SocketAddr {
        self.node
            .as_ref()
            .map(|n| n.sip_addr)
            .expect("node running")
    }

    /// The running node.
    pub fn node(&self) -> &NodeHandle {
        self.node.as_ref().expect("node running")
    }

    /// Stop the node and start a new one on the same data directory and port.
    pub async fn restart(&mut self) -> Result<()> {
        let old = self.node.take().context("node not running")?;
        let addr = old.sip_addr;
        old.shutdown(Duration::from_millis(500)).await;
        let mut cfg = self.cfg.clone();
        cfg.sip_addr = addr;
        // A fresh store handle, as a new process would open.
        let store = Arc::new(Embedded::open(self.data.path())?);
        let mut last = None;
        for _ in 0..50 {
            match actors::start(cfg.clone(), store.clone() as Arc<dyn Store>).await {
                Ok(n) => {
                    self.node = Some(n);
                    self.store = store;
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("restart failed: {last:?}")
    }

    /// A copy of scenario `name` with `__KEY__` placeholders replaced.
    pub fn scenario(&self, name: &str, vars: &[(&str, &str)]) -> Result<PathBuf> {
        let src = scenarios_dir().join(name);
        let mut text =
            std::fs::read_to_string(&src).with_context(|| format!("reading {}", src.display()))?;
        for (k, v) in vars {
            text = text.replace(&format!("__{k}__"), v);
        }
        let dst = self
            .work
            .path()
            .join(format!("{}-{}", rand::random::<u32>(), name));
        std::fs::write(&dst, text)?;
        Ok(dst)
    }

    /// A SIPp injection file with one row.
    pub fn csv(&self, row: &[&str]) -> Result<PathBuf> {
        let p = self
            .work
            .path()
            .join(format!("{}.csv", rand::random::<u32>()));
        std::fs::write(&p, format!("SEQUENTIAL\n{};\n", row.join(";")))?;
        Ok(p)
    }

    /// A SIPp run of `scenario` from local `port`, on the engine's address
    /// family (`-i ::1` when the engine listens on IPv6).
    pub fn sipp(&self, scenario: &Path, port: u16) -> Sipp {
        let mut s = Sipp::new(self.work.path(), scenario, port);
        if self.sip().is_ipv6() {
            s.args(["-i", "::1"]);
        }
        s
    }

    /// A SIPp run against this engine as member `number` (CSV number;password;expires,
    /// digest credentials), from local port `port`.
    pub fn sipp_as(&self, scenario: &Path, number: &str, port: u16) -> Result<Sipp> {
        let pw = password(number);
        let csv = self.csv(&[number, &pw, "3600"])?;
        let mut s = self.sipp(scenario, port);
        s.args([
            "-inf",
            &csv.to_string_lossy(),
            "-au",
            number,
            "-ap",
            &pw,
            &self.sip().to_string(),
        ]);
        Ok(s)
    }

    /// Register `number` from a fresh port and start UAS `scenario` there
    /// for `calls` calls.
    pub async fn callee(&self, number: &str, scenario: &str, calls: u32) -> Result<SippChild> {
        let port = free_port();
        self.register(number, port).await?;
        let sc = self.scenario(scenario, &[])?;
        let mut uas = self.sipp(&sc, port);
        uas.args(["-m", &calls.to_string()]);
        uas.spawn()
    }

    /// Register `number` from local `port` (digest auth, expires 3600).
    pub async fn register(&self, number: &str, port: u16) -> Result<()> {
        let sc = self.scenario("register.xml", &[("FINAL", "200")])?;
        self.sipp_as(&sc, number, port)?.run().await
    }

    /// The report of the latest ended call that `matches`, waiting up to
    /// ten seconds for it (a call reports shortly after its last leg ends).
    pub async fn call_report(
        &self,
        matches: impl Fn(&actors::call::CallReport) -> bool,
    ) -> actors::call::CallReport {
        for _ in 0..500 {
            let found = self
                .node()
                .recent_calls()
                .await
                .into_iter()
                .rev()
                .find(|r| matches(r));
            if let Some(r) = found {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no report of the call");
    }

    /// Credit `account` with `amount` minor units (ledger key
    /// `topup:test`).
    pub async fn top_up(&self, account: &str, amount: i64) {
        self.store
            .post(&schema::model::LedgerEntry {
                account: account.to_owned(),
                key: "topup:test".into(),
                amount,
                reason: "test top-up".into(),
                at: 0,
            })
            .await
            .expect("store");
    }

    /// The CDRs of `payer` (everyone's: `None`), once at least one is
    /// written (waiting up to ten seconds), oldest first.
    pub async fn cdrs(&self, payer: Option<&str>) -> Vec<schema::model::Cdr> {
        let query = every_cdr_of(payer);
        eventually("a CDR", Duration::from_secs(10), || async {
            self.store.cdrs(&query).await.is_ok_and(|c| !c.is_empty())
        })
        .await
        .expect("a CDR within ten seconds");
        self.store.cdrs(&query).await.expect("store")
    }

    /// Store account `id` (login `login`) for billing and cards, changed by
    /// `tweak` first.
    pub async fn add_account(
        &self,
        id: &str,
        login: &str,
        tweak: impl FnOnce(&mut schema::model::Account),
    ) {
        let mut a =
            schema::model::Account::new(id, login, schema::model::AccountKind::Individual, "Test");
        tweak(&mut a);
        assert!(
            self.store.insert_account(&a).await.expect("store"),
            "account {id} is new"
        );
    }

    /// Live bindings of `number`.
    pub async fn bindings(&self, number: &str) -> Result<usize> {
        Ok(self
            .store
            .bindings(number, actors::clock::unix_now())
            .await?
            .len())
    }
}

/// Add a test member with password [`password`].
pub async fn add_member(store: &dyn Store, number: &str) -> Result<()> {
    let pw = password(number);
    store
        .insert_member(&Member {
            number: number.into(),
            name: format!("Member {number}"),
            realm: REALM.into(),
            ha1_md5: Algorithm::Md5.ha1(number, REALM, &pw),
            ha1_sha256: Algorithm::Sha256.ha1(number, REALM, &pw),
            created_at: 0,
        })
        .await?;
    Ok(())
}

/// One SIPp process, bounded in time.
pub struct Sipp {
    cwd: PathBuf,
    args: Vec<String>,
    err_file: PathBuf,
    limit: Duration,
}

/// A SIPp process running in the background.
pub struct SippChild {
    child: Child,
    err_file: PathBuf,
    limit: Duration,
    what: String,
}

impl Sipp {
    /// SIPp with `scenario`, one call, on 127.0.0.1:`port`.
    pub fn new(cwd: &Path, scenario: &Path, port: u16) -> Sipp {
        let err_file = cwd.join(format!("sipp-{port}-{}.err", rand::random::<u32>()));
        let mut s = Sipp {
            cwd: cwd.to_owned(),
            args: Vec::new(),
            err_file: err_file.clone(),
            limit: Duration::from_secs(30),
        };
        s.args([
            "-sf",
            &scenario.to_string_lossy(),
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "25s",
            "-timeout_error",
            "-recv_timeout",
            "15000",
            "-trace_err",
            "-trace_msg",
            "-error_file",
            &err_file.to_string_lossy(),
        ]);
        s
    }

    /// Let the run take up to `limit` (default 30 s).
    pub fn limit(&mut self, limit: Duration) -> &mut Sipp {
        self.limit = limit;
        self
    }

    /// Append arguments.
    pub fn args<const N: usize>(&mut self, more: [&str; N]) -> &mut Sipp {
        self.args.extend(more.iter().map(|s| s.to_string()));
        self
    }

    /// Start in the background (a UAS waiting for its call).
    pub fn spawn(&self) -> Result<SippChild> {
        let child = Command::new("sipp")
            .args(&self.args)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("running sipp: install the sip-tester package (ops/install-test-deps.sh)")?;
        Ok(SippChild {
            child,
            err_file: self.err_file.clone(),
            limit: self.limit,
            what: self.args.get(1).cloned().unwrap_or_default(),
        })
    }

    /// Run to completion; Ok when every call of the scenario succeeded.
    pub async fn run(&self) -> Result<()> {
        self.spawn()?.wait().await
    }
}

impl SippChild {
    /// Wait for the process; Ok when its calls succeeded (exit code 0).
    pub async fn wait(mut self) -> Result<()> {
        let status = match tokio::time::timeout(self.limit, self.child.wait()).await {
            Ok(s) => s?,
            Err(_) => {
                let _ = self.child.kill().await;
                bail!("sipp {} did not finish within {:?}", self.what, self.limit);
            }
        };
        if status.success() {
            return Ok(());
        }
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            use tokio::io::AsyncReadExt;
            let _ = e.read_to_string(&mut stderr).await;
        }
        let errors = std::fs::read_to_string(&self.err_file).unwrap_or_default();
        bail!(
            "sipp {} failed ({status}):\n{}\n{}",
            self.what,
            errors.chars().take(4000).collect::<String>(),
            stderr.chars().take(2000).collect::<String>()
        )
    }
}

/// Poll `check` every 20 ms until it holds, for at most `patience`.
pub async fn eventually<F, Fut>(what: &str, patience: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if check().await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{what}: still false after {patience:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A packet capture on loopback (tcpdump), to count what really arrived.
pub struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    /// Start capturing UDP datagrams matching `filter` (pcap syntax) on
    /// `lo`; returns once tcpdump is listening.
    pub async fn start(dir: &Path, filter: &str) -> Result<Capture> {
        use tokio::io::AsyncBufReadExt;
        let file = dir.join(format!("capture-{}.pcap", rand::random::<u32>()));
        let mut child = Command::new("tcpdump")
            .args(["-i", "lo", "-U", "-n", "-w"])
            .arg(&file)
            .arg(filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("running tcpdump: install it (ops/install-test-deps.sh)")?;
        let stderr = child.stderr.take().context("tcpdump stderr")?;
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let listening = tokio::time::timeout(Duration::from_secs(10), async {
            while let Ok(Some(l)) = lines.next_line().await {
                if l.contains("listening on") {
                    return true;
                }
            }
            false
        })
        .await;
        if listening != Ok(true) {
            bail!("tcpdump did not start listening on lo");
        }
        Ok(Capture { child, file })
    }

    /// Stop and return one `(source, destination, UDP payload length)` per
    /// datagram captured.
    pub async fn finish(mut self) -> Result<Vec<(SocketAddr, SocketAddr, usize)>> {
        // Let the last datagrams reach the file, then stop tcpdump.
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status()
                .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let out = Command::new("tcpdump")
            .args(["-nr"])
            .arg(&self.file)
            .output()
            .await?;
        let text = String::from_utf8_lossy(&out.stdout);
        let addr = |s: &str| -> Option<SocketAddr> {
            let s = s.trim_end_matches(':');
            let (ip, port) = s.rsplit_once('.')?;
            format!("{ip}:{port}").parse().ok()
        };
        Ok(text
            .lines()
            .filter_map(|l| {
                // 12:00:00.000000 IP 127.0.0.1.6000 > 127.0.0.2.30000: UDP, length 252
                let f: Vec<&str> = l.split_whitespace().collect();
                let i = f.iter().position(|w| *w == ">")?;
                let len = f.last()?.parse().ok()?;
                Some((addr(f.get(i - 1)?)?, addr(f.get(i + 1)?)?, len))
            })
            .collect())
    }
}

/// A free even UDP port with the next one free too (an RTP/RTCP pair for
/// SIPp's `-mp`; SIPp also takes `port + 2` for video). Below the engine's
/// default media range (16384+), so that phones and engine never contend.
pub fn free_media_port() -> u16 {
    for _ in 0..200 {
        let p = 10000 + 2 * (rand::random::<u16>() % 3000);
        if (0..4).all(|k| UdpSocket::bind(("127.0.0.1", p + k)).is_ok()) {
            return p;
        }
    }
    free_port()
}
/// A real SMTP server on loopback (aiosmtpd, Debian python3-aiosmtpd)
/// storing what it receives in a maildir.
pub struct SmtpServer {
    _child: tokio::process::Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    maildir: std::path::PathBuf,
}

impl SmtpServer {
    /// Start one whose maildir is under `dir`.
    pub async fn start(dir: &std::path::Path) -> SmtpServer {
        let port = free_port();
        let maildir = dir.join("maildir");
        let child = tokio::process::Command::new("/usr/bin/python3")
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(&maildir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("running aiosmtpd: install python3-aiosmtpd (ops/install-test-deps.sh)");
        eventually(
            "the SMTP server listening",
            Duration::from_secs(10),
            || async {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            },
        )
        .await
        .expect("aiosmtpd listens within ten seconds");
        SmtpServer {
            _child: child,
            port,
            maildir,
        }
    }

    /// The messages received so far, raw.
    pub fn messages(&self) -> Vec<String> {
        std::fs::read_dir(self.maildir.join("new"))
            .map(|d| {
                d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A baresip user agent in its own home folder, auto-answering with its
/// audio bridged (no sound device here: what it hears it plays back into
/// its microphone). Killed when dropped; stops by itself after `-t`.
pub struct Baresip {
    /// The running process.
    pub child: Child,
}

impl Baresip {
    /// Write `config` (listening on `listen`, plus `extra` config lines) and
    /// `accounts` (`account`, one line) into `dir` and start baresip there
    /// for at most `seconds`.
    pub fn start(
        dir: &Path,
        listen: SocketAddr,
        extra: &str,
        account: &str,
        seconds: u32,
    ) -> Result<Baresip> {
        Baresip::run(dir, listen, extra, account, seconds, &[])
    }

    /// [`Baresip::start`], then `commands` (`/dial sip:…`) run as it starts.
    pub fn run(
        dir: &Path,
        listen: SocketAddr,
        extra: &str,
        account: &str,
        seconds: u32,
        commands: &[&str],
    ) -> Result<Baresip> {
        let config = format!(
            "poll_method\t\tepoll\nsip_listen\t\t{listen}\n\
             audio_player\t\taubridge,sb\naudio_source\t\taubridge,sb\naudio_alert\t\taubridge,sb\n\
             module_path\t\t/usr/lib/baresip/modules\nmodule\t\t\tg711.so\nmodule\t\t\taubridge.so\n\
             module_app\t\taccount.so\nmodule_app\t\tmenu.so\n{extra}"
        );
        std::fs::write(dir.join("config"), config)?;
        std::fs::write(dir.join("accounts"), format!("{account}\n"))?;
        let child = Command::new("baresip")
            .args([
                "-4",
                "-f",
                &dir.to_string_lossy(),
                "-t",
                &seconds.to_string(),
            ])
            .args(commands.iter().flat_map(|c| ["-e", c]))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("running baresip: install the baresip package (ops/install-test-deps.sh)")?;
        Ok(Baresip { child })
    }
}

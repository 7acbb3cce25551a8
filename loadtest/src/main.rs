//! `switchboard-load`: SIP load generation and traffic replay.

use std::io::IsTerminal as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};
use switchboard_loadtest::report::Report;
use switchboard_loadtest::rows::Rows;
use switchboard_loadtest::run::{self, Options, Ramp, Transport};
use switchboard_loadtest::scenario::Scenario;
use switchboard_loadtest::stats::{self, Sample, Shared};
use switchboard_loadtest::{builtin, capture, utc_now};

/// SIP load generator and traffic replayer.
///
/// Every run is bounded: it stops after --count calls or --duration seconds,
/// whichever comes first, and gives calls in progress --drain seconds to end.
/// Exit status: 0 when every call succeeded, 1 when some failed, 2 on a
/// usage or scenario error.
#[derive(Parser)]
#[command(name = "switchboard-load", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// REGISTER many members with digest authentication.
    Register {
        #[command(flatten)]
        users: Users,
        /// Expires asked for, in seconds.
        #[arg(long, default_value_t = 3600)]
        expires: u32,
        #[command(flatten)]
        load: Load,
    },
    /// Place calls as a UAC: INVITE with SDP (answering 401/407), hold, BYE.
    Call {
        #[command(flatten)]
        users: Users,
        /// Numbers to call, FIRST-LAST (cycled); else --service.
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        load: Load,
    },
    /// Answer calls as a UAS: 100, optional 180 and ringing delay, then 200
    /// (or --status), ACK, BYE.
    Answer {
        /// Ring this long (ms) after a 180; 0 sends no 180.
        #[arg(long, default_value_t = 0)]
        ring: u64,
        /// Final answer: 200, or a failure code such as 486.
        #[arg(long, default_value_t = 200)]
        status: u16,
        /// Echo RTP back to its sender on the port given in the SDP answer.
        #[arg(long)]
        rtp_echo: bool,
        #[command(flatten)]
        load: Load,
    },
    /// Run a SIPp XML scenario (the subset in docs/loadtest.md).
    Replay {
        /// The scenario file.
        file: PathBuf,
        /// SIPp injection file for `[fieldN]`.
        #[arg(long = "inf")]
        inf: Option<String>,
        #[command(flatten)]
        load: Load,
    },
    /// RTP through a media relay: two 50 packet/s G.711 streams per call,
    /// to the relay addresses of each line of --pairs (`A_ADDR B_ADDR`);
    /// reports packets relayed per second and the one-way time through it.
    Media {
        /// File of `A_ADDR B_ADDR` lines, one per call.
        #[arg(long)]
        pairs: PathBuf,
        /// Seconds sent before measuring (the relay learns the senders).
        #[arg(long, default_value_t = 2)]
        warmup: u64,
        /// Seconds measured.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Clicks to call through the REST API (`POST /api/v1/calls`) at --rate,
    /// each with its own callback number, while a UAS on --uas answers the
    /// legs the engine places; reports clicks accepted per second and the
    /// time from each request to its visitor's INVITE.
    Click(ClickArgs),
    /// Replay the SIP dialogs of a pcap/pcapng capture against the target.
    Pcap {
        /// The capture.
        file: PathBuf,
        /// Timing factor: 1 keeps the captured gaps, 0.5 halves them, 0 sends
        /// as fast as answers come.
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Replay the side that sent the first message from this address
        /// (default: the first sender in the capture).
        #[arg(long)]
        from: Option<SocketAddr>,
        /// Password for digest challenges (the capture's own answers are
        /// recomputed for the new nonces; the user name is kept).
        #[arg(long, default_value = "")]
        password: String,
        #[command(flatten)]
        load: Load,
    },
    /// Print a built-in scenario as XML (register, call, answer).
    Dump {
        /// Which one.
        name: String,
    },
}

#[derive(Args)]
struct ClickArgs {
    /// The edge's HTTP address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// The card owner's API key.
    #[arg(long)]
    key: String,
    /// Card ID.
    #[arg(long)]
    card: String,
    /// Button ID on that card.
    #[arg(long)]
    button: String,
    /// First callback number (E.164 digits without +); click n calls it plus n.
    #[arg(long, default_value_t = 12_122_000_000)]
    first_callback: u64,
    /// Where the answering UAS listens (the engine's trunk points here).
    #[arg(long, default_value = "127.0.0.1:15210")]
    uas: SocketAddr,
    /// Clicks per second.
    #[arg(short = 'r', long, default_value_t = 10.0)]
    rate: f64,
    /// Clicks to send, then stop.
    #[arg(short = 'm', long, default_value_t = 1000)]
    count: u64,
    /// Stop clicking after this many seconds.
    #[arg(short = 'd', long, default_value_t = 60.0)]
    duration: f64,
    /// Seconds to wait after that for answers and INVITEs.
    #[arg(long, default_value_t = 10.0)]
    drain: f64,
    /// Requests in flight at most.
    #[arg(short = 'l', long, default_value_t = 1000)]
    limit: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// No progress output.
    #[arg(short = 'q', long)]
    quiet: bool,
}

impl ClickArgs {
    fn options(&self) -> Result<switchboard_loadtest::click::ClickOptions> {
        if !(0.0..=3600.0).contains(&self.duration) || !(0.0..=120.0).contains(&self.drain) {
            bail!("--duration must be at most 3600 s and --drain at most 120 s");
        }
        Ok(switchboard_loadtest::click::ClickOptions {
            http: self.http,
            key: self.key.clone(),
            card: self.card.clone(),
            button: self.button.clone(),
            first_callback: self.first_callback,
            uas: self.uas,
            rate: self.rate,
            count: self.count,
            duration: Duration::from_secs_f64(self.duration),
            drain: Duration::from_secs_f64(self.drain),
            limit: self.limit,
        })
    }
}

#[derive(Args)]
struct Users {
    /// Members as FIRST-LAST (the password from --password).
    #[arg(long, default_value = "100")]
    from: String,
    /// Password of member N, where {n} stands for the number.
    #[arg(long, default_value = "pw-{n}")]
    password: String,
    /// A SIPp injection file instead (`number;password[;callee]` rows).
    #[arg(long = "inf")]
    inf: Option<String>,
}

#[derive(Args, Clone)]
struct Load {
    /// The SIP server (client scenarios).
    #[arg(default_value = "127.0.0.1:5060")]
    target: SocketAddr,
    /// UDP or TCP.
    #[arg(short = 't', long, value_enum, default_value = "udp")]
    transport: Transport,
    /// Local address.
    #[arg(long, default_value = "127.0.0.1")]
    local_ip: IpAddr,
    /// First local port (0: ephemeral); workers take the following ones.
    #[arg(short = 'p', long, default_value_t = 0)]
    local_port: u16,
    /// Workers, each with its own socket or connection, to spread load.
    #[arg(long, default_value_t = 1)]
    sockets: usize,
    /// New calls per second.
    #[arg(short = 'r', long, default_value_t = 10.0)]
    rate: f64,
    /// Reach --rate in this many equal steps over --ramp seconds.
    #[arg(long, default_value_t = 0)]
    ramp_steps: u32,
    /// Ramp-up time in seconds.
    #[arg(long, default_value_t = 0.0)]
    ramp: f64,
    /// Most calls in progress at once.
    #[arg(short = 'l', long, default_value_t = 10_000)]
    limit: usize,
    /// Calls to place (or answer), then stop.
    #[arg(short = 'm', long)]
    count: Option<u64>,
    /// Stop starting calls after this many seconds.
    #[arg(short = 'd', long, default_value_t = 60.0)]
    duration: f64,
    /// Seconds calls in progress get to end after that.
    #[arg(long, default_value_t = 35.0)]
    drain: f64,
    /// `[service]`: the user part dialled.
    #[arg(short = 's', long, default_value = "service")]
    service: String,
    /// Hold time of a `<pause/>` without milliseconds (ms).
    #[arg(long, default_value_t = 1000)]
    hold: u64,
    /// T1 in ms (first retransmission interval over UDP).
    #[arg(long, default_value_t = 500)]
    t1: u64,
    /// How long a `<recv>` waits unless it says otherwise (ms).
    #[arg(long, default_value_t = 32_000)]
    recv_timeout: u64,
    /// `[media_port]` when no RTP echo runs.
    #[arg(long, default_value_t = 6000)]
    media_port: u16,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the report as an HTML page here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// No progress output.
    #[arg(short = 'q', long)]
    quiet: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchboard-load: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match rt.block_on(go(cli)) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("switchboard-load: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn rows_of(users: &Users, to: Option<&str>) -> Result<Rows> {
    Ok(match &users.inf {
        Some(path) => Rows::from_csv(path)?,
        None => Rows::from_ranges(
            Rows::range(&users.from)?,
            &users.password,
            to.map(Rows::range).transpose()?,
        ),
    })
}

/// Returns whether every call succeeded.
async fn go(cli: Cli) -> Result<bool> {
    let (scenario, rows, load, echo) = match cli.cmd {
        Cmd::Media {
            pairs,
            warmup,
            seconds,
            json,
        } => {
            let text = std::fs::read_to_string(&pairs)
                .with_context(|| format!("reading {}", pairs.display()))?;
            let pairs =
                switchboard_loadtest::media::parse_pairs(&text).map_err(anyhow::Error::msg)?;
            if seconds == 0 || seconds > 3600 || warmup > 60 {
                bail!("--seconds must be 1..=3600 and --warmup at most 60");
            }
            let r = switchboard_loadtest::media::run(
                &pairs,
                Duration::from_secs(warmup),
                Duration::from_secs(seconds),
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "{} calls, {:.0} packets/s relayed ({} of {} received), one way p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
                    r.calls,
                    r.relayed_per_second,
                    r.received,
                    r.sent,
                    r.p50_us,
                    r.p90_us,
                    r.p99_us,
                    r.max_us
                );
            }
            return Ok(r.received == r.sent);
        }
        Cmd::Click(args) => {
            let quiet = args.quiet;
            let r = switchboard_loadtest::click::run(args.options()?, |r| {
                if !quiet {
                    eprintln!(
                        "{:>6} sent {:>6} accepted {:>6} INVITEs",
                        r.sent, r.accepted, r.invites
                    );
                }
            })
            .await?;
            if args.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!("{r}");
            }
            return Ok(r.errors == 0 && r.refused.is_empty() && r.invites == r.accepted);
        }
        Cmd::Dump { name } => {
            let xml = match name.as_str() {
                "register" => builtin::register(3600),
                "call" => builtin::call("[service]"),
                "answer" => builtin::answer(0, 200),
                other => bail!("no built-in scenario {other:?} (register, call, answer)"),
            };
            print!("{xml}");
            return Ok(true);
        }
        Cmd::Register {
            users,
            expires,
            load,
        } => (
            Scenario::from_xml(&builtin::register(expires))?,
            rows_of(&users, None)?,
            load,
            false,
        ),
        Cmd::Call { users, to, load } => {
            let callee = if to.is_some() {
                "[field2]"
            } else {
                "[service]"
            };
            let rows = rows_of(&users, to.as_deref())?;
            (
                Scenario::from_xml(&builtin::call(callee))?,
                rows,
                load,
                false,
            )
        }
        Cmd::Answer {
            ring,
            status,
            rtp_echo,
            load,
        } => {
            if !(200..700).contains(&status) {
                bail!("--status must be a final status code (200-699), not {status}");
            }
            (
                Scenario::from_xml(&builtin::answer(ring, status))?,
                Rows::default(),
                load,
                rtp_echo,
            )
        }
        Cmd::Replay { file, inf, load } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("{}", file.display()))?;
            let sc =
                Scenario::from_xml(&text).with_context(|| format!("{} refused", file.display()))?;
            let rows = match inf {
                Some(p) => Rows::from_csv(&p)?,
                None => Rows::default(),
            };
            (sc, rows, load, false)
        }
        Cmd::Pcap {
            file,
            scale,
            from,
            password,
            load,
        } => {
            let sc = capture::scenario_from_capture(&file, from, scale)
                .with_context(|| format!("{}", file.display()))?;
            (
                sc,
                Rows::new(vec![vec![String::new(), password]]),
                load,
                false,
            )
        }
    };
    execute(scenario, rows, load, echo).await
}

async fn execute(scenario: Scenario, rows: Rows, load: Load, echo: bool) -> Result<bool> {
    let stats: Shared = Shared::default();
    let mut media_port = load.media_port;
    if echo {
        media_port = start_echo(load.local_ip, stats.clone()).await?;
    }
    let secs = |s: f64, what: &str| -> Result<Duration> {
        Duration::try_from_secs_f64(s)
            .with_context(|| format!("--{what} must be a number of seconds"))
    };
    if !(load.rate.is_finite() && load.rate >= 0.0) {
        bail!("--rate must be a positive number");
    }
    let opts = Options {
        target: load.target,
        local_ip: load.local_ip,
        local_port: load.local_port,
        sockets: load.sockets.clamp(1, 256),
        transport: load.transport,
        rate: load.rate,
        ramp: (load.ramp_steps > 0).then_some(Ramp {
            steps: load.ramp_steps,
            over: secs(load.ramp, "ramp")?,
        }),
        limit: load.limit.max(1),
        count: load.count,
        duration: secs(load.duration, "duration")?,
        drain: secs(load.drain, "drain")?,
        service: load.service.clone(),
        hold: Duration::from_millis(load.hold),
        t1: Duration::from_millis(load.t1.max(1)),
        recv_timeout: Duration::from_millis(load.recv_timeout),
        rows: Arc::new(rows),
        media_port,
    };
    let scenario = Arc::new(scenario);
    let started_at = utc_now();
    let t0 = tokio::time::Instant::now();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(sample(
        stats.clone(),
        t0,
        load.clone(),
        stop_rx,
        scenario.name.clone(),
    ));
    let result = run::run(scenario.clone(), opts, stats.clone()).await;
    let _ = stop_tx.send(true);
    let timeline = sampler.await.unwrap_or_default();
    result.context("could not open the sockets")?;
    let elapsed = t0.elapsed().as_secs_f64();
    let report = {
        let s = stats::lock(&stats);
        Report::new(
            (
                &scenario.name,
                &load.target.to_string(),
                match load.transport {
                    Transport::Udp => "UDP",
                    Transport::Tcp => "TCP",
                },
                load.rate,
                started_at,
            ),
            elapsed,
            &s,
            timeline,
        )
    };
    println!(
        "{}: {} started, {} succeeded, {} failed {:?}, {:.1} calls/s, peak {} concurrent, {} retransmissions",
        report.scenario,
        report.started,
        report.succeeded,
        report.failed,
        report.failures,
        report.achieved_rate,
        report.peak_concurrent,
        report.retransmissions_out
    );
    for (k, p) in &report.latency {
        println!(
            "  {k}: n={} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
            p.count, p.p50, p.p90, p.p99, p.max
        );
    }
    if let Some(path) = &load.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("{}", path.display()))?;
    }
    if let Some(path) = &load.html {
        std::fs::write(path, report.html()).with_context(|| format!("{}", path.display()))?;
    }
    Ok(report.failed == 0 && report.started > 0)
}

/// One sample per second, and progress on the terminal (a bar) or as plain
/// lines (when stderr is not a terminal).
async fn sample(
    stats: Shared,
    t0: tokio::time::Instant,
    load: Load,
    mut stop: tokio::sync::watch::Receiver<bool>,
    name: String,
) -> Vec<Sample> {
    let bar = (!load.quiet && std::io::stderr().is_terminal()).then(|| {
        let pb = match load.count {
            Some(c) => indicatif::ProgressBar::new(c),
            None => indicatif::ProgressBar::new(load.duration as u64),
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} {msg}",
        ) {
            pb.set_style(style);
        }
        pb
    });
    let mut timeline = Vec::new();
    let mut last = (0u64, 0u64, 0u64);
    let mut every = tokio::time::interval_at(t0 + Duration::from_secs(1), Duration::from_secs(1));
    loop {
        let stopping = tokio::select! {
            _ = every.tick() => false,
            _ = stop.changed() => true,
        };
        let t = t0.elapsed().as_secs_f64();
        let (sample, line) = {
            let mut s = stats::lock(&stats);
            let now = (s.started, s.succeeded, s.failures());
            let sample = Sample {
                t,
                started: now.0 - last.0,
                succeeded: now.1 - last.1,
                failed: now.2 - last.2,
                active: s.active,
                latency: s.take_interval(),
            };
            last = now;
            let p99 = ["INVITE→200", "REGISTER→200"]
                .iter()
                .find_map(|k| {
                    sample
                        .latency
                        .get(*k)
                        .map(|p| format!(" {k} p99 {:.1} ms", p.p99))
                })
                .unwrap_or_default();
            let line = format!(
                "{name} {t:6.1}s started {} ok {} failed {} active {} ({}/s){p99}",
                now.0, now.1, now.2, s.active, sample.succeeded
            );
            (sample, (line, now.0))
        };
        timeline.push(sample);
        match &bar {
            Some(pb) => {
                if load.count.is_some() {
                    pb.set_position(line.1);
                } else {
                    pb.set_position(t as u64);
                }
                pb.set_message(line.0);
            }
            None if !load.quiet => eprintln!("{}", line.0),
            None => {}
        }
        if stopping {
            break;
        }
    }
    if let Some(pb) = bar {
        pb.finish();
    }
    timeline
}

/// An RTP echo: every datagram goes back to its sender. Returns its port.
async fn start_echo(ip: IpAddr, stats: Shared) -> Result<u16> {
    let sock = tokio::net::UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
    let port = sock.local_addr()?.port();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            if sock.send_to(&buf[..n], from).await.is_ok() {
                stats::lock(&stats).rtp_echoed += 1;
            }
        }
    });
    Ok(port)
}

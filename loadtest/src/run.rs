//! The runner: workers that each own a socket (or a TCP connection), a
//! table of calls and their timers, and start calls at the target rate.
//!
//! A worker is one task: messages in, timers and the pacer out, no locks on
//! the way. Pacing is absolute (the number of calls due is computed from the
//! time since the start), so a late wake-up never makes the rate drift; it
//! only starts the calls that are due at once.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use engine::sip::digest::{Challenge, parse_challenge};
use engine::sip::framing::{Frame, next_frame};
use engine::sip::msg::{HasHeaders, Message, parse};
use engine::sip::transaction::client::ack_for;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket, tcp::OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::rows::Rows;
use crate::scenario::{Matcher, Role, Scenario, StepKind};
use crate::stats::{self, Shared};
use crate::template::{self, Context, Kw};

/// Largest SIP message accepted.
const MAX_MESSAGE: usize = 65_535;
/// Longest retransmission interval for non-INVITE requests and 2xx (T2).
const T2: Duration = Duration::from_secs(4);
/// How long a finished call still answers retransmissions (T4 + margin).
const LINGER: Duration = Duration::from_secs(6);

/// Transport of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP (one connection per worker towards the target).
    Tcp,
}

impl Transport {
    fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

/// A ramp: the rate rises to its target in `steps` equal steps over `over`.
#[derive(Debug, Clone, Copy)]
pub struct Ramp {
    /// Number of steps.
    pub steps: u32,
    /// Time to reach the full rate.
    pub over: Duration,
}

/// How a run goes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where calls go (client) or where answers go back from (server: the
    /// peer address of each request is used).
    pub target: SocketAddr,
    /// Local address to bind.
    pub local_ip: IpAddr,
    /// First local port (0: ephemeral ports).
    pub local_port: u16,
    /// Workers, each with its own socket/connection.
    pub sockets: usize,
    /// UDP or TCP.
    pub transport: Transport,
    /// New calls per second (client scenarios).
    pub rate: f64,
    /// Optional ramp-up.
    pub ramp: Option<Ramp>,
    /// Most calls in progress at once.
    pub limit: usize,
    /// Calls to start (client) or to answer (server); `None`: until the
    /// duration is up.
    pub count: Option<u64>,
    /// No call starts after this.
    pub duration: Duration,
    /// After the duration (or the count), calls in progress get this long to
    /// end before they are counted `unfinished`.
    pub drain: Duration,
    /// `[service]`.
    pub service: String,
    /// Length of a `<pause/>` without milliseconds.
    pub hold: Duration,
    /// First retransmission interval over UDP.
    pub t1: Duration,
    /// How long a `<recv>` waits unless it says otherwise.
    pub recv_timeout: Duration,
    /// Injection rows (`[fieldN]`).
    pub rows: Arc<Rows>,
    /// `[media_port]`.
    pub media_port: u16,
}

/// Where a message came from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Udp(SocketAddr),
    Tcp(u32),
}

enum Out {
    Udp(Arc<UdpSocket>),
    Tcp(HashMap<u32, OwnedWriteHalf>),
}

type Accepted = mpsc::Receiver<(u32, OwnedWriteHalf)>;

struct Retrans {
    bytes: Bytes,
    interval: Duration,
    next: Instant,
    give_up: Instant,
    capped: bool,
}

struct Call {
    number: u64,
    call_id: String,
    pos: usize,
    cseq: u32,
    peer: Peer,
    peer_addr: SocketAddr,
    row: usize,
    last: Option<Message>,
    seen: Vec<u64>,
    peer_tag: Option<String>,
    routes: Vec<String>,
    next_url: Option<String>,
    challenge: Option<(bool, Challenge)>,
    nc: u32,
    invite: Option<Bytes>,
    last_send: Option<Bytes>,
    retrans: Option<Retrans>,
    /// The step being waited on (a pause or a recv) and until when.
    waiting: Option<(usize, Instant)>,
    /// Method and send time of the last new request, and which responses
    /// were timed already (bits: 100, 180, 183, 200).
    txn: Option<(String, Instant, u8)>,
    timer_seq: u64,
}

struct Done {
    seen: Vec<u64>,
    last_send: Option<Bytes>,
    peer: Peer,
    until: Instant,
}

struct Worker {
    index: usize,
    workers: usize,
    opts: Arc<Options>,
    scenario: Arc<Scenario>,
    stats: Shared,
    local: SocketAddr,
    out: Out,
    pid: u32,
    calls: HashMap<String, Call>,
    done: HashMap<String, Done>,
    timers: BinaryHeap<Reverse<(Instant, u64, String)>>,
    started: u64,
    ended: u64,
    quota: Option<u64>,
    rate: f64,
    start: Instant,
    deadline: Instant,
    hard_stop: Instant,
}

/// Run `scenario` with `opts`; returns when every worker has finished.
pub async fn run(scenario: Arc<Scenario>, opts: Options, stats: Shared) -> std::io::Result<()> {
    let opts = Arc::new(opts);
    let n = opts.sockets.max(1);
    let start = Instant::now();
    let mut handles = Vec::new();
    for index in 0..n {
        let port = if opts.local_port == 0 {
            0
        } else {
            opts.local_port
                .saturating_add(u16::try_from(index).unwrap_or(u16::MAX))
        };
        let local = SocketAddr::new(opts.local_ip, port);
        let (tx, rx) = mpsc::channel::<(Bytes, Peer)>(65_536);
        let (out, local, accepted) = open(&opts, scenario.role, local, tx).await?;
        let quota = opts
            .count
            .map(|c| c / n as u64 + u64::from((index as u64) < c % n as u64));
        let w = Worker {
            index,
            workers: n,
            opts: opts.clone(),
            scenario: scenario.clone(),
            stats: stats.clone(),
            local,
            out,
            pid: std::process::id(),
            calls: HashMap::new(),
            done: HashMap::new(),
            timers: BinaryHeap::new(),
            started: 0,
            ended: 0,
            quota,
            rate: opts.rate / n as f64,
            start,
            deadline: start + opts.duration,
            hard_stop: start + opts.duration + opts.drain,
        };
        handles.push(tokio::spawn(w.run(rx, accepted)));
    }
    for h in handles {
        if let Err(e) = h.await {
            eprintln!("switchboard-load: a worker stopped: {e}");
        }
    }
    Ok(())
}

/// Open the worker's socket or connection and start its readers.
async fn open(
    opts: &Options,
    role: Role,
    local: SocketAddr,
    tx: mpsc::Sender<(Bytes, Peer)>,
) -> std::io::Result<(Out, SocketAddr, Option<Accepted>)> {
    match opts.transport {
        Transport::Udp => {
            let sock = Arc::new(UdpSocket::bind(local).await?);
            let bound = sock.local_addr()?;
            let r = sock.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; MAX_MESSAGE];
                while let Ok((n, from)) = r.recv_from(&mut buf).await {
                    if tx
                        .send((Bytes::copy_from_slice(&buf[..n]), Peer::Udp(from)))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
            Ok((Out::Udp(sock), bound, None))
        }
        Transport::Tcp => match role {
            Role::Client => {
                let sock = if local.is_ipv6() {
                    tokio::net::TcpSocket::new_v6()?
                } else {
                    tokio::net::TcpSocket::new_v4()?
                };
                sock.set_reuseaddr(true)?;
                sock.bind(local)?;
                let stream = sock.connect(opts.target).await?;
                stream.set_nodelay(true)?;
                let bound = stream.local_addr()?;
                let (r, w) = stream.into_split();
                tokio::spawn(read_stream(r, 0, tx));
                let mut conns = HashMap::new();
                conns.insert(0, w);
                Ok((Out::Tcp(conns), bound, None))
            }
            Role::Server => {
                let listener = TcpListener::bind(local).await?;
                let bound = listener.local_addr()?;
                // Writer halves of accepted connections go to the worker.
                let (wtx, wrx) = mpsc::channel::<(u32, OwnedWriteHalf)>(1024);
                tokio::spawn(async move {
                    let mut next = 1u32;
                    while let Ok((stream, _)) = listener.accept().await {
                        let _ = stream.set_nodelay(true);
                        let (r, w) = stream.into_split();
                        if wtx.send((next, w)).await.is_err() {
                            break;
                        }
                        tokio::spawn(read_stream(r, next, tx.clone()));
                        next = next.wrapping_add(1);
                    }
                });
                Ok((Out::Tcp(HashMap::new()), bound, Some(wrx)))
            }
        },
    }
}

async fn read_stream(
    mut r: tokio::net::tcp::OwnedReadHalf,
    id: u32,
    tx: mpsc::Sender<(Bytes, Peer)>,
) {
    let mut buf = BytesMut::with_capacity(MAX_MESSAGE);
    loop {
        loop {
            match next_frame(&buf, MAX_MESSAGE) {
                Frame::Message(n) => {
                    let m = buf.split_to(n).freeze();
                    if tx.send((m, Peer::Tcp(id))).await.is_err() {
                        return;
                    }
                }
                Frame::KeepAlive(n) => {
                    let _ = buf.split_to(n);
                }
                Frame::Incomplete => break,
                Frame::Invalid(_) => return,
            }
        }
        match r.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn key_of(m: &Message) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match m {
        Message::Request(r) => {
            r.method.as_str().hash(&mut h);
        }
        Message::Response(r) => r.status.hash(&mut h),
    }
    m.headers().get("CSeq").hash(&mut h);
    m.top_via()
        .and_then(|v| v.branch().map(str::to_owned))
        .hash(&mut h);
    h.finish()
}

fn first_line(text: &str) -> &str {
    text.split("\r\n").next().unwrap_or("")
}

impl Worker {
    async fn run(
        mut self,
        mut inbox: mpsc::Receiver<(Bytes, Peer)>,
        mut accepted: Option<Accepted>,
    ) {
        loop {
            let now = Instant::now();
            self.fire_timers(now).await;
            self.pace(now).await;
            if self.finished(now) {
                break;
            }
            let wake = self.next_wake(now);
            tokio::select! {
                m = inbox.recv() => match m {
                    Some((bytes, peer)) => {
                        self.on_message(bytes, peer).await;
                        // Drain what is already there before looking at timers.
                        for _ in 0..64 {
                            match inbox.try_recv() {
                                Ok((bytes, peer)) => self.on_message(bytes, peer).await,
                                Err(_) => break,
                            }
                        }
                    }
                    None => break,
                },
                Some((id, w)) = async {
                    match accepted.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Out::Tcp(conns) = &mut self.out {
                        conns.insert(id, w);
                    }
                }
                () = tokio::time::sleep_until(wake) => {}
            }
        }
        let left: Vec<String> = self.calls.keys().cloned().collect();
        for id in left {
            self.fail(&id, "unfinished");
        }
    }

    fn finished(&self, now: Instant) -> bool {
        if now >= self.hard_stop {
            return true;
        }
        let no_more = now >= self.deadline || self.quota.is_some_and(|q| self.started >= q);
        // Over TCP, closing the connection right after the last call would
        // cut the peer's own wait for retransmissions (SIPp counts such calls
        // as failed): keep it while finished calls still linger.
        let lingering =
            matches!(self.out, Out::Tcp(_)) && self.done.values().any(|d| d.until > now);
        no_more && self.calls.is_empty() && !lingering
    }

    fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = self.hard_stop.min(now + Duration::from_secs(1));
        if let Some(Reverse((t, _, _))) = self.timers.peek() {
            wake = wake.min(*t);
        }
        if self.scenario.role == Role::Client && self.may_start(now) {
            wake = wake.min(self.start + self.time_for(self.started + 1));
        }
        if now < self.deadline {
            wake = wake.min(self.deadline);
        }
        wake
    }

    fn may_start(&self, now: Instant) -> bool {
        now < self.deadline
            && self.quota.is_none_or(|q| self.started < q)
            && self.calls.len() < self.opts.limit.div_ceil(self.workers).max(1)
    }

    /// Calls that should have started `t` after the start.
    fn due(&self, t: Duration) -> f64 {
        let t = t.as_secs_f64();
        match self.opts.ramp {
            Some(Ramp { steps, over }) if steps > 0 && t < over.as_secs_f64() => {
                let k = f64::from(steps);
                let len = over.as_secs_f64() / k;
                let i = (t / len).floor();
                self.rate / k * len * i * (i + 1.0) / 2.0
                    + self.rate * (i + 1.0) / k * (t - i * len)
            }
            Some(Ramp { steps, over }) if steps > 0 => {
                let k = f64::from(steps);
                let r = over.as_secs_f64();
                self.rate * r * (k + 1.0) / (2.0 * k) + self.rate * (t - r)
            }
            _ => self.rate * t,
        }
    }

    /// When the `n`th call is due (bisection over `due`).
    fn time_for(&self, n: u64) -> Duration {
        if self.rate <= 0.0 {
            return Duration::from_secs(86_400);
        }
        let target = n as f64;
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        while self.due(Duration::from_secs_f64(hi)) < target && hi < 1e7 {
            hi *= 2.0;
        }
        for _ in 0..48 {
            let mid = (lo + hi) / 2.0;
            if self.due(Duration::from_secs_f64(mid)) < target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Duration::from_secs_f64(hi)
    }

    async fn pace(&mut self, now: Instant) {
        if self.scenario.role != Role::Client {
            return;
        }
        let due = self.due(now - self.start).floor() as u64 + 1;
        while self.started < due && self.may_start(now) {
            self.start_call(now).await;
        }
    }

    async fn start_call(&mut self, now: Instant) {
        let number = self.started * self.workers as u64 + self.index as u64 + 1;
        self.started += 1;
        let call_id = format!("{number}-{}@{}", self.pid, self.local.ip());
        let peer = match self.out {
            Out::Udp(_) => Peer::Udp(self.opts.target),
            Out::Tcp(_) => Peer::Tcp(0),
        };
        let call = self.new_call(number, call_id.clone(), peer, self.opts.target);
        self.calls.insert(call_id.clone(), call);
        stats::lock(&self.stats).start();
        self.advance(&call_id, now).await;
    }

    fn new_call(&self, number: u64, call_id: String, peer: Peer, peer_addr: SocketAddr) -> Call {
        let rows = self.opts.rows.len().max(1) as u64;
        Call {
            number,
            call_id,
            pos: 0,
            cseq: 0,
            peer,
            peer_addr,
            row: ((number - 1) % rows) as usize,
            last: None,
            seen: Vec::new(),
            peer_tag: None,
            routes: Vec::new(),
            next_url: None,
            challenge: None,
            nc: 0,
            invite: None,
            last_send: None,
            retrans: None,
            waiting: None,
            txn: None,
            timer_seq: 0,
        }
    }

    /// Run the call's steps from its position until it must wait.
    async fn advance(&mut self, id: &str, now: Instant) {
        loop {
            let Some(call) = self.calls.get_mut(id) else {
                return;
            };
            let pos = call.pos;
            let Some(step) = self.scenario.steps.get(pos) else {
                self.succeed(id, now);
                return;
            };
            let next = step.next.unwrap_or(pos + 1);
            match &step.kind {
                StepKind::Send { .. } => {
                    if !self.send_step(id, pos, now).await {
                        return;
                    }
                    if let Some(call) = self.calls.get_mut(id) {
                        call.pos = next;
                    }
                }
                StepKind::Nop => call.pos = next,
                StepKind::Pause(d) => match call.waiting {
                    Some((p, until)) if p == pos && now >= until => {
                        call.waiting = None;
                        call.pos = next;
                    }
                    Some((p, _)) if p == pos => return,
                    _ => {
                        let until = now + d.unwrap_or(self.opts.hold);
                        call.waiting = Some((pos, until));
                        self.arm(id);
                        return;
                    }
                },
                StepKind::Recv { timeout, .. } => {
                    if call.waiting.is_none_or(|(p, _)| p != pos) {
                        let wait = timeout.unwrap_or(self.opts.recv_timeout);
                        call.waiting = Some((pos, now + wait));
                        self.arm(id);
                    }
                    return;
                }
            }
        }
    }

    /// Push a timer entry for the call's earliest deadline.
    fn arm(&mut self, id: &str) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let at = [
            call.waiting.map(|(_, t)| t),
            call.retrans.as_ref().map(|r| r.next),
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some(at) = at {
            call.timer_seq += 1;
            self.timers
                .push(Reverse((at, call.timer_seq, id.to_owned())));
        }
    }

    async fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse((at, seq, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let seq = *seq;
            let Some(Reverse((_, _, id))) = self.timers.pop() else {
                break;
            };
            let Some(call) = self.calls.get_mut(&id) else {
                continue;
            };
            if call.timer_seq != seq {
                continue;
            }
            // Retransmission.
            let mut resend = None;
            let mut gave_up = false;
            if let Some(r) = call.retrans.as_mut()
                && r.next <= now
            {
                if now >= r.give_up {
                    gave_up = true;
                } else {
                    resend = Some(r.bytes.clone());
                    r.interval = if r.capped {
                        (r.interval * 2).min(T2)
                    } else {
                        r.interval * 2
                    };
                    r.next = now + r.interval;
                }
            }
            let peer = call.peer;
            if gave_up {
                self.fail(&id, "timeout");
                continue;
            }
            if let Some(b) = resend {
                self.send_bytes(peer, b).await;
                stats::lock(&self.stats).retrans_out += 1;
            }
            let Some(call) = self.calls.get_mut(&id) else {
                continue;
            };
            match call.waiting {
                Some((pos, until)) if until <= now => match &self.scenario.steps[pos].kind {
                    StepKind::Pause(_) => self.advance(&id, now).await,
                    StepKind::Recv { on_timeout, .. } => {
                        if self.scenario.role == Role::Server && pos == 0 {
                            continue;
                        }
                        match on_timeout {
                            Some(to) => {
                                call.pos = *to;
                                call.waiting = None;
                                self.advance(&id, now).await;
                            }
                            None => self.fail(&id, "timeout"),
                        }
                    }
                    _ => {}
                },
                _ => self.arm(&id),
            }
        }
        if self.done.len() > 1024 || (!self.done.is_empty() && self.timers.is_empty()) {
            self.done.retain(|_, d| d.until > now);
        }
    }

    async fn on_message(&mut self, bytes: Bytes, peer: Peer) {
        let now = Instant::now();
        stats::lock(&self.stats).msgs_in += 1;
        let Ok(msg) = parse(&bytes, MAX_MESSAGE) else {
            stats::lock(&self.stats).stray += 1;
            return;
        };
        let id = msg.call_id().to_owned();
        let key = key_of(&msg);
        if !self.calls.contains_key(&id) {
            if let Some(d) = self.done.get(&id) {
                if d.seen.contains(&key) {
                    stats::lock(&self.stats).retrans_in += 1;
                    if let Some(b) = d.last_send.clone() {
                        let p = d.peer;
                        self.send_bytes(p, b).await;
                        stats::lock(&self.stats).retrans_out += 1;
                    }
                } else {
                    stats::lock(&self.stats).stray += 1;
                }
                return;
            }
            let starts = self.scenario.role == Role::Server
                && matches!((&msg, &self.scenario.steps[0].kind),
                    (Message::Request(r), StepKind::Recv { matcher: Matcher::Request(m), .. }) if r.method.as_str() == m)
                && self.may_answer(now);
            if !starts {
                stats::lock(&self.stats).stray += 1;
                return;
            }
            let number = self.started * self.workers as u64 + self.index as u64 + 1;
            self.started += 1;
            let addr = match (peer, &msg) {
                (Peer::Udp(a), _) => a,
                _ => msg
                    .top_via()
                    .and_then(|v| v.sent_by().parse().ok())
                    .unwrap_or(self.opts.target),
            };
            let call = self.new_call(number, id.clone(), peer, addr);
            self.calls.insert(id.clone(), call);
            stats::lock(&self.stats).start();
        }
        self.deliver(&id, msg, key, now).await;
    }

    fn may_answer(&self, now: Instant) -> bool {
        now < self.deadline && self.quota.is_none_or(|q| self.started < q)
    }

    async fn deliver(&mut self, id: &str, msg: Message, key: u64, now: Instant) {
        let scenario = self.scenario.clone();
        let steps = &scenario.steps;
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        // Which step takes it: the current recv, or a later one past optional ones.
        let mut found = None;
        let mut i = call.pos;
        while let Some(step) = steps.get(i) {
            let StepKind::Recv {
                matcher, optional, ..
            } = &step.kind
            else {
                break;
            };
            let hit = match (matcher, &msg) {
                (Matcher::Response(c), Message::Response(r)) => r.status == *c,
                (Matcher::Request(m), Message::Request(r)) => r.method.as_str() == m,
                _ => false,
            };
            if hit {
                found = Some(i);
                break;
            }
            if !optional {
                break;
            }
            i += 1;
        }
        self.time_response(id, &msg, now);
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let Some(i) = found else {
            // A retransmission of something already taken: answer it again.
            if call.seen.contains(&key) {
                let last = call.seen.last() == Some(&key);
                let resend = if last { call.last_send.clone() } else { None };
                let peer = call.peer;
                stats::lock(&self.stats).retrans_in += 1;
                if let Some(b) = resend {
                    self.send_bytes(peer, b).await;
                    stats::lock(&self.stats).retrans_out += 1;
                }
                return;
            }
            match &msg {
                // A stray provisional never needs an answer.
                Message::Response(r) if r.status < 200 => {
                    if call
                        .retrans
                        .as_ref()
                        .is_some_and(|_| msg.cseq().is_some_and(|c| c.method.as_str() == "INVITE"))
                    {
                        call.retrans = None;
                    }
                }
                Message::Response(r) => {
                    let status = r.status;
                    if status >= 300
                        && msg.cseq().is_some_and(|c| c.method.as_str() == "INVITE")
                        && let Some(inv) = call.invite.clone()
                        && let Ok(Message::Request(inv)) = parse(&inv, MAX_MESSAGE)
                    {
                        let ack = ack_for(&inv, r).to_bytes();
                        let peer = call.peer;
                        self.send_bytes(peer, ack).await;
                    }
                    self.fail(id, &status.to_string());
                }
                Message::Request(r) => {
                    let method = r.method.as_str().to_owned();
                    if method != "ACK" {
                        let resp = r
                            .response(
                                if method == "BYE" || method == "CANCEL" {
                                    200
                                } else {
                                    481
                                },
                                None,
                            )
                            .to_bytes();
                        let peer = call.peer;
                        self.send_bytes(peer, resp).await;
                    }
                    self.fail(id, &format!("unexpected {method}"));
                }
            }
            return;
        };
        // Taken by step i.
        let StepKind::Recv { auth, rrs, .. } = &steps[i].kind else {
            return;
        };
        let (auth, rrs) = (*auth, *rrs);
        call.retrans = None;
        call.waiting = None;
        call.seen.push(key);
        // The peer's tag: To of its responses, From of its requests.
        let response = matches!(msg, Message::Response(_));
        if let Some(tag) = if response {
            msg.to_tag()
        } else {
            msg.from_tag()
        } {
            call.peer_tag = Some(tag);
        }
        if let (true, Message::Response(r)) = (auth, &msg) {
            let proxy = r.status == 407;
            let h = if proxy {
                "Proxy-Authenticate"
            } else {
                "WWW-Authenticate"
            };
            // The first challenge this side can answer.
            call.challenge = r
                .headers
                .get_all(h)
                .find_map(|c| parse_challenge(c).ok())
                .map(|c| (proxy, c));
            call.nc = 0;
        }
        if rrs {
            // A UAC's route set is the Record-Route of the response reversed.
            call.routes = msg
                .headers()
                .get_all("Record-Route")
                .flat_map(engine::sip::msg::split_list)
                .map(str::to_owned)
                .collect();
            if response {
                call.routes.reverse();
            }
            call.next_url = msg.contacts().first().map(|n| n.uri.to_string());
        }
        call.last = Some(msg);
        call.pos = steps[i].next.unwrap_or(i + 1);
        self.advance(id, now).await;
    }

    /// Latency from the last new request to its first 100, 180, 183 and 200.
    fn time_response(&mut self, id: &str, msg: &Message, now: Instant) {
        let Message::Response(r) = msg else {
            return;
        };
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let Some((method, sent, done)) = call.txn.as_mut() else {
            return;
        };
        if msg
            .cseq()
            .is_none_or(|c| c.method.as_str() != method.as_str())
        {
            return;
        }
        let bit = match r.status {
            100 => 1,
            180 => 2,
            183 => 4,
            200 => 8,
            _ => return,
        };
        if *done & bit != 0 {
            return;
        }
        *done |= bit;
        let label = format!("{method}→{}", r.status);
        let d = now - *sent;
        stats::lock(&self.stats).record(&label, d);
    }

    /// Render and send step `pos`; false when the call ended.
    async fn send_step(&mut self, id: &str, pos: usize, now: Instant) -> bool {
        let StepKind::Send { msg, retrans } = &self.scenario.steps[pos].kind else {
            return true;
        };
        let Some(call) = self.calls.get_mut(id) else {
            return false;
        };
        // Peek at the method to bump the CSeq before rendering.
        let is_new_request = matches!(msg.head.first().and_then(|l| l.first()), Some(template::Seg::Lit(l)) if !l.starts_with("SIP/2.0") && !l.starts_with("ACK ") && !l.starts_with("CANCEL "));
        if is_new_request {
            call.cseq += 1;
        }
        let Some(call) = self.calls.get(id) else {
            return false;
        };
        let row = self.opts.rows.row(call.row);
        let (user, pass) = (
            row.first().map_or("", String::as_str),
            row.get(1).map_or("", String::as_str),
        );
        let cx = Cx { w: self, call, pos };
        let rendered = template::render(msg, &cx, user, pass);
        let mut text = rendered.text;
        let call = match self.calls.get_mut(id) {
            Some(c) => c,
            None => return false,
        };
        if let Some((range, u, p)) = rendered.auth {
            let Some((proxy, ch)) = call.challenge.as_ref() else {
                self.fail(id, "no challenge for [authentication]");
                return false;
            };
            let mut parts = first_line(&text).split(' ');
            let method = parts.next().unwrap_or("").to_owned();
            let uri = parts.next().unwrap_or("").to_owned();
            call.nc += 1;
            let cnonce = format!("{:08x}", call.number ^ u64::from(call.nc) << 32);
            let value = ch.answer(&method, &uri, &u, &p, &cnonce, call.nc);
            let name = if *proxy {
                "Proxy-Authorization"
            } else {
                "Authorization"
            };
            text.insert_str(range.start, &format!("{name}: {value}\r\n"));
        }
        let line = first_line(&text).to_owned();
        let bytes = Bytes::from(text);
        let is_request = !line.starts_with("SIP/2.0");
        let method = if is_request {
            line.split(' ').next().unwrap_or("").to_owned()
        } else {
            String::new()
        };
        let two_xx_invite =
            !is_request && line.split(' ').nth(1).is_some_and(|c| c.starts_with('2')) && {
                call.last
                    .as_ref()
                    .and_then(|m| m.cseq())
                    .is_some_and(|c| c.method.as_str() == "INVITE")
            };
        if is_request && method != "ACK" && method != "CANCEL" {
            call.txn = Some((method.clone(), now, 0));
        }
        if method == "INVITE" {
            call.invite = Some(bytes.clone());
        }
        call.last_send = Some(bytes.clone());
        if matches!(self.out, Out::Udp(_)) && ((is_request && method != "ACK") || two_xx_invite) {
            let interval = retrans.unwrap_or(self.opts.t1);
            call.retrans = Some(Retrans {
                bytes: bytes.clone(),
                interval,
                next: now + interval,
                give_up: now + self.opts.t1 * 64,
                capped: method != "INVITE",
            });
        } else if is_request && method == "ACK" {
            call.retrans = None;
        }
        let peer = call.peer;
        self.arm(id);
        self.send_bytes(peer, bytes).await;
        true
    }

    async fn send_bytes(&mut self, peer: Peer, bytes: Bytes) {
        stats::lock(&self.stats).msgs_out += 1;
        match (&mut self.out, peer) {
            (Out::Udp(s), Peer::Udp(to)) => {
                let _ = s.send_to(&bytes, to).await;
            }
            (Out::Tcp(conns), Peer::Tcp(id)) => {
                if let Some(w) = conns.get_mut(&id)
                    && w.write_all(&bytes).await.is_err()
                {
                    conns.remove(&id);
                }
            }
            _ => {}
        }
    }

    fn succeed(&mut self, id: &str, now: Instant) {
        if let Some(c) = self.calls.remove(id) {
            self.ended += 1;
            stats::lock(&self.stats).succeed();
            self.done.insert(
                c.call_id,
                Done {
                    seen: c.seen,
                    last_send: c.last_send,
                    peer: c.peer,
                    until: now + LINGER,
                },
            );
        }
    }

    fn fail(&mut self, id: &str, reason: &str) {
        if let Some(c) = self.calls.remove(id) {
            self.ended += 1;
            stats::lock(&self.stats).fail(reason);
            self.done.insert(
                c.call_id,
                Done {
                    seen: c.seen,
                    last_send: None,
                    peer: c.peer,
                    until: Instant::now() + LINGER,
                },
            );
        }
    }
}

/// Keyword values for one call.
struct Cx<'a> {
    w: &'a Worker,
    call: &'a Call,
    pos: usize,
}

impl Context for Cx<'_> {
    fn value(&self, kw: &Kw, out: &mut String) {
        let (w, c) = (self.w, self.call);
        let server = w.scenario.role == Role::Server;
        let remote = if server { c.peer_addr } else { w.opts.target };
        match kw {
            Kw::Service => out.push_str(&w.opts.service),
            Kw::RemoteIp => push_ip(out, remote.ip()),
            Kw::RemotePort => {
                let _ = write!(out, "{}", remote.port());
            }
            Kw::LocalIp | Kw::MediaIp => push_ip(out, w.local.ip()),
            Kw::LocalPort => {
                let _ = write!(out, "{}", w.local.port());
            }
            Kw::LocalIpType | Kw::MediaIpType => {
                out.push(if w.local.is_ipv6() { '6' } else { '4' })
            }
            Kw::Transport => out.push_str(w.opts.transport.as_str()),
            Kw::CallId => out.push_str(&c.call_id),
            Kw::CallNumber => {
                let _ = write!(out, "{}", c.number);
            }
            Kw::Branch(back) => {
                let _ = write!(
                    out,
                    "z9hG4bK-{}-{}-{}",
                    w.pid,
                    c.number,
                    self.pos.saturating_sub(*back)
                );
            }
            Kw::Cseq => {
                let _ = write!(out, "{}", c.cseq);
            }
            Kw::Last(h) => {
                if let Some(m) = &c.last {
                    let mut first = true;
                    for v in m.headers().get_all(h) {
                        if !first {
                            out.push_str("\r\n");
                        }
                        first = false;
                        let _ = write!(out, "{h}: {v}");
                    }
                }
            }
            Kw::LastRequestUri => {
                if let Some(Message::Request(r)) = &c.last {
                    let _ = write!(out, "{}", r.uri);
                }
            }
            Kw::LastCseqNumber => {
                if let Some(s) = c.last.as_ref().and_then(|m| m.cseq()) {
                    let _ = write!(out, "{}", s.seq);
                }
            }
            Kw::Field(n) => {
                if let Some(v) = w.opts.rows.row(c.row).get(*n) {
                    out.push_str(v);
                }
            }
            Kw::PeerTagParam => {
                if let Some(t) = &c.peer_tag {
                    let _ = write!(out, ";tag={t}");
                }
            }
            Kw::Pid => {
                let _ = write!(out, "{}", w.pid);
            }
            Kw::MediaPort => {
                let _ = write!(out, "{}", w.opts.media_port);
            }
            Kw::Routes => {
                if !c.routes.is_empty() {
                    let _ = write!(out, "Route: {}", c.routes.join(", "));
                }
            }
            Kw::NextUrl => match &c.next_url {
                Some(u) => out.push_str(u),
                None => {
                    let _ = write!(out, "sip:{}@", w.opts.service);
                    push_ip(out, remote.ip());
                    let _ = write!(out, ":{}", remote.port());
                }
            },
            Kw::Len | Kw::Authentication { .. } => {}
        }
    }
}

fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            let _ = write!(out, "{a}");
        }
        IpAddr::V6(a) => {
            let _ = write!(out, "[{a}]");
        }
    }
}

//! The media relay: the sockets and the loop that move a call's RTP and
//! RTCP between its two parties, play the engine's prompts and tones into
//! one of them, and hear DTMF.
//!
//! Each call that carries SDP gets one [`MediaSession`]: two port pairs
//! (side A faces the caller, side B the callee's branches) from the node's
//! [`Ports`], and one task that owns the four sockets. The Call actor
//! drives it with [`MediaSession`] methods (where each party wants its
//! audio, what to play, when the call is up) and hears back through
//! [`CallMsg::Media`]. The task ends when the session is dropped: with
//! the Call, whether it stopped or crashed, so its ports always return to
//! the pool (the leases give them back when the sockets close).
//!
//! Per packet: parse (rtp-rs), latch the sender's address on the first
//! packet after each SDP (symmetric RTP, RFC 4961: the party behind a NAT
//! is answered where it sends from), count, detect telephone-events, and
//! forward through the other side's socket unless the engine is playing
//! to that party. RTCP is forwarded as it is.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use engine::media::dtmf::{self, Detected};
use engine::media::g711::Law;
use engine::media::player::{FRAME, Item, Player};
use engine::media::ports::PortPool;
use engine::media::rtp::{self, Egress, StreamStats};
use engine::sdp::AudioMedia;
use parking_lot::Mutex;
use ractor::ActorRef;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::call::CallMsg;
use crate::metrics as m;

/// Media settings of a node.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Anchor the media of calls (else SDP passes end to end).
    pub enabled: bool,
    /// Address the media sockets bind to.
    pub bind: IpAddr,
    /// Address written in the SDP the parties see; `bind` when unset.
    pub advertise: Option<IpAddr>,
    /// First and last port of the range (pairs: even RTP, odd RTCP). The
    /// default stays below Linux's ephemeral ports (32768–60999): binding
    /// a pair there competes with every outgoing connection of the host,
    /// and at 2,000 calls/s it cost a third of the throughput.
    pub ports: (u16, u16),
    /// A party that sends no RTP for this long once the call is up ends
    /// the call; zero disables the check.
    pub rtp_timeout: Duration,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            enabled: true,
            bind: IpAddr::from([127, 0, 0, 1]),
            advertise: None,
            ports: (16384, 32767),
            rtp_timeout: Duration::from_secs(60),
        }
    }
}

/// Why a session could not start.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Every pair of the range is leased (or could not be bound).
    #[error("no free media ports")]
    Exhausted,
}

/// The node's media ports.
pub struct Ports {
    pool: Mutex<PortPool>,
    cfg: MediaConfig,
}

impl Ports {
    /// The pool of `cfg`'s range.
    pub fn new(cfg: MediaConfig) -> Arc<Ports> {
        let mut pool = PortPool::new(cfg.ports.0, cfg.ports.1);
        pool.rotate(rand::random::<u32>() as usize);
        Arc::new(Ports {
            pool: Mutex::new(pool),
            cfg,
        })
    }

    /// Settings.
    pub fn config(&self) -> &MediaConfig {
        &self.cfg
    }

    /// Free and leased pairs.
    pub fn usage(&self) -> (usize, usize) {
        let p = self.pool.lock();
        (p.free(), p.leased())
    }

    fn publish(&self, p: &PortPool) {
        metrics::gauge!(m::MEDIA_PORTS_LEASED).set(p.leased() as f64);
        metrics::gauge!(m::MEDIA_PORTS_FREE).set(p.free() as f64);
    }

    /// Lease a pair and bind both its sockets. A pair another process
    /// holds is put back at the end of the pool and the next one tried.
    fn lease(self: &Arc<Self>) -> Result<Endpoint, MediaError> {
        let tries = self.pool.lock().free().min(1024);
        for _ in 0..tries {
            let port = {
                let mut p = self.pool.lock();
                let port = p.take().ok_or(MediaError::Exhausted)?;
                self.publish(&p);
                port
            };
            let lease = Lease {
                ports: self.clone(),
                port,
            };
            match (bind(self.cfg.bind, port), bind(self.cfg.bind, port + 1)) {
                (Ok(rtp), Ok(rtcp)) => return Ok(Endpoint { rtp, rtcp, lease }),
                (r, c) => {
                    let e = r.err().or(c.err());
                    debug!(port, error = ?e, "media port pair busy, trying another");
                }
            }
        }
        Err(MediaError::Exhausted)
    }
}

fn bind(ip: IpAddr, port: u16) -> std::io::Result<UdpSocket> {
    let s = std::net::UdpSocket::bind(SocketAddr::new(ip, port))?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s)
}

/// A leased pair; given back when dropped.
struct Lease {
    ports: Arc<Ports>,
    port: u16,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut p = self.ports.pool.lock();
        p.give(self.port);
        self.ports.publish(&p);
    }
}

struct Endpoint {
    rtp: UdpSocket,
    rtcp: UdpSocket,
    lease: Lease,
}

/// Side A faces the caller (or the first party dialled), side B the other.
pub const A: usize = 0;
/// The callee's side.
pub const B: usize = 1;

/// Where DTMF was heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfSource {
    /// RFC 4733 telephone-event packets.
    Rfc4733,
    /// A SIP INFO.
    Info,
}

/// What the relay tells the Call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// A digit ended (key up) on `side`.
    Dtmf {
        /// Side it was heard on.
        side: usize,
        /// The key.
        digit: char,
        /// How long it was held, ms.
        duration_ms: u32,
    },
    /// `side` has sent no RTP for the configured time.
    Timeout {
        /// The silent side.
        side: usize,
    },
    /// What was played to `side` is over (or could not be played).
    PlayDone {
        /// The side.
        side: usize,
    },
}

/// One stream's counters as a call's report shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamReport {
    /// Packets received from this side's party.
    pub packets_in: u64,
    /// Their bytes.
    pub bytes_in: u64,
    /// Missing by sequence number.
    pub lost: u64,
    /// Arrived after a later one.
    pub out_of_order: u64,
    /// Packets relayed from this party to the other.
    pub relayed: u64,
    /// Their bytes.
    pub relayed_bytes: u64,
    /// Frames the engine played to this party.
    pub played: u64,
    /// Where this party's RTP was latched (symmetric RTP).
    pub latched: Option<SocketAddr>,
    /// The engine's RTP port facing this party.
    pub local_port: u16,
}

/// A call's media report: side A then side B.
pub type MediaReport = [StreamReport; 2];

enum Cmd {
    Remote(usize, AudioMedia, Option<std::net::IpAddr>),
    Play(usize, Vec<Item>),
    Stop(usize),
    Answered,
}

/// A call's anchored media. Dropping it ends the relay and frees its ports.
pub struct MediaSession {
    tx: mpsc::UnboundedSender<Cmd>,
    local: [SocketAddr; 2],
    report: Arc<Mutex<MediaReport>>,
}

impl MediaSession {
    /// Lease two port pairs and start relaying for `call`.
    pub fn start(ports: &Arc<Ports>, call: ActorRef<CallMsg>) -> Result<MediaSession, MediaError> {
        let a = ports.lease()?;
        let b = ports.lease()?;
        let advertise = ports.cfg.advertise.unwrap_or(ports.cfg.bind);
        let local = [
            SocketAddr::new(advertise, a.lease.port),
            SocketAddr::new(advertise, b.lease.port),
        ];
        let report = Arc::new(Mutex::new(MediaReport::default()));
        {
            let mut r = report.lock();
            r[A].local_port = a.lease.port;
            r[B].local_port = b.lease.port;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let relay = Relay {
            eps: [a, b],
            sides: [Side::new(), Side::new()],
            call,
            report: report.clone(),
            timeout: ports.cfg.rtp_timeout,
            answered: false,
        };
        tokio::spawn(relay.run(rx));
        Ok(MediaSession { tx, local, report })
    }

    /// The engine's address and RTP port facing `side`.
    pub fn local(&self, side: usize) -> SocketAddr {
        self.local[side]
    }

    /// Where `side`'s party wants its audio (from its SDP), and the address
    /// its signalling comes from: the first packet is latched only from one
    /// of those two addresses (a party behind NAT sends from the second).
    pub fn remote(&self, side: usize, media: AudioMedia, signalling: Option<std::net::IpAddr>) {
        let _ = self.tx.send(Cmd::Remote(side, media, signalling));
    }

    /// Play `items` to `side` (instead of the other party's audio).
    pub fn play(&self, side: usize, items: Vec<Item>) {
        let _ = self.tx.send(Cmd::Play(side, items));
    }

    /// Stop playing to `side`: it hears the other party again.
    pub fn stop(&self, side: usize) {
        let _ = self.tx.send(Cmd::Stop(side));
    }

    /// The call is up: from now on a silent party times out.
    pub fn answered(&self) {
        let _ = self.tx.send(Cmd::Answered);
    }

    /// The counters so far.
    pub fn report(&self) -> MediaReport {
        self.report.lock().clone()
    }
}

struct Side {
    remote: Option<AudioMedia>,
    /// Where the party's signalling comes from.
    signalling: Option<std::net::IpAddr>,
    latched_rtp: Option<SocketAddr>,
    latched_rtcp: Option<SocketAddr>,
    stats: StreamStats,
    dtmf: Detector,
    egress: Egress,
    player: Option<(Player, u8)>,
    last_rx: Option<Instant>,
    timed_out: bool,
}

type Detector = dtmf::Detector;

impl Side {
    fn new() -> Side {
        Side {
            remote: None,
            signalling: None,
            latched_rtp: None,
            latched_rtcp: None,
            stats: StreamStats::default(),
            dtmf: Detector::default(),
            egress: Egress::new(8, (rand::random(), rand::random(), rand::random())),
            player: None,
            last_rx: None,
            timed_out: false,
        }
    }

    /// Whether a first packet from `from` may be latched as this party's:
    /// it comes from the address its SDP or its signalling names. Anyone
    /// else who sends first (RTP bleed) is not relayed and not latched.
    fn may_latch(&self, from: SocketAddr) -> bool {
        let ip = from.ip().to_canonical();
        let sdp = self
            .remote
            .as_ref()
            .map(|r| r.addr.to_canonical())
            .filter(|a| !a.is_unspecified());
        sdp == Some(ip) || self.signalling.map(|s| s.to_canonical()) == Some(ip)
    }

    /// Where to send this party's RTP: the latched source, else its SDP.
    fn rtp_dest(&self) -> Option<SocketAddr> {
        let r = self.remote.as_ref()?;
        if r.port == 0 || !r.direction.receives() {
            return None;
        }
        self.latched_rtp.or(Some(SocketAddr::new(r.addr, r.port)))
    }

    fn rtcp_dest(&self) -> Option<SocketAddr> {
        let r = self.remote.as_ref()?;
        if r.port == 0 {
            return None;
        }
        if let Some(a) = self.latched_rtcp {
            return Some(a);
        }
        if r.rtcp_mux {
            return self.rtp_dest();
        }
        Some(match self.latched_rtp {
            Some(l) => SocketAddr::new(l.ip(), l.port().wrapping_add(1)),
            None => SocketAddr::new(r.rtcp.0, r.rtcp.1),
        })
    }
}

struct Relay {
    eps: [Endpoint; 2],
    sides: [Side; 2],
    call: ActorRef<CallMsg>,
    report: Arc<Mutex<MediaReport>>,
    timeout: Duration,
    answered: bool,
}

thread_local! {
    /// The receive buffer of the relay sessions running on this thread.
    static SCRATCH: std::cell::RefCell<[u8; 2048]> = const { std::cell::RefCell::new([0; 2048]) };
}

/// Most datagrams read from one socket per wake-up.
const BURST: usize = 32;

/// Counters not yet added to the process metrics.
#[derive(Default)]
struct Unflushed {
    packets: u64,
    bytes: u64,
    dropped: u64,
}

impl Relay {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        metrics::gauge!(m::MEDIA_SESSIONS).increment(1.0);
        // Created when something is played: most calls never need it.
        let mut frames: Option<tokio::time::Interval> = None;
        let mut check = tokio::time::interval(Duration::from_secs(1));
        let mut unflushed = Unflushed::default();
        loop {
            let playing = self.sides.iter().any(|s| s.player.is_some());
            if playing && frames.is_none() {
                let mut f = tokio::time::interval(Duration::from_millis(20));
                f.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                frames = Some(f);
            } else if !playing {
                frames = None;
            }
            // Readiness, then non-blocking reads into one scratch buffer
            // per thread: a session holds no packet buffer of its own.
            tokio::select! {
                r = self.eps[A].rtp.readable() => if r.is_ok() { self.drain(A, false, &mut unflushed) },
                r = self.eps[B].rtp.readable() => if r.is_ok() { self.drain(B, false, &mut unflushed) },
                r = self.eps[A].rtcp.readable() => if r.is_ok() { self.drain(A, true, &mut unflushed) },
                r = self.eps[B].rtcp.readable() => if r.is_ok() { self.drain(B, true, &mut unflushed) },
                cmd = rx.recv() => match cmd {
                    Some(c) => self.on_cmd(c),
                    None => break,
                },
                _ = async { if let Some(f) = frames.as_mut() { f.tick().await; } }, if playing => self.play_frames(),
                _ = check.tick() => {
                    self.check_silence();
                    flush(&mut unflushed);
                }
            }
        }
        flush(&mut unflushed);
        let r = self.report.lock();
        for s in r.iter() {
            metrics::counter!(m::RTP_LOST).increment(s.lost);
            metrics::counter!(m::RTP_OUT_OF_ORDER).increment(s.out_of_order);
        }
        metrics::gauge!(m::MEDIA_SESSIONS).decrement(1.0);
    }

    /// Read what is waiting on one socket (at most a burst, to stay fair
    /// to the other calls on this thread) and relay it.
    fn drain(&mut self, side: usize, rtcp: bool, u: &mut Unflushed) {
        SCRATCH.with_borrow_mut(|buf| {
            for _ in 0..BURST {
                let ep = &self.eps[side];
                let sock = if rtcp { &ep.rtcp } else { &ep.rtp };
                match sock.try_recv_from(&mut buf[..]) {
                    Ok((n, from)) if rtcp => self.on_rtcp(side, &buf[..n], from),
                    Ok((n, from)) => self.on_rtp(side, &mut buf[..n], from, u),
                    // WouldBlock: drained; ICMP errors and the like: next wake.
                    Err(_) => break,
                }
            }
        });
    }

    fn emit(&self, e: MediaEvent) {
        let _ = self.call.cast(CallMsg::Media(e));
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Remote(side, media, signalling) => {
                let s = &mut self.sides[side];
                s.signalling = signalling.or(s.signalling);
                // A new SDP may move the party: latch again.
                if s.remote.as_ref().map(|r| (r.addr, r.port)) != Some((media.addr, media.port)) {
                    s.latched_rtp = None;
                    s.latched_rtcp = None;
                }
                s.remote = Some(media);
            }
            Cmd::Play(side, items) => {
                let s = &mut self.sides[side];
                let law = s
                    .remote
                    .as_ref()
                    .filter(|r| !r.secure)
                    .and_then(|r| r.g711())
                    .and_then(Law::of_payload_type);
                match law {
                    Some(law) => s.player = Some((Player::new(items, law), law.payload_type())),
                    None => {
                        warn!(side, "cannot play: the party has no G.711 or uses SRTP");
                        self.emit(MediaEvent::PlayDone { side });
                    }
                }
            }
            Cmd::Stop(side) => self.sides[side].player = None,
            Cmd::Answered => {
                self.answered = true;
                let now = Instant::now();
                for s in &mut self.sides {
                    s.last_rx = Some(now);
                }
            }
        }
    }

    fn on_rtp(&mut self, side: usize, pkt: &mut [u8], from: SocketAddr, u: &mut Unflushed) {
        let now = Instant::now();
        let peer = 1 - side;
        {
            let s = &mut self.sides[side];
            match s.latched_rtp {
                None if !s.may_latch(from) => {
                    u.dropped += 1;
                    return;
                }
                None => {
                    s.latched_rtp = Some(from);
                    self.report.lock()[side].latched = Some(from);
                }
                Some(l) if l != from => {
                    // Not the party this side latched on: not relayed.
                    u.dropped += 1;
                    return;
                }
                Some(_) => {}
            }
            s.last_rx = Some(now);
        }
        if rtp::is_rtcp(pkt) {
            // RTCP multiplexed on the RTP port (RFC 5761).
            if let Some(dest) = self.sides[peer].rtp_dest() {
                let _ = self.eps[peer].rtp.try_send_to(pkt, dest);
            }
            return;
        }
        let Ok((h, payload)) = rtp::parse(pkt) else {
            u.dropped += 1;
            return;
        };
        let s = &mut self.sides[side];
        s.stats.update(&h, pkt.len());
        let te = s.remote.as_ref().and_then(|r| r.telephone_event);
        let mut digits = Vec::new();
        if te == Some(h.payload_type) {
            digits = s.dtmf.on_packet(h.timestamp, payload, 8);
        }
        let relayed = self.forward(peer, now, &h, pkt);
        {
            // One lock a packet: what came in, and whether it went on.
            let stats = &self.sides[side].stats;
            let mut r = self.report.lock();
            let st = &mut r[side];
            st.packets_in = stats.packets;
            st.bytes_in = stats.bytes;
            st.lost = stats.lost();
            st.out_of_order = stats.out_of_order;
            if relayed {
                st.relayed += 1;
                st.relayed_bytes += pkt.len() as u64;
            }
        }
        if relayed {
            u.packets += 1;
            u.bytes += pkt.len() as u64;
        }
        for d in digits {
            if let Detected::End { digit, duration_ms } = d {
                self.emit(MediaEvent::Dtmf {
                    side,
                    digit,
                    duration_ms,
                });
            }
        }
    }

    /// Send a packet of the other party on to `peer`, unless the engine is
    /// playing to it or it has no address yet; whether it went.
    fn forward(&mut self, peer: usize, now: Instant, h: &rtp::Header, pkt: &mut [u8]) -> bool {
        let p = &mut self.sides[peer];
        if p.player.is_some() {
            return false;
        }
        let Some(dest) = p.rtp_dest() else {
            return false;
        };
        p.egress.relay(now.into_std(), h, pkt);
        // A full socket buffer drops the packet rather than delaying the
        // ones behind it: late audio is no better than lost audio.
        self.eps[peer].rtp.try_send_to(pkt, dest).is_ok()
    }

    fn on_rtcp(&mut self, side: usize, pkt: &[u8], from: SocketAddr) {
        let s = &mut self.sides[side];
        if s.latched_rtcp.is_none() && s.may_latch(from) {
            s.latched_rtcp = Some(from);
        }
        if s.latched_rtcp != Some(from) {
            return;
        }
        let peer = 1 - side;
        if let Some(dest) = self.sides[peer].rtcp_dest() {
            let _ = self.eps[peer].rtcp.try_send_to(pkt, dest);
        }
    }

    fn play_frames(&mut self) {
        let now = Instant::now();
        let mut buf = Vec::with_capacity(12 + FRAME);
        for side in [A, B] {
            let s = &mut self.sides[side];
            let Some((player, pt)) = s.player.as_mut() else {
                continue;
            };
            let pt = *pt;
            let Some(frame) = player.next_frame() else {
                s.player = None;
                self.emit(MediaEvent::PlayDone { side });
                continue;
            };
            let h = s.egress.engine_frame(now.into_std(), pt, FRAME as u32);
            rtp::build(&h, &frame, &mut buf);
            if let Some(dest) = s.rtp_dest() {
                let _ = self.eps[side].rtp.try_send_to(&buf, dest);
                self.report.lock()[side].played += 1;
            }
        }
    }

    fn check_silence(&mut self) {
        if !self.answered || self.timeout.is_zero() {
            return;
        }
        let now = Instant::now();
        for side in [A, B] {
            let s = &mut self.sides[side];
            let sends = s
                .remote
                .as_ref()
                .is_some_and(|r| r.port != 0 && r.direction.sends());
            let silent = s
                .last_rx
                .is_some_and(|t| now.duration_since(t) >= self.timeout);
            if !sends {
                // On hold: silence is expected; count from when it resumes.
                s.last_rx = Some(now);
            } else if silent && !s.timed_out {
                s.timed_out = true;
                self.emit(MediaEvent::Timeout { side });
            }
        }
    }
}

fn flush(u: &mut Unflushed) {
    if u.packets > 0 {
        metrics::counter!(m::RTP_PACKETS).increment(u.packets);
        metrics::counter!(m::RTP_BYTES).increment(u.bytes);
    }
    if u.dropped > 0 {
        metrics::counter!(m::RTP_DROPPED).increment(u.dropped);
    }
    *u = Unflushed::default();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(sdp: &str) -> Side {
        let mut s = Side::new();
        s.remote = engine::sdp::audio(sdp).ok().flatten();
        s
    }

    #[test]
    fn rtp_and_rtcp_go_where_the_party_said_until_it_is_heard_from() {
        let mut s = side("v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n");
        assert_eq!(s.rtp_dest(), Some("192.0.2.1:4000".parse().unwrap()));
        assert_eq!(s.rtcp_dest(), Some("192.0.2.1:4001".parse().unwrap()));
        // Behind a NAT: RTP came from elsewhere, so RTCP goes beside it.
        s.latched_rtp = Some("198.51.100.7:61000".parse().unwrap());
        assert_eq!(s.rtp_dest(), Some("198.51.100.7:61000".parse().unwrap()));
        assert_eq!(s.rtcp_dest(), Some("198.51.100.7:61001".parse().unwrap()));
        s.latched_rtcp = Some("198.51.100.7:62000".parse().unwrap());
        assert_eq!(s.rtcp_dest(), Some("198.51.100.7:62000".parse().unwrap()));
    }

    #[test]
    fn muxed_rtcp_shares_the_rtp_port_and_a_held_party_gets_no_rtp() {
        let s = side("v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp-mux\r\n");
        assert_eq!(s.rtcp_dest(), Some("192.0.2.1:4000".parse().unwrap()));
        let held = side("v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\na=sendonly\r\n");
        assert_eq!(held.rtp_dest(), None, "it does not want to receive");
        assert!(held.rtcp_dest().is_some(), "RTCP still flows on hold");
        let refused = side("v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 0 RTP/AVP 0\r\n");
        assert_eq!((refused.rtp_dest(), refused.rtcp_dest()), (None, None));
        assert_eq!(Side::new().rtp_dest(), None, "nothing known yet");
    }

    #[test]
    fn only_the_sdp_or_signalling_address_may_be_latched() {
        let at = |a: &str| a.parse::<SocketAddr>().unwrap();
        let mut s = side("v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n");
        assert!(s.may_latch(at("192.0.2.1:4000")));
        assert!(
            s.may_latch(at("192.0.2.1:7000")),
            "another port of the party"
        );
        assert!(!s.may_latch(at("203.0.113.9:4000")), "a stranger");
        s.signalling = Some("198.51.100.7".parse().unwrap());
        assert!(s.may_latch(at("198.51.100.7:61000")), "behind NAT");
        let held = side("v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n");
        assert!(!held.may_latch(at("0.0.0.0:4000")));
        assert!(
            !Side::new().may_latch(at("192.0.2.1:4000")),
            "nothing known yet"
        );
        let v6 = side("v=0\r\nc=IN IP6 ::ffff:192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n");
        assert!(
            v6.may_latch(at("192.0.2.1:4000")),
            "an IPv4-mapped address is the IPv4 one"
        );
    }
}

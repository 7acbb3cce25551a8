//! The Call actor: one on-net call through the B2BUA.
//!
//! It starts the caller's UAS leg and one UAC leg per registered contact of
//! the callee (parallel forking), relays provisional responses, picks the
//! first 2xx and cancels the other branches (RFC 3261 §16.7 behaviour for a
//! B2BUA), maps failures to one final answer, passes in-dialog requests
//! (re-INVITE, INFO, UPDATE, ...) between the bridged legs, and ends the
//! call when either side hangs up.
//!
//! Supervised by its center's Calls as a temporary child (never restarted). Its Legs
//! are significant children: a Leg failure fails the Call, and the Calls supervisor
//! then releases every leg from the snapshots it holds.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use engine::sip::msg::{HasHeaders, Method, NameAddr, Request, Uri};
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tracing::{debug, info};

use crate::config::NodeConfig;
use crate::leg::{Dial, Leg, LegArgs, LegEvent, LegId, LegMsg, Role, SharedSnapshot};
use crate::media::{self, DtmfSource, MediaEvent, MediaReport, MediaSession};
use crate::metrics as m;
use crate::transport::{Flow, Transport};
use crate::trunk::{ChannelGuard, TrunkLive};
use engine::media::player::{Item, Prompt};
use engine::media::tone::Cadence;

/// Messages of a Call.
#[derive(Debug)]
pub enum CallMsg {
    /// An event from one of its legs.
    Leg(LegId, LegEvent),
    /// No branch answered in time.
    NoAnswer,
    /// The call reached its maximum duration.
    MaxDuration,
    /// The node is shutting down: release every leg.
    Hangup,
    /// The media relay heard something.
    Media(MediaEvent),
    /// Time to extend the prepaid hold of one of its charged legs.
    Funds(Metered),
    /// The funds run out soon: warn the payer.
    FundsWarning,
    /// The funds have run out: release the call.
    FundsOut,
}

/// Which of a call's separately charged legs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metered {
    /// The bridged leg (the callee's), charged from the call's answer
    /// under the call's id.
    Bridged,
    /// A placed call's callback leg (its first party), charged from its
    /// own answer under [`schema::model::callback_key`].
    Callback,
}

/// A placed call's callback leg as the call reports it.
#[derive(Debug, Clone)]
pub struct CallbackReport {
    /// The number as asked.
    pub number: String,
    /// Where it was rated (the number, or where its forward goes).
    pub destination: String,
    /// Who pays for the leg and at what price, when it is charged.
    pub charge: Option<crate::billing::Charge>,
    /// Seconds from its answer to the end.
    pub talked_secs: u32,
    /// Its answer, Unix ms.
    pub answer_ms: Option<u64>,
}

/// What is known of a call when it is over: the seed of its CDR.
#[derive(Debug, Clone)]
pub struct CallReport {
    /// Unique per call attempt.
    pub call_id: String,
    /// Who pays and at what price, when it is charged.
    pub charge: Option<crate::billing::Charge>,
    /// Seconds from answer to end.
    pub talked_secs: u32,
    /// Owed to the trunk that carried it, micro-units.
    pub cost_micros: i64,
    /// Setup, first ringing, answer, end: Unix ms.
    pub setup_ms: u64,
    /// First 18x.
    pub ring_ms: Option<u64>,
    /// Answer.
    pub answer_ms: Option<u64>,
    /// End.
    pub end_ms: u64,
    /// Final status to the caller.
    pub status: u16,
    /// Who hung up.
    pub disconnect: Option<&'static str>,
    /// Caller as authenticated.
    pub caller: String,
    /// Callee as dialled.
    pub callee: String,
    /// answered, busy, cancelled, failed, no_answer, released, rtp_timeout...
    pub result: &'static str,
    /// Why it ended, when the engine ended it.
    pub cause: Option<String>,
    /// Trunks tried.
    pub attempts: Vec<Attempt>,
    /// Media counters (anchored calls).
    pub media: Option<MediaReport>,
    /// DTMF digits heard, in order, with where (`A`/`B`) and how (`r`
    /// RFC 4733, `i` INFO): e.g. `A:1r A:2i`.
    pub digits: Vec<(usize, char, DtmfSource)>,
    /// A placed call's callback leg.
    pub callback: Option<CallbackReport>,
    /// The carrier's trunk it came in from.
    pub peer: Option<String>,
    /// The calling node's id of a call a sibling handed over.
    pub correlation: Option<String>,
    /// What that carrier pays for it (its inbound deck), micro-units.
    pub peer_micros: i64,
}

/// One branch of the fork.
#[derive(Debug, Clone)]
pub struct Target {
    /// Request-URI (the registered contact).
    pub uri: Uri,
    /// Where to send.
    pub flow: Flow,
    /// The trunk it goes through, when it is one: its name and live state
    /// (a channel is taken when the branch starts).
    pub trunk: Option<(String, Arc<TrunkLive>)>,
    /// The caller's identity as this target is shown it (trunks: the
    /// caller's number in the trunk's format, RFC 3325 headers).
    pub presented: Option<engine::routing::Presented>,
    /// Username and password for the target's digest challenge (trunks).
    pub credentials: Option<(String, String)>,
    /// Why least-cost routing chose it, when it did.
    pub route: Option<RouteNote>,
    /// Audio codecs the target accepts (a trunk's policy); empty: any.
    pub codecs: Arc<[String]>,
    /// The signed marker of a call sent to the sibling node that holds the
    /// callee's phone (`X-Switchboard-Node`, see [`crate::cluster`]).
    pub hop: Option<String>,
}

/// A least-cost candidate's place and price, kept with its attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteNote {
    /// 1 for the cheapest usable candidate.
    pub rank: usize,
    /// Length of the deck prefix that matched.
    pub prefix_len: usize,
    /// Rated cost per minute, micro-units.
    pub per_minute: i64,
    /// The trunk's whole rate (fee and increments), for the call's cost.
    pub rate: engine::lcr::Rate,
}

/// One trunk tried for a call, as the call's log (and its CDR) shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The branch.
    pub leg: LegId,
    /// The trunk.
    pub trunk: String,
    /// The Request-URI it was sent.
    pub uri: String,
    /// Its rank and price.
    pub route: Option<RouteNote>,
    /// How it ended: `None` while it runs, `Some(200)` answered, another
    /// status failed.
    pub status: Option<u16>,
    /// Whether the INVITE went out (not when the trunk was full or down by
    /// then, or has none of the offer's codecs).
    pub sent: bool,
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} <{}>", self.trunk, self.uri)?;
        if let Some(r) = self.route {
            write!(
                f,
                " rank {} prefix {} {}.{:06}/min",
                r.rank,
                r.prefix_len,
                r.per_minute / 1_000_000,
                r.per_minute % 1_000_000
            )?;
        }
        match (self.status, self.sent) {
            (None, _) => f.write_str(" → no final answer"),
            (Some(s), true) => write!(f, " → {s}"),
            (Some(s), false) => write!(f, " → {s} (not sent)"),
        }
    }
}

/// How a call begins.
pub enum Start {
    /// A caller's INVITE: leg 0 answers it.
    Invite(Request),
    /// The engine calls a first party itself (leg 0 dials it), then the
    /// targets (RFC 3725 third-party call control).
    Originate(Box<FirstParty>),
}

/// The party an originated call dials first, and what it hears.
pub struct FirstParty {
    /// Where to reach it.
    pub target: Target,
    /// Its number as asked.
    pub number: String,
    /// Played once it answers, one after the other.
    pub prompts: Vec<Prompt>,
    /// Then this ringback until the other party answers.
    pub ringback: &'static Cadence,
    /// Nobody else is dialled: the call is an announcement (a code read
    /// out) and ends once the prompts are played.
    pub announce: bool,
    /// Where its leg is rated: its number, or where that number's forward
    /// goes.
    pub destination: String,
    /// Who pays for its leg, at what price, and the seconds its
    /// authorisation holds: charged from its own answer (it hears the
    /// prompt and ringback, then the call) under
    /// [`schema::model::callback_key`].
    pub billing: Option<(crate::billing::Charge, u32)>,
    /// Its answer time (Unix ms, 0 before), shared with the supervisor so
    /// that a crashed call is still charged for the leg.
    pub answered_ms: Arc<std::sync::atomic::AtomicU64>,
}

/// What a Call is started with.
pub struct CallArgs {
    /// Node configuration.
    pub cfg: Arc<NodeConfig>,
    /// Transport.
    pub transport: Arc<Transport>,
    /// The caller's INVITE, or the party the engine dials first.
    pub start: Start,
    /// Where the caller's INVITE came from (the first party's flow when
    /// the engine dials it).
    pub flow: Flow,
    /// Caller's number.
    pub caller: String,
    /// Callee's number.
    pub callee: String,
    /// The callee's contacts.
    pub targets: Vec<Target>,
    /// Its supervisor, told when the call is over.
    pub calls: ActorRef<crate::calls::CallsMsg>,
    /// Snapshots shared with the Calls supervisor: index 0 for the caller's leg, then
    /// one per target.
    pub snapshots: Vec<SharedSnapshot>,
    /// `None`: ring every target at once (forking). `Some(codes)`: try the
    /// targets one after another (trunk hunting), moving on after a final
    /// status in `codes`.
    pub hunt: Option<Vec<u16>>,
    /// Unique per call attempt (CDR key, ledger key, hold key).
    pub call_id: String,
    /// Who pays, at what price, and the seconds its authorisation holds.
    pub billing: Option<(crate::billing::Charge, u32)>,
    /// The ledger.
    pub store: Arc<dyn schema::store::Store>,
    /// Prepaid holds.
    pub wallets: Arc<crate::billing::Wallets>,
    /// The answer time (Unix ms, 0 before), shared with the supervisor so
    /// that a crashed call is still charged for what it talked.
    pub answered_ms: Arc<std::sync::atomic::AtomicU64>,
    /// The carrier a call came in from (interconnect), when it did.
    pub peer: Option<PeerCall>,
}

/// A call from a carrier's trunk.
pub struct PeerCall {
    /// The trunk's name.
    pub trunk: String,
    /// The caller's name as the carrier gave it (From's display name).
    pub display: Option<String>,
    /// The trunk channel it takes (inbound and outbound share them).
    pub channel: ChannelGuard,
    /// What the carrier pays for it (its inbound deck's rate), if priced.
    pub rate: Option<engine::lcr::Rate>,
    /// The trunk's audio codecs: the answer it gets is narrowed to them.
    pub codecs: Arc<[String]>,
    /// The calling node's id of the call, when a sibling handed it over.
    pub correlation: Option<String>,
}

impl CallArgs {
    /// Whom the call counts against in admission: its caller and, for a
    /// call that came in, the address its INVITE came from.
    pub fn counted(&self) -> crate::admission::Counted {
        crate::admission::Counted {
            member: self.caller.clone(),
            source: matches!(self.start, Start::Invite(_)).then(|| self.flow.addr()),
        }
    }
}

/// Digits kept per call for its report; more are relayed and counted only.
const MAX_DIGITS: usize = 256;

/// What every outgoing branch of a call shares.
struct Branches {
    cfg: Arc<NodeConfig>,
    transport: Arc<Transport>,
    from: NameAddr,
    to: NameAddr,
    body: Option<(bytes::Bytes, String)>,
    max_forwards: u8,
    snapshots: Vec<SharedSnapshot>,
}

impl Branches {
    /// The INVITE of one branch: the caller as this target is to see it.
    /// The INVITE for `target`, or the status it fails with before it is
    /// sent (488: the offer has none of the trunk's codecs).
    fn dial(&self, target: &Target) -> Result<Dial, (u16, String)> {
        self.dial_with(target, &self.to, self.body.as_ref())
    }

    /// The INVITE for `target` addressed `to`, offering `body`.
    fn dial_with(
        &self,
        target: &Target,
        to: &NameAddr,
        body: Option<&(bytes::Bytes, String)>,
    ) -> Result<Dial, (u16, String)> {
        let body = match body {
            Some((sdp, ct)) if !target.codecs.is_empty() => {
                let text =
                    std::str::from_utf8(sdp).map_err(|_| (488, "offer is not UTF-8".to_owned()))?;
                let narrowed = engine::sdp::restrict_codecs(text, &target.codecs)
                    .map_err(|e| (488, e.to_string()))?;
                Some((bytes::Bytes::from(narrowed), ct.clone()))
            }
            other => other.cloned(),
        };
        let mut from = self.from.clone();
        let mut extra = Vec::new();
        if let Some(p) = &target.presented {
            let host = from.uri.host.clone();
            let port = from.uri.port;
            from = NameAddr {
                display: (p.from_user == "anonymous").then(|| "Anonymous".to_owned()),
                uri: Uri::sip(Some(&p.from_user), &host, port),
                params: Vec::new(),
            };
            if let Some(a) = &p.asserted {
                extra.push(("P-Asserted-Identity", format!("<sip:{a}@{host}>")));
            }
            if let Some(privacy) = p.privacy {
                extra.push(("Privacy", privacy.to_owned()));
            }
        }
        if let Some(hop) = &target.hop {
            extra.push((engine::cluster::HOP_HEADER, hop.clone()));
        }
        Ok(Dial {
            target: target.uri.clone(),
            from,
            to: to.clone(),
            body,
            max_forwards: self.max_forwards,
            extra,
            credentials: target.credentials.clone(),
        })
    }

    async fn spawn(
        &self,
        myself: &ActorRef<CallMsg>,
        id: LegId,
        target: &Target,
    ) -> Result<(ActorRef<LegMsg>, Option<ChannelGuard>), (u16, String)> {
        let dial = self.dial(target)?;
        let guard = match &target.trunk {
            Some((name, live)) => match live.try_acquire() {
                Some(g) => {
                    metrics::counter!(m::TRUNK_ATTEMPTS, "trunk" => name.clone()).increment(1);
                    Some(g)
                }
                None => return Err((503, format!("trunk {name} is down or full"))),
            },
            None => None,
        };
        let snapshot = self
            .snapshots
            .get(id as usize)
            .cloned()
            .ok_or((500, "no snapshot for a branch".to_owned()))?;
        let (b, _) = Actor::spawn_linked(
            None,
            Leg,
            LegArgs {
                id,
                call: myself.clone(),
                cfg: self.cfg.clone(),
                transport: self.transport.clone(),
                flow: target.flow,
                role: Role::Uac(dial),
                snapshot,
            },
            myself.get_cell(),
        )
        .await
        .map_err(|e| (500, e.to_string()))?;
        Ok((b, guard))
    }
}

/// The Call actor.
pub struct Call;

/// The Call's state.
pub struct CallState {
    /// How to start another branch.
    branches: Branches,
    /// Targets not tried yet (hunting).
    queue: VecDeque<(LegId, Target)>,
    /// Failover statuses when hunting.
    hunt: Option<Vec<u16>>,
    /// Trunk channels held by branches, given back when they end.
    channels: HashMap<LegId, ChannelGuard>,
    /// Trunks tried, in order.
    attempts: Vec<Attempt>,
    callee: String,
    cfg: Arc<NodeConfig>,
    legs: HashMap<LegId, ActorRef<LegMsg>>,
    /// The address each leg's signalling goes to or comes from, by leg id
    /// (the caller's first): media is latched only from it or its SDP's.
    signalling: Vec<std::net::IpAddr>,
    /// Branches still waiting for a final response.
    pending: HashSet<LegId>,
    winner: Option<LegId>,
    failures: Vec<u16>,
    /// The caller's leg has had its final answer.
    decided: bool,
    /// Forwarded in-dialog requests: our token → (origin leg, its token).
    forwards: HashMap<u64, (LegId, u64)>,
    next_token: u64,
    result: &'static str,
    /// Legs that reported [`LegEvent::Ended`].
    ended: HashSet<LegId>,
    leg_count: usize,
    /// Every leg has ended: the call no longer counts as active.
    over: bool,
    calls: ActorRef<crate::calls::CallsMsg>,
    /// Timer tasks (no answer, maximum duration); aborted when the call
    /// stops so that they do not keep the actor's cell alive.
    timers: Vec<tokio::task::JoinHandle<Result<(), ractor::MessagingErr<CallMsg>>>>,
    caller: String,
    /// Whom the call counts against in admission.
    counted: crate::admission::Counted,
    /// The anchored media; dropped (ports freed) when the call is over.
    media: Option<MediaSession>,
    /// Its counters, kept when the session is dropped.
    media_report: Option<MediaReport>,
    digits: Vec<(usize, char, DtmfSource)>,
    cause: Option<String>,
    /// An originated call: the party dialled first (leg 0) and what it hears.
    first: Option<Box<FirstParty>>,
    call_id: String,
    billing: Option<Billing>,
    /// A placed call's callback leg, charged by itself.
    callback: Option<Billing>,
    store: Arc<dyn schema::store::Store>,
    wallets: Arc<crate::billing::Wallets>,
    answered_ms: Arc<std::sync::atomic::AtomicU64>,
    setup_ms: u64,
    ring_ms: Option<u64>,
    answered_at: Option<tokio::time::Instant>,
    status: Option<u16>,
    disconnect: Option<&'static str>,
    /// The carrier's trunk a call came in from, and what it pays for it.
    peer: Option<(String, Option<engine::lcr::Rate>)>,
    /// That trunk's codecs (empty: any).
    peer_codecs: Arc<[String]>,
    /// The calling node's id of a call a sibling handed over.
    correlation: Option<String>,
}

/// A charged leg's prepaid state.
struct Billing {
    /// Its hold and ledger key.
    key: String,
    charge: crate::billing::Charge,
    /// Talk time its hold covers, from its answer.
    held_secs: u32,
    /// Its answer: talk time runs from here.
    since: Option<tokio::time::Instant>,
}

impl Billing {
    /// Seconds talked by now (a started second counts), never more than
    /// it holds (the release at the end of its hold takes milliseconds).
    fn talked(&self) -> u32 {
        self.since
            .map_or(0, |a| a.elapsed().as_secs_f64().ceil() as u32)
            .min(self.held_secs)
    }
}

/// How long before its hold runs out a call tries to extend it.
const EXTEND_MARGIN: u32 = 10;

const CALLER: LegId = 0;

impl Actor for Call {
    type Msg = CallMsg;
    type State = CallState;
    type Arguments = CallArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<CallMsg>,
        args: CallArgs,
    ) -> Result<CallState, ActorProcessingErr> {
        let counted = args.counted();
        let (invite, mut first) = match args.start {
            Start::Invite(r) => (Some(r), None),
            Start::Originate(f) => (None, Some(f)),
        };
        args.transport.admission.call_started(&counted);
        let mut legs = HashMap::new();
        let local = args.transport.local();
        let host = local.ip().to_string();
        // The caller's display name is kept only when its From is the
        // authenticated member: another From's name is not verified.
        let (peer, inbound_channel, peer_codecs, correlation) = match args.peer {
            Some(p) => (
                Some((p.trunk, p.display, p.rate)),
                Some(p.channel),
                p.codecs,
                p.correlation,
            ),
            None => (None, None, Arc::from(Vec::new()), None),
        };
        let display = match &peer {
            // A carrier's caller: the name it gave (its number is `caller`).
            Some((_, d, _)) => d.clone(),
            None => invite
                .as_ref()
                .and_then(|i| i.from_hdr())
                .filter(|f| f.uri.user.as_deref() == Some(args.caller.as_str()))
                .and_then(|f| f.display),
        };
        let from = NameAddr {
            display,
            uri: Uri::sip(Some(&args.caller), &host, Some(local.port())),
            params: Vec::new(),
        };
        let to = NameAddr {
            display: None,
            uri: Uri::sip(Some(&args.callee), &host, Some(local.port())),
            params: Vec::new(),
        };
        let max_forwards = invite
            .as_ref()
            .and_then(|i| i.headers.get("Max-Forwards"))
            .and_then(|v| v.trim().parse::<u8>().ok())
            .unwrap_or(70)
            .saturating_sub(1);
        let mut body = invite.as_ref().filter(|i| !i.body.is_empty()).map(|i| {
            let ct = i
                .headers
                .get("Content-Type")
                .unwrap_or("application/sdp")
                .to_owned();
            (i.body.clone(), ct)
        });
        // Anchor the media: the branches are offered the engine's side B.
        let mut refused = None;
        let mut session = None;
        if let (Some(ports), Some((sdp, ct))) = (&args.transport.media, &body)
            && ports.config().enabled
            && is_sdp(ct)
        {
            match offered_audio(sdp) {
                Ok(Some(audio)) => match MediaSession::start(ports, myself.clone()) {
                    Ok(m) => {
                        let text = String::from_utf8_lossy(sdp);
                        let local = m.local(media::B);
                        body = Some((
                            bytes::Bytes::from(engine::sdp::anchor(
                                &text,
                                local.ip(),
                                local.port(),
                            )),
                            ct.clone(),
                        ));
                        m.remote(media::A, audio, Some(args.flow.addr().ip()));
                        session = Some(m);
                    }
                    Err(e) => refused = Some((503, e.to_string())),
                },
                Ok(None) => {}
                Err(e) => refused = Some((488, e)),
            }
        }
        let mut branches = Branches {
            cfg: args.cfg.clone(),
            transport: args.transport.clone(),
            from,
            to,
            body,
            max_forwards,
            snapshots: args.snapshots.clone(),
        };
        let mut channels = HashMap::new();
        if let Some(g) = inbound_channel {
            channels.insert(CALLER, g);
        }
        let mut attempts = Vec::new();
        let role = match (&invite, &first) {
            (Some(i), _) => Role::Uas(i.clone()),
            (None, Some(f)) => {
                // The engine offers the first party its own audio on side A.
                let m = match (&args.transport.media, &session) {
                    (_, Some(m)) => m,
                    (Some(ports), None) => {
                        session = Some(MediaSession::start(ports, myself.clone())?);
                        session.as_ref().ok_or("media session")?
                    }
                    (None, None) => return Err("media is not anchored on this node".into()),
                };
                let a = m.local(media::A);
                let offer =
                    engine::sdp::offer(a.ip(), a.port(), rand::random::<u32>().into(), &[0, 8]);
                let to = NameAddr {
                    display: None,
                    uri: Uri::sip(Some(&f.number), &host, Some(local.port())),
                    params: Vec::new(),
                };
                let dial = branches
                    .dial_with(
                        &f.target,
                        &to,
                        Some(&(bytes::Bytes::from(offer), "application/sdp".to_owned())),
                    )
                    .map_err(|(_, why)| why)?;
                if let Some((name, live)) = &f.target.trunk {
                    let g = live
                        .try_acquire()
                        .ok_or_else(|| format!("trunk {name} is down or full"))?;
                    channels.insert(CALLER, g);
                }
                note_attempt(&mut attempts, CALLER, &f.target, None);
                Role::Uac(dial)
            }
            (None, None) => return Err("a call needs an INVITE or a first party".into()),
        };
        // The first party's offer is the engine's; the branches' comes when
        // it has answered.
        if first.is_some() {
            branches.body = None;
        }
        let (a, _) = Actor::spawn_linked(
            None,
            Leg,
            LegArgs {
                id: CALLER,
                call: myself.clone(),
                cfg: args.cfg.clone(),
                transport: args.transport.clone(),
                flow: args.flow,
                role,
                snapshot: args.snapshots[0].clone(),
            },
            myself.get_cell(),
        )
        .await?;
        legs.insert(CALLER, a);
        let mut pending = HashSet::new();
        let mut queue: VecDeque<(LegId, Target)> = args
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| (i as LegId + 1, t.clone()))
            .collect();
        // Forking starts every branch; hunting starts the first that can
        // take the call (a trunk may have filled up since it was ranked).
        // An originated call starts them once its first party answers.
        let mut failures = Vec::new();
        let hunting = args.hunt.is_some();
        if first.is_some() {
            pending.clear();
        }
        let dial_now = first.is_none();
        if let Some((status, why)) = &refused {
            info!(callee = %args.callee, status, %why, "call refused before dialling");
            failures.push(*status);
            queue.clear();
        }
        while dial_now && let Some((id, target)) = queue.pop_front() {
            let started = branches.spawn(&myself, id, &target).await;
            note_attempt(
                &mut attempts,
                id,
                &target,
                started.as_ref().err().map(|e| e.0),
            );
            match started {
                Ok((b, guard)) => {
                    legs.insert(id, b);
                    pending.insert(id);
                    if let Some(g) = guard {
                        channels.insert(id, g);
                    }
                    if hunting {
                        break;
                    }
                }
                Err((status, why)) => {
                    debug!(%why, status, "branch not started");
                    failures.push(status);
                }
            }
        }
        let no_answer = myself.send_after(args.cfg.no_answer_timeout, || CallMsg::NoAnswer);
        debug!(caller = %args.caller, callee = %args.callee, branches = pending.len(), "call started");
        let mut st = CallState {
            branches,
            queue,
            hunt: args.hunt,
            channels,
            attempts,
            callee: args.callee,
            cfg: args.cfg,
            pending,
            winner: None,
            failures,
            decided: false,
            forwards: HashMap::new(),
            next_token: 1,
            result: "failed",
            ended: HashSet::new(),
            leg_count: legs.len(),
            over: false,
            calls: args.calls,
            legs,
            signalling: std::iter::once(args.flow.addr().ip())
                .chain(args.targets.iter().map(|t| t.flow.addr().ip()))
                .collect(),
            timers: vec![no_answer],
            caller: args.caller,
            counted,
            media: session,
            media_report: None,
            digits: Vec::new(),
            cause: refused.map(|r| r.1),
            callback: first
                .as_mut()
                .and_then(|f| f.billing.take())
                .map(|(charge, held_secs)| Billing {
                    key: schema::model::callback_key(&args.call_id),
                    charge,
                    held_secs,
                    since: None,
                }),
            first,
            billing: args.billing.map(|(charge, held_secs)| Billing {
                key: args.call_id.clone(),
                charge,
                held_secs,
                since: None,
            }),
            call_id: args.call_id,
            store: args.store,
            wallets: args.wallets,
            answered_ms: args.answered_ms,
            setup_ms: crate::clock::unix_ms(),
            ring_ms: None,
            answered_at: None,
            status: None,
            disconnect: None,
            peer: peer.map(|p| (p.0, p.2)),
            peer_codecs,
            correlation,
        };
        st.status(crate::events::Status::CallingYou, None, None);
        if st.legs.len() == 1 && st.first.is_none() {
            // No branch could start (every trunk down or full).
            let status = best_failure(&st.failures);
            st.answer_caller(status);
        }
        Ok(st)
    }

    async fn post_stop(
        &self,
        myself: ActorRef<CallMsg>,
        st: &mut CallState,
    ) -> Result<(), ActorProcessingErr> {
        st.finish(&myself);
        for t in st.timers.drain(..) {
            t.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<CallMsg>,
        msg: CallMsg,
        st: &mut CallState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CallMsg::Leg(id, event) => {
                if st.on_leg(&myself, id, event) {
                    st.next_branch(&myself).await;
                }
            }
            CallMsg::NoAnswer => {
                if st.winner.is_none() && !st.decided {
                    st.result = "no_answer";
                    st.hangup_branches(None);
                    st.answer_caller(408);
                }
            }
            CallMsg::Media(event) => st.on_media(event),
            CallMsg::Funds(which) => st.extend_hold(&myself, which).await,
            CallMsg::FundsWarning => {
                if let (Some(m), false) = (&st.media, st.over) {
                    m.play(media::A, vec![Item::Samples(Prompt::BalanceLow.samples()?)]);
                }
            }
            CallMsg::FundsOut => {
                if !st.over {
                    info!(callee = %st.callee, "funds exhausted: releasing the call");
                    st.result = "balance_exhausted";
                    st.cause = Some("the payer's balance ran out".into());
                    st.disconnect.get_or_insert("engine");
                    st.hangup_all(503);
                }
            }
            CallMsg::MaxDuration | CallMsg::Hangup => {
                if st.result == "answered" || st.winner.is_some() {
                    st.result = "released";
                }
                st.disconnect.get_or_insert("engine");
                st.hangup_all(503);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<CallMsg>,
        evt: SupervisionEvent,
        st: &mut CallState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                st.legs.retain(|_, r| r.get_id() != cell.get_id());
                if st.legs.is_empty() {
                    myself.stop(None);
                }
            }
            // Call and Legs live and die together (RabbitMQ channel_sup).
            SupervisionEvent::ActorFailed(_, err) => {
                return Err(format!("leg failed: {err}").into());
            }
            _ => {}
        }
        Ok(())
    }
}

/// Record a trunk attempt (members' phones are not attempts).
fn note_attempt(attempts: &mut Vec<Attempt>, leg: LegId, target: &Target, refused: Option<u16>) {
    if let Some((trunk, _)) = &target.trunk {
        attempts.push(Attempt {
            leg,
            trunk: trunk.clone(),
            uri: target.uri.to_string(),
            route: target.route,
            status: refused,
            sent: refused.is_none(),
        });
    }
}

impl CallState {
    /// The trunks tried so far, in order.
    pub fn attempts(&self) -> &[Attempt] {
        &self.attempts
    }

    fn attempt_ended(&mut self, leg: LegId, status: u16) {
        if let Some(a) = self
            .attempts
            .iter_mut()
            .find(|a| a.leg == leg && a.status.is_none())
        {
            a.status = Some(status);
        }
    }

    /// The call is over for its parties: count it once, tell the supervisor.
    fn finish(&mut self, myself: &ActorRef<CallMsg>) {
        if self.over {
            return;
        }
        self.over = true;
        if !self.attempts.is_empty() {
            let tried: Vec<String> = self.attempts.iter().map(|a| a.to_string()).collect();
            info!(callee = %self.callee, result = self.result, attempts = %tried.join("; "), "trunk attempts");
        }
        // The relay stops and its ports return to the pool now, not when
        // the legs have finished absorbing retransmissions.
        if let Some(m) = self.media.take() {
            let r = m.report();
            info!(
                callee = %self.callee,
                a_in = r[0].packets_in, a_relayed = r[0].relayed, a_lost = r[0].lost,
                b_in = r[1].packets_in, b_relayed = r[1].relayed, b_lost = r[1].lost,
                a_played = r[0].played, b_played = r[1].played,
                "media"
            );
            self.media_report = Some(r);
        }
        self.branches.transport.admission.call_ended(&self.counted);
        metrics::counter!(m::CALLS, "result" => self.result).increment(1);
        let end_ms = crate::clock::unix_ms();
        // A started second counts; a charged call never talks longer than
        // it held (the release at the end of its hold takes milliseconds).
        let talked_secs = match &self.billing {
            Some(b) => b.talked(),
            None => self
                .answered_at
                .map_or(0, |a| a.elapsed().as_secs_f64().ceil() as u32),
        };
        let callback = self.first.as_ref().map(|f| {
            let answered = f.answered_ms.load(std::sync::atomic::Ordering::Relaxed);
            CallbackReport {
                number: f.number.clone(),
                destination: f.destination.clone(),
                charge: self.callback.as_ref().map(|b| b.charge.clone()),
                talked_secs: self.callback.as_ref().map_or(0, Billing::talked),
                answer_ms: (answered > 0).then_some(answered),
            }
        });
        let cost_micros = self
            .winner
            .and_then(|w| self.attempts.iter().find(|a| a.leg == w))
            .and_then(|a| a.route)
            .map_or(0, |r| r.rate.cost(talked_secs));
        let report = CallReport {
            call_id: self.call_id.clone(),
            charge: self.billing.as_ref().map(|b| b.charge.clone()),
            talked_secs,
            cost_micros,
            setup_ms: self.setup_ms,
            ring_ms: self.ring_ms,
            answer_ms: self
                .answered_at
                .map(|_| self.answered_ms.load(std::sync::atomic::Ordering::Relaxed)),
            end_ms,
            status: self
                .status
                .unwrap_or(if self.answered_at.is_some() { 200 } else { 0 }),
            disconnect: self.disconnect,
            caller: self.caller.clone(),
            callee: self.callee.clone(),
            result: self.result,
            cause: self.cause.clone(),
            attempts: self.attempts.clone(),
            media: self.media_report.clone(),
            digits: self.digits.clone(),
            callback,
            peer: self.peer.as_ref().map(|p| p.0.clone()),
            correlation: self.correlation.clone(),
            peer_micros: self
                .peer
                .as_ref()
                .and_then(|p| p.1)
                .map_or(0, |r| r.cost(talked_secs)),
        };
        if report.answer_ms.is_some() {
            self.status(
                crate::events::Status::Ended,
                report.disconnect.map(str::to_owned),
                Some(u64::from(talked_secs)),
            );
        } else {
            self.status(
                crate::events::Status::Failed,
                Some(self.result.to_owned()),
                None,
            );
        }
        let _ = self.calls.cast(crate::calls::CallsMsg::CallOver(
            myself.get_id(),
            Box::new(report),
        ));
    }

    /// The call is answered: the talk time starts, and a charged call
    /// extends its hold before what it holds runs out.
    fn start_billing(&mut self, myself: &ActorRef<CallMsg>) {
        let now = tokio::time::Instant::now();
        self.answered_at = Some(now);
        self.answered_ms.store(
            crate::clock::unix_ms(),
            std::sync::atomic::Ordering::Relaxed,
        );
        self.start_metering(myself, Metered::Bridged, now);
    }

    /// Leg `which` is answered: its talk time starts at `now`, and its
    /// hold is extended before what it holds runs out.
    fn start_metering(
        &mut self,
        myself: &ActorRef<CallMsg>,
        which: Metered,
        now: tokio::time::Instant,
    ) {
        let b = match which {
            Metered::Bridged => &mut self.billing,
            Metered::Callback => &mut self.callback,
        };
        if let Some(b) = b {
            b.since = Some(now);
            let at = extend_at(b.held_secs);
            let t = myself.send_after(std::time::Duration::from_secs(at.into()), move || {
                CallMsg::Funds(which)
            });
            self.timers.push(t);
        }
    }

    /// Hold the next chunk of leg `which`; when the funds do not allow
    /// more, warn the payer and release the call when what it holds is
    /// used up.
    async fn extend_hold(&mut self, myself: &ActorRef<CallMsg>, which: Metered) {
        let b = match which {
            Metered::Bridged => &mut self.billing,
            Metered::Callback => &mut self.callback,
        };
        let Some(b) = b else {
            return;
        };
        let Some(answered) = b.since else {
            return;
        };
        if self.over {
            return;
        }
        let cfg = &self.cfg.billing;
        let elapsed = answered.elapsed().as_secs() as u32;
        let chunk = u32::try_from(cfg.chunk.as_secs())
            .unwrap_or(u32::MAX)
            .max(1);
        let want = elapsed + EXTEND_MARGIN + chunk;
        let held = match self
            .wallets
            .hold(
                self.store.as_ref(),
                cfg.credit_limit,
                &b.charge,
                &b.key,
                want,
            )
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "ledger unavailable: the call keeps what it holds");
                b.held_secs
            }
        };
        if held > b.held_secs {
            b.held_secs = held;
            let at = extend_at(held).saturating_sub(elapsed).max(1);
            let t = myself.send_after(std::time::Duration::from_secs(at.into()), move || {
                CallMsg::Funds(which)
            });
            self.timers.push(t);
            return;
        }
        let left = b.held_secs.saturating_sub(elapsed);
        let warn = u32::try_from(cfg.warn_before.as_secs()).unwrap_or(u32::MAX);
        info!(callee = %self.callee, left, "funds run out");
        let w = myself.send_after(
            std::time::Duration::from_secs(left.saturating_sub(warn).into()),
            || CallMsg::FundsWarning,
        );
        let o = myself.send_after(std::time::Duration::from_secs(left.into()), || {
            CallMsg::FundsOut
        });
        self.timers.push(w);
        self.timers.push(o);
    }

    fn on_media(&mut self, event: MediaEvent) {
        match event {
            MediaEvent::Dtmf {
                side,
                digit,
                duration_ms,
            } => self.on_digit(side, digit, Some(duration_ms), DtmfSource::Rfc4733),
            MediaEvent::Timeout { side } => {
                if self.over {
                    return;
                }
                let who = if side == media::A { "caller" } else { "callee" };
                info!(callee = %self.callee, who, "no RTP from the {who}: releasing the call");
                metrics::counter!(m::RTP_TIMEOUTS).increment(1);
                self.result = "rtp_timeout";
                self.disconnect.get_or_insert("engine");
                self.cause = Some(format!("no RTP from the {who}"));
                self.hangup_all(408);
            }
            MediaEvent::PlayDone { side } => {
                if side == media::A
                    && !self.over
                    && self.result == "announced"
                    && self.first.as_ref().is_some_and(|f| f.announce)
                {
                    info!(callee = %self.callee, "announcement played: releasing the call");
                    self.disconnect.get_or_insert("engine");
                    self.hangup_all(200);
                }
            }
        }
    }

    fn on_digit(&mut self, side: usize, digit: char, duration_ms: Option<u32>, source: DtmfSource) {
        let label = match source {
            DtmfSource::Rfc4733 => "rfc4733",
            DtmfSource::Info => "info",
        };
        info!(callee = %self.callee, side, %digit, duration_ms, source = label, "dtmf");
        metrics::counter!(m::DTMF_DIGITS, "source" => label).increment(1);
        keep_digit(&mut self.digits, (side, digit, source));
    }

    /// A body from leg `id`'s party as the other party must see it: when
    /// the media is anchored, its audio address is noted for the relay and
    /// the body names the engine's side facing the other party.
    fn anchor_body(
        &mut self,
        id: LegId,
        body: Option<(bytes::Bytes, String)>,
    ) -> Option<(bytes::Bytes, String)> {
        let (Some(m), Some((sdp, ct))) = (&self.media, &body) else {
            return body;
        };
        if !is_sdp(ct) {
            return body;
        }
        let side = if id == CALLER { media::A } else { media::B };
        match offered_audio(sdp) {
            Ok(Some(audio)) => {
                m.remote(side, audio, self.signalling.get(id as usize).copied());
                let local = m.local(1 - side);
                let text = String::from_utf8_lossy(sdp);
                Some((
                    bytes::Bytes::from(engine::sdp::anchor(&text, local.ip(), local.port())),
                    ct.clone(),
                ))
            }
            Ok(None) => body,
            Err(why) => {
                debug!(%why, "SDP not anchored");
                body
            }
        }
    }

    fn send(&self, id: LegId, msg: LegMsg) {
        if let Some(leg) = self.legs.get(&id) {
            let _ = leg.cast(msg);
        }
    }

    fn answer_caller(&mut self, status: u16) {
        if !self.decided {
            self.decided = true;
            self.tell_caller(status, None);
        }
    }

    /// Tell leg 0 how the branches fare: the caller's INVITE is answered
    /// with it; a first party the engine called stops hearing the prompt
    /// and ringback on 200 (it is bridged) and is hung up on a failure.
    fn tell_caller(&mut self, status: u16, body: Option<(bytes::Bytes, String)>) {
        if status >= 200 {
            self.status.get_or_insert(status);
        }
        if self.first.is_none() {
            let body = match body {
                // A carrier is answered in its trunk's codecs only.
                Some((sdp, ct)) if !self.peer_codecs.is_empty() && is_sdp(&ct) => {
                    let narrowed = std::str::from_utf8(&sdp)
                        .ok()
                        .and_then(|t| engine::sdp::restrict_codecs(t, &self.peer_codecs).ok());
                    match narrowed {
                        Some(n) => Some((bytes::Bytes::from(n), ct)),
                        None => Some((sdp, ct)),
                    }
                }
                other => other,
            };
            self.send(CALLER, LegMsg::Answer { status, body });
        } else if status == 200 {
            if let Some(m) = &self.media {
                m.stop(media::A);
            }
        } else if status >= 300 {
            self.send(CALLER, LegMsg::Hangup { status });
        }
    }

    /// Tell the edge where an originated call is (normal calls have no
    /// watchers).
    fn status(&self, s: crate::events::Status, reason: Option<String>, secs: Option<u64>) {
        if self.first.is_some() {
            self.branches
                .transport
                .events
                .publish(&self.call_id, s, reason, secs);
        }
    }

    /// The first party of an originated call answered: it hears the
    /// prompt and ringback, and the other party is dialled with an offer
    /// in the codec it chose.
    fn first_answered(&mut self, body: Option<(bytes::Bytes, String)>) {
        let chosen = body
            .as_ref()
            .and_then(|(b, _)| offered_audio(b).ok().flatten())
            .and_then(|a| a.g711());
        let _ = self.anchor_body(CALLER, body);
        let (Some(m), Some(f)) = (&self.media, &self.first) else {
            return;
        };
        let mut items = Vec::new();
        for p in &f.prompts {
            match p.samples() {
                Ok(s) => items.push(Item::Samples(s)),
                Err(e) => tracing::warn!(error = %e, "prompt not played"),
            }
        }
        if f.announce {
            m.play(media::A, items);
            info!(first = %f.number, "first party answered; announcing");
            self.status(crate::events::Status::Connected, None, None);
            return;
        }
        items.push(Item::tone(f.ringback));
        m.play(media::A, items);
        let b = m.local(media::B);
        let pts: Vec<u8> = chosen.into_iter().collect();
        let offer = engine::sdp::offer(b.ip(), b.port(), rand::random::<u32>().into(), &pts);
        self.branches.body = Some((bytes::Bytes::from(offer), "application/sdp".to_owned()));
        info!(first = %f.number, callee = %self.callee, "first party answered; dialling");
        self.status(crate::events::Status::Connecting, None, None);
    }

    /// Hang up every branch except `keep`.
    fn hangup_branches(&mut self, keep: Option<LegId>) {
        for id in self
            .legs
            .keys()
            .copied()
            .filter(|id| *id != CALLER && Some(*id) != keep)
        {
            self.send(id, LegMsg::Hangup { status: 487 });
        }
        self.pending.clear();
    }

    fn hangup_all(&mut self, status: u16) {
        for id in self.legs.keys().copied() {
            self.send(id, LegMsg::Hangup { status });
        }
        self.decided = true;
        self.pending.clear();
    }

    fn peer(&self, id: LegId) -> Option<LegId> {
        match (id, self.winner) {
            (CALLER, w) => w,
            (b, Some(w)) if b == w => Some(CALLER),
            _ => None,
        }
    }

    /// Start the next target of a hunt; when it cannot start, the caller
    /// gets the best failure so far.
    async fn next_branch(&mut self, myself: &ActorRef<CallMsg>) {
        let hunting = self.hunt.is_some();
        let mut any = false;
        while let Some((id, target)) = self.queue.pop_front() {
            let started = self.branches.spawn(myself, id, &target).await;
            note_attempt(
                &mut self.attempts,
                id,
                &target,
                started.as_ref().err().map(|e| e.0),
            );
            match started {
                Ok((b, guard)) => {
                    info!(callee = %self.callee, leg = id, target = %target.uri, "trying the next trunk");
                    self.legs.insert(id, b);
                    self.pending.insert(id);
                    if let Some(g) = guard {
                        self.channels.insert(id, g);
                    }
                    self.leg_count += 1;
                    any = true;
                    if hunting {
                        return;
                    }
                }
                Err((status, why)) => {
                    debug!(%why, status, "branch not started");
                    self.failures.push(status);
                }
            }
        }
        if !any {
            let status = best_failure(&self.failures);
            self.answer_caller(status);
        }
    }

    /// Handle a leg's event; `true` when the next target of a hunt is due.
    fn on_leg(&mut self, myself: &ActorRef<CallMsg>, id: LegId, event: LegEvent) -> bool {
        if id == CALLER && self.first.is_some() {
            match event {
                LegEvent::Progress { status, .. } => {
                    if status > 100
                        && let Some(g) = self.channels.get_mut(&id)
                    {
                        g.progressed();
                    }
                    return false;
                }
                LegEvent::Answered { body } => {
                    if let Some(g) = self.channels.get_mut(&id) {
                        g.answered();
                    }
                    self.attempt_ended(id, 200);
                    if let Some(f) = &self.first {
                        f.answered_ms.store(
                            crate::clock::unix_ms(),
                            std::sync::atomic::Ordering::Relaxed,
                        );
                    }
                    // Its leg is charged from now (held from the start of
                    // the call), even if it is released at once.
                    self.start_metering(myself, Metered::Callback, tokio::time::Instant::now());
                    if self.decided {
                        self.send(CALLER, LegMsg::Hangup { status: 487 });
                        return false;
                    }
                    self.first_answered(body);
                    if self.first.as_ref().is_some_and(|f| f.announce) {
                        // Nothing else to dial: the announcement plays to
                        // its end (or for the call's longest duration).
                        self.decided = true;
                        self.result = "announced";
                        let t =
                            myself.send_after(self.cfg.max_call_duration, || CallMsg::MaxDuration);
                        self.timers.push(t);
                        return false;
                    }
                    return true;
                }
                LegEvent::Failed { status } => {
                    if let Some(g) = self.channels.get_mut(&id) {
                        g.failed(status);
                    }
                    self.attempt_ended(id, status);
                    self.result = if matches!(status, 486 | 600) {
                        "busy"
                    } else {
                        "failed"
                    };
                    self.cause = Some(format!("the first party answered {status}"));
                    self.decided = true;
                    return false;
                }
                other => return self.on_leg_event(myself, id, other),
            }
        }
        self.on_leg_event(myself, id, event)
    }

    fn on_leg_event(&mut self, myself: &ActorRef<CallMsg>, id: LegId, event: LegEvent) -> bool {
        match event {
            LegEvent::Progress { status, body } => {
                if status > 100 {
                    self.ring_ms.get_or_insert_with(crate::clock::unix_ms);
                }
                let body = if self.winner.is_none() && !self.decided {
                    self.anchor_body(id, body)
                } else {
                    body
                };
                if status > 100
                    && let Some(g) = self.channels.get_mut(&id)
                {
                    g.progressed();
                }
                if self.winner.is_none() && !self.decided && status > 100 {
                    self.tell_caller(status, body);
                }
            }
            LegEvent::Answered { body } => {
                if let Some(g) = self.channels.get_mut(&id) {
                    g.answered();
                }
                self.attempt_ended(id, 200);
                if self.winner.is_none() && !self.decided {
                    let body = self.anchor_body(id, body);
                    if let Some(m) = &self.media {
                        m.answered();
                    }
                    self.winner = Some(id);
                    self.decided = true;
                    self.result = "answered";
                    self.pending.remove(&id);
                    self.tell_caller(200, body);
                    self.hangup_branches(Some(id));
                    let t = myself.send_after(self.cfg.max_call_duration, || CallMsg::MaxDuration);
                    self.timers.push(t);
                    self.start_billing(myself);
                    self.status(crate::events::Status::Connected, None, None);
                    info!(callee = %self.callee, leg = id, "call answered");
                } else {
                    // A second branch answered: release it (§16.7 for a B2BUA).
                    self.send(id, LegMsg::Hangup { status: 487 });
                }
            }
            LegEvent::Failed { status } => {
                if let Some(g) = self.channels.get_mut(&id) {
                    g.failed(status);
                }
                self.attempt_ended(id, status);
                self.pending.remove(&id);
                self.failures.push(status);
                if self.winner.is_none() && self.pending.is_empty() && !self.decided {
                    if self
                        .hunt
                        .as_ref()
                        .is_some_and(|codes| codes.contains(&status))
                        && !self.queue.is_empty()
                    {
                        return true;
                    }
                    let status = best_failure(&self.failures);
                    self.result = match status {
                        486 | 600 => "busy",
                        _ => "failed",
                    };
                    self.answer_caller(status);
                }
            }
            LegEvent::Cancelled => {
                self.result = "cancelled";
                self.decided = true;
                self.hangup_branches(None);
            }
            LegEvent::Confirmed => {
                #[cfg(feature = "testing")]
                if self.cfg.panic_on_callee.as_deref() == Some(self.callee.as_str()) {
                    panic!("test hook: panic_on_callee {}", self.callee);
                }
                let _ = &self.cfg;
            }
            LegEvent::Request {
                token,
                method,
                body,
            } => match self.peer(id) {
                Some(peer) => {
                    if method == Method::Info
                        && let Some((b, ct)) = &body
                        && let Some((digit, ms)) =
                            engine::media::dtmf::parse_info(ct, &String::from_utf8_lossy(b))
                    {
                        let side = if id == CALLER { media::A } else { media::B };
                        self.on_digit(side, digit, ms, DtmfSource::Info);
                    }
                    let body = self.anchor_body(id, body);
                    let ours = self.next_token;
                    self.next_token += 1;
                    self.forwards.insert(ours, (id, token));
                    self.send(
                        peer,
                        LegMsg::Forward {
                            token: ours,
                            method,
                            body,
                        },
                    );
                }
                None => {
                    let status = if method == Method::Invite { 491 } else { 481 };
                    self.send(
                        id,
                        LegMsg::Reply {
                            token,
                            status,
                            body: None,
                        },
                    );
                }
            },
            LegEvent::Response {
                token,
                status,
                body,
            } => {
                if let Some((origin, their)) = self.forwards.remove(&token) {
                    let body = self.anchor_body(id, body);
                    self.send(
                        origin,
                        LegMsg::Reply {
                            token: their,
                            status,
                            body,
                        },
                    );
                }
            }
            LegEvent::Ended => {
                self.channels.remove(&id);
                self.ended.insert(id);
                if self.ended.len() == self.leg_count {
                    self.finish(myself);
                }
            }
            LegEvent::Bye { reason } => {
                self.disconnect
                    .get_or_insert(if id == CALLER { "caller" } else { "callee" });
                if let Some(r) = reason
                    && self.cause.is_none()
                {
                    self.cause = Some(r);
                }
                if id == CALLER {
                    self.hangup_branches(None);
                    if let Some(w) = self.winner {
                        self.send(w, LegMsg::Hangup { status: 487 });
                    }
                } else if Some(id) == self.winner {
                    self.send(CALLER, LegMsg::Hangup { status: 487 });
                }
            }
        }
        false
    }
}

/// Keep a digit for the call's report: a party that sends digits for ever
/// does not grow the call without bound (the rest are relayed and counted).
fn keep_digit(digits: &mut Vec<(usize, char, DtmfSource)>, d: (usize, char, DtmfSource)) {
    if digits.len() < MAX_DIGITS {
        digits.push(d);
    }
}

/// Seconds after the answer at which a hold of `held` seconds is extended.
fn extend_at(held: u32) -> u32 {
    if held > 2 * EXTEND_MARGIN {
        held - EXTEND_MARGIN
    } else {
        held / 2
    }
}

fn is_sdp(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
}

/// The first audio stream of an SDP body (port 0: none to anchor).
fn offered_audio(sdp: &[u8]) -> Result<Option<engine::sdp::AudioMedia>, String> {
    let text = std::str::from_utf8(sdp).map_err(|_| "SDP is not UTF-8".to_owned())?;
    match engine::sdp::audio(text) {
        Ok(Some(a)) if a.port != 0 => Ok(Some(a)),
        Ok(_) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// One final answer for the caller from the branches' failures (RFC 3261
/// §16.7 step 6, simplified): a 6xx wins, then busy, then the other 4xx,
/// then 5xx; if every branch timed out, the callee is unreachable (480).
pub fn best_failure(failures: &[u16]) -> u16 {
    if let Some(s) = failures.iter().find(|s| **s >= 600) {
        return *s;
    }
    if failures.contains(&486) {
        return 486;
    }
    if let Some(s) = failures
        .iter()
        .find(|s| (400..500).contains(*s) && **s != 408)
    {
        return *s;
    }
    if let Some(s) = failures.iter().find(|s| (500..600).contains(*s)) {
        return *s;
    }
    480
}

#[cfg(test)]
mod tests {
    use super::{Attempt, MAX_DIGITS, RouteNote, best_failure, keep_digit};
    use crate::media::DtmfSource;

    #[test]
    fn a_call_keeps_at_most_max_digits_for_its_report() {
        let mut digits = Vec::new();
        for i in 0..10 * MAX_DIGITS {
            keep_digit(&mut digits, (i % 2, '5', DtmfSource::Rfc4733));
        }
        assert_eq!(digits.len(), MAX_DIGITS);
    }

    #[test]
    fn failure_precedence() {
        assert_eq!(best_failure(&[408, 486, 603]), 603);
        assert_eq!(best_failure(&[503, 486]), 486);
        assert_eq!(best_failure(&[503, 404]), 404);
        assert_eq!(best_failure(&[408, 408]), 480);
        assert_eq!(best_failure(&[500]), 500);
    }

    #[test]
    fn an_attempt_reads_as_trunk_uri_rank_price_and_outcome() {
        let mut a = Attempt {
            leg: 1,
            trunk: "seoul-a".into(),
            uri: "sip:0212345678@127.0.0.1:5070".into(),
            route: Some(RouteNote {
                rank: 1,
                prefix_len: 3,
                per_minute: 20_500,
                rate: engine::lcr::Rate {
                    per_minute: 20_500,
                    connect_fee: 0,
                    first_increment: 60,
                    next_increment: 60,
                },
            }),
            status: Some(503),
            sent: true,
        };
        assert_eq!(
            a.to_string(),
            "seoul-a <sip:0212345678@127.0.0.1:5070> rank 1 prefix 3 0.020500/min → 503"
        );
        a.route = None;
        a.status = Some(488);
        a.sent = false;
        assert_eq!(
            a.to_string(),
            "seoul-a <sip:0212345678@127.0.0.1:5070> → 488 (not sent)"
        );
    }
}

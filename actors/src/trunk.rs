//! The Trunk actor: one per configured SIP trunk that asks for keep-alives.
//! It sends an OPTIONS every `options_interval`; a trunk that misses
//! `down_after` answers in a row is marked down (and skipped by least-cost
//! routing) until it answers again. Any response counts as an answer.
//!
//! A trunk configured to register ([`crate::config::TrunkRegistration`])
//! is registered with by an [`engine::sip::outbound::Outbound`] machine this
//! actor drives; until the trunk accepts the registration, least-cost
//! routing skips it.
//!
//! Its live state ([`TrunkLive`]) is shared through the transport: calls
//! take a channel from it with [`TrunkLive::try_acquire`] (exact under
//! concurrency: a compare-and-swap below the limit) and give it back when
//! their leg ends, or when their Call dies, through the guard's `Drop`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use engine::sip::msg::{Method, Request, Uri};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::{info, warn};

use crate::config::TrunkRoute;
use crate::metrics as m;
use crate::transport::{Transport, dialog_key};

/// A trunk's live state.
#[derive(Debug)]
pub struct TrunkLive {
    name: String,
    up: AtomicBool,
    registered: AtomicBool,
    channels: AtomicU32,
    max_channels: u32,
    /// Calls started in the current second: (second since `epoch`) << 32 | count.
    cps: AtomicU64,
    max_cps: u32,
    epoch: Instant,
}

/// One channel of a trunk, given back when dropped; it also times the
/// attempt for the trunk's post-dial-delay and call-duration metrics.
#[derive(Debug)]
pub struct ChannelGuard {
    live: Arc<TrunkLive>,
    started: Instant,
    progressed: bool,
    answered: Option<Instant>,
}

impl Drop for ChannelGuard {
    fn drop(&mut self) {
        self.live.channels.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(m::TRUNK_CHANNELS, "trunk" => self.live.name.clone()).decrement(1.0);
        if let Some(at) = self.answered {
            metrics::histogram!(m::TRUNK_CALL_SECONDS, "trunk" => self.live.name.clone())
                .record(at.elapsed().as_secs_f64());
        }
    }
}

impl ChannelGuard {
    /// The trunk's name.
    pub fn trunk(&self) -> &str {
        &self.live.name
    }

    /// The first ringing, answer or final failure: post-dial delay.
    pub fn progressed(&mut self) {
        if !self.progressed {
            self.progressed = true;
            metrics::histogram!(m::TRUNK_PDD_SECONDS, "trunk" => self.live.name.clone())
                .record(self.started.elapsed().as_secs_f64());
        }
    }

    /// Answered: counts towards the answer-seizure ratio and starts the
    /// duration.
    pub fn answered(&mut self) {
        self.progressed();
        if self.answered.is_none() {
            self.answered = Some(crate::clock::now());
            metrics::counter!(m::TRUNK_ANSWERED, "trunk" => self.live.name.clone()).increment(1);
        }
    }

    /// Failed with a final status (which also ends the post-dial delay,
    /// when nothing rang before it).
    pub fn failed(&mut self, status: u16) {
        self.progressed();
        metrics::counter!(m::TRUNK_FAILURES, "trunk" => self.live.name.clone(), "code" => status.to_string())
            .increment(1);
    }
}

impl TrunkLive {
    /// Up, no calls, at most `max_channels` at once and `max_cps` new calls
    /// a second.
    pub fn new(name: &str, max_channels: u32, max_cps: u32) -> Arc<TrunkLive> {
        Arc::new(TrunkLive {
            name: name.to_owned(),
            up: AtomicBool::new(true),
            registered: AtomicBool::new(true),
            channels: AtomicU32::new(0),
            max_channels,
            cps: AtomicU64::new(0),
            max_cps,
            epoch: crate::clock::now(),
        })
    }

    /// The same, for a trunk that wants registration: unusable until it
    /// accepts one.
    pub fn unregistered(self: Arc<Self>) -> Arc<Self> {
        self.registered.store(false, Ordering::Release);
        self
    }

    /// Whether it is registered with (always, when it wants no registration).
    pub fn is_registered(&self) -> bool {
        self.registered.load(Ordering::Acquire)
    }

    /// Take a channel if the trunk is up, below its channel limit and below
    /// its calls-per-second limit this second.
    pub fn try_acquire(self: &Arc<Self>) -> Option<ChannelGuard> {
        self.try_acquire_at(crate::clock::now())
    }

    /// [`Self::try_acquire`] at a given time.
    pub fn try_acquire_at(self: &Arc<Self>, now: Instant) -> Option<ChannelGuard> {
        if !self.up.load(Ordering::Acquire) || !self.is_registered() {
            return None;
        }
        self.take_channel(now)
    }

    /// Take a channel for a call the carrier sends us: its channel and
    /// calls-per-second limits apply (both directions share them), its
    /// keep-alive and registration state do not (it is plainly there).
    pub fn try_acquire_inbound(self: &Arc<Self>) -> Option<ChannelGuard> {
        self.take_channel(crate::clock::now())
    }

    fn take_channel(self: &Arc<Self>, now: Instant) -> Option<ChannelGuard> {
        self.channels
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_channels).then_some(n + 1)
            })
            .ok()?;
        let guard = ChannelGuard {
            live: self.clone(),
            started: now,
            progressed: false,
            answered: None,
        };
        metrics::gauge!(m::TRUNK_CHANNELS, "trunk" => self.name.clone()).increment(1.0);
        let second = self.second(now);
        let max = u64::from(self.max_cps);
        self.cps
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                let (s, n) = (v >> 32, v & 0xffff_ffff);
                match s == second {
                    true if n >= max => None,
                    true => Some(v + 1),
                    false => Some((second << 32) | 1),
                }
            })
            .ok()?; // dropping the guard gives the channel back
        Some(guard)
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs() & 0xffff_ffff
    }

    /// What least-cost routing sees.
    pub fn health(&self) -> engine::lcr::Health {
        let v = self.cps.load(Ordering::Acquire);
        let this_second = (v >> 32) == self.second(crate::clock::now());
        engine::lcr::Health {
            up: self.up.load(Ordering::Acquire),
            registered: self.is_registered(),
            channels: self.channels.load(Ordering::Acquire),
            max_channels: self.max_channels,
            cps_ok: !this_second || (v & 0xffff_ffff) < u64::from(self.max_cps),
        }
    }

    /// Whether it answers its keep-alives.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Calls it carries now.
    pub fn channels(&self) -> u32 {
        self.channels.load(Ordering::Acquire)
    }
}

/// Messages of a Trunk.
#[derive(Debug)]
pub enum TrunkMsg {
    /// Time for the next keep-alive.
    Ping,
    /// A response to request `seq` (a keep-alive or a REGISTER).
    Response(u32, Box<engine::sip::msg::Response>),
    /// The registration's timer.
    RegisterTick,
    /// Keep-alive `seq` had no answer in time.
    Unanswered(u32),
}

/// What a Trunk is started with.
pub struct TrunkArgs {
    /// The trunk.
    pub route: TrunkRoute,
    /// Transport (sending, and where answers are routed back).
    pub transport: Arc<Transport>,
    /// Its live state.
    pub live: Arc<TrunkLive>,
    /// Retransmission timers (registration).
    pub timers: engine::sip::transaction::Timers,
}

/// The Trunk actor.
pub struct Trunk;

/// The Trunk's state.
pub struct TrunkState {
    args: TrunkArgs,
    seq: u32,
    /// The keep-alive in flight: its seq and its response route.
    outstanding: Option<(u32, String)>,
    misses: u32,
    timer: Option<tokio::task::JoinHandle<()>>,
    /// The outbound registration, when the trunk wants one.
    registration: Option<engine::sip::outbound::Outbound>,
    /// The registration's response route.
    registration_key: String,
    /// The registration's pending timer.
    register_timer: Option<tokio::task::JoinHandle<Result<(), ractor::MessagingErr<TrunkMsg>>>>,
}

impl Actor for Trunk {
    type Msg = TrunkMsg;
    type State = TrunkState;
    type Arguments = TrunkArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<TrunkMsg>,
        args: TrunkArgs,
    ) -> Result<TrunkState, ActorProcessingErr> {
        let timer = args
            .route
            .options_interval
            .map(|every| myself.send_interval(every, || TrunkMsg::Ping));
        let now = crate::clock::now();
        let local = args.transport.local();
        let call_id = engine::ids::call_id(&mut rand::thread_rng(), &local.ip().to_string());
        let tag = engine::ids::tag(&mut rand::thread_rng());
        let registration_key = dialog_key(&call_id, &tag);
        let registration = args.route.register.as_ref().map(|r| {
            let host = args.route.addr.ip().to_string();
            let port = Some(args.route.addr.port());
            engine::sip::outbound::Outbound::new(
                engine::sip::outbound::Config {
                    registrar: args.route.uri(None),
                    aor: Uri::sip(Some(&r.user), &host, port),
                    reliable: args.route.transport.reliable(),
                    contact: {
                        let mut c = args.transport.contact(args.route.flow());
                        c.user = Some(r.user.clone());
                        format!("<{c}>")
                    },
                    expires: r.expires,
                    credentials: args.route.credentials.clone(),
                    retry: r.retry,
                    timers: args.timers,
                },
                call_id,
                tag,
                now,
            )
        });
        if registration.is_some() {
            myself.cast(TrunkMsg::RegisterTick)?;
        }
        Ok(TrunkState {
            args,
            seq: 0,
            outstanding: None,
            misses: 0,
            timer,
            registration,
            registration_key,
            register_timer: None,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<TrunkMsg>,
        st: &mut TrunkState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = st.timer.take() {
            t.abort();
        }
        if let Some((_, key)) = st.outstanding.take() {
            st.args.transport.probes.remove(&key);
        }
        st.args.transport.probes.remove(&st.registration_key);
        if let Some(t) = st.register_timer.take() {
            t.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<TrunkMsg>,
        msg: TrunkMsg,
        st: &mut TrunkState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TrunkMsg::Ping => {
                if st.outstanding.is_some() {
                    return Ok(()); // the previous one is still waiting
                }
                st.seq = st.seq.wrapping_add(1);
                let seq = st.seq;
                let key = st.send_options(&myself).await;
                st.outstanding = Some((seq, key));
                let wait = st.args.route.options_timeout;
                myself.send_after(wait, move || TrunkMsg::Unanswered(seq));
            }
            TrunkMsg::RegisterTick => {
                let now = crate::clock::now();
                let mut via = st.via_maker();
                let actions = match &mut st.registration {
                    Some(o) => o.tick(now, &mut via),
                    None => Vec::new(),
                };
                st.registration_actions(&myself, actions).await;
            }
            TrunkMsg::Response(_, response)
                if st.registration.as_ref().is_some_and(|o| o.owns(&response)) =>
            {
                let now = crate::clock::now();
                let cnonce = engine::ids::tag(&mut rand::thread_rng());
                let mut via = st.via_maker();
                let actions = match &mut st.registration {
                    Some(o) => o.on_response(now, &response, &mut via, &cnonce),
                    None => Vec::new(),
                };
                st.registration_actions(&myself, actions).await;
            }
            TrunkMsg::Response(seq, _) | TrunkMsg::Unanswered(seq)
                if st.outstanding.as_ref().is_none_or(|(s, _)| *s != seq) => {}
            TrunkMsg::Response(..) => {
                st.clear();
                st.misses = 0;
                if !st.args.live.up.swap(true, Ordering::AcqRel) {
                    info!(trunk = %st.args.route.name, "trunk answers again: up");
                    metrics::gauge!(m::TRUNK_UP, "trunk" => st.args.route.name.clone()).set(1.0);
                }
            }
            TrunkMsg::Unanswered(_) => {
                st.clear();
                st.misses += 1;
                if st.misses >= st.args.route.down_after.max(1)
                    && st.args.live.up.swap(false, Ordering::AcqRel)
                {
                    warn!(trunk = %st.args.route.name, misses = st.misses, "trunk stopped answering: down");
                    metrics::gauge!(m::TRUNK_UP, "trunk" => st.args.route.name.clone()).set(0.0);
                }
            }
        }
        Ok(())
    }
}

impl TrunkState {
    /// Makes the Via of a new request to the trunk (a fresh branch each).
    fn via_maker(&self) -> impl FnMut() -> String + use<> {
        let t = self.args.transport.clone();
        let flow = self.args.route.flow();
        move || t.via(flow, &engine::ids::branch(&mut rand::thread_rng()))
    }

    /// Carry out what the registration machine asks, and set its timer.
    async fn registration_actions(
        &mut self,
        myself: &ActorRef<TrunkMsg>,
        actions: Vec<engine::sip::outbound::Action>,
    ) {
        use engine::sip::outbound::Action;
        let name = self.args.route.name.clone();
        for a in actions {
            match a {
                Action::Send(req) => {
                    self.args
                        .transport
                        .probes
                        .insert(self.registration_key.clone(), (myself.clone(), 0));
                    metrics::counter!(m::SIP_OUT, "kind" => "REGISTER").increment(1);
                    self.args
                        .transport
                        .send(self.args.route.flow(), req.to_bytes())
                        .await;
                }
                Action::Registered { expires } => {
                    if !self.args.live.registered.swap(true, Ordering::AcqRel) {
                        info!(trunk = %name, expires_s = expires.as_secs(), "registered with the trunk");
                    }
                    metrics::gauge!(m::TRUNK_REGISTERED, "trunk" => name.clone()).set(1.0);
                }
                Action::Failed { status, reason } => {
                    self.args.live.registered.store(false, Ordering::Release);
                    warn!(trunk = %name, ?status, %reason, "registration with the trunk failed; skipped until it succeeds");
                    metrics::gauge!(m::TRUNK_REGISTERED, "trunk" => name.clone()).set(0.0);
                }
            }
        }
        if let Some(t) = self.register_timer.take() {
            t.abort();
        }
        let deadline = self.registration.as_ref().and_then(|o| o.deadline());
        if let Some(at) = deadline {
            let wait = at.saturating_duration_since(crate::clock::now());
            self.register_timer = Some(myself.send_after(wait, || TrunkMsg::RegisterTick));
        }
    }

    fn clear(&mut self) {
        if let Some((_, key)) = self.outstanding.take() {
            self.args.transport.probes.remove(&key);
        }
    }

    /// Send one OPTIONS; returns the key its response is routed by.
    async fn send_options(&mut self, myself: &ActorRef<TrunkMsg>) -> String {
        let t = &self.args.transport;
        let flow = self.args.route.flow();
        let local = t.local();
        let call_id = engine::ids::call_id(&mut rand::thread_rng(), &local.ip().to_string());
        let tag = engine::ids::tag(&mut rand::thread_rng());
        let branch = engine::ids::branch(&mut rand::thread_rng());
        let mut req = Request {
            method: Method::Options,
            uri: self.args.route.uri(None),
            headers: Default::default(),
            body: Bytes::new(),
        };
        req.headers.push("Via", t.via(flow, &branch));
        req.headers.push("Max-Forwards", "70");
        req.headers
            .push("From", format!("<sip:switchboard@{local}>;tag={tag}"));
        req.headers.push("To", format!("<{}>", req.uri));
        req.headers.push("Call-ID", call_id.clone());
        req.headers.push("CSeq", format!("{} OPTIONS", self.seq));
        req.headers.push("Accept", "application/sdp");
        let key = dialog_key(&call_id, &tag);
        t.probes.insert(key.clone(), (myself.clone(), self.seq));
        t.send(flow, req.to_bytes()).await;
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_per_second_are_limited_per_second() {
        let live = TrunkLive::new("t", 100, 2);
        let t0 = crate::clock::now();
        let a = live.try_acquire_at(t0);
        let b = live.try_acquire_at(t0 + std::time::Duration::from_millis(500));
        assert!(a.is_some() && b.is_some());
        assert!(
            live.try_acquire_at(t0 + std::time::Duration::from_millis(900))
                .is_none(),
            "third in the same second"
        );
        assert_eq!(live.channels(), 2, "a refused call holds no channel");
        let c = live.try_acquire_at(t0 + std::time::Duration::from_millis(1000));
        assert!(c.is_some(), "a new second");
    }

    #[test]
    fn channels_are_exact_under_concurrency() {
        let live = TrunkLive::new("t", 2, u32::MAX);
        let guards: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16).map(|_| s.spawn(|| live.try_acquire())).collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().ok().flatten())
                .collect()
        });
        assert_eq!(guards.len(), 2, "never more than the limit");
        assert_eq!(live.channels(), 2);
        drop(guards);
        assert_eq!(live.channels(), 0, "given back when dropped");
        live.up.store(false, Ordering::Release);
        assert!(live.try_acquire().is_none(), "a down trunk takes no calls");
    }
}

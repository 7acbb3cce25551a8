//! Overload control: which new calls and registrations the node takes.
//!
//! New INVITEs (out of dialog) are admitted while the node is under its
//! limits: new calls per second (a token bucket; the authenticated retry of
//! a challenged INVITE belongs to the call already counted, by Call-ID),
//! concurrent calls, INVITE transactions pending an answer, new calls per
//! second from one source address (a trunk's address: its `max_cps`),
//! and, once the caller is known, its own calls up and new calls per
//! second; and the measured event-loop lag (a timer that should
//! fire every 50 ms; when it fires late the node is falling behind, and new
//! work is shed before it does). REGISTERs have their own rate. Above a
//! limit the request gets `503 Service Unavailable` with `Retry-After`, and
//! calls already up carry on: requests inside a dialog are never shed. While
//! the node drains (SIGTERM) every new call is refused the same way, and so
//! while the store refuses writes (see [`watch_store`]): a call that could
//! not be billed or given a CDR is not placed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use parking_lot::Mutex;
use tokio::time::Instant;

/// Limits; `None` is unlimited.
#[derive(Debug, Clone)]
pub struct AdmissionConfig {
    /// New calls a second, node-wide (bursts up to one second's worth).
    pub max_cps: Option<f64>,
    /// Calls up at once, node-wide.
    pub max_calls: Option<usize>,
    /// REGISTERs a second, node-wide.
    pub max_registers_per_s: Option<f64>,
    /// Event-loop lag above which new calls and registrations are shed.
    pub max_lag: Option<Duration>,
    /// INVITE server transactions waiting for a final answer, node-wide.
    pub max_pending: Option<usize>,
    /// INVITE server transactions waiting for a final answer from one
    /// source address.
    pub max_pending_per_source: Option<usize>,
    /// New calls a second from one source address (trunks' addresses are
    /// held to their trunk's `max_cps` instead).
    pub max_cps_per_source: Option<f64>,
    /// Calls up at once placed by one member (as caller or payer).
    pub max_calls_per_member: Option<usize>,
    /// Calls up at once that came in from one source address (trunks'
    /// addresses are held to their trunk's `max_channels` instead).
    pub max_calls_per_source: Option<usize>,
    /// New calls a second placed by one member.
    pub max_cps_per_member: Option<f64>,
    /// `Retry-After` of a shed request, seconds.
    pub retry_after_s: u32,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            max_cps: None,
            max_calls: None,
            max_registers_per_s: None,
            max_lag: Some(Duration::from_millis(250)),
            max_pending: None,
            max_pending_per_source: None,
            max_cps_per_source: None,
            max_calls_per_member: None,
            max_calls_per_source: None,
            max_cps_per_member: None,
            retry_after_s: 5,
        }
    }
}

/// Why a request was shed (the metric's label and the 503's reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// Over the new-call rate.
    Rate,
    /// Over the concurrent calls.
    Calls,
    /// The event loop is behind.
    Lag,
    /// The node is draining.
    Draining,
    /// The store refuses writes.
    Store,
    /// Too many INVITEs waiting for an answer.
    Pending,
    /// Over the new-call rate of the source address.
    Source,
    /// Over the calls up from the source address.
    SourceCalls,
    /// Over the member's calls up.
    MemberCalls,
    /// Over the member's new-call rate.
    MemberRate,
}

impl Shed {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Shed::Rate => "rate",
            Shed::Calls => "calls",
            Shed::Lag => "lag",
            Shed::Draining => "draining",
            Shed::Store => "store",
            Shed::Pending => "pending",
            Shed::Source => "source",
            Shed::SourceCalls => "source_calls",
            Shed::MemberCalls => "member_calls",
            Shed::MemberRate => "member_rate",
        }
    }

    /// Words for the 503's Reason.
    pub fn why(self) -> &'static str {
        match self {
            Shed::Rate => "too many new calls a second",
            Shed::Calls => "too many calls up",
            Shed::Lag => "overloaded",
            Shed::Draining => "shutting down",
            Shed::Store => "store unavailable: calls could not be billed",
            Shed::Pending => "too many calls being set up",
            Shed::Source => "too many new calls from this address",
            Shed::SourceCalls => "too many calls up from this address",
            Shed::MemberCalls => "too many calls up for this member",
            Shed::MemberRate => "too many new calls a second for this member",
        }
    }
}

/// A token bucket refilled at `rate` a second, holding at most `burst`
/// seconds' worth (at least one token); it starts full.
#[derive(Debug, Default)]
pub(crate) struct Bucket {
    tokens: f64,
    at: Option<Instant>,
}

impl Bucket {
    /// Whether it was asked for within [`IDLE_AFTER`] of `now` (an idle
    /// bucket is full again and may be forgotten).
    pub(crate) fn recent(&self, now: Instant) -> bool {
        self.at
            .is_some_and(|t| now.saturating_duration_since(t) < IDLE_AFTER)
    }

    /// Take a token at `now`, if there is one.
    pub(crate) fn take(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        let cap = (rate * burst).max(1.0);
        self.tokens = match self.at {
            None => cap,
            Some(t) => {
                (self.tokens + now.saturating_duration_since(t).as_secs_f64() * rate).min(cap)
            }
        };
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The node's admission state.
#[derive(Debug)]
pub struct Admission {
    cfg: AdmissionConfig,
    calls: Mutex<Bucket>,
    registers: Mutex<Bucket>,
    /// Call-IDs admitted recently: the challenged INVITE's retry is free.
    admitted: DashMap<String, Instant>,
    active: AtomicUsize,
    /// New-call buckets by source address, and the rates of trunks'.
    sources: DashMap<Origin, Bucket>,
    /// Every trunk's address, and the limits of those that have them.
    trunks: std::collections::HashSet<SocketAddr>,
    trunk_rates: std::collections::HashMap<SocketAddr, f64>,
    /// Calls up by source address, and trunks' channel limits.
    sources_up: DashMap<Origin, usize>,
    trunk_channels: std::collections::HashMap<SocketAddr, usize>,
    /// Calls up and new-call buckets by member.
    members: DashMap<String, (usize, Bucket)>,
    draining: AtomicBool,
    store_down: AtomicBool,
    lag_us: AtomicU64,
}

/// Whom a call up counts against: the member placing it and, for a call
/// that came in, the address it came from.
#[derive(Debug, Clone, Default)]
pub struct Counted {
    /// The caller (or the payer of a placed call).
    pub member: String,
    /// Where its INVITE came from (`None` for calls the engine places).
    pub source: Option<SocketAddr>,
}

/// Where calls come from, for the per-source limits: a trunk (by its
/// address and port: its own limits) or any other address (by IP: the
/// node's per-source limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Origin {
    Trunk(SocketAddr),
    Address(std::net::IpAddr),
}

/// How long after its last use a rate bucket is forgotten.
const IDLE_AFTER: Duration = Duration::from_secs(10);

/// How long an admitted Call-ID covers its retries (Timer B).
const RETRY_WINDOW: Duration = Duration::from_secs(32);

impl Admission {
    /// Admission under `cfg`.
    pub fn new(cfg: AdmissionConfig) -> Admission {
        Admission::with_trunks(cfg, [])
    }

    /// Admission under `cfg`, where calls from a trunk's address are held
    /// to that trunk's new-call rate and channels (`None`: unlimited).
    pub fn with_trunks(
        cfg: AdmissionConfig,
        trunks: impl IntoIterator<Item = (SocketAddr, Option<f64>, Option<usize>)>,
    ) -> Admission {
        let mut all = std::collections::HashSet::new();
        let mut trunk_rates = std::collections::HashMap::new();
        let mut trunk_channels = std::collections::HashMap::new();
        for (addr, rate, channels) in trunks {
            all.insert(addr);
            if let Some(r) = rate {
                trunk_rates.insert(addr, r);
            }
            if let Some(c) = channels {
                trunk_channels.insert(addr, c);
            }
        }
        Admission {
            cfg,
            sources: DashMap::new(),
            trunks: all,
            trunk_rates,
            sources_up: DashMap::new(),
            trunk_channels,
            members: DashMap::new(),
            calls: Mutex::new(Bucket::default()),
            registers: Mutex::new(Bucket::default()),
            admitted: DashMap::new(),
            active: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            store_down: AtomicBool::new(false),
            lag_us: AtomicU64::new(0),
        }
    }

    /// `Retry-After` of a shed request.
    pub fn retry_after(&self) -> u32 {
        self.cfg.retry_after_s
    }

    /// May a new call with this Call-ID from `source` start at `now`, with
    /// `pending` INVITE transactions waiting for an answer (node-wide, and
    /// from `source`)?
    pub fn admit_invite(
        &self,
        call_id: &str,
        source: SocketAddr,
        (pending, pending_from_source): (usize, usize),
        now: Instant,
    ) -> Result<(), Shed> {
        if self.retry_of_admitted(call_id, now) {
            return Ok(());
        }
        if self.cfg.max_pending.is_some_and(|max| pending >= max)
            || self
                .cfg
                .max_pending_per_source
                .is_some_and(|max| pending_from_source >= max)
        {
            return Err(Shed::Pending);
        }
        let origin = self.origin(source);
        if let Some(max) = self.source_call_limit(origin)
            && self.sources_up.get(&origin).is_some_and(|n| *n >= max)
        {
            return Err(Shed::SourceCalls);
        }
        let rate = match origin {
            Origin::Trunk(a) => self.trunk_rates.get(&a).copied(),
            Origin::Address(_) => self.cfg.max_cps_per_source,
        };
        if let Some(rate) = rate
            && !self.sources.entry(origin).or_default().take(rate, 1.0, now)
        {
            return Err(Shed::Source);
        }
        self.admit_call(call_id, now)
    }

    fn origin(&self, source: SocketAddr) -> Origin {
        if self.trunks.contains(&source) {
            Origin::Trunk(source)
        } else {
            Origin::Address(source.ip())
        }
    }

    fn source_call_limit(&self, origin: Origin) -> Option<usize> {
        match origin {
            Origin::Trunk(a) => self.trunk_channels.get(&a).copied(),
            Origin::Address(_) => self.cfg.max_calls_per_source,
        }
    }

    fn retry_of_admitted(&self, call_id: &str, now: Instant) -> bool {
        self.admitted
            .get(call_id)
            .is_some_and(|t| now.saturating_duration_since(*t) < RETRY_WINDOW)
    }

    /// May `member` place another call at `now` (checked once the caller is
    /// authenticated)? The retry of an admitted call is not counted again.
    pub fn admit_member(&self, member: &str, now: Instant) -> Result<(), Shed> {
        if self.cfg.max_calls_per_member.is_none() && self.cfg.max_cps_per_member.is_none() {
            return Ok(());
        }
        let mut entry = self.members.entry(member.to_owned()).or_default();
        let (up, bucket) = &mut *entry;
        if self.cfg.max_calls_per_member.is_some_and(|max| *up >= max) {
            return Err(Shed::MemberCalls);
        }
        if let Some(rate) = self.cfg.max_cps_per_member
            && !bucket.take(rate, 1.0, now)
        {
            return Err(Shed::MemberRate);
        }
        Ok(())
    }

    /// May a new call with this Call-ID start at `now`?
    pub fn admit_call(&self, call_id: &str, now: Instant) -> Result<(), Shed> {
        if self.draining.load(Ordering::Relaxed) {
            return Err(Shed::Draining);
        }
        if self.store_down() {
            return Err(Shed::Store);
        }
        if self.retry_of_admitted(call_id, now) {
            return Ok(());
        }
        if self.lagging() {
            return Err(Shed::Lag);
        }
        if self
            .cfg
            .max_calls
            .is_some_and(|max| self.active.load(Ordering::Relaxed) >= max)
        {
            return Err(Shed::Calls);
        }
        if let Some(rate) = self.cfg.max_cps
            && !self.calls.lock().take(rate, 1.0, now)
        {
            return Err(Shed::Rate);
        }
        self.admitted.insert(call_id.to_owned(), now);
        Ok(())
    }

    /// May a REGISTER be handled at `now`?
    pub fn admit_register(&self, now: Instant) -> Result<(), Shed> {
        if self.store_down() {
            return Err(Shed::Store);
        }
        if self.lagging() {
            return Err(Shed::Lag);
        }
        match self.cfg.max_registers_per_s {
            Some(rate) if !self.registers.lock().take(rate, 1.0, now) => Err(Shed::Rate),
            _ => Ok(()),
        }
    }

    fn lagging(&self) -> bool {
        self.cfg.max_lag.is_some_and(|max| {
            self.lag_us.load(Ordering::Relaxed) > u64::try_from(max.as_micros()).unwrap_or(u64::MAX)
        })
    }

    /// Forget what no longer limits anything at `now`: Call-IDs past their
    /// retry window, idle buckets, members with no call up and an idle
    /// bucket. Run once a second by the node (not per request: a flood of
    /// new sources must not make each request walk the maps).
    pub fn sweep(&self, now: Instant) {
        self.admitted
            .retain(|_, t| now.saturating_duration_since(*t) < RETRY_WINDOW);
        self.sources.retain(|_, b| b.recent(now));
        self.members.retain(|_, (up, b)| *up > 0 || b.recent(now));
    }

    /// A call started (every call, admitted here or placed by the engine);
    /// the calls-up gauge follows.
    pub fn call_started(&self, who: &Counted) {
        if self.cfg.max_calls_per_member.is_some() {
            self.members.entry(who.member.clone()).or_default().0 += 1;
        }
        if let Some(source) = who.source {
            let origin = self.origin(source);
            if self.source_call_limit(origin).is_some() {
                *self.sources_up.entry(origin).or_default() += 1;
            }
        }
        self.active.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!(crate::metrics::CALLS_ACTIVE).increment(1.0);
    }

    /// A call ended.
    pub fn call_ended(&self, who: &Counted) {
        if let Some(source) = who.source {
            let origin = self.origin(source);
            if self.source_call_limit(origin).is_some() {
                if let Some(mut n) = self.sources_up.get_mut(&origin) {
                    *n = n.saturating_sub(1);
                }
                self.sources_up.remove_if(&origin, |_, n| *n == 0);
            }
        }
        if self.cfg.max_calls_per_member.is_some()
            && let Some(mut e) = self.members.get_mut(&who.member)
        {
            // Forgotten by the sweep once idle.
            e.0 = e.0.saturating_sub(1);
        }
        if self
            .active
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            metrics::gauge!(crate::metrics::CALLS_ACTIVE).decrement(1.0);
        }
    }

    /// Calls up.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Refuse every new call from now on (graceful drain).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// A store write failed: new calls and registrations are refused until
    /// [`Admission::store_recovered`].
    pub fn store_failed(&self) {
        if !self.store_down.swap(true, Ordering::Relaxed) {
            tracing::error!("store refuses writes: refusing new calls and registrations");
            metrics::gauge!(crate::metrics::STORE_UP).set(0.0);
        }
    }

    /// A store write succeeded again.
    pub fn store_recovered(&self) {
        if self.store_down.swap(false, Ordering::Relaxed) {
            tracing::warn!("store takes writes again: taking calls");
            metrics::gauge!(crate::metrics::STORE_UP).set(1.0);
        }
    }

    /// Whether the store is refusing writes.
    pub fn store_down(&self) -> bool {
        self.store_down.load(Ordering::Relaxed)
    }

    /// Whether the node is draining.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Record how late the lag probe fired.
    pub fn record_lag(&self, late: Duration) {
        let us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
        // A smoothed value: one late tick is not overload, a run of them is.
        let old = self.lag_us.load(Ordering::Relaxed);
        self.lag_us.store((old * 3 + us) / 4, Ordering::Relaxed);
        metrics::gauge!(crate::metrics::EVENT_LOOP_LAG).set(us as f64 / 1e6);
    }
}

/// Measure the event loop's lag every 50 ms into `admission`, forever.
pub async fn probe_lag(admission: std::sync::Arc<Admission>) {
    let period = Duration::from_millis(50);
    loop {
        let start = Instant::now();
        tokio::time::sleep(period).await;
        let late = start.elapsed().saturating_sub(period);
        admission.record_lag(late);
    }
}

/// How often a node writes its heartbeat (and so learns whether the store
/// takes writes).
pub const STORE_PROBE: std::time::Duration = std::time::Duration::from_secs(1);

/// Write `node`'s heartbeat every [`STORE_PROBE`]: a failure marks the store
/// down (new calls and registrations 503), the next success marks it up.
/// Failed writes of calls (CDRs, holds, charges) mark it down at once too.
pub async fn watch_store(
    store: std::sync::Arc<dyn schema::store::Store>,
    admission: std::sync::Arc<Admission>,
    node: String,
) {
    metrics::gauge!(crate::metrics::STORE_UP).set(1.0);
    let mut every = tokio::time::interval(STORE_PROBE);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match store.heartbeat(&node, crate::clock::unix_now()).await {
            Ok(()) => admission.store_recovered(),
            Err(e) => {
                if !admission.store_down() {
                    tracing::error!(error = %e, "heartbeat not written");
                }
                admission.store_failed();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(member: &str, source: Option<SocketAddr>) -> Counted {
        Counted {
            member: member.into(),
            source,
        }
    }

    #[tokio::test]
    async fn the_rate_sheds_the_excess_and_refills() {
        let a = Admission::new(AdmissionConfig {
            max_cps: Some(10.0),
            ..AdmissionConfig::default()
        });
        let now = Instant::now();
        let admitted = (0..25)
            .filter(|i| a.admit_call(&format!("c{i}"), now).is_ok())
            .count();
        assert_eq!(admitted, 10, "one second's worth at once");
        assert_eq!(a.admit_call("c99", now), Err(Shed::Rate));
        // The authenticated retry of an admitted call is not a new call.
        assert_eq!(a.admit_call("c0", now), Ok(()));
        let later = now + Duration::from_millis(500);
        let more = (100..120)
            .filter(|i| a.admit_call(&format!("c{i}"), later).is_ok())
            .count();
        assert_eq!(more, 5, "half a second refills half");
    }

    #[tokio::test]
    async fn concurrency_lag_and_drain_shed_new_calls() {
        let a = Admission::new(AdmissionConfig {
            max_calls: Some(2),
            ..AdmissionConfig::default()
        });
        let now = Instant::now();
        a.call_started(&who("m", None));
        a.call_started(&who("m", None));
        assert_eq!(a.admit_call("x", now), Err(Shed::Calls));
        a.call_ended(&who("m", None));
        assert_eq!(a.admit_call("x", now), Ok(()));
        for _ in 0..8 {
            a.record_lag(Duration::from_millis(400));
        }
        assert_eq!(a.admit_call("y", now), Err(Shed::Lag));
        assert_eq!(a.admit_register(now), Err(Shed::Lag));
        for _ in 0..16 {
            a.record_lag(Duration::ZERO);
        }
        assert_eq!(a.admit_register(now), Ok(()));
        a.drain();
        assert_eq!(a.admit_call("z", now), Err(Shed::Draining));
        a.call_ended(&who("m", None));
        a.call_ended(&who("m", None));
        assert_eq!(a.active(), 0, "never below zero");
    }

    #[tokio::test]
    async fn sources_pending_and_members_have_their_own_limits() {
        let trunk = SocketAddr::from(([10, 0, 0, 9], 5060));
        let phone = SocketAddr::from(([192, 0, 2, 1], 5060));
        let other = SocketAddr::from(([192, 0, 2, 2], 5060));
        let a = Admission::with_trunks(
            AdmissionConfig {
                max_cps_per_source: Some(2.0),
                max_pending: Some(3),
                max_pending_per_source: Some(2),
                max_calls_per_member: Some(1),
                max_cps_per_member: Some(3.0),
                ..AdmissionConfig::default()
            },
            [(trunk, Some(5.0), None)],
        );
        let now = Instant::now();
        let from = |ip, n: std::ops::Range<u32>| {
            n.filter(|i| {
                a.admit_invite(&format!("{ip}-{i}"), ip, (0, 0), now)
                    .is_ok()
            })
            .count()
        };
        assert_eq!(from(phone, 0..10), 2, "the default per-source rate");
        assert_eq!(from(trunk, 0..10), 5, "a trunk's address: its own rate");
        assert_eq!(from(other, 0..1), 1, "another address is not held back");
        let beside_trunk = SocketAddr::from(([10, 0, 0, 9], 40000));
        assert_eq!(
            from(beside_trunk, 0..10),
            2,
            "another port on the trunk's IP is not the trunk"
        );
        assert_eq!(
            a.admit_invite("p", other, (3, 0), now),
            Err(Shed::Pending),
            "three INVITEs already pending"
        );
        assert_eq!(
            a.admit_invite("q", other, (2, 2), now),
            Err(Shed::Pending),
            "two pending from that address"
        );
        assert_eq!(
            a.admit_invite(&format!("{phone}-0"), phone, (0, 0), now),
            Ok(()),
            "the retry of an admitted call passes"
        );
        // A member: one call up at a time, three new calls a second.
        assert_eq!(a.admit_member("100", now), Ok(()));
        a.call_started(&who("100", None));
        assert_eq!(a.admit_member("100", now), Err(Shed::MemberCalls));
        assert_eq!(a.admit_member("200", now), Ok(()), "others unaffected");
        a.call_ended(&who("100", None));
        // Its second and third new call of this second; not a fourth.
        assert_eq!(a.admit_member("100", now), Ok(()));
        assert_eq!(a.admit_member("100", now), Ok(()));
        assert_eq!(a.admit_member("100", now), Err(Shed::MemberRate));
    }

    #[tokio::test]
    async fn a_store_that_refuses_writes_sheds_calls_and_registrations() {
        let a = Admission::new(AdmissionConfig::default());
        let now = Instant::now();
        a.store_failed();
        assert_eq!(a.admit_call("x", now), Err(Shed::Store));
        assert_eq!(a.admit_register(now), Err(Shed::Store));
        a.store_recovered();
        assert_eq!(a.admit_call("x", now), Ok(()));
        assert_eq!(a.admit_register(now), Ok(()));
    }

    #[tokio::test]
    async fn calls_up_are_limited_per_source_and_per_trunk_address() {
        let trunk = SocketAddr::from(([10, 0, 0, 9], 5060));
        let phone = SocketAddr::from(([192, 0, 2, 1], 5060));
        let a = Admission::with_trunks(
            AdmissionConfig {
                max_calls_per_source: Some(1),
                ..AdmissionConfig::default()
            },
            [(trunk, None, Some(2))],
        );
        let now = Instant::now();
        a.call_started(&who("100", Some(phone)));
        assert_eq!(
            a.admit_invite("p2", phone, (0, 0), now),
            Err(Shed::SourceCalls)
        );
        a.call_started(&who("t", Some(trunk)));
        assert_eq!(
            a.admit_invite("t2", trunk, (0, 0), now),
            Ok(()),
            "a trunk: its channels"
        );
        a.call_started(&who("t", Some(trunk)));
        assert_eq!(
            a.admit_invite("t3", trunk, (0, 0), now),
            Err(Shed::SourceCalls)
        );
        a.call_ended(&who("100", Some(phone)));
        assert_eq!(a.admit_invite("p3", phone, (0, 0), now), Ok(()));
        assert_eq!(
            a.sources_up.len(),
            1,
            "the phone's count forgotten when idle"
        );
        assert!(a.sources_up.get(&Origin::Address(phone.ip())).is_none());
    }

    #[tokio::test]
    async fn the_sweep_forgets_only_what_no_longer_limits() {
        let a = Admission::new(AdmissionConfig {
            max_cps_per_source: Some(1.0),
            max_calls_per_member: Some(1),
            ..AdmissionConfig::default()
        });
        let now = Instant::now();
        let phone = SocketAddr::from(([192, 0, 2, 1], 5060));
        assert_eq!(a.admit_invite("c1", phone, (0, 0), now), Ok(()));
        a.call_started(&who("100", Some(phone)));
        assert_eq!(a.admit_member("200", now), Ok(()));
        a.sweep(now + Duration::from_secs(5));
        assert_eq!(
            a.admit_invite("c2", phone, (0, 0), now),
            Err(Shed::Source),
            "a bucket in use is kept"
        );
        let later = now + RETRY_WINDOW + Duration::from_secs(1);
        a.sweep(later);
        assert!(a.admitted.is_empty() && a.sources.is_empty());
        assert_eq!(a.members.len(), 1, "100 has a call up, 200 is idle");
        assert_eq!(a.admit_member("100", later), Err(Shed::MemberCalls));
    }
}

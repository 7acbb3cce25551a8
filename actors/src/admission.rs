//! Overload control: which new calls and registrations the node takes.
//!
//! New INVITEs (out of dialog) are admitted while the node is under its
//! limits: new calls per second (a token bucket; the authenticated retry of
//! a challenged INVITE belongs to the call already counted, by Call-ID),
//! concurrent calls, and the measured event-loop lag (a timer that should
//! fire every 50 ms; when it fires late the node is falling behind, and new
//! work is shed before it does). REGISTERs have their own rate. Above a
//! limit the request gets `503 Service Unavailable` with `Retry-After`, and
//! calls already up carry on: requests inside a dialog are never shed. While
//! the node drains (SIGTERM) every new call is refused the same way.

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
}

impl Shed {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Shed::Rate => "rate",
            Shed::Calls => "calls",
            Shed::Lag => "lag",
            Shed::Draining => "draining",
        }
    }

    /// Words for the 503's Reason.
    pub fn why(self) -> &'static str {
        match self {
            Shed::Rate => "too many new calls a second",
            Shed::Calls => "too many calls up",
            Shed::Lag => "overloaded",
            Shed::Draining => "shutting down",
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
    /// When a token was last asked for.
    pub(crate) fn last(&self) -> Option<Instant> {
        self.at
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
    draining: AtomicBool,
    lag_us: AtomicU64,
}

/// How long an admitted Call-ID covers its retries (Timer B).
const RETRY_WINDOW: Duration = Duration::from_secs(32);

impl Admission {
    /// Admission under `cfg`.
    pub fn new(cfg: AdmissionConfig) -> Admission {
        Admission {
            cfg,
            calls: Mutex::new(Bucket::default()),
            registers: Mutex::new(Bucket::default()),
            admitted: DashMap::new(),
            active: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            lag_us: AtomicU64::new(0),
        }
    }

    /// `Retry-After` of a shed request.
    pub fn retry_after(&self) -> u32 {
        self.cfg.retry_after_s
    }

    /// May a new call with this Call-ID start at `now`?
    pub fn admit_call(&self, call_id: &str, now: Instant) -> Result<(), Shed> {
        if self.draining.load(Ordering::Relaxed) {
            return Err(Shed::Draining);
        }
        if self
            .admitted
            .get(call_id)
            .is_some_and(|t| now.saturating_duration_since(*t) < RETRY_WINDOW)
        {
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
        if self.admitted.len() > 100_000 {
            self.admitted
                .retain(|_, t| now.saturating_duration_since(*t) < RETRY_WINDOW);
        }
        self.admitted.insert(call_id.to_owned(), now);
        Ok(())
    }

    /// May a REGISTER be handled at `now`?
    pub fn admit_register(&self, now: Instant) -> Result<(), Shed> {
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

    /// A call started (every call, admitted here or placed by the engine);
    /// the calls-up gauge follows.
    pub fn call_started(&self) {
        self.active.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!(crate::metrics::CALLS_ACTIVE).increment(1.0);
    }

    /// A call ended.
    pub fn call_ended(&self) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        a.call_started();
        a.call_started();
        assert_eq!(a.admit_call("x", now), Err(Shed::Calls));
        a.call_ended();
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
        a.call_ended();
        a.call_ended();
        assert_eq!(a.active(), 0, "never below zero");
    }
}

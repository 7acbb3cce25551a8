//! Counters and latency histograms of a run, and its timeline.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Everything counted during a run. Shared by the workers and the reporter
/// (all on one thread: the lock is never contended).
#[derive(Debug, Default)]
pub struct Stats {
    /// Calls started.
    pub started: u64,
    /// Calls that reached the end of the scenario.
    pub succeeded: u64,
    /// Failed calls by reason: a SIP status code, `timeout`, `unexpected
    /// METHOD`, `unfinished` (still running when the run's time was up), ...
    pub failed: BTreeMap<String, u64>,
    /// Calls in progress.
    pub active: u64,
    /// Highest number of calls in progress.
    pub peak_active: u64,
    /// SIP messages sent (retransmissions included).
    pub msgs_out: u64,
    /// SIP messages received.
    pub msgs_in: u64,
    /// Retransmissions sent.
    pub retrans_out: u64,
    /// Retransmissions received and absorbed.
    pub retrans_in: u64,
    /// Messages that belonged to no call or could not be parsed.
    pub stray: u64,
    /// RTP packets echoed.
    pub rtp_echoed: u64,
    /// Latency from a request to a response, in microseconds, by label
    /// such as `INVITE→180`.
    pub latency: BTreeMap<String, Histogram<u64>>,
    interval: BTreeMap<String, Histogram<u64>>,
}

/// Shared handle.
pub type Shared = Arc<Mutex<Stats>>;

/// Lock, surviving a poisoned lock (a panicking worker must not hide the
/// figures of the others).
pub fn lock(s: &Shared) -> MutexGuard<'_, Stats> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 10 min at 3 significant figures; the bounds are constants.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant bounds are valid")
}

impl Stats {
    /// A call started.
    pub fn start(&mut self) {
        self.started += 1;
        self.active += 1;
        self.peak_active = self.peak_active.max(self.active);
    }

    /// A call ended well.
    pub fn succeed(&mut self) {
        self.succeeded += 1;
        self.active = self.active.saturating_sub(1);
    }

    /// A call failed.
    pub fn fail(&mut self, reason: &str) {
        *self.failed.entry(reason.to_owned()).or_default() += 1;
        self.active = self.active.saturating_sub(1);
    }

    /// Calls failed so far.
    pub fn failures(&self) -> u64 {
        self.failed.values().sum()
    }

    /// Record a latency.
    pub fn record(&mut self, label: &str, d: Duration) {
        let us = u64::try_from(d.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, 600_000_000);
        for map in [&mut self.latency, &mut self.interval] {
            if let Some(h) = map.get_mut(label) {
                let _ = h.record(us);
            } else {
                let mut h = histogram();
                let _ = h.record(us);
                map.insert(label.to_owned(), h);
            }
        }
    }

    /// Percentiles of the latencies recorded since the last call, then
    /// start a new interval.
    pub fn take_interval(&mut self) -> BTreeMap<String, Percentiles> {
        let out = self
            .interval
            .iter()
            .map(|(k, h)| (k.clone(), Percentiles::of(h)))
            .collect();
        self.interval.clear();
        out
    }
}

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Minimum.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Percentiles {
    /// Summarise a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            min: ms(h.min()),
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// One second of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the start.
    pub t: f64,
    /// Calls started in this second.
    pub started: u64,
    /// Calls succeeded in this second.
    pub succeeded: u64,
    /// Calls failed in this second.
    pub failed: u64,
    /// Calls in progress at the end of the second.
    pub active: u64,
    /// Latency percentiles of this second.
    pub latency: BTreeMap<String, Percentiles>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_percentiles() {
        let mut s = Stats::default();
        s.start();
        s.start();
        s.succeed();
        s.fail("486");
        assert_eq!(
            (
                s.started,
                s.succeeded,
                s.failures(),
                s.active,
                s.peak_active
            ),
            (2, 1, 1, 0, 2)
        );
        for ms in 1..=100 {
            s.record("INVITE→200", Duration::from_millis(ms));
        }
        let p = Percentiles::of(&s.latency["INVITE→200"]);
        assert_eq!(p.count, 100);
        assert!((p.p50 - 50.0).abs() < 0.1, "{p:?}");
        assert!((p.p99 - 99.0).abs() < 0.1, "{p:?}");
        let i = s.take_interval();
        assert_eq!(i["INVITE→200"].count, 100);
        assert!(s.take_interval().is_empty());
    }
}

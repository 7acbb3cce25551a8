//! Restart policy, written down as OTP child specs.
//!
//! ```text
//! Node                 root; restarts its children one_for_one, at most
//! │                    `MAX_RESTARTS` within `WINDOW`, else the node stops
//! ├─ Registrar         permanent: restarted (nonces and REGISTER
//! │                    transactions are lost; clients are challenged again)
//! └─ Center            permanent: restarted (live calls keep running as
//!    │                 orphans until they end; new calls go to the new Center)
//!    └─ Call           temporary: never restarted; on failure the Center
//!       │              releases its legs (BYE/CANCEL/500) from snapshots
//!       └─ Leg         significant: a Leg failure fails its Call
//! ```
//!
//! ractor has no restart strategies of its own: these are implemented in
//! each supervisor's `handle_supervisor_evt` (see node.rs and center.rs).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How a child is treated when it dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Always restarted.
    Permanent,
    /// Restarted only after an abnormal exit.
    Transient,
    /// Never restarted.
    Temporary,
}

/// Restarts allowed within [`WINDOW`] before the supervisor gives up.
pub const MAX_RESTARTS: usize = 10;
/// The intensity window.
pub const WINDOW: Duration = Duration::from_secs(1);

/// OTP restart intensity: remembers recent restarts.
#[derive(Debug, Default)]
pub struct Intensity(VecDeque<Instant>);

impl Intensity {
    /// Record a restart at `now`; `false` when the limit is exceeded and the
    /// supervisor must stop instead.
    pub fn allow(&mut self, now: Instant) -> bool {
        while self
            .0
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > WINDOW)
        {
            self.0.pop_front();
        }
        self.0.push_back(now);
        self.0.len() <= MAX_RESTARTS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intensity_window() {
        let t0 = tokio::time::Instant::now().into_std();
        let mut i = Intensity::default();
        for _ in 0..MAX_RESTARTS {
            assert!(i.allow(t0));
        }
        assert!(
            !i.allow(t0),
            "the 11th restart within a second stops the supervisor"
        );
        let mut j = Intensity::default();
        for k in 0..30 {
            assert!(
                j.allow(t0 + Duration::from_millis(200 * k)),
                "spread restarts are fine"
            );
        }
    }
}

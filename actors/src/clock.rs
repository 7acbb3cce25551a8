//! Wall time for records that outlive the process (binding expiry, later
//! CDRs and the ledger). Monotonic time comes from `tokio::time::Instant`
//! so that paused-clock tests reach the engine.

/// Seconds since the Unix epoch.
#[allow(clippy::disallowed_methods)]
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The monotonic "now" handed to engine machines.
pub fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Milliseconds since the Unix epoch (CDR times).
#[allow(clippy::disallowed_methods)]
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

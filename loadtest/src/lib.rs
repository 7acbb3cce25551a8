//! `switchboard-load`: a SIP load generator and traffic replayer.
//!
//! It runs scenarios (built-in, SIPp XML of a documented subset, or
//! extracted from a capture) at a paced rate over UDP or TCP, and reports
//! counts, failures by cause, latency histograms and a per-second timeline
//! as JSON and as an HTML page. It shares SIP parsing and digest code with
//! the engine and runs without one.

pub mod builtin;
pub mod capture;
pub mod click;
pub mod media;
pub mod report;
pub mod rows;
pub mod run;
pub mod scenario;
pub mod stats;
pub mod template;

/// Now as RFC 3339 UTC (seconds), without a date crate.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

//! Test support shared by the engine's unit tests and the crates above it.

use std::time::Instant;

/// The one real clock reading the engine allows: the start of virtual time
/// in tests. Everything after it is `epoch() + offset`.
#[allow(clippy::disallowed_methods)]
pub fn epoch() -> Instant {
    Instant::now()
}

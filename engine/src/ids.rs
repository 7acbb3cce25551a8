//! Tags (§19.3), branches (§8.1.1.7) and Call-IDs (§8.1.1.4) from an
//! injected random source, so that tests are reproducible.

use rand::RngCore;

use crate::sip::msg::BRANCH_COOKIE;

fn token(rng: &mut dyn RngCore, bytes: usize) -> String {
    let mut raw = [0u8; 16];
    let n = bytes.min(raw.len());
    rng.fill_bytes(&mut raw[..n]);
    hex::encode(&raw[..n])
}

/// A From/To tag: 64 random bits.
pub fn tag(rng: &mut dyn RngCore) -> String {
    token(rng, 8)
}

/// A Via branch with the RFC 3261 magic cookie: 96 random bits.
pub fn branch(rng: &mut dyn RngCore) -> String {
    format!("{BRANCH_COOKIE}{}", token(rng, 12))
}

/// A Call-ID: 128 random bits, `@host` appended.
pub fn call_id(rng: &mut dyn RngCore, host: &str) -> String {
    format!("{}@{host}", token(rng, 16))
}

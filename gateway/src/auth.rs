//! Passwords (argon2id), bearer tokens (random, stored as SHA-256) and the
//! sign-in rate limiter (governor, per login and per source address).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Hash a password for storage (PHC string).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Does `password` match the stored hash?
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A new bearer token (256 random bits, base64url) and the hash stored for it.
pub fn new_token() -> (String, String) {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let hash = token_hash(&token);
    (token, hash)
}

/// The stored form of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compare secrets without leaking where they differ (through their hashes).
pub fn same_secret(a: &str, b: &str) -> bool {
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

/// Sign-in attempts allowed per minute, per login and per source address.
pub struct SignInLimiter {
    by_addr: DefaultKeyedRateLimiter<IpAddr>,
    /// Failed attempts per login: (count, last), forgotten after a while.
    failures: parking_lot::Mutex<HashMap<String, (u32, Instant)>>,
    free: u32,
    base: Duration,
}

/// Longest wait before a login's next attempt is answered.
pub const MAX_DELAY: Duration = Duration::from_secs(30);

/// A login's failures are forgotten this long after the last one.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

/// Logins and addresses remembered at most before the quiet ones go.
const MAX_KEYS: usize = 10_000;

/// The longest login accepted (an e-mail address).
pub const MAX_LOGIN: usize = 254;

impl SignInLimiter {
    /// `free` failed attempts for one login before its attempts are slowed
    /// down (waits of `base`, doubling with each further failure, at most
    /// [`MAX_DELAY`]); `per_addr` attempts a minute from one address.
    pub fn new(free: u32, per_addr: u32, base: Duration) -> Self {
        let q = |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN));
        SignInLimiter {
            by_addr: RateLimiter::keyed(q(per_addr)),
            failures: parking_lot::Mutex::new(HashMap::new()),
            free: free.max(1),
            base,
        }
    }

    /// May this address make another costly attempt (a sign-up hashes a
    /// password too)? Counts it against the address only.
    pub fn allow_addr(&self, addr: Option<IpAddr>) -> bool {
        if self.by_addr.len() > MAX_KEYS {
            self.by_addr.retain_recent();
        }
        addr.is_none_or(|a| self.by_addr.check_key(&a).is_ok())
    }

    /// How long an attempt for `login` waits before it is answered: nothing
    /// until it has failed `free` times, then a doubling wait. Its owner is
    /// slowed down like a guesser, never locked out.
    pub fn delay(&self, login: &str, now: Instant) -> Duration {
        let failures = self.failures.lock();
        let Some((n, last)) = failures.get(login) else {
            return Duration::ZERO;
        };
        if *n < self.free || now.saturating_duration_since(*last) >= FORGET_AFTER {
            return Duration::ZERO;
        }
        let doublings = (*n - self.free).min(16);
        self.base.saturating_mul(1 << doublings).min(MAX_DELAY)
    }

    /// An attempt for `login` failed.
    pub fn failed(&self, login: &str, now: Instant) {
        let mut failures = self.failures.lock();
        let recent =
            |(_, last): &(u32, Instant)| now.saturating_duration_since(*last) < FORGET_AFTER;
        if !crate::bounded::make_room(&mut failures, login, MAX_KEYS, recent) {
            // Every remembered login failed recently: the new one is not
            // tracked (the per-address limit still holds).
            return;
        }
        let e = failures.entry(login.to_owned()).or_insert((0, now));
        if now.saturating_duration_since(e.1) >= FORGET_AFTER {
            e.0 = 0;
        }
        *e = (e.0.saturating_add(1), now);
    }

    /// `login` signed in: its failures are forgotten.
    pub fn succeeded(&self, login: &str) {
        self.failures.lock().remove(login);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_tokens() {
        let h = hash_password("correct horse").unwrap_or_default();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("x", "not a hash"));
        let (t, hash) = new_token();
        assert_eq!(token_hash(&t), hash);
        assert_ne!(new_token().0, t);
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd"));
    }

    #[test]
    fn failures_slow_a_login_down_with_doubling_waits() {
        let l = SignInLimiter::new(3, 100, Duration::from_secs(1));
        let t0 = tokio::time::Instant::now().into_std();
        for _ in 0..3 {
            assert_eq!(l.delay("a@example.com", t0), Duration::ZERO);
            l.failed("a@example.com", t0);
        }
        assert_eq!(l.delay("a@example.com", t0), Duration::from_secs(1));
        l.failed("a@example.com", t0);
        assert_eq!(l.delay("a@example.com", t0), Duration::from_secs(2));
        for _ in 0..20 {
            l.failed("a@example.com", t0);
        }
        assert_eq!(l.delay("a@example.com", t0), MAX_DELAY, "capped");
        assert_eq!(
            l.delay("b@example.com", t0),
            Duration::ZERO,
            "another login"
        );
        assert_eq!(
            l.delay("a@example.com", t0 + FORGET_AFTER),
            Duration::ZERO,
            "forgotten"
        );
        l.succeeded("a@example.com");
        assert_eq!(l.delay("a@example.com", t0), Duration::ZERO);
    }

    #[test]
    fn failures_are_bounded_and_quiet_logins_forgotten() {
        let l = SignInLimiter::new(3, 100, Duration::from_secs(1));
        let t0 = tokio::time::Instant::now().into_std();
        for i in 0..MAX_KEYS {
            l.failed(&format!("{i}@example.com"), t0);
        }
        l.failed("new@example.com", t0);
        assert_eq!(l.failures.lock().len(), MAX_KEYS, "not grown");
        l.failed("new@example.com", t0 + FORGET_AFTER);
        assert_eq!(l.failures.lock().len(), 1, "the quiet ones forgotten");
    }
}

//! Passwords (argon2id), bearer tokens (random, stored as SHA-256) and the
//! sign-in rate limiter (governor, per login and per source address).

use std::net::IpAddr;
use std::num::NonZeroU32;

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
    by_login: DefaultKeyedRateLimiter<String>,
    by_addr: DefaultKeyedRateLimiter<IpAddr>,
}

impl SignInLimiter {
    /// `per_login` attempts a minute for one login, `per_addr` for one
    /// source address (both at least 1).
    pub fn new(per_login: u32, per_addr: u32) -> Self {
        let q = |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN));
        SignInLimiter {
            by_login: RateLimiter::keyed(q(per_login)),
            by_addr: RateLimiter::keyed(q(per_addr)),
        }
    }

    /// May this address make another costly attempt (a sign-up hashes a
    /// password too)? Counts it against the address only.
    pub fn allow_addr(&self, addr: Option<IpAddr>) -> bool {
        addr.is_none_or(|a| self.by_addr.check_key(&a).is_ok())
    }

    /// May this attempt go ahead? Counts it.
    pub fn allow(&self, login: &str, addr: Option<IpAddr>) -> bool {
        let login_ok = self.by_login.check_key(&login.to_owned()).is_ok();
        let addr_ok = addr.is_none_or(|a| self.by_addr.check_key(&a).is_ok());
        login_ok && addr_ok
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
    fn limiter_counts_per_login() {
        let l = SignInLimiter::new(3, 100);
        let ip = Some(IpAddr::from([127, 0, 0, 1]));
        assert!((0..3).all(|_| l.allow("a@example.com", ip)));
        assert!(!l.allow("a@example.com", ip), "fourth attempt in a minute");
        assert!(
            l.allow("b@example.com", ip),
            "another login is not affected"
        );
    }
}

//! Calls between the nodes of one cluster: the hop marker a node puts on an
//! INVITE it sends to the node that holds the callee's phone.
//!
//! `X-Switchboard-Node: origin=seoul-1;t=1764800000;sig=<hex>` where `sig`
//! is HMAC-SHA-256, keyed by the cluster's shared secret, of
//! `origin|called user|t`. The receiving node believes a request is its
//! sibling's (delivers it without challenge, does not bill it, never sends
//! it on to a third node) only when the signature holds and `t` is within
//! [`MAX_SKEW_S`] of its own clock. Sans-IO: time is passed in.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header that marks an INVITE from a sibling node.
pub const HOP_HEADER: &str = "X-Switchboard-Node";

/// How far a marker's time may be from the receiver's, seconds (clock
/// skew plus the request's way; bounds a replay).
pub const MAX_SKEW_S: u64 = 30;

/// Why a marker is not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HopError {
    /// A field is missing or malformed.
    #[error("malformed node marker")]
    Malformed,
    /// The time is too far from ours.
    #[error("node marker too old or from the future")]
    Stale,
    /// The signature does not hold.
    #[error("node marker signature does not match")]
    BadSignature,
}

fn mac(secret: &[u8], origin: &str, user: &str, t: u64) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    let mut m = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts every key length"),
    };
    m.update(origin.as_bytes());
    m.update(b"|");
    m.update(user.as_bytes());
    m.update(b"|");
    m.update(t.to_string().as_bytes());
    m
}

/// The marker node `origin` puts on an INVITE for `user` at time `now`
/// (Unix seconds).
pub fn sign(secret: &[u8], origin: &str, user: &str, now: u64) -> String {
    let sig = hex::encode(mac(secret, origin, user, now).finalize().into_bytes());
    format!("origin={origin};t={now};sig={sig}")
}

/// The calling node's call id a marker names (`;call=`, after the signed
/// fields: it links the two records of one call and proves nothing).
pub fn correlation(value: &str) -> Option<String> {
    value.split(';').find_map(|p| {
        p.trim()
            .strip_prefix("call=")
            .filter(|c| !c.is_empty() && c.len() <= 128)
            .map(str::to_owned)
    })
}

/// The sibling that sent `value` for `user`, if the marker holds at `now`.
pub fn verify(secret: &[u8], value: &str, user: &str, now: u64) -> Result<String, HopError> {
    let mut origin = None;
    let mut t = None;
    let mut sig = None;
    for part in value.split(';') {
        match part.trim().split_once('=') {
            Some(("origin", v)) if !v.is_empty() => origin = Some(v),
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("sig", v)) => sig = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(origin), Some(t), Some(sig)) = (origin, t, sig) else {
        return Err(HopError::Malformed);
    };
    if t.abs_diff(now) > MAX_SKEW_S {
        return Err(HopError::Stale);
    }
    mac(secret, origin, user, t)
        .verify_slice(&sig)
        .map_err(|_| HopError::BadSignature)?;
    Ok(origin.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"cluster secret";

    #[test]
    fn a_marker_holds_for_its_user_within_the_skew() {
        let m = sign(KEY, "seoul-1", "500", 1_000);
        assert_eq!(verify(KEY, &m, "500", 1_000), Ok("seoul-1".into()));
        assert_eq!(verify(KEY, &m, "500", 1_030), Ok("seoul-1".into()));
        assert_eq!(verify(KEY, &m, "500", 1_031), Err(HopError::Stale));
        assert_eq!(verify(KEY, &m, "500", 969), Err(HopError::Stale));
    }

    #[test]
    fn a_marker_for_another_user_key_or_origin_fails() {
        let m = sign(KEY, "seoul-1", "500", 1_000);
        assert_eq!(verify(KEY, &m, "501", 1_000), Err(HopError::BadSignature));
        assert_eq!(
            verify(b"other", &m, "500", 1_000),
            Err(HopError::BadSignature)
        );
        let forged = m.replace("origin=seoul-1", "origin=virginia-1");
        assert_eq!(
            verify(KEY, &forged, "500", 1_000),
            Err(HopError::BadSignature)
        );
        let later = m.replace("t=1000", "t=1001");
        assert_eq!(
            verify(KEY, &later, "500", 1_000),
            Err(HopError::BadSignature)
        );
    }

    #[test]
    fn a_marker_names_its_call_without_changing_its_signature() {
        let m = format!("{};call=abc@call", sign(KEY, "seoul-1", "500", 1_000));
        assert_eq!(verify(KEY, &m, "500", 1_000), Ok("seoul-1".into()));
        assert_eq!(correlation(&m), Some("abc@call".into()));
        assert_eq!(correlation(&sign(KEY, "seoul-1", "500", 1_000)), None);
    }

    #[test]
    fn malformed_markers_are_refused() {
        for bad in [
            "",
            "origin=a",
            "origin=a;t=x;sig=00",
            "t=1;sig=zz",
            "origin=;t=1;sig=00",
        ] {
            assert_eq!(
                verify(KEY, bad, "500", 1),
                Err(HopError::Malformed),
                "{bad}"
            );
        }
    }
}

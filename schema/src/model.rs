//! Plain data types shared by every layer; no behaviour beyond validation.

use serde::{Deserialize, Serialize};

/// A member: its number is its SIP identity (address of record
/// `sip:NUMBER@<any host the engine serves>`, digest username NUMBER).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member's number, canonical digits.
    pub number: String,
    /// Display name.
    pub name: String,
    /// Digest realm the HA1 values were computed for.
    pub realm: String,
    /// MD5(number:realm:password), hex. The password itself is never stored.
    pub ha1_md5: String,
    /// SHA-256(number:realm:password), hex.
    pub ha1_sha256: String,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: u64,
}

/// One registered contact of a member (RFC 3261 §10.3). Expiry is a property
/// of the record: a backend must not return it after `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The member's number (partition key).
    pub number: String,
    /// The Contact URI as registered.
    pub contact: String,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: u64,
    /// Call-ID of the REGISTER that last refreshed it (§10.3 step 7).
    pub call_id: String,
    /// CSeq of that REGISTER.
    pub cseq: u32,
    /// Where the REGISTER came from, `transport:ip:port` (for NAT: requests
    /// to this contact are sent there).
    pub source: String,
}

/// Numbers are canonical digit strings of 3 to 20 digits.
pub fn is_valid_number(s: &str) -> bool {
    (3..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

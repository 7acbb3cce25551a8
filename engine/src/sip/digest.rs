//! HTTP digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616,
//! RFC 8760): challenges, credential parsing, verification against a stored
//! HA1, and a nonce table that expires nonces (stale=true) and refuses a
//! replayed nonce-count.
//!
//! Implemented: algorithms MD5 and SHA-256, qop=auth, and the RFC 2069 form
//! without qop (only where a [`Policy`] allows it); the digest-uri is
//! checked against the Request-URI. Not implemented: `-sess` algorithms, qop=auth-int,
//! SHA-512-256, `userhash`.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use md5::Digest as _;
use rand::RngCore;

/// A digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// MD5 (RFC 2617), what most deployed phones speak.
    Md5,
    /// SHA-256 (RFC 7616, RFC 8760), preferred.
    Sha256,
}

impl Algorithm {
    /// The token in `algorithm=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Parse an `algorithm=` token; an absent one means MD5 (RFC 2617 §3.2.1).
    pub fn parse(s: Option<&str>) -> Result<Algorithm, Error> {
        match s {
            None => Ok(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("MD5") => Ok(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("SHA-256") => Ok(Algorithm::Sha256),
            Some(_) => Err(Error::Algorithm),
        }
    }

    /// Hex digest of `data`.
    pub fn hash(self, data: &str) -> String {
        match self {
            Algorithm::Md5 => hex::encode(md5::Md5::digest(data.as_bytes())),
            Algorithm::Sha256 => hex::encode(sha2::Sha256::digest(data.as_bytes())),
        }
    }

    /// HA1 = H(username ":" realm ":" password), what the store keeps.
    pub fn ha1(self, username: &str, realm: &str, password: &str) -> String {
        self.hash(&format!("{username}:{realm}:{password}"))
    }
}

/// Why credentials were not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The header is `Digest` credentials that lack a mandatory parameter
    /// or do not parse.
    #[error("malformed credentials")]
    Malformed,
    /// The header is credentials of another scheme than Digest: answered
    /// with a challenge, not a 400 (RFC 4475 §3.4.7).
    #[error("not a Digest scheme")]
    Scheme,
    /// The algorithm is not one we offer.
    #[error("unsupported algorithm")]
    Algorithm,
    /// The realm is not ours.
    #[error("wrong realm")]
    Realm,
    /// The nonce was never issued by us (or was forgotten).
    #[error("unknown nonce")]
    UnknownNonce,
    /// The nonce expired: challenge again with stale=true.
    #[error("stale nonce")]
    Stale,
    /// The nonce-count did not increase, with the right response: the
    /// same answer again (a retransmission, or a capture replayed), not a
    /// guess at the password (a wrong response with an old count is
    /// [`Error::Mismatch`]).
    #[error("replayed nonce count")]
    Replay,
    /// The response digest does not match: wrong password.
    #[error("wrong response")]
    Mismatch,
    /// The answer has no qop and the policy requires qop=auth.
    #[error("qop=auth required")]
    QopRequired,
    /// The digest-uri is not the request's Request-URI (RFC 3261 §22.4).
    #[error("digest uri does not match the Request-URI")]
    Uri,
}

/// A URI's parameters, lower-cased and sorted, for comparison.
fn lowered_params(u: &crate::sip::msg::Uri) -> Vec<(String, Option<String>)> {
    let mut p: Vec<(String, Option<String>)> = u
        .params
        .iter()
        .map(|(n, v)| {
            (
                n.to_ascii_lowercase(),
                v.as_ref().map(|v| v.to_ascii_lowercase()),
            )
        })
        .collect();
    p.sort();
    p
}

/// `scheme:IPv6:port` naming the Request-URI's scheme, address and port.
fn unbracketed_server(digest_uri: &str, request_uri: &crate::sip::msg::Uri) -> bool {
    let Some((scheme, rest)) = digest_uri.split_once(':') else {
        return false;
    };
    let Some((ip, port)) = rest.rsplit_once(':') else {
        return false;
    };
    let (Ok(ip), Ok(port), Ok(want)) = (
        ip.parse::<std::net::Ipv6Addr>(),
        port.parse::<u16>(),
        request_uri.host.parse::<std::net::Ipv6Addr>(),
    ) else {
        return false;
    };
    scheme.eq_ignore_ascii_case(&request_uri.scheme) && ip == want && Some(port) == request_uri.port
}

/// What a verifier accepts (the `[auth]` settings of a node).
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// Algorithms offered; an answer in another one is refused, so an
    /// operator who offers SHA-256 only is not downgraded to MD5.
    pub algorithms: &'a [Algorithm],
    /// Accept RFC 2069 answers without qop (weaker: no client nonce, so a
    /// nonce is then good for one request only).
    pub allow_no_qop: bool,
}

/// Whether the credentials' digest-uri names the Request-URI `request_uri`
/// (as written, or the same SIP URI by RFC 3261 §19.1.4 comparison). A
/// digest-uri without a user part is taken for the Request-URI's scheme,
/// host and port alone: SIPp writes that form unless given `-auth_uri`. A
/// digest-uri with a user must name the Request-URI's user, so a phone's
/// answer for a call to 200 cannot be moved onto a call to another number.
pub fn uri_matches(digest_uri: &str, request_uri: &crate::sip::msg::Uri) -> bool {
    let written = request_uri.to_string();
    if digest_uri == written {
        return true;
    }
    let Ok(u) = crate::sip::msg::Uri::parse(digest_uri) else {
        // SIPp writes an IPv6 server as `sip:::1:5060`, unbracketed: taken
        // as the user-less form when it names the Request-URI's address.
        return unbracketed_server(digest_uri, request_uri);
    };
    let same_server = u.scheme == request_uri.scheme
        && u.host.eq_ignore_ascii_case(&request_uri.host)
        && u.port == request_uri.port;
    if u.user.is_none() && u.params.is_empty() {
        return same_server;
    }
    same_server && u.user == request_uri.user && lowered_params(&u) == lowered_params(request_uri)
}

/// Parsed `Authorization` / `Proxy-Authorization` digest credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// username
    pub username: String,
    /// realm
    pub realm: String,
    /// nonce
    pub nonce: String,
    /// digest-uri
    pub uri: String,
    /// response
    pub response: String,
    /// algorithm
    pub algorithm: Algorithm,
    /// cnonce, with qop
    pub cnonce: Option<String>,
    /// qop (only `auth` is accepted)
    pub qop: Option<String>,
    /// nonce-count, with qop
    pub nc: Option<u32>,
}

/// Parse `Digest k=v, k="v", ...` (RFC 7616 §3.4).
pub fn parse_credentials(header: &str) -> Result<Credentials, Error> {
    let params = digest_params(header)?;
    let get = |k: &str| params.get(k).cloned();
    let need = |k: &str| get(k).ok_or(Error::Malformed);
    let qop = get("qop");
    let nc = match get("nc") {
        Some(nc) => Some(u32::from_str_radix(&nc, 16).map_err(|_| Error::Malformed)?),
        None => None,
    };
    if qop.is_some() && (nc.is_none() || get("cnonce").is_none()) {
        return Err(Error::Malformed);
    }
    Ok(Credentials {
        username: need("username")?,
        realm: need("realm")?,
        nonce: need("nonce")?,
        uri: need("uri")?,
        response: need("response")?.to_ascii_lowercase(),
        algorithm: Algorithm::parse(get("algorithm").as_deref())?,
        cnonce: get("cnonce"),
        qop,
        nc,
    })
}

/// The parameters of a `Digest k=v, ...` header value.
fn digest_params(header: &str) -> Result<HashMap<String, String>, Error> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(Error::Scheme);
    }
    parse_params(rest).ok_or(Error::Malformed)
}

fn parse_params(s: &str) -> Option<HashMap<String, String>> {
    let mut out = HashMap::new();
    let mut chars = s.char_indices().peekable();
    let bytes = s.as_bytes();
    loop {
        while chars
            .peek()
            .is_some_and(|(_, c)| c.is_whitespace() || *c == ',')
        {
            chars.next();
        }
        let Some(&(start, _)) = chars.peek() else {
            return Some(out);
        };
        let mut eq = None;
        for (i, c) in chars.by_ref() {
            if c == '=' {
                eq = Some(i);
                break;
            }
        }
        let eq = eq?;
        let key = s[start..eq].trim().to_ascii_lowercase();
        let value = if bytes.get(eq + 1) == Some(&b'"') {
            chars.next();
            let mut v = String::new();
            let mut escaped = false;
            let mut closed = false;
            for (_, c) in chars.by_ref() {
                if escaped {
                    v.push(c);
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    closed = true;
                    break;
                } else {
                    v.push(c);
                }
            }
            if !closed {
                return None;
            }
            v
        } else {
            let mut v = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c == ',' {
                    break;
                }
                v.push(c);
                chars.next();
            }
            v.trim().to_owned()
        };
        if key.is_empty() {
            return None;
        }
        out.insert(key, value);
    }
}

/// The expected `response` for credentials given the stored HA1.
pub fn expected_response(creds: &Credentials, method: &str, ha1: &str) -> String {
    let alg = creds.algorithm;
    let ha2 = alg.hash(&format!("{method}:{}", creds.uri));
    match (&creds.qop, creds.nc, &creds.cnonce) {
        (Some(qop), Some(nc), Some(cnonce)) => alg.hash(&format!(
            "{ha1}:{}:{nc:08x}:{cnonce}:{qop}:{ha2}",
            creds.nonce
        )),
        _ => alg.hash(&format!("{ha1}:{}:{ha2}", creds.nonce)),
    }
}

/// Constant-time comparison of two hex digests.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[derive(Debug, Clone, Copy)]
struct NonceEntry {
    issued: Instant,
    /// Highest nonce-count seen; 0 before first use.
    last_nc: u32,
}

/// Issued nonces: each lives `lifetime`, after which it is stale; each
/// nonce-count may be used once and must increase. Bounded in size; expiry
/// and eviction of the oldest are O(1) amortised (a queue in issue order),
/// so a full table costs nothing extra per challenge.
///
/// Sans-IO: time and randomness come in as arguments.
#[derive(Debug)]
pub struct Nonces {
    entries: HashMap<String, NonceEntry>,
    /// Nonces in issue order, for expiry and eviction from the front.
    order: VecDeque<(Instant, String)>,
    lifetime: Duration,
    capacity: usize,
}

impl Nonces {
    /// A table whose nonces live `lifetime` and that holds at most `capacity`.
    pub fn new(lifetime: Duration, capacity: usize) -> Self {
        Nonces {
            entries: HashMap::new(),
            order: VecDeque::new(),
            lifetime,
            capacity,
        }
    }

    /// Issue a fresh nonce.
    pub fn issue(&mut self, now: Instant, rng: &mut dyn RngCore) -> String {
        self.purge(now);
        while self.entries.len() >= self.capacity {
            // Forget the oldest: its holder gets "unknown nonce" and a fresh
            // challenge, which costs one round trip and nothing else.
            match self.order.pop_front() {
                Some((_, oldest)) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
        let mut raw = [0u8; 16];
        rng.fill_bytes(&mut raw);
        let nonce = hex::encode(raw);
        self.entries.insert(
            nonce.clone(),
            NonceEntry {
                issued: now,
                last_nc: 0,
            },
        );
        self.order.push_back((now, nonce.clone()));
        nonce
    }

    /// Drop expired nonces (twice the lifetime, so stale ones are still
    /// recognised as stale for a while rather than unknown).
    pub fn purge(&mut self, now: Instant) {
        let keep = self.lifetime * 2;
        while let Some((issued, _)) = self.order.front() {
            if now.saturating_duration_since(*issued) < keep {
                break;
            }
            if let Some((_, nonce)) = self.order.pop_front() {
                self.entries.remove(&nonce);
            }
        }
    }

    /// Number of nonces held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no nonce is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Verify credentials for `method` against the stored `ha1` for their
    /// algorithm. The nonce-count is consumed only when the digest matches,
    /// so a wrong guess does not burn a legitimate client's count.
    ///
    /// Refused before the digest is computed: an algorithm the policy does
    /// not offer, a missing qop when the policy requires it, and a
    /// digest-uri other than `request_uri`. Each (nonce, nc) is accepted
    /// once and nc must rise; an answer without qop uses its nonce up.
    #[allow(clippy::too_many_arguments, reason = "each is one fact of the request")]
    pub fn verify(
        &mut self,
        now: Instant,
        creds: &Credentials,
        realm: &str,
        method: &str,
        request_uri: &crate::sip::msg::Uri,
        ha1: &str,
        policy: Policy<'_>,
    ) -> Result<(), Error> {
        if creds.realm != realm {
            return Err(Error::Realm);
        }
        if !policy.algorithms.contains(&creds.algorithm) {
            return Err(Error::Algorithm);
        }
        if creds.qop.is_none() && !policy.allow_no_qop {
            return Err(Error::QopRequired);
        }
        if !uri_matches(&creds.uri, request_uri) {
            return Err(Error::Uri);
        }
        let entry = self.entries.get(&creds.nonce).ok_or(Error::UnknownNonce)?;
        if now.saturating_duration_since(entry.issued) >= self.lifetime {
            // Check the digest anyway: stale=true is only for the right password.
            return if same(&expected_response(creds, method, ha1), &creds.response) {
                Err(Error::Stale)
            } else {
                Err(Error::Mismatch)
            };
        }
        // Without qop there is no count: the nonce is good for one answer.
        let nc = creds.nc.unwrap_or(1);
        if qop_is_bad(creds) {
            return Err(Error::Malformed);
        }
        if !same(&expected_response(creds, method, ha1), &creds.response) {
            return Err(Error::Mismatch);
        }
        if nc <= entry.last_nc {
            return Err(Error::Replay);
        }
        if let Some(e) = self.entries.get_mut(&creds.nonce) {
            e.last_nc = nc;
        }
        Ok(())
    }
}

fn qop_is_bad(creds: &Credentials) -> bool {
    creds.qop.as_deref().is_some_and(|q| q != "auth")
}

/// A challenge header value (`WWW-Authenticate` / `Proxy-Authenticate`).
pub fn challenge(realm: &str, nonce: &str, algorithm: Algorithm, stale: bool) -> String {
    let mut s = format!(
        "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"",
        algorithm.as_str()
    );
    if stale {
        let _ = write!(s, ", stale=true");
    }
    s
}

/// A parsed digest challenge (`WWW-Authenticate` / `Proxy-Authenticate`),
/// as a client answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// realm
    pub realm: String,
    /// nonce
    pub nonce: String,
    /// algorithm (MD5 when absent)
    pub algorithm: Algorithm,
    /// The server offered `qop=auth`.
    pub qop_auth: bool,
    /// opaque, echoed back
    pub opaque: Option<String>,
    /// stale=true: the nonce expired, the credentials were right.
    pub stale: bool,
}

/// Parse a `Digest ...` challenge.
pub fn parse_challenge(header: &str) -> Result<Challenge, Error> {
    let params = digest_params(header)?;
    let get = |k: &str| params.get(k).cloned();
    Ok(Challenge {
        realm: get("realm").ok_or(Error::Malformed)?,
        nonce: get("nonce").ok_or(Error::Malformed)?,
        algorithm: Algorithm::parse(get("algorithm").as_deref())?,
        qop_auth: get("qop").is_some_and(|q| q.split(',').any(|q| q.trim() == "auth")),
        opaque: get("opaque"),
        stale: get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
    })
}

impl Challenge {
    /// The credentials header value answering this challenge for a request
    /// `method uri`, as `username` with `password`; `nc` and `cnonce` are used
    /// when the server offered qop=auth.
    pub fn answer(
        &self,
        method: &str,
        uri: &str,
        username: &str,
        password: &str,
        cnonce: &str,
        nc: u32,
    ) -> String {
        let mut creds = Credentials {
            username: username.to_owned(),
            realm: self.realm.clone(),
            nonce: self.nonce.clone(),
            uri: uri.to_owned(),
            response: String::new(),
            algorithm: self.algorithm,
            cnonce: self.qop_auth.then(|| cnonce.to_owned()),
            qop: self.qop_auth.then(|| "auth".to_owned()),
            nc: self.qop_auth.then_some(nc),
        };
        let ha1 = self.algorithm.ha1(username, &self.realm, password);
        creds.response = expected_response(&creds, method, &ha1);
        let mut s = format!(
            "Digest username=\"{username}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", \
             response=\"{}\", algorithm={}",
            self.realm,
            self.nonce,
            creds.response,
            self.algorithm.as_str()
        );
        if self.qop_auth {
            let _ = write!(s, ", qop=auth, nc={nc:08x}, cnonce=\"{cnonce}\"");
        }
        if let Some(o) = &self.opaque {
            let _ = write!(s, ", opaque=\"{o}\"");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::epoch;
    use rand::SeedableRng;

    fn creds(alg: &str, resp: &str, nonce: &str, cnonce: &str, realm: &str, user: &str) -> String {
        format!(
            "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"/dir/index.html\", \
             algorithm={alg}, qop=auth, nc=00000001, cnonce=\"{cnonce}\", response=\"{resp}\", opaque=\"x\""
        )
    }

    #[test]
    fn a_challenge_answer_verifies_as_the_server_computes_it() {
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            let ch = parse_challenge(&challenge("sb", "n0nce", alg, true)).unwrap();
            assert!(ch.stale && ch.qop_auth);
            assert_eq!(ch.algorithm, alg);
            let hdr = ch.answer("INVITE", "sip:200@sb", "100", "secret", "cn", 7);
            let creds = parse_credentials(&hdr).unwrap();
            assert_eq!(creds.nc, Some(7));
            let ha1 = alg.ha1("100", "sb", "secret");
            assert_eq!(creds.response, expected_response(&creds, "INVITE", &ha1));
            let wrong = alg.ha1("100", "sb", "other");
            assert_ne!(creds.response, expected_response(&creds, "INVITE", &wrong));
        }
        // Without qop (RFC 2069 style) the answer carries no nc/cnonce.
        let ch = parse_challenge("Digest realm=\"r\", nonce=\"n\"").unwrap();
        assert_eq!(ch.algorithm, Algorithm::Md5);
        let hdr = ch.answer("REGISTER", "sip:r", "u", "p", "c", 1);
        assert!(!hdr.contains("nc="), "{hdr}");
        assert!(parse_challenge("Basic realm=\"r\"").is_err());
    }

    #[test]
    fn rfc2617_md5_example() {
        // RFC 2617 §3.5.
        let c = parse_credentials(&creds(
            "MD5",
            "6629fae49393a05397450978507c4ef1",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "0a4f113b",
            "testrealm@host.com",
            "Mufasa",
        ))
        .unwrap();
        let ha1 = Algorithm::Md5.ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
        assert_eq!(expected_response(&c, "GET", &ha1), c.response);
    }

    #[test]
    fn rfc7616_sha256_and_md5_examples() {
        // RFC 7616 §3.9.1.
        let (nonce, cnonce) = (
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        );
        let realm = "http-auth@example.org";
        for (alg, resp) in [
            (
                "SHA-256",
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ] {
            let c = parse_credentials(&creds(alg, resp, nonce, cnonce, realm, "Mufasa")).unwrap();
            let ha1 = c.algorithm.ha1("Mufasa", realm, "Circle of Life");
            assert_eq!(expected_response(&c, "GET", &ha1), resp, "{alg}");
        }
    }

    fn answer(nonces_nonce: &str, nc: u32, password: &str, alg: Algorithm) -> Credentials {
        let ha1 = alg.ha1("100", "sb", password);
        let mut c = Credentials {
            username: "100".into(),
            realm: "sb".into(),
            nonce: nonces_nonce.into(),
            uri: "sip:127.0.0.1".into(),
            response: String::new(),
            algorithm: alg,
            cnonce: Some("abc".into()),
            qop: Some("auth".into()),
            nc: Some(nc),
        };
        c.response = expected_response(&c, "REGISTER", &ha1);
        c
    }

    const BOTH: Policy<'static> = Policy {
        algorithms: &[Algorithm::Sha256, Algorithm::Md5],
        allow_no_qop: false,
    };

    fn ruri() -> crate::sip::msg::Uri {
        crate::sip::msg::Uri::parse("sip:127.0.0.1").unwrap()
    }

    /// `table.verify` for a REGISTER to sip:127.0.0.1 in realm `realm`.
    fn check(
        table: &mut Nonces,
        now: Instant,
        c: &Credentials,
        realm: &str,
        ha1: &str,
    ) -> Result<(), Error> {
        table.verify(now, c, realm, "REGISTER", &ruri(), ha1, BOTH)
    }

    #[test]
    fn policy_refuses_other_algorithms_missing_qop_and_other_uris() {
        let t0 = epoch();
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut table = Nonces::new(Duration::from_secs(30), 100);
        let nonce = table.issue(t0, &mut rng);
        let md5 = Algorithm::Md5.ha1("100", "sb", "secret");
        let sha_only = Policy {
            algorithms: &[Algorithm::Sha256],
            allow_no_qop: false,
        };
        let c = answer(&nonce, 1, "secret", Algorithm::Md5);
        assert_eq!(
            table.verify(t0, &c, "sb", "REGISTER", &ruri(), &md5, sha_only),
            Err(Error::Algorithm),
            "an MD5 answer when only SHA-256 is offered"
        );
        // RFC 2069 form: refused unless allowed, then good once per nonce.
        let mut bare = answer(&nonce, 1, "secret", Algorithm::Md5);
        bare.qop = None;
        bare.nc = None;
        bare.cnonce = None;
        bare.response = expected_response(&bare, "REGISTER", &md5);
        assert_eq!(
            check(&mut table, t0, &bare, "sb", &md5),
            Err(Error::QopRequired)
        );
        let old_phones = Policy {
            allow_no_qop: true,
            ..BOTH
        };
        assert_eq!(
            table.verify(t0, &bare, "sb", "REGISTER", &ruri(), &md5, old_phones),
            Ok(())
        );
        assert_eq!(
            table.verify(t0, &bare, "sb", "REGISTER", &ruri(), &md5, old_phones),
            Err(Error::Replay),
            "a nonce answered without qop cannot be replayed"
        );
        // The digest-uri must be the Request-URI.
        let nonce = table.issue(t0, &mut rng);
        let mut other = answer(&nonce, 1, "secret", Algorithm::Md5);
        other.uri = "sip:evil.example".into();
        other.response = expected_response(&other, "REGISTER", &md5);
        assert_eq!(check(&mut table, t0, &other, "sb", &md5), Err(Error::Uri));
        let mut same = answer(&nonce, 1, "secret", Algorithm::Md5);
        same.uri = "sip:127.0.0.1".into();
        assert_eq!(check(&mut table, t0, &same, "sb", &md5), Ok(()));
        assert!(uri_matches(
            "sip:100@Example.COM:5060;Transport=UDP",
            &crate::sip::msg::Uri::parse("sip:100@example.com:5060;transport=udp").unwrap()
        ));
        assert!(!uri_matches(
            "sip:100@example.com",
            &crate::sip::msg::Uri::parse("sip:100@example.com:5060").unwrap()
        ));
        // SIPp's form (host and port, no user) names the server only.
        let call = crate::sip::msg::Uri::parse("sip:200@127.0.0.1:5060").unwrap();
        assert!(uri_matches("sip:127.0.0.1:5060", &call));
        assert!(!uri_matches("sip:127.0.0.2:5060", &call));
        assert!(!uri_matches("sip:1900555@127.0.0.1:5060", &call));
        let v6 = crate::sip::msg::Uri::parse("sip:200@[::1]:5060").unwrap();
        assert!(uri_matches("sip:[::1]:5060", &v6));
        assert!(uri_matches("sip:::1:5060", &v6), "SIPp's unbracketed form");
        assert!(!uri_matches("sip:::2:5060", &v6));
    }

    #[test]
    fn nonce_table_expires_refuses_replay_and_wrong_passwords() {
        let t0 = epoch();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut table = Nonces::new(Duration::from_secs(30), 100);
        let nonce = table.issue(t0, &mut rng);
        let ha1 = Algorithm::Sha256.ha1("100", "sb", "secret");
        let good = answer(&nonce, 1, "secret", Algorithm::Sha256);
        assert_eq!(
            check(
                &mut table,
                t0,
                &answer(&nonce, 1, "wrong", Algorithm::Sha256),
                "sb",
                &ha1
            ),
            Err(Error::Mismatch)
        );
        assert_eq!(check(&mut table, t0, &good, "sb", &ha1), Ok(()));
        assert_eq!(check(&mut table, t0, &good, "sb", &ha1), Err(Error::Replay));
        // A wrong answer with a used count is a guess, not a replay.
        assert_eq!(
            check(
                &mut table,
                t0,
                &answer(&nonce, 1, "wrong", Algorithm::Sha256),
                "sb",
                &ha1
            ),
            Err(Error::Mismatch)
        );
        let next = answer(&nonce, 2, "secret", Algorithm::Sha256);
        assert_eq!(check(&mut table, t0, &next, "sb", &ha1), Ok(()));
        let later = answer(&nonce, 3, "secret", Algorithm::Sha256);
        assert_eq!(
            check(&mut table, t0 + Duration::from_secs(31), &later, "sb", &ha1),
            Err(Error::Stale)
        );
        assert_eq!(
            check(
                &mut table,
                t0,
                &answer("nope", 1, "secret", Algorithm::Sha256),
                "sb",
                &ha1
            ),
            Err(Error::UnknownNonce)
        );
        assert_eq!(
            check(&mut table, t0, &good, "other", &ha1),
            Err(Error::Realm)
        );
        table.purge(t0 + Duration::from_secs(61));
        assert!(table.is_empty());
    }

    #[test]
    fn table_is_bounded() {
        let t0 = epoch();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut table = Nonces::new(Duration::from_secs(30), 10);
        let first = table.issue(t0, &mut rng);
        for _ in 0..50 {
            table.issue(t0, &mut rng);
        }
        assert_eq!(table.len(), 10);
        let c = answer(&first, 1, "secret", Algorithm::Md5);
        let ha1 = Algorithm::Md5.ha1("100", "sb", "secret");
        assert_eq!(
            check(&mut table, t0, &c, "sb", &ha1),
            Err(Error::UnknownNonce),
            "the oldest was evicted"
        );
    }

    #[test]
    fn malformed_credentials_are_errors() {
        assert_eq!(parse_credentials("Basic abc"), Err(Error::Scheme));
        assert_eq!(
            parse_credentials("NoOneKnowsThisScheme"),
            Err(Error::Scheme)
        );
        assert_eq!(parse_credentials("Digest"), Err(Error::Malformed));
        assert_eq!(
            parse_credentials("Digest username=\"a"),
            Err(Error::Malformed)
        );
        assert_eq!(
            parse_credentials("Digest username=a, realm=b"),
            Err(Error::Malformed)
        );
        assert_eq!(
            parse_credentials(
                "Digest username=a, realm=b, nonce=c, uri=d, response=e, algorithm=SHA-512"
            ),
            Err(Error::Algorithm)
        );
    }
}

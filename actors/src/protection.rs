//! Source protection (in the spirit of Kamailio's pike): a per-source
//! request rate with temporary bans, and a block list of scanner user
//! agents. A banned source's datagrams are dropped before they are parsed,
//! unanswered (an answer tells a scanner it found a SIP server). Trunks'
//! addresses and the configured exempt networks are never limited. Bans
//! are visible and can be lifted through the operator API.

use std::net::IpAddr;
use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;

use crate::admission::Bucket;

/// Source protection settings.
#[derive(Debug, Clone)]
pub struct ProtectionConfig {
    /// Requests a second one source may send (bursts of two seconds'
    /// worth); over it the source is banned. `None`: no limit.
    pub per_source_per_s: Option<f64>,
    /// How long a ban lasts.
    pub ban: Duration,
    /// User-Agent substrings (case-insensitive) of known scanners: a
    /// request carrying one bans its source at once.
    pub scanner_agents: Vec<String>,
    /// Networks never limited nor banned: `(address, prefix length)`.
    pub exempt: Vec<(IpAddr, u8)>,
}

impl Default for ProtectionConfig {
    fn default() -> Self {
        ProtectionConfig {
            per_source_per_s: Some(200.0),
            ban: Duration::from_secs(300),
            scanner_agents: [
                "friendly-scanner",
                "sipvicious",
                "sipcli",
                "sip-scan",
                "sipsak",
                "sundayddr",
                "iwar",
                "vaxsipuseragent",
                "pplsip",
                "sipptk",
            ]
            .map(str::to_owned)
            .to_vec(),
            exempt: vec![
                (IpAddr::from([127, 0, 0, 0]), 8),
                (IpAddr::from(std::net::Ipv6Addr::LOCALHOST), 128),
            ],
        }
    }
}

/// Why a source is banned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanReason {
    /// It sent faster than allowed.
    Rate,
    /// Its User-Agent is a scanner's.
    Scanner,
}

impl BanReason {
    /// Metric label and API text.
    pub fn label(self) -> &'static str {
        match self {
            BanReason::Rate => "rate",
            BanReason::Scanner => "scanner",
        }
    }
}

/// One ban.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// The source.
    pub ip: IpAddr,
    /// Why.
    pub reason: BanReason,
    /// Seconds left.
    pub remaining_s: u64,
}

/// The protection state of a node.
#[derive(Debug, Default)]
pub struct Guard {
    cfg: ProtectionConfig,
    /// `cfg.scanner_agents` in lower case, the empty ones left out.
    agents: Vec<String>,
    sources: DashMap<IpAddr, Bucket>,
    bans: DashMap<IpAddr, (Instant, BanReason)>,
    trusted: DashMap<IpAddr, ()>,
}

/// Whether `hay` contains `lower` (lower case), ignoring ASCII case,
/// without allocating (it runs on every request carrying a User-Agent).
fn contains_ignore_ascii_case(hay: &[u8], lower: &[u8]) -> bool {
    hay.windows(lower.len()).any(|w| {
        w.iter()
            .zip(lower)
            .all(|(h, l)| h.to_ascii_lowercase() == *l)
    })
}

/// Parse `ip` or `ip/len` (a network; a bare address is its own /32 or
/// /128).
pub fn parse_network(s: &str) -> Result<(IpAddr, u8), String> {
    let (ip, len) = s.split_once('/').unwrap_or((s, ""));
    let ip: IpAddr = ip
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if len.is_empty() {
        return Ok((ip, max));
    }
    len.trim()
        .parse::<u8>()
        .ok()
        .filter(|l| *l <= max)
        .map(|l| (ip, l))
        .ok_or_else(|| format!("{s:?} has a bad prefix length"))
}

/// Whether `ip` is in the network `(net, len)`.
pub fn in_network(ip: IpAddr, (net, len): (IpAddr, u8)) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let len = u32::from(len.min(32));
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let len = u32::from(len.min(128));
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

impl Guard {
    /// A guard under `cfg`; `trusted` addresses (trunks) are never limited.
    pub fn new(cfg: ProtectionConfig, trusted: impl IntoIterator<Item = IpAddr>) -> Guard {
        let agents = cfg
            .scanner_agents
            .iter()
            .filter(|a| !a.is_empty())
            .map(|a| a.to_ascii_lowercase())
            .collect();
        Guard {
            cfg,
            agents,
            sources: DashMap::new(),
            bans: DashMap::new(),
            trusted: trusted.into_iter().map(|ip| (ip, ())).collect(),
        }
    }

    /// Trust `ip` from now on, as the trunks' addresses are (a sibling
    /// node's announced address: its hand-overs are never rate-limited or
    /// banned). A ban it had is lifted.
    pub fn trust(&self, ip: IpAddr) {
        if self.trusted.insert(ip, ()).is_none() {
            self.bans.remove(&ip);
        }
    }

    fn exempt(&self, ip: IpAddr) -> bool {
        self.trusted.contains_key(&ip) || self.cfg.exempt.iter().any(|n| in_network(ip, *n))
    }

    /// Whether a datagram (or TCP message) from `ip` at `now` may be
    /// handled: counts it; what is over the source's rate is dropped, and
    /// the source banned only when `verified` (its message came over a
    /// connection it completed): a UDP flood may carry anyone's address,
    /// and a ban would lock that address out after the flood ended.
    /// `Some(reason)` when it must be dropped.
    pub fn admit(&self, ip: IpAddr, now: Instant, verified: bool) -> Option<&'static str> {
        if let Some(b) = self.bans.get(&ip) {
            if now < b.0 {
                return Some("banned");
            }
            drop(b);
            self.bans.remove(&ip);
        }
        let rate = self.cfg.per_source_per_s?;
        if self.exempt(ip) {
            return None;
        }
        if self.sources.entry(ip).or_default().take(rate, 2.0, now) {
            return None;
        }
        if verified {
            self.ban(ip, BanReason::Rate, now);
        }
        Some("rate")
    }

    /// Whether `ip` is banned at `now` (checked when a connection is
    /// accepted, before any TLS handshake is spent on it).
    pub fn banned(&self, ip: IpAddr, now: Instant) -> bool {
        self.bans.get(&ip).is_some_and(|b| now < b.0)
    }

    /// Whether `user_agent` is a scanner's; if so `ip` is banned.
    ///
    /// The source is banned only when `verified`, that is when the request
    /// came over a connection whose handshake it completed (TCP, TLS): a
    /// UDP source address is forged in one packet, and banning it would let
    /// anyone lock a phone or a customer out. A UDP scanner's packets are
    /// only dropped.
    pub fn scanner(&self, ip: IpAddr, user_agent: &str, now: Instant, verified: bool) -> bool {
        if self.exempt(ip) {
            return false;
        }
        let hit = self
            .agents
            .iter()
            .any(|a| contains_ignore_ascii_case(user_agent.as_bytes(), a.as_bytes()));
        if hit && verified {
            self.ban(ip, BanReason::Scanner, now);
        }
        hit
    }

    fn ban(&self, ip: IpAddr, reason: BanReason, now: Instant) {
        if self.bans.insert(ip, (now + self.cfg.ban, reason)).is_none() {
            metrics::counter!(crate::metrics::BANS, "reason" => reason.label()).increment(1);
        }
        self.sources.remove(&ip);
    }

    /// Forget idle sources and ended bans; run once a second by the node.
    pub fn sweep(&self, now: Instant) {
        self.sources.retain(|_, b| b.recent(now));
        self.bans.retain(|_, b| now < b.0);
    }

    /// Bans in force at `now`.
    pub fn bans(&self, now: Instant) -> Vec<Ban> {
        let mut out: Vec<Ban> = self
            .bans
            .iter()
            .filter(|b| b.value().0 > now)
            .map(|b| Ban {
                ip: *b.key(),
                reason: b.value().1,
                remaining_s: b.value().0.saturating_duration_since(now).as_secs(),
            })
            .collect();
        out.sort_by_key(|b| b.ip);
        out
    }

    /// Lift the ban of `ip`; whether there was one.
    pub fn lift(&self, ip: IpAddr) -> bool {
        self.sources.remove(&ip);
        self.bans.remove(&ip).is_some()
    }
}

/// Digest brute-force slowing (REGISTER and INVITE alike): failures are
/// counted per source address and per user within a window. A source past
/// its limit gets 403 until the window ends. A user past its own limit (a
/// guess spread over many addresses) gets 403 with Retry-After from every
/// address except those its phones are registered from, so an attacker
/// gets at most that many guesses a window at any one password and cannot
/// lock the member's own phones out.
#[derive(Debug)]
pub struct AuthGuard {
    per_source: u32,
    per_user: u32,
    window: Duration,
    sources: DashMap<IpAddr, (u32, std::time::Instant)>,
    users: DashMap<String, (u32, std::time::Instant)>,
}

/// Why an authentication attempt is refused before it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthBlock {
    /// The source failed too often.
    Source,
    /// The user was guessed at too often; retry after this many seconds.
    User(u64),
}

impl AuthGuard {
    /// At most `per_source` failures per address and `per_user` per user
    /// within `window`.
    pub fn new(per_source: u32, per_user: u32, window: Duration) -> AuthGuard {
        AuthGuard {
            per_source,
            per_user,
            window,
            sources: DashMap::new(),
            users: DashMap::new(),
        }
    }

    /// Whether `ip` has failed too often at `now`.
    pub fn source_blocked(&self, ip: IpAddr, now: std::time::Instant) -> bool {
        self.sources.get(&ip).is_some_and(|e| {
            e.0 >= self.per_source && now.saturating_duration_since(e.1) < self.window
        })
    }

    /// If `user` has been guessed at too often: seconds until its window ends.
    pub fn user_locked(&self, user: &str, now: std::time::Instant) -> Option<u64> {
        let e = self.users.get(user)?;
        let age = now.saturating_duration_since(e.1);
        (e.0 >= self.per_user && age < self.window)
            .then(|| self.window.saturating_sub(age).as_secs().max(1))
    }

    /// If `user` is locked out for an attempt from `ip` at `now`: seconds
    /// until its window ends. A user guessed at too often is locked out
    /// from every address but those its phones are registered from (read
    /// from the store only then); counted in `switchboard_auth_blocked_total`.
    pub async fn locked_out(
        &self,
        store: &dyn schema::store::Store,
        user: &str,
        ip: IpAddr,
        now: std::time::Instant,
    ) -> Option<u64> {
        let secs = self.user_locked(user, now)?;
        let own_phone = store
            .bindings(user, crate::clock::unix_now())
            .await
            .is_ok_and(|b| {
                b.iter().any(|b| {
                    crate::transport::Flow::parse(&b.source).is_some_and(|f| f.addr().ip() == ip)
                })
            });
        if own_phone {
            return None;
        }
        metrics::counter!(crate::metrics::AUTH_BLOCKED, "by" => "user").increment(1);
        Some(secs)
    }

    /// An attempt from `ip` (for `user`, when known) failed.
    pub fn failed(&self, ip: IpAddr, user: Option<&str>, now: std::time::Instant) {
        let bump = |e: &mut (u32, std::time::Instant)| {
            if now.saturating_duration_since(e.1) >= self.window {
                *e = (0, now);
            }
            e.0 += 1;
        };
        bump(&mut self.sources.entry(ip).or_insert((0, now)));
        if let Some(u) = user {
            bump(&mut self.users.entry(u.to_owned()).or_insert((0, now)));
        }
    }

    /// An attempt from `ip` succeeded: the source's count starts again (the
    /// user's stays until its window ends).
    pub fn succeeded(&self, ip: IpAddr) {
        self.sources.remove(&ip);
    }

    /// Forget windows that ended.
    pub fn sweep(&self, now: std::time::Instant) {
        let window = self.window;
        self.sources
            .retain(|_, e| now.saturating_duration_since(e.1) < window);
        self.users
            .retain(|_, e| now.saturating_duration_since(e.1) < window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(rate: f64) -> ProtectionConfig {
        ProtectionConfig {
            per_source_per_s: Some(rate),
            exempt: vec![(IpAddr::from([10, 1, 0, 0]), 16)],
            ..ProtectionConfig::default()
        }
    }

    #[tokio::test]
    async fn a_flooding_source_is_banned_and_others_are_not() {
        let trunk = IpAddr::from([192, 0, 2, 7]);
        let g = Guard::new(cfg(10.0), [trunk]);
        let now = Instant::now();
        // Over UDP (a forgeable source): the excess is dropped, no ban.
        let spoofed = IpAddr::from([198, 51, 100, 8]);
        let passed = (0..50)
            .filter(|_| g.admit(spoofed, now, false).is_none())
            .count();
        assert_eq!(passed, 20, "two seconds' worth, the rest dropped");
        assert_eq!(
            g.admit(spoofed, now + Duration::from_secs(60), false),
            None,
            "served once the flood is over"
        );
        // Over a completed connection: banned.
        let flood = IpAddr::from([198, 51, 100, 9]);
        let passed = (0..50)
            .filter(|_| g.admit(flood, now, true).is_none())
            .count();
        assert_eq!(passed, 20, "two seconds' worth, then banned");
        assert_eq!(
            g.admit(flood, now + Duration::from_secs(60), true),
            Some("banned")
        );
        let quiet = IpAddr::from([198, 51, 100, 10]);
        assert_eq!(
            g.admit(quiet, now, true),
            None,
            "another source is unaffected"
        );
        assert!(
            (0..500).all(|_| g.admit(trunk, now, true).is_none()),
            "trunks are trusted"
        );
        assert!(
            (0..500).all(|_| g.admit(IpAddr::from([10, 1, 2, 3]), now, true).is_none()),
            "exempt network"
        );
        // A sibling node learnt at run time: trusted from then on, its ban
        // (taken while it was not yet known) lifted.
        let sibling = IpAddr::from([198, 51, 100, 11]);
        let _ = (0..50)
            .filter(|_| g.admit(sibling, now, true).is_none())
            .count();
        assert_eq!(g.admit(sibling, now, true), Some("banned"));
        g.trust(sibling);
        assert!(
            (0..500).all(|_| g.admit(sibling, now, true).is_none()),
            "siblings are trusted"
        );
        let bans = g.bans(now);
        assert_eq!(bans.len(), 1);
        assert_eq!((bans[0].ip, bans[0].reason), (flood, BanReason::Rate));
        // The ban ends by itself, or when the operator lifts it.
        assert_eq!(g.admit(flood, now + Duration::from_secs(301), true), None);
        g.scanner(flood, "x", now, true);
        assert!(!g.scanner(quiet, "Linphone/5.2 (friendly)", now, true));
        // Over UDP (a forgeable source) the packet is refused, nobody banned.
        assert!(g.scanner(quiet, "friendly-scanner", now, false));
        assert_eq!(
            g.admit(quiet, now, true),
            None,
            "a spoofed scanner bans nobody"
        );
        assert!(
            g.scanner(flood, "Friendly-Scanner 1.0", now, true),
            "case is ignored"
        );
        assert_eq!(g.admit(flood, now, true), Some("banned"));
        assert!(g.lift(flood));
        assert_eq!(g.admit(flood, now, true), None);
        assert!(!g.lift(flood));
    }

    #[test]
    fn networks_match_by_prefix() {
        let n = (IpAddr::from([127, 0, 0, 0]), 8);
        assert!(in_network(IpAddr::from([127, 9, 9, 9]), n));
        assert!(!in_network(IpAddr::from([128, 0, 0, 1]), n));
        assert!(in_network(
            IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            (IpAddr::from(std::net::Ipv6Addr::LOCALHOST), 128)
        ));
        assert!(!in_network(
            IpAddr::from([127, 0, 0, 1]),
            (IpAddr::from(std::net::Ipv6Addr::LOCALHOST), 0)
        ));
    }

    #[test]
    fn guesses_are_limited_per_source_and_per_user() {
        let g = AuthGuard::new(3, 5, Duration::from_secs(60));
        let t0 = crate::clock::now();
        let ip = |n: u8| IpAddr::from([192, 0, 2, n]);
        for _ in 0..3 {
            g.failed(ip(1), Some("100"), t0);
        }
        assert!(g.source_blocked(ip(1), t0));
        assert!(!g.source_blocked(ip(2), t0));
        assert_eq!(g.user_locked("100", t0), None, "three guesses so far");
        // The same password guessed from two more addresses.
        g.failed(ip(2), Some("100"), t0);
        g.failed(ip(3), Some("100"), t0);
        let later = t0 + Duration::from_secs(20);
        assert_eq!(g.user_locked("100", later), Some(40));
        assert_eq!(g.user_locked("200", later), None, "others unaffected");
        // A success clears its source, not the user.
        g.succeeded(ip(1));
        assert!(!g.source_blocked(ip(1), later));
        assert!(g.user_locked("100", later).is_some());
        // Windows end.
        let after = t0 + Duration::from_secs(61);
        assert_eq!(g.user_locked("100", after), None);
        assert!(!g.source_blocked(ip(2), after));
        g.sweep(after);
        assert!(g.users.is_empty() && g.sources.is_empty());
    }
}

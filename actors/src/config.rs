//! Node configuration as the actors see it. The binary fills it from the
//! TOML file, flags and environment.

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;

use engine::lcr::Table;
use engine::numbering::{Plan, RegionId};
use engine::registrar::Policy;
use engine::routing::Translation;
use engine::sip::digest::Algorithm;
use engine::sip::transaction::Timers;

/// Everything a node needs to run.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// UDP and TCP listening address.
    pub sip_addr: SocketAddr,
    /// Address written into Via and Contact; the listening address when unset.
    pub advertise: Option<SocketAddr>,
    /// Host names (besides the advertised and listening IPs) that this node
    /// serves as the host part of members' addresses of record.
    pub domains: Vec<String>,
    /// Digest realm.
    pub realm: String,
    /// Challenge algorithms, one header each, in this order. Default: MD5
    /// only, because SIPp 3.6 refuses a SHA-256 challenge and libre 1.1
    /// (baresip 1.0) fails on one even when MD5 is also offered. Set
    /// `["SHA-256", "MD5"]` (RFC 8760 order) for phones that cope.
    /// Credentials are verified only in an algorithm offered here: an
    /// operator offering SHA-256 alone is never downgraded to MD5.
    pub algorithms: Vec<Algorithm>,
    /// Accept digest answers without qop (RFC 2069 phones). Off by
    /// default: without a client nonce an answer is bound to nothing but
    /// the server's nonce, which is then good for one request only.
    pub allow_no_qop: bool,
    /// Refuse (403) a call whose From user is not the authenticated member.
    /// Off by default: a B2BUA presents the authenticated member's own
    /// identity to the callee whatever the caller's From said.
    pub strict_from: bool,
    /// How long a nonce is fresh.
    pub nonce_lifetime: Duration,
    /// RFC 3261 T1, T2, T4.
    pub timers: Timers,
    /// Registrar expiry policy.
    pub registrar: Policy,
    /// Largest SIP message accepted, bytes.
    pub max_message: usize,
    /// Authentication failures from one source address within
    /// `auth_fail_window` after which that source is refused for the rest
    /// of the window.
    pub auth_fail_limit: u32,
    /// Window of the brute-force counter.
    pub auth_fail_window: Duration,
    /// Failed authentications for one user (from any address) within
    /// `auth_fail_window` after which it is refused from addresses its
    /// phones are not registered from.
    pub auth_fail_limit_per_user: u32,
    /// A call that is not answered within this time is ended (408 to the caller).
    pub no_answer_timeout: Duration,
    /// This node's name among the nodes sharing a store (its calls in
    /// progress are recorded under it); default: the SIP listen address.
    pub node_name: String,
    /// SIP over TLS: listener, certificate, trust anchors.
    pub tls: crate::tls::TlsConfig,
    /// This node among its siblings: region, internal SIP address, the
    /// secret of calls between nodes.
    pub cluster: crate::cluster::ClusterConfig,
    /// Overload control (admission of new calls and registrations).
    pub admission: crate::admission::AdmissionConfig,
    /// Source protection (per-source rate and bans, scanner agents).
    pub protection: crate::protection::ProtectionConfig,
    /// Limits on TCP and TLS connections.
    pub connections: crate::connections::ConnectionConfig,
    /// How long a call is up before its in-progress record is rewritten
    /// with its answer, tariff and BYEs (see `calls::Calls`).
    pub checkpoint_after: Duration,
    /// Longest call; a call still up after it is released with BYE.
    pub max_call_duration: Duration,
    /// Off-net routing: trunks, their rate decks, the number plan.
    pub routing: Arc<Routing>,
    /// Media anchoring: address, port range, RTP timeout.
    pub media: crate::media::MediaConfig,
    /// Prepaid charging: the sell plan, chunks, warning, credit.
    pub billing: crate::billing::BillingConfig,
    /// Test-only hook: a call to this number panics its Call actor once the
    /// caller's ACK arrives. Honoured only with the `testing` feature.
    pub panic_on_callee: Option<String>,
    /// Test-only hook: the first INVITE to this Request-URI user in the
    /// process panics the Center that takes it. Honoured only with the
    /// `testing` feature.
    pub panic_center_on: Option<String>,
}

impl NodeConfig {
    /// What digest answers this node accepts.
    pub fn digest_policy(&self) -> engine::sip::digest::Policy<'_> {
        engine::sip::digest::Policy {
            algorithms: &self.algorithms,
            allow_no_qop: self.allow_no_qop,
        }
    }

    /// A configuration with defaults, listening on `sip_addr`.
    pub fn new(sip_addr: SocketAddr) -> Self {
        NodeConfig {
            sip_addr,
            advertise: None,
            domains: Vec::new(),
            realm: "switchboard".into(),
            algorithms: vec![Algorithm::Md5],
            allow_no_qop: false,
            strict_from: false,
            nonce_lifetime: Duration::from_secs(300),
            timers: Timers::default(),
            registrar: Policy::default(),
            max_message: engine::sip::msg::DEFAULT_MAX_MESSAGE,
            auth_fail_limit: 20,
            auth_fail_window: Duration::from_secs(60),
            auth_fail_limit_per_user: 10,
            no_answer_timeout: Duration::from_secs(90),
            max_call_duration: Duration::from_secs(4 * 3600),
            checkpoint_after: Duration::from_secs(5),
            node_name: sip_addr.to_string(),
            tls: crate::tls::TlsConfig::default(),
            cluster: crate::cluster::ClusterConfig::default(),
            admission: crate::admission::AdmissionConfig::default(),
            protection: crate::protection::ProtectionConfig::default(),
            connections: crate::connections::ConnectionConfig::default(),
            panic_on_callee: None,
            panic_center_on: None,
            routing: Arc::new(Routing::default()),
            billing: crate::billing::BillingConfig::default(),
            media: crate::media::MediaConfig {
                bind: sip_addr.ip(),
                ..Default::default()
            },
        }
    }
}

/// The transport a trunk is reached over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SipTransport {
    /// UDP (the default).
    #[default]
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP, verifying the trunk's certificate.
    Tls,
}

impl SipTransport {
    /// Whether the transport is reliable (no retransmissions).
    pub fn reliable(self) -> bool {
        self != SipTransport::Udp
    }
}

/// A SIP trunk calls can be handed to.
#[derive(Debug, Clone)]
pub struct TrunkRoute {
    /// Name (the key of its rate deck).
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Over TCP rather than UDP (one connection, kept open and reused).
    pub transport: SipTransport,
    /// The name its TLS certificate must carry (default: its IP address).
    pub tls_name: Option<String>,
    /// Audio codecs it accepts (`PCMA`, `G729`…); an offer is narrowed to
    /// them, and a call whose offer has none of them skips the trunk.
    /// Empty: any.
    pub codecs: Arc<[String]>,
    /// How it wants numbers written.
    pub translation: Translation,
    /// Most calls it carries at once.
    pub max_channels: u32,
    /// Most new calls a second.
    pub max_cps: u32,
    /// Keep-alive OPTIONS every this long; `None`: no keep-alives.
    pub options_interval: Option<Duration>,
    /// How long a keep-alive waits for its answer.
    pub options_timeout: Duration,
    /// Missed keep-alives in a row after which the trunk is down.
    pub down_after: u32,
    /// Lower goes first among equal costs.
    pub priority: u32,
    /// Higher goes first among equal costs and priorities.
    pub weight: u32,
    /// Inside the trust domain (RFC 3325): it receives P-Asserted-Identity.
    /// Off unless configured.
    pub trusted: bool,
    /// Username and password for the trunk's digest challenges.
    pub credentials: Option<(String, String)>,
    /// Register with the trunk (outbound registration); until it accepts,
    /// the trunk is skipped. `None`: it needs no registration.
    pub register: Option<TrunkRegistration>,
    /// Takes calls from its carrier: INVITEs from `accept_from` are not
    /// challenged and are routed to the DIDs and numbers they dial.
    pub inbound: bool,
    /// Networks the carrier sends from (default: its own address, unless
    /// `accept_tls_names` recognises it instead).
    pub accept_from: Vec<(std::net::IpAddr, u8)>,
    /// Names one of which the client certificate of a TLS connection must
    /// carry (verified against `[tls] ca_file`) for its INVITEs to be this
    /// carrier's, from whatever address it connects.
    pub accept_tls_names: Vec<String>,
    /// Where the called number is read: the Request-URI's user (default)
    /// or the To header's.
    pub called: Called,
    /// What the carrier pays us for each call it sends, by the called
    /// number's prefix (termination; the rate-deck format), for settlement.
    pub inbound_rates: Option<Arc<engine::lcr::Deck>>,
}

/// Where a carrier puts the number it calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Called {
    /// The Request-URI's user part.
    #[default]
    Ruri,
    /// The To header's user part.
    To,
}

impl TrunkRoute {
    /// Whether a request from `ip` comes from this trunk's carrier.
    pub fn sends_from(&self, ip: std::net::IpAddr) -> bool {
        if !self.inbound {
            return false;
        }
        if self.accept_from.is_empty() {
            return self.accept_tls_names.is_empty() && ip == self.addr.ip();
        }
        self.accept_from
            .iter()
            .any(|n| crate::protection::in_network(ip, *n))
    }
}

/// An outbound registration with a trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkRegistration {
    /// The user registered (`user@trunk-host`).
    pub user: String,
    /// Expiry asked for; refreshed at half of what is granted.
    pub expires: Duration,
    /// Wait after a refusal or no answer before trying again.
    pub retry: Duration,
}

impl TrunkRoute {
    /// How requests reach it.
    pub fn flow(&self) -> crate::transport::Flow {
        match self.transport {
            SipTransport::Udp => crate::transport::Flow::Udp(self.addr),
            SipTransport::Tcp => crate::transport::Flow::Tcp(self.addr),
            SipTransport::Tls => crate::transport::Flow::Tls(self.addr),
        }
    }

    /// A SIP URI at the trunk for `user` (with `;transport=tcp` or `tls`).
    pub fn uri(&self, user: Option<&str>) -> engine::sip::msg::Uri {
        let mut uri =
            engine::sip::msg::Uri::sip(user, &self.addr.ip().to_string(), Some(self.addr.port()));
        match self.transport {
            SipTransport::Udp => {}
            SipTransport::Tcp => uri.params.push(("transport".into(), Some("tcp".into()))),
            SipTransport::Tls => uri.params.push(("transport".into(), Some("tls".into()))),
        }
        uri
    }

    /// A trunk at `addr` with defaults: unlimited channels, OPTIONS every
    /// 30 s (2 s to answer, down after 3 misses).
    pub fn new(name: &str, addr: SocketAddr, translation: Translation) -> Self {
        TrunkRoute {
            name: name.to_owned(),
            addr,
            transport: SipTransport::Udp,
            tls_name: None,
            codecs: Arc::from(Vec::new()),
            translation,
            max_channels: u32::MAX,
            max_cps: u32::MAX,
            options_interval: Some(Duration::from_secs(30)),
            options_timeout: Duration::from_secs(2),
            down_after: 3,
            priority: 0,
            weight: 1,
            // Outside the trust domain until the operator says otherwise:
            // a caller's identity is asserted only to trunks that honour it.
            trusted: false,
            credentials: None,
            register: None,
            inbound: false,
            accept_from: Vec::new(),
            accept_tls_names: Vec::new(),
            called: Called::Ruri,
            inbound_rates: None,
        }
    }
}

/// How calls to numbers that are not members' are routed.
#[derive(Debug, Clone)]
pub struct Routing {
    /// The number plan dialled strings are read with.
    pub plan: Plan,
    /// The region national formats are read in.
    pub home: RegionId,
    /// The trunks.
    pub trunks: Vec<TrunkRoute>,
    /// Their rate decks.
    pub lcr: Lcr,
    /// The communication centers, one per country; empty: one center for
    /// the home country owning every trunk (see [`Routing::normalized`]).
    pub centers: Vec<CenterSpec>,
    /// Final statuses after which the next trunk is tried.
    pub failover: Vec<u16>,
    /// Most trunks tried for one call.
    pub max_attempts: usize,
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            plan: Plan::default(),
            home: RegionId::US,
            trunks: Vec::new(),
            centers: Vec::new(),
            lcr: Lcr::default(),
            failover: vec![408, 500, 502, 503, 504],
            max_attempts: 3,
        }
    }
}

/// A communication center: the country it serves and the trunks and
/// peerings it owns. Calls to its country are handled by it, and PSTN
/// calls into its country leave through its trunks only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CenterSpec {
    /// Name, for logs and metrics (`seoul`).
    pub name: String,
    /// Country calling code it serves (82).
    pub cc: u16,
    /// The country assumed for a caller whose own country is unknown (its
    /// account has no PSTN number): which office of a company answers a
    /// company number dialled without `#cc`.
    pub region: RegionId,
    /// Trunks and peerings it owns, by name.
    pub trunks: Vec<String>,
    /// The nodes that run it, by name (with `runs_in`: either). Both
    /// empty: every node. A node that does not run it hands the center's
    /// off-net calls to a live node that does (docs/cluster.md).
    pub runs_on: Vec<String>,
    /// The region (store data center) whose every node runs it.
    pub runs_in: Option<String>,
}

impl CenterSpec {
    /// Whether node `node` of `region` runs this center.
    pub fn runs_here(&self, node: &str, region: &str) -> bool {
        (self.runs_on.is_empty() && self.runs_in.is_none())
            || self.runs_on.iter().any(|n| n == node)
            || self.runs_in.as_deref() == Some(region)
    }
}

/// A routing configuration that does not hold together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// A center names a trunk that is not configured.
    #[error("center {center}: no trunk named {trunk}")]
    UnknownTrunk {
        /// The center.
        center: String,
        /// The trunk.
        trunk: String,
    },
    /// Two centers claim one trunk.
    #[error("trunk {trunk} is owned by both {first} and {second}")]
    TwoOwners {
        /// The trunk.
        trunk: String,
        /// One center.
        first: String,
        /// The other.
        second: String,
    },
    /// Two centers for one country.
    #[error("two centers for country code {0}")]
    TwoCenters(u16),
    /// The home region has no calling code.
    #[error("the home region {0:?} has no country calling code")]
    NoHomeCode(RegionId),
}

impl Routing {
    /// This configuration with its centers completed: with none configured,
    /// one center for the home country owning every trunk; trunks no center
    /// names go to the default center (the home country's, else the first).
    /// The default center comes first.
    pub fn normalized(mut self) -> Result<Routing, RoutingError> {
        let home_cc = engine::numbering::cc_of_region(self.home)
            .ok_or(RoutingError::NoHomeCode(self.home))?;
        if self.centers.is_empty() {
            self.centers.push(CenterSpec {
                name: self.home.as_ref().to_ascii_lowercase(),
                cc: home_cc,
                region: self.home,
                trunks: Vec::new(),
                runs_on: Vec::new(),
                runs_in: None,
            });
        }
        let mut owner: std::collections::HashMap<&str, &str> = Default::default();
        for (i, c) in self.centers.iter().enumerate() {
            if self.centers[..i].iter().any(|o| o.cc == c.cc) {
                return Err(RoutingError::TwoCenters(c.cc));
            }
            for t in &c.trunks {
                if !self.trunks.iter().any(|r| &r.name == t) {
                    return Err(RoutingError::UnknownTrunk {
                        center: c.name.clone(),
                        trunk: t.clone(),
                    });
                }
                if let Some(first) = owner.insert(t, &c.name) {
                    return Err(RoutingError::TwoOwners {
                        trunk: t.clone(),
                        first: first.to_owned(),
                        second: c.name.clone(),
                    });
                }
            }
        }
        let unowned: Vec<String> = self
            .trunks
            .iter()
            .filter(|r| !owner.contains_key(r.name.as_str()))
            .map(|r| r.name.clone())
            .collect();
        if let Some(i) = self.centers.iter().position(|c| c.cc == home_cc) {
            self.centers.swap(0, i);
        }
        self.centers[0].trunks.extend(unowned);
        Ok(self)
    }

    /// The center (index into `centers`) of country code `cc`: its own, else
    /// the default one.
    pub fn center_of_cc(&self, cc: u16) -> usize {
        self.centers.iter().position(|c| c.cc == cc).unwrap_or(0)
    }

    /// The center that owns `trunk` (the default one for an unknown name).
    pub fn owner_of(&self, trunk: &str) -> usize {
        self.centers
            .iter()
            .position(|c| c.trunks.iter().any(|t| t == trunk))
            .unwrap_or(0)
    }

    /// The center that owns `trunk` when it is not the center of country
    /// `cc` (such a trunk does not carry PSTN calls into `cc`).
    pub fn foreign_owner(&self, cc: u16, trunk: &str) -> Option<&str> {
        let owner = self.owner_of(trunk);
        (owner != self.center_of_cc(cc))
            .then(|| self.centers.get(owner).map(|c| c.name.as_str()))?
    }

    /// What a Request-URI user dialled, read in the home region (`#` and
    /// `*` may arrive escaped as `%23` and `%2A`).
    pub fn classify_user(
        &self,
        user: &str,
    ) -> Result<engine::numbering::Dialled, engine::numbering::Rejection> {
        let user: std::borrow::Cow<'_, str> = if user.contains('%') {
            user.replace("%23", "#")
                .replace("%2A", "*")
                .replace("%2a", "*")
                .into()
        } else {
            user.into()
        };
        engine::numbering::classify(&user, self.home, &self.plan)
    }

    /// The center that handles a call to the Request-URI user `user`.
    pub fn center_for(&self, user: &str) -> usize {
        use engine::routing::Handler;
        match self
            .classify_user(user)
            .map(|d| engine::routing::handler(&d))
        {
            Ok(Handler::Country(cc)) => self.center_of_cc(cc),
            Ok(Handler::Carrier(name)) => self.owner_of(&name),
            Ok(Handler::Default) | Err(_) => 0,
        }
    }
}

/// The rate decks of every trunk, replaceable while calls run: a lookup
/// holds the table it loaded, so no call ever sees half a deck.
#[derive(Debug, Clone, Default)]
pub struct Lcr(Arc<arc_swap::ArcSwap<Table>>);

impl From<Table> for Lcr {
    fn from(t: Table) -> Self {
        Lcr(Arc::new(arc_swap::ArcSwap::from_pointee(t)))
    }
}

impl Lcr {
    /// The current table.
    pub fn load(&self) -> Arc<Table> {
        self.0.load_full()
    }

    /// Replace one trunk's deck (or add it), keeping the others; returns the
    /// number of prefixes now in it.
    pub fn replace(&self, trunk: engine::lcr::TrunkDeck) -> usize {
        let n = trunk.deck.len();
        self.0.rcu(|current| {
            let mut next = Table {
                trunks: current.trunks.clone(),
            };
            match next.trunks.iter_mut().find(|t| t.trunk == trunk.trunk) {
                Some(slot) => *slot = trunk.clone(),
                None => next.trunks.push(trunk.clone()),
            }
            next
        });
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trunk(name: &str) -> TrunkRoute {
        TrunkRoute::new(
            name,
            "127.0.0.1:5060".parse().unwrap(),
            Translation::default(),
        )
    }

    fn center(name: &str, cc: u16, region: RegionId, trunks: &[&str]) -> CenterSpec {
        CenterSpec {
            name: name.into(),
            cc,
            region,
            trunks: trunks.iter().map(|t| t.to_string()).collect(),
            runs_on: Vec::new(),
            runs_in: None,
        }
    }

    #[test]
    fn without_centers_one_home_center_owns_every_trunk() {
        let r = Routing {
            home: RegionId::KR,
            trunks: vec![trunk("a"), trunk("b")],
            ..Routing::default()
        }
        .normalized()
        .unwrap();
        assert_eq!(r.centers, vec![center("kr", 82, RegionId::KR, &["a", "b"])]);
        assert_eq!(
            r.center_for("+12125550100"),
            0,
            "every country to the one center"
        );
    }

    #[test]
    fn calls_go_to_the_callee_country_center_and_unowned_trunks_to_the_home_one() {
        let r = Routing {
            home: RegionId::KR,
            trunks: vec![trunk("us-a"), trunk("kr-a"), trunk("spare")],
            centers: vec![
                center("newyork", 1, RegionId::US, &["us-a"]),
                center("seoul", 82, RegionId::KR, &["kr-a"]),
            ],
            ..Routing::default()
        }
        .normalized()
        .unwrap();
        assert_eq!(
            r.centers[0].name, "seoul",
            "the home country's center is the default"
        );
        assert_eq!(r.centers[0].trunks, ["kr-a", "spare"]);
        assert_eq!(r.center_for("+12125550100"), 1);
        assert_eq!(r.center_for("02-312-3456"), 0);
        assert_eq!(
            r.center_for("7001234%2381"),
            0,
            "Japan has no center: the default"
        );
        assert_eq!(r.owner_of("us-a"), 1);
        assert_eq!(r.center_for("100"), 0, "a member's SIP user");
    }

    #[test]
    fn inconsistent_centers_are_refused() {
        let base = Routing {
            trunks: vec![trunk("a")],
            ..Routing::default()
        };
        let with = |centers| Routing {
            centers,
            ..base.clone()
        };
        assert_eq!(
            with(vec![center("x", 1, RegionId::US, &["nope"])])
                .normalized()
                .err(),
            Some(RoutingError::UnknownTrunk {
                center: "x".into(),
                trunk: "nope".into()
            })
        );
        assert_eq!(
            with(vec![
                center("x", 1, RegionId::US, &["a"]),
                center("y", 82, RegionId::KR, &["a"])
            ])
            .normalized()
            .err(),
            Some(RoutingError::TwoOwners {
                trunk: "a".into(),
                first: "x".into(),
                second: "y".into()
            })
        );
        assert_eq!(
            with(vec![
                center("x", 1, RegionId::US, &[]),
                center("y", 1, RegionId::US, &[])
            ])
            .normalized()
            .err(),
            Some(RoutingError::TwoCenters(1))
        );
    }
}

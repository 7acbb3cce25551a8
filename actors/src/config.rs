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
    /// `["SHA-256", "MD5"]` (RFC 8760 order) for phones that cope. Credentials
    /// of either algorithm are verified whatever is offered.
    pub algorithms: Vec<Algorithm>,
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
    /// A call that is not answered within this time is ended (408 to the caller).
    pub no_answer_timeout: Duration,
    /// Longest call; a call still up after it is released with BYE.
    pub max_call_duration: Duration,
    /// Off-net routing: trunks, their rate decks, the number plan.
    pub routing: Arc<Routing>,
    /// Test-only hook: a call to this number panics its Call actor once the
    /// caller's ACK arrives. Honoured only with the `testing` feature.
    pub panic_on_callee: Option<String>,
}

impl NodeConfig {
    /// A configuration with defaults, listening on `sip_addr`.
    pub fn new(sip_addr: SocketAddr) -> Self {
        NodeConfig {
            sip_addr,
            advertise: None,
            domains: Vec::new(),
            realm: "switchboard".into(),
            algorithms: vec![Algorithm::Md5],
            nonce_lifetime: Duration::from_secs(300),
            timers: Timers::default(),
            registrar: Policy::default(),
            max_message: engine::sip::msg::DEFAULT_MAX_MESSAGE,
            auth_fail_limit: 20,
            auth_fail_window: Duration::from_secs(60),
            no_answer_timeout: Duration::from_secs(90),
            max_call_duration: Duration::from_secs(4 * 3600),
            panic_on_callee: None,
            routing: Arc::new(Routing::default()),
        }
    }
}

/// A SIP trunk calls can be handed to.
#[derive(Debug, Clone)]
pub struct TrunkRoute {
    /// Name (the key of its rate deck).
    pub name: String,
    /// Where it listens (UDP).
    pub addr: SocketAddr,
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
    pub trusted: bool,
    /// Username and password for the trunk's digest challenges.
    pub credentials: Option<(String, String)>,
}

impl TrunkRoute {
    /// A trunk at `addr` with defaults: unlimited channels, OPTIONS every
    /// 30 s (2 s to answer, down after 3 misses).
    pub fn new(name: &str, addr: SocketAddr, translation: Translation) -> Self {
        TrunkRoute {
            name: name.to_owned(),
            addr,
            translation,
            max_channels: u32::MAX,
            max_cps: u32::MAX,
            options_interval: Some(Duration::from_secs(30)),
            options_timeout: Duration::from_secs(2),
            down_after: 3,
            priority: 0,
            weight: 1,
            trusted: true,
            credentials: None,
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
            lcr: Lcr::default(),
            failover: vec![408, 500, 502, 503, 504],
            max_attempts: 3,
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

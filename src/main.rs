//! `switchboard`: the command line. `serve` runs a node (SIP + HTTP) on the
//! embedded store; `member` provisions members in the same data directory,
//! also while a `serve` runs on it.
//!
//! Configuration precedence: built-in defaults < TOML file (`--config`) <
//! flags < environment (`SWITCHBOARD_SIP`, `SWITCHBOARD_HTTP`,
//! `SWITCHBOARD_DATA`, `SWITCHBOARD_REALM`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actors::NodeConfig;
use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use engine::sip::digest::Algorithm;
use schema::embedded::Embedded;
use schema::model::{Member, is_valid_number};
use schema::store::Store;
use serde::Deserialize;

/// mimalloc instead of glibc malloc: a SIP engine allocates and frees small
/// buffers per message, where glibc spent a quarter of the engine's CPU in
/// the CPS benchmark (see docs/decisions.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Carrier-grade SIP engine: registrar and B2BUA for on-net calls"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node: SIP on UDP and TCP, HTTP health and metrics.
    Serve(ServeArgs),
    /// Provision members (works while `serve` runs on the same data directory).
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
    /// The number inventory.
    Numbers {
        #[command(subcommand)]
        command: NumbersCommand,
    },
    /// Trunks' rate decks.
    Rates {
        #[command(subcommand)]
        command: RatesCommand,
    },
    /// Sell plans members are charged by.
    Plans {
        #[command(subcommand)]
        command: PlansCommand,
    },
    /// Call detail records.
    Cdrs {
        #[command(subcommand)]
        command: CdrsCommand,
    },
    /// Create the ScyllaDB keyspace (NetworkTopologyStrategy) and apply the
    /// CQL migrations not applied yet, in order (idempotent).
    Migrate(MigrateArgs),
}

#[derive(Args)]
struct MigrateArgs {
    /// TOML configuration file (`[store] scylla` and `replication` are
    /// used when the flags below are not given).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Contact points, `HOST:PORT[,HOST:PORT…]`.
    #[arg(long)]
    scylla: Option<String>,
    /// The data center this command talks through (local DC).
    #[arg(long)]
    dc: Option<String>,
    /// Keyspace (default: the configuration's, else `switchboard`).
    #[arg(long)]
    keyspace: Option<String>,
    /// Replication factor per data center, `DC=RF[,DC=RF…]` (default:
    /// the configuration's `[store] replication`, else `<dc>=3`).
    #[arg(long)]
    replication: Option<String>,
}

#[derive(Subcommand)]
enum PlansCommand {
    /// Store (or replace, whole) a sell plan from a rate-deck CSV of sell
    /// prices (micro-units). A running `serve` loads it within 10 seconds;
    /// assign it to members with `PUT /api/v1/members/{id}/plan`.
    Import {
        #[command(flatten)]
        common: Common,
        /// The plan's name.
        #[arg(long)]
        name: String,
        /// The CSV file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum CdrsCommand {
    /// Write CDRs as CSV to standard output (the API's columns), oldest
    /// first, every page (works while `serve` runs).
    Export {
        #[command(flatten)]
        common: Common,
        /// Only this payer's.
        #[arg(long)]
        payer: Option<String>,
        /// Setup at or after, Unix seconds.
        #[arg(long)]
        from: Option<u64>,
        /// Setup before, Unix seconds.
        #[arg(long)]
        to: Option<u64>,
    },
}

#[derive(Subcommand)]
enum RatesCommand {
    /// Store a trunk's rate deck (CSV header `prefix,per_minute,connect_fee,
    /// first_increment,next_increment`; money in micro-units). A running
    /// `serve` swaps it in within 10 seconds; a stored deck takes precedence
    /// over the `rates` file named in the configuration.
    Import {
        #[command(flatten)]
        common: Common,
        /// The trunk's name.
        #[arg(long)]
        trunk: String,
        /// The CSV file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum NumbersCommand {
    /// Load numbers for sale from a CSV file with the header
    /// `number,country,area,price_class,price` (see docs/numbering.md).
    Import {
        #[command(flatten)]
        common: Common,
        /// The CSV file.
        file: PathBuf,
    },
}

#[derive(Args)]
struct Common {
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (embedded store).
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    common: Common,
    /// SIP listening address (UDP and TCP).
    #[arg(long)]
    sip: Option<SocketAddr>,
    /// HTTP listening address (health, metrics).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// The store: `embedded` (default, in the data directory) or
    /// `scylla://HOST:PORT[,…]/KEYSPACE?dc=LOCAL_DC` (run `migrate` first).
    #[arg(long)]
    store: Option<String>,
}

#[derive(Subcommand)]
enum MemberCommand {
    /// Add a member whose SIP identity is its number.
    Add {
        #[command(flatten)]
        common: Common,
        /// The member's number (digits).
        #[arg(long)]
        number: String,
        /// SIP password (only its digest hashes are stored).
        #[arg(long)]
        password: String,
        /// Display name.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List members.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Remove a member and its registrations.
    Remove {
        #[command(flatten)]
        common: Common,
        /// The member's number.
        #[arg(long)]
        number: String,
    },
}

/// The configuration file. Every field is optional; see ops/config/switchboard.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    node: NodeSection,
    #[serde(default)]
    cluster: ClusterSection,
    #[serde(default)]
    sip: SipSection,
    #[serde(default)]
    tls: TlsSection,
    #[serde(default)]
    http: HttpSection,
    #[serde(default)]
    store: StoreSection,
    #[serde(default)]
    overload: OverloadSection,
    #[serde(default)]
    protection: ProtectionSection,
    #[serde(default)]
    connections: ConnectionsSection,
    #[serde(default)]
    registrar: RegistrarSection,
    #[serde(default)]
    auth: AuthSection,
    #[serde(default)]
    calls: CallsSection,
    #[serde(default)]
    api: ApiSection,
    #[serde(default)]
    numbering: NumberingSection,
    #[serde(default, rename = "enum")]
    enum_dns: EnumSection,
    #[serde(default)]
    routing: RoutingSection,
    #[serde(default)]
    trunks: Vec<TrunkSection>,
    #[serde(default)]
    centers: Vec<CenterSection>,
    #[serde(default)]
    media: MediaSection,
    #[serde(default)]
    billing: BillingSection,
    #[serde(default)]
    mail: MailSection,
    #[serde(default)]
    cards: CardsSection,
}

/// This node among the nodes sharing a store.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeSection {
    /// Its name (default: its SIP listen address); calls in progress,
    /// heartbeats and the phones it holds are recorded under it.
    name: Option<String>,
    /// Its region (its store data center).
    region: Option<String>,
    /// Where the other nodes send it SIP (default: the advertised, else
    /// listen, address).
    internal_sip: Option<SocketAddr>,
}

/// Calls between nodes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterSection {
    /// The secret every node signs the calls it hands a sibling with (the
    /// same on every node; unset: no calls between nodes).
    secret: Option<String>,
    /// A node whose heartbeat is older is dead (default 15 s).
    dead_after_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CardsSection {
    /// Card e-mails a member may send in 24 hours.
    sends_per_day: Option<u64>,
    /// Clicks a minute from one visitor address.
    clicks_per_address_per_minute: Option<usize>,
    /// Clicks a minute on one card.
    clicks_per_card_per_minute: Option<usize>,
    /// Calls an hour to one callback number.
    calls_per_callback_per_hour: Option<usize>,
    /// Calls up at once per card.
    concurrent_per_card: Option<usize>,
    /// Calls up at once per owner.
    concurrent_per_owner: Option<usize>,
    /// E.164 prefixes never called back (replaces the built-in list).
    blocked_prefixes: Option<Vec<String>>,
    /// Key of the pages' form tokens (random per process when unset; set
    /// it when several edges serve the same cards).
    form_secret: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MailSection {
    /// An SMTP relay `host:port` (plain); unset: mail goes to `outbox`.
    smtp: Option<String>,
    /// Folder of `.eml` files when there is no relay (default `<data>/outbox`).
    outbox: Option<PathBuf>,
    /// Sender address.
    from: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BillingSection {
    /// The sell plan: a rate deck CSV (prefix, per-minute price, connection
    /// fee, increments). Unset: calls are not charged.
    plan: Option<PathBuf>,
    /// Shortest billed duration of an answered call, seconds.
    minimum_s: Option<u32>,
    /// Price of on-net calls per minute, micro-units (unset: free).
    onnet_per_minute: Option<i64>,
    /// Talk time a call holds at a time.
    chunk_s: Option<u64>,
    /// Warning before a call is cut for lack of funds.
    warn_s: Option<u64>,
    /// How far below zero a member may go, minor units.
    credit_limit: Option<i64>,
    /// At most one refusal e-mail, and one low-balance e-mail, per member in this many seconds.
    notice_period_s: Option<u64>,
    /// A balance falling below this (minor units) gets a warning e-mail.
    low_balance: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MediaSection {
    /// Anchor calls' media (default true).
    enabled: Option<bool>,
    /// Address the RTP sockets bind to (default: the SIP address's).
    address: Option<std::net::IpAddr>,
    /// Address written into SDP (default: `address`, or the advertised SIP
    /// address when `address` is unspecified).
    advertise: Option<std::net::IpAddr>,
    /// First and last port, e.g. `[16384, 32767]`.
    ports: Option<(u16, u16)>,
    /// A party silent this long once the call is up ends it (0: never).
    rtp_timeout_s: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CenterSection {
    name: String,
    /// Country calling code it serves.
    country_code: u16,
    /// ISO 3166 region assumed for callers of unknown country; the main
    /// region of `country_code` when unset.
    region: Option<String>,
    #[serde(default)]
    trunks: Vec<String>,
    /// The nodes that run it (`[node] name`); with `runs_in`, either.
    /// Neither: every node.
    #[serde(default)]
    runs_on: Vec<String>,
    /// The region (`[node] region`) whose every node runs it.
    runs_in: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutingSection {
    failover: Option<Vec<u16>>,
    max_attempts: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrunkSection {
    name: String,
    address: SocketAddr,
    transport: Option<String>,
    /// The name a TLS trunk's certificate must carry (default: its IP).
    tls_name: Option<String>,
    #[serde(default)]
    codecs: Vec<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    strip: usize,
    #[serde(default)]
    add: String,
    #[serde(default)]
    tech_prefix: String,
    #[serde(default)]
    priority: u32,
    #[serde(default = "one")]
    weight: u32,
    rates: Option<PathBuf>,
    max_channels: Option<u32>,
    max_cps: Option<u32>,
    trusted: Option<bool>,
    auth_user: Option<String>,
    auth_password: Option<String>,
    options_interval_s: Option<u64>,
    options_timeout_ms: Option<u64>,
    down_after: Option<u32>,
    #[serde(default)]
    register: bool,
    register_user: Option<String>,
    register_expires_s: Option<u64>,
    register_retry_s: Option<u64>,
    /// Takes calls from its carrier.
    #[serde(default)]
    inbound: bool,
    /// Networks the carrier sends from (default: `address`'s IP, unless
    /// `accept_tls_names` is set).
    #[serde(default)]
    accept_from: Vec<String>,
    /// Names its TLS client certificate may carry (verified against
    /// `[tls] ca_file`): its calls over TLS are recognised by them.
    #[serde(default)]
    accept_tls_names: Vec<String>,
    /// `ruri` (default) or `to`: where the called number is read.
    called: Option<String>,
    /// What the carrier pays for each call it sends (rate-deck CSV by the
    /// called number's prefix), for settlement.
    inbound_rates: Option<PathBuf>,
}

fn one() -> u32 {
    1
}

fn number_format(f: Option<&str>) -> Result<engine::routing::NumberFormat> {
    use engine::routing::NumberFormat;
    Ok(match f.unwrap_or("e164plus") {
        "e164plus" => NumberFormat::E164Plus,
        "e164" => NumberFormat::E164,
        "national" => NumberFormat::National,
        "intl:00" => NumberFormat::International("00"),
        "intl:011" => NumberFormat::International("011"),
        other => {
            bail!("trunk format {other:?}: one of e164plus, e164, national, intl:00, intl:011")
        }
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiSection {
    admin_token: Option<String>,
    hold_s: Option<u64>,
    session_s: Option<u64>,
    currency: Option<String>,
    price_standard: Option<i64>,
    price_premium: Option<i64>,
    /// Failed sign-ins of one login before its attempts wait.
    signin_per_minute: Option<u32>,
    /// The first wait, doubling with each further failure (max 30 s).
    signin_delay_ms: Option<u64>,
    max_body: Option<usize>,
    /// Networks status callbacks may reach although not public.
    callback_networks: Option<Vec<String>>,
    /// Trust anchors for https status callbacks (default: the system's).
    callback_ca_file: Option<PathBuf>,
    /// DNS servers (`ip:port`) domain-alias proofs are looked up at
    /// (default: the system's).
    dns_servers: Option<Vec<String>>,
    /// Seconds a client may take to send a request's headers.
    header_timeout_s: Option<u64>,
    /// Seconds a client may take to send a request's body.
    body_timeout_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NumberingSection {
    home_country: Option<String>,
    company_prefixes: Option<Vec<String>>,
    company_min_len: Option<usize>,
    company_max_len: Option<usize>,
    #[serde(default)]
    carriers: Vec<CarrierSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CarrierSection {
    name: String,
    prefix: String,
    min_len: usize,
    max_len: usize,
    #[serde(default)]
    strip: usize,
    #[serde(default)]
    add: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnumSection {
    listen: Option<SocketAddr>,
    zone: Option<String>,
    enabled: Option<bool>,
    /// UDP answers a second per source address (more are dropped).
    per_source_per_s: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SipSection {
    listen: Option<SocketAddr>,
    advertise: Option<SocketAddr>,
    domains: Option<Vec<String>>,
    t1_ms: Option<u64>,
    t2_ms: Option<u64>,
    t4_ms: Option<u64>,
    max_message: Option<usize>,
}

/// SIP over TLS: on when `cert` and `key` are set (or `listen` is).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsSection {
    /// Default: the SIP listen IP, port 5061.
    listen: Option<SocketAddr>,
    advertise: Option<SocketAddr>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    /// Trust anchors for TLS trunks (default: the system bundle).
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSection {
    listen: Option<SocketAddr>,
    /// Base URL of the public card pages (default `http://<listen>`).
    public_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreSection {
    data: Option<PathBuf>,
    /// `scylla://…` to keep the data in ScyllaDB instead.
    scylla: Option<String>,
    /// Replication factor per data center for `migrate`: `["seoul=3", …]`.
    replication: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistrarSection {
    min_expires: Option<u32>,
    max_expires: Option<u32>,
    default_expires: Option<u32>,
    max_contacts: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthSection {
    realm: Option<String>,
    algorithms: Option<Vec<String>>,
    nonce_lifetime_s: Option<u64>,
    fail_limit: Option<u32>,
    fail_limit_per_user: Option<u32>,
    fail_window_s: Option<u64>,
    /// Accept digest answers without qop (RFC 2069 phones); weaker.
    allow_no_qop: Option<bool>,
    /// Refuse (403) a call whose From user is not the authenticated member.
    strict_from: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallsSection {
    no_answer_timeout_s: Option<u64>,
    max_duration_s: Option<u64>,
    /// On SIGTERM: how long calls up may go on (new ones get 503).
    drain_s: Option<u64>,
    /// A call up this long has its answer and BYEs recorded (for recovery).
    checkpoint_after_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProtectionSection {
    per_source_per_s: Option<f64>,
    ban_s: Option<u64>,
    scanner_agents: Option<Vec<String>>,
    exempt: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectionsSection {
    max: Option<usize>,
    per_source: Option<usize>,
    idle_s: Option<u64>,
    partial_s: Option<u64>,
    tls_handshakes: Option<usize>,
    write_queue: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverloadSection {
    max_cps: Option<f64>,
    max_calls: Option<usize>,
    max_registers_per_s: Option<f64>,
    max_lag_ms: Option<u64>,
    max_pending: Option<usize>,
    max_pending_per_source: Option<usize>,
    max_cps_per_source: Option<f64>,
    max_calls_per_member: Option<usize>,
    max_calls_per_source: Option<usize>,
    max_cps_per_member: Option<f64>,
    retry_after_s: Option<u32>,
}

struct Settings {
    node: NodeConfig,
    drain: Duration,
    http: SocketAddr,
    data: PathBuf,
    /// `[store] scylla`, if set.
    scylla: Option<String>,
    mail: gateway::mail::Transport,
    mail_from: String,
    notice_period_s: u64,
    plan_minimum_s: u32,
    api: gateway::api::ApiConfig,
    enum_dns: Option<(SocketAddr, String)>,
    enum_per_source_per_s: u32,
}

/// Networks (`ip` or `ip/len`) of the key `key`.
fn networks(list: &[String], key: &str) -> Result<Vec<(std::net::IpAddr, u8)>> {
    list.iter()
        .map(|n| actors::protection::parse_network(n).map_err(|e| anyhow::anyhow!("{key}: {e}")))
        .collect()
}

fn env_parse<T: std::str::FromStr>(name: &str) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{name}={v}: {e}")),
        Err(_) => Ok(None),
    }
}

fn load(common: &Common, sip: Option<SocketAddr>, http: Option<SocketAddr>) -> Result<Settings> {
    let file: FileConfig = match &common.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let default_sip: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 5060));
    let default_http: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080));
    let sip_addr = env_parse("SWITCHBOARD_SIP")?
        .or(sip)
        .or(file.sip.listen)
        .unwrap_or(default_sip);
    let http = env_parse("SWITCHBOARD_HTTP")?
        .or(http)
        .or(file.http.listen)
        .unwrap_or(default_http);
    let data = env_parse::<PathBuf>("SWITCHBOARD_DATA")?
        .or(common.data.clone())
        .or(file.store.data)
        .unwrap_or_else(|| PathBuf::from("./data"));
    let scylla = file.store.scylla;

    let mut node = NodeConfig::new(sip_addr);
    node.advertise = file.sip.advertise;
    if let Some(name) = file.node.name {
        node.node_name = name;
    }
    node.cluster.region = file.node.region.unwrap_or_default();
    node.cluster.internal_sip = file.node.internal_sip;
    if let Some(secret) = file.cluster.secret {
        if secret.len() < 16 {
            bail!("cluster.secret: at least 16 characters");
        }
        node.cluster.secret = Some(std::sync::Arc::from(secret.as_bytes()));
    }
    if let Some(s) = file.cluster.dead_after_s {
        node.cluster.dead_after = Duration::from_secs(s.max(2));
    }
    if let Some(d) = file.sip.domains {
        node.domains = d;
    }
    if let Some(v) = file.sip.t1_ms {
        node.timers.t1 = Duration::from_millis(v);
    }
    if let Some(v) = file.sip.t2_ms {
        node.timers.t2 = Duration::from_millis(v);
    }
    if let Some(v) = file.sip.t4_ms {
        node.timers.t4 = Duration::from_millis(v);
    }
    if let Some(v) = file.sip.max_message {
        node.max_message = v;
    }
    let r = &mut node.registrar;
    r.min_expires = file.registrar.min_expires.unwrap_or(r.min_expires);
    r.max_expires = file.registrar.max_expires.unwrap_or(r.max_expires);
    r.default_expires = file.registrar.default_expires.unwrap_or(r.default_expires);
    r.max_contacts = file.registrar.max_contacts.unwrap_or(r.max_contacts);
    if r.min_expires > r.max_expires {
        bail!(
            "registrar.min_expires ({}) exceeds max_expires ({})",
            r.min_expires,
            r.max_expires
        );
    }
    if let Some(realm) = env_parse::<String>("SWITCHBOARD_REALM")?.or(file.auth.realm) {
        node.realm = realm;
    }
    if let Some(algs) = file.auth.algorithms {
        node.algorithms = algs
            .iter()
            .map(|a| {
                Algorithm::parse(Some(a))
                    .map_err(|_| anyhow::anyhow!("auth.algorithms: unknown {a}"))
            })
            .collect::<Result<_>>()?;
        if node.algorithms.is_empty() {
            bail!("auth.algorithms must name at least one of SHA-256, MD5");
        }
    }
    if let Some(v) = file.auth.nonce_lifetime_s {
        node.nonce_lifetime = Duration::from_secs(v);
    }
    node.auth_fail_limit = file.auth.fail_limit.unwrap_or(node.auth_fail_limit);
    node.auth_fail_limit_per_user = file
        .auth
        .fail_limit_per_user
        .unwrap_or(node.auth_fail_limit_per_user);
    if let Some(v) = file.auth.fail_window_s {
        node.auth_fail_window = Duration::from_secs(v);
    }
    node.allow_no_qop = file.auth.allow_no_qop.unwrap_or(node.allow_no_qop);
    node.strict_from = file.auth.strict_from.unwrap_or(node.strict_from);
    if let Some(v) = file.calls.no_answer_timeout_s {
        node.no_answer_timeout = Duration::from_secs(v);
    }
    let tls = file.tls;
    let tls_listen = env_parse::<SocketAddr>("SWITCHBOARD_TLS")?.or(tls.listen);
    let tls_on = tls_listen.is_some() || tls.cert.is_some() || tls.key.is_some();
    node.tls = actors::tls::TlsConfig {
        listen: tls_on.then(|| tls_listen.unwrap_or(SocketAddr::new(sip_addr.ip(), 5061))),
        advertise: tls.advertise,
        cert: tls.cert,
        key: tls.key,
        ca_file: tls.ca_file,
    };
    let o = &file.overload;
    let positive = |v: Option<f64>, key: &str| -> Result<Option<f64>> {
        match v {
            Some(x) if !(x > 0.0 && x.is_finite()) => {
                anyhow::bail!("overload.{key} must be above 0")
            }
            v => Ok(v),
        }
    };
    node.admission = actors::admission::AdmissionConfig {
        max_cps: positive(o.max_cps, "max_cps")?,
        max_calls: o.max_calls,
        max_registers_per_s: positive(o.max_registers_per_s, "max_registers_per_s")?,
        max_lag: match o.max_lag_ms {
            Some(0) => None,
            Some(ms) => Some(Duration::from_millis(ms)),
            None => actors::admission::AdmissionConfig::default().max_lag,
        },
        max_pending: o.max_pending,
        max_pending_per_source: o.max_pending_per_source,
        max_cps_per_source: positive(o.max_cps_per_source, "max_cps_per_source")?,
        max_calls_per_member: o.max_calls_per_member,
        max_calls_per_source: o.max_calls_per_source,
        max_cps_per_member: positive(o.max_cps_per_member, "max_cps_per_member")?,
        retry_after_s: o.retry_after_s.unwrap_or(5),
    };
    let p = &file.protection;
    let defaults = actors::protection::ProtectionConfig::default();
    node.protection = actors::protection::ProtectionConfig {
        per_source_per_s: match p.per_source_per_s {
            Some(r) if r <= 0.0 => None,
            Some(r) => positive(Some(r), "per_source_per_s")?,
            None => defaults.per_source_per_s,
        },
        ban: p.ban_s.map_or(defaults.ban, Duration::from_secs),
        scanner_agents: p.scanner_agents.clone().unwrap_or(defaults.scanner_agents),
        exempt: match &p.exempt {
            None => defaults.exempt,
            Some(list) => networks(list, "protection.exempt")?,
        },
    };
    let c = &file.connections;
    let d = actors::connections::ConnectionConfig::default();
    let at_least_one = |v: Option<usize>, key: &str, default: usize| -> Result<usize> {
        match v {
            Some(0) => bail!("connections.{key} must be at least 1"),
            Some(n) => Ok(n),
            None => Ok(default),
        }
    };
    node.connections = actors::connections::ConnectionConfig {
        max: at_least_one(c.max, "max", d.max)?,
        per_source: at_least_one(c.per_source, "per_source", d.per_source)?,
        idle: c.idle_s.map_or(d.idle, Duration::from_secs),
        partial: c.partial_s.map_or(d.partial, Duration::from_secs),
        tls_handshakes: at_least_one(c.tls_handshakes, "tls_handshakes", d.tls_handshakes)?,
        write_queue: at_least_one(c.write_queue, "write_queue", d.write_queue)?,
    };
    if let Some(v) = file.calls.checkpoint_after_s {
        node.checkpoint_after = Duration::from_secs(v);
    }
    if let Some(v) = file.calls.max_duration_s {
        node.max_call_duration = Duration::from_secs(v);
    }
    let m = &mut node.media;
    m.enabled = file.media.enabled.unwrap_or(m.enabled);
    m.bind = file.media.address.unwrap_or(m.bind);
    m.advertise = file.media.advertise.or(node.advertise.map(|a| a.ip()));
    if let Some((first, last)) = file.media.ports {
        if first >= last || last - first < 3 {
            bail!(
                "media.ports must be [first, last] with room for at least two pairs, not [{first}, {last}]"
            );
        }
        m.ports = (first, last);
    }
    if let Some(v) = file.media.rtp_timeout_s {
        m.rtp_timeout = Duration::from_secs(v);
    }
    let registrar = node.advertise.unwrap_or(node.sip_addr).to_string();
    let mut api = gateway::api::ApiConfig::new(registrar, node.realm.clone());
    api.public_url = file
        .http
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{http}"));
    if let Some(d) = node.domains.first() {
        api.directory.sip_domain = d.clone();
    }
    api.admin_token = env_parse::<String>("SWITCHBOARD_ADMIN_TOKEN")?.or(file.api.admin_token);
    if api.admin_token.as_ref().is_some_and(|t| t.len() < 16) {
        bail!("api.admin_token must be at least 16 characters");
    }
    if file.api.callback_networks.is_some() || file.api.callback_ca_file.is_some() {
        let allow = networks(
            file.api.callback_networks.as_deref().unwrap_or_default(),
            "api.callback_networks",
        )?;
        api.callbacks = std::sync::Arc::new(
            gateway::webhooks::Callbacks::new(allow, file.api.callback_ca_file.as_deref())
                .map_err(|e| anyhow::anyhow!("api.callback_ca_file: {e}"))?,
        );
    }
    if let Some(servers) = &file.api.dns_servers {
        api.dns_servers = servers
            .iter()
            .map(|s| {
                s.parse::<std::net::SocketAddr>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(|ip| (ip, 53).into()))
                    .map_err(|_| anyhow::anyhow!("api.dns_servers: {s:?} is not ip or ip:port"))
            })
            .collect::<Result<_>>()?;
    }
    if let Some(t) = file.api.header_timeout_s {
        api.header_timeout = std::time::Duration::from_secs(t.max(1));
    }
    if let Some(t) = file.api.body_timeout_s {
        api.body_timeout = std::time::Duration::from_secs(t.max(1));
    }
    api.hold_secs = file.api.hold_s.unwrap_or(api.hold_secs);
    api.session_secs = file.api.session_s.unwrap_or(api.session_secs);
    api.currency = file.api.currency.unwrap_or(api.currency);
    let b = &file.billing;
    node.billing.currency = api.currency.clone();
    if let Some(path) = &b.plan {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("billing.plan {}", path.display()))?;
        let deck = gateway::rates::parse_deck(&text)
            .map_err(|e| anyhow::anyhow!("billing.plan {}: {e}", path.display()))?;
        let onnet = match b.onnet_per_minute {
            None | Some(0) => engine::rating::OnNet::Free,
            Some(p) if p < 0 => bail!("billing.onnet_per_minute cannot be negative"),
            Some(p) => engine::rating::OnNet::Priced(engine::lcr::Rate {
                per_minute: p,
                connect_fee: 0,
                first_increment: 60,
                next_increment: 60,
            }),
        };
        node.billing.plan = Some(std::sync::Arc::new(engine::rating::Plan {
            name: path
                .file_stem()
                .map_or("plan".into(), |s| s.to_string_lossy().into_owned()),
            deck,
            minimum_secs: b.minimum_s.unwrap_or(0),
            onnet,
        }));
    }
    if let Some(v) = b.chunk_s {
        if v == 0 {
            bail!("billing.chunk_s must be at least 1");
        }
        node.billing.chunk = Duration::from_secs(v);
    }
    if let Some(v) = b.warn_s {
        node.billing.warn_before = Duration::from_secs(v);
    }
    node.billing.low_balance = b.low_balance;
    if let Some(v) = b.credit_limit {
        if v < 0 {
            bail!("billing.credit_limit cannot be negative");
        }
        node.billing.credit_limit = v;
    }
    api.prices.standard = file.api.price_standard.unwrap_or(api.prices.standard);
    api.prices.premium = file.api.price_premium.unwrap_or(api.prices.premium);
    api.signin_per_login = file.api.signin_per_minute.unwrap_or(api.signin_per_login);
    if let Some(ms) = file.api.signin_delay_ms {
        api.signin_delay = Duration::from_millis(ms);
    }
    api.max_body = file.api.max_body.unwrap_or(api.max_body);
    let c = &file.cards;
    api.card_sends_per_day = c.sends_per_day.unwrap_or(api.card_sends_per_day);
    let l = &mut api.clicks;
    l.per_address_per_minute = c
        .clicks_per_address_per_minute
        .unwrap_or(l.per_address_per_minute);
    l.per_card_per_minute = c
        .clicks_per_card_per_minute
        .unwrap_or(l.per_card_per_minute);
    l.per_callback_per_hour = c
        .calls_per_callback_per_hour
        .unwrap_or(l.per_callback_per_hour);
    l.concurrent_per_card = c.concurrent_per_card.unwrap_or(l.concurrent_per_card);
    l.concurrent_per_owner = c.concurrent_per_owner.unwrap_or(l.concurrent_per_owner);
    if let Some(p) = &c.blocked_prefixes {
        if let Some(bad) = p
            .iter()
            .find(|x| x.is_empty() || !x.bytes().all(|b| b.is_ascii_digit()))
        {
            bail!("cards.blocked_prefixes: {bad:?} is not a digit prefix");
        }
        l.blocked_prefixes = p.clone();
    }
    // One list for the cards' callbacks and members' forwards and offices.
    node.billing.blocked_prefixes = l.blocked_prefixes.clone();
    if let Some(s) = &c.form_secret {
        if s.len() < 16 {
            bail!("cards.form_secret must be at least 16 characters");
        }
        api.form_secret = s.clone();
    }
    let n = file.numbering;
    if let Some(home) = n.home_country {
        api.directory.home = engine::numbering::region(&home)
            .with_context(|| format!("numbering.home_country: {home} is not an ISO 3166 region"))?;
    }
    let plan = &mut api.directory.plan;
    if let Some(p) = n.company_prefixes {
        plan.company_prefixes = p;
    }
    plan.company_len = n.company_min_len.unwrap_or(*plan.company_len.start())
        ..=n.company_max_len.unwrap_or(*plan.company_len.end());
    plan.carriers = n
        .carriers
        .into_iter()
        .map(|c| engine::numbering::CarrierFormat {
            name: c.name,
            prefix: c.prefix,
            len: c.min_len..=c.max_len,
            strip: c.strip,
            add: c.add,
        })
        .collect();
    let mut routing = actors::config::Routing {
        plan: api.directory.plan.clone(),
        home: api.directory.home,
        ..actors::config::Routing::default()
    };
    if let Some(f) = file.routing.failover {
        routing.failover = f;
    }
    routing.max_attempts = file.routing.max_attempts.unwrap_or(routing.max_attempts);
    for t in file.trunks {
        if routing.trunks.iter().any(|x| x.name == t.name) {
            bail!("trunk {} is configured twice", t.name);
        }
        let translation = engine::routing::Translation {
            format: number_format(t.format.as_deref())
                .with_context(|| format!("trunk {}", t.name))?,
            strip: t.strip,
            add: t.add,
            tech_prefix: t.tech_prefix,
        };
        if let Some(path) = &t.rates {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("trunk {}: reading {}", t.name, path.display()))?;
            let deck = gateway::rates::parse_deck(&text)
                .map_err(|e| anyhow::anyhow!("trunk {}: {}: {e}", t.name, path.display()))?;
            routing.lcr.replace(engine::lcr::TrunkDeck {
                trunk: t.name.clone(),
                priority: t.priority,
                weight: t.weight,
                deck,
            });
        }
        let mut route = actors::config::TrunkRoute::new(&t.name, t.address, translation);
        route.transport = match t.transport.as_deref() {
            None | Some("udp") => actors::config::SipTransport::Udp,
            Some("tcp") => actors::config::SipTransport::Tcp,
            Some("tls") => actors::config::SipTransport::Tls,
            Some(other) => bail!("trunk {}: transport {other:?}: udp, tcp or tls", t.name),
        };
        route.tls_name = t.tls_name;
        route.codecs = t.codecs.into();
        route.max_channels = t.max_channels.unwrap_or(route.max_channels);
        route.max_cps = t.max_cps.unwrap_or(route.max_cps);
        route.priority = t.priority;
        route.trusted = t.trusted.unwrap_or(false);
        route.inbound = t.inbound;
        if let Some(path) = &t.inbound_rates {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("trunk {}: reading {}", t.name, path.display()))?;
            let deck = gateway::rates::parse_deck(&text)
                .map_err(|e| anyhow::anyhow!("trunk {}: {}: {e}", t.name, path.display()))?;
            route.inbound_rates = Some(Arc::new(deck));
        }
        route.accept_from = networks(&t.accept_from, &format!("trunk {} accept_from", t.name))?;
        route.accept_tls_names = t.accept_tls_names;
        route.called = match t.called.as_deref() {
            None | Some("ruri") => actors::config::Called::Ruri,
            Some("to") => actors::config::Called::To,
            Some(other) => bail!("trunk {}: called {other:?}: ruri or to", t.name),
        };
        route.credentials = match (t.auth_user, t.auth_password) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            _ => bail!("trunk {}: auth_user and auth_password go together", t.name),
        };
        route.weight = t.weight;
        if let Some(s) = t.options_interval_s {
            route.options_interval = (s > 0).then(|| Duration::from_secs(s));
        }
        if let Some(ms) = t.options_timeout_ms {
            route.options_timeout = Duration::from_millis(ms);
        }
        route.down_after = t.down_after.unwrap_or(route.down_after);
        if t.register {
            let user = t
                .register_user
                .or_else(|| route.credentials.as_ref().map(|(u, _)| u.clone()))
                .with_context(|| {
                    format!(
                        "trunk {}: register needs register_user or auth_user",
                        t.name
                    )
                })?;
            route.register = Some(actors::config::TrunkRegistration {
                user,
                expires: Duration::from_secs(t.register_expires_s.unwrap_or(600).max(1)),
                retry: Duration::from_secs(t.register_retry_s.unwrap_or(30).max(1)),
            });
        }
        routing.trunks.push(route);
    }
    for c in file.centers {
        let region = match &c.region {
            Some(r) => Some(r.clone()),
            None => engine::numbering::region_of_cc(c.country_code),
        };
        let region = region
            .as_deref()
            .and_then(engine::numbering::region)
            .with_context(|| {
                format!(
                    "center {}: no region for country code {} (set region)",
                    c.name, c.country_code
                )
            })?;
        routing.centers.push(actors::config::CenterSpec {
            name: c.name,
            cc: c.country_code,
            region,
            trunks: c.trunks,
            runs_on: c.runs_on,
            runs_in: c.runs_in,
        });
    }
    let routing = routing.normalized().context("[[centers]]")?;
    node.routing = std::sync::Arc::new(routing);
    let enum_listen = env_parse::<SocketAddr>("SWITCHBOARD_ENUM")?
        .or(file.enum_dns.listen)
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 5300)));
    let enum_per_source_per_s = match file.enum_dns.per_source_per_s {
        Some(0) => bail!("enum.per_source_per_s must be at least 1"),
        Some(n) => n,
        None => gateway::enum_dns::PER_SOURCE_PER_S,
    };
    let enum_dns = file.enum_dns.enabled.unwrap_or(true).then(|| {
        (
            enum_listen,
            file.enum_dns.zone.unwrap_or_else(|| "e164.arpa.".into()),
        )
    });
    let mail = match &file.mail.smtp {
        Some(relay) => {
            let (host, port) = relay
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
                .with_context(|| format!("mail.smtp {relay:?} is not host:port"))?;
            gateway::mail::Transport::Smtp { host, port }
        }
        None => gateway::mail::Transport::Outbox(
            file.mail
                .outbox
                .clone()
                .unwrap_or_else(|| data.join("outbox")),
        ),
    };
    let mail_from = file
        .mail
        .from
        .clone()
        .unwrap_or_else(|| "switchboard@localhost".to_owned());
    Ok(Settings {
        drain: Duration::from_secs(file.calls.drain_s.unwrap_or(30)),
        node,
        http,
        data,
        scylla,
        api,
        enum_dns,
        enum_per_source_per_s,
        mail,
        mail_from,
        notice_period_s: file.billing.notice_period_s.unwrap_or(3600),
        plan_minimum_s: file.billing.minimum_s.unwrap_or(0),
    })
}

async fn migrate(args: MigrateArgs) -> Result<()> {
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let mut cfg = match (&args.scylla, &file.store.scylla) {
        (Some(nodes), _) => {
            schema::scylla::ScyllaConfig::parse(&format!("scylla://{nodes}/switchboard"))
        }
        (None, Some(uri)) => schema::scylla::ScyllaConfig::parse(uri),
        (None, None) => {
            anyhow::bail!("give --scylla HOST:PORT[,…] or a --config with [store] scylla")
        }
    }
    .map_err(anyhow::Error::msg)?;
    if let Some(ks) = &args.keyspace {
        cfg.keyspace.clone_from(ks);
    }
    if args.dc.is_some() {
        cfg.local_dc.clone_from(&args.dc);
    }
    cfg.request_timeout = std::time::Duration::from_secs(60);
    let spec = args
        .replication
        .clone()
        .or_else(|| file.store.replication.as_ref().map(|r| r.join(",")));
    let replication = match (spec, &cfg.local_dc) {
        (Some(r), _) => schema::scylla::parse_replication(&r).map_err(anyhow::Error::msg)?,
        (None, Some(dc)) => vec![(dc.clone(), 3)],
        (None, None) => {
            anyhow::bail!("give --replication DC=RF[,…] or --dc NAME (replication 3 there)")
        }
    };
    let uri = format!("scylla://{}/{}", cfg.nodes.join(","), cfg.keyspace);
    let applied = schema::scylla::migrate(&cfg, &replication)
        .await
        .with_context(|| format!("migrating {uri}"))?;
    if applied.is_empty() {
        println!("keyspace {} is up to date", cfg.keyspace);
    } else {
        println!("keyspace {}: applied migrations {applied:?}", cfg.keyspace);
    }
    Ok(())
}

fn open_store(data: &Path) -> Result<Embedded> {
    Embedded::open(data).with_context(|| format!("opening the store in {}", data.display()))
}

async fn serve(args: ServeArgs) -> Result<()> {
    let settings = load(&args.common, args.sip, args.http)?;
    let drain = settings.drain;
    let scylla = args
        .store
        .clone()
        .or_else(|| std::env::var("SWITCHBOARD_STORE").ok())
        .or_else(|| settings.scylla.clone())
        .filter(|s| s != "embedded");
    let store: Arc<dyn Store> = match scylla {
        Some(uri) => {
            let cfg = schema::scylla::ScyllaConfig::parse(&uri).map_err(anyhow::Error::msg)?;
            tracing::info!(nodes = ?cfg.nodes, keyspace = %cfg.keyspace, dc = ?cfg.local_dc, "store: ScyllaDB");
            Arc::new(
                schema::scylla::Scylla::connect(&cfg)
                    .await
                    .with_context(|| {
                        format!("connecting to {uri} (did `switchboard migrate` run?)")
                    })?,
            )
        }
        None => Arc::new(open_store(&settings.data)?),
    };
    let metrics = gateway::install_metrics()?;
    let routing = settings.node.routing.clone();
    let mut known = std::collections::HashMap::new();
    load_stored_rates(store.as_ref(), &routing, &mut known).await;
    let mut node_cfg = settings.node;
    let plans = node_cfg.billing.plans.clone();
    let plan_terms = (
        settings.plan_minimum_s,
        node_cfg
            .billing
            .plan
            .as_ref()
            .map_or(engine::rating::OnNet::Free, |p| p.onnet),
    );
    let mut known_plans = std::collections::HashMap::new();
    load_stored_plans(store.as_ref(), &plans, plan_terms, &mut known_plans).await;
    let mailer = Arc::new(
        gateway::mail::Mailer::new(&settings.mail_from, settings.mail.clone())
            .context("mail settings")?,
    );
    node_cfg.billing.notify = Some(actors::billing::Notifier(Arc::new(
        gateway::mail::BillingNotices::new(
            store.clone(),
            mailer.clone(),
            settings.notice_period_s,
            node_cfg.billing.currency.clone(),
            gateway::api::system_clock(),
        ),
    )));
    let node = actors::start(node_cfg, store.clone()).await?;
    let reloader = {
        let (store, routing) = (store.clone(), routing.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                load_stored_rates(store.as_ref(), &routing, &mut known).await;
                load_stored_plans(store.as_ref(), &plans, plan_terms, &mut known_plans).await;
            }
        })
    };
    let live = node.transport.clone();
    let health: gateway::api::HealthFn =
        Arc::new(move |name: &str| live.trunks.get(name).map(|t| t.health()));
    let api = Arc::new(
        gateway::api::Api::new(
            store.clone(),
            settings.api.clone(),
            gateway::api::system_clock(),
        )
        .with_routes(routing, health)
        .with_mailer(mailer)
        .with_dialer(node.dialer()),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (http_addr, http) = gateway::serve(settings.http, metrics, api.clone(), async {
        let _ = stop_rx.await;
    })?;
    let http_task = tokio::spawn(http);
    let mut enum_server = None;
    let mut enum_note = String::from("off");
    if let Some((addr, zone)) = settings.enum_dns {
        let handler = gateway::enum_dns::EnumHandler::new(
            store.clone(),
            settings.api.directory.clone(),
            zone.clone(),
        )
        .with_rate(settings.enum_per_source_per_s);
        let (bound, server) = gateway::enum_dns::serve(addr, handler)
            .await
            .with_context(|| format!("binding ENUM DNS on {addr}"))?;
        enum_note = format!("udp+tcp {bound} zone {zone}");
        enum_server = Some(server);
    }
    println!(
        "switchboard {} serving: SIP udp+tcp {}{}, HTTP http://{}, ENUM {}, data {}",
        env!("CARGO_PKG_VERSION"),
        node.sip_addr,
        node.tls_addr
            .map(|a| format!(", SIP tls {a}"))
            .unwrap_or_default(),
        http_addr,
        enum_note,
        settings.data.display()
    );
    shutdown_signal().await;
    // Drain: new calls get 503 with Retry-After, calls up go on until they
    // end or the drain time is over (or a second signal comes).
    node.drain();
    // Status lines must not fail the stop when nobody reads stdout.
    let say = |line: String| {
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), "{line}");
    };
    say(format!(
        "switchboard: draining: new calls refused, {} call(s) up may go on for up to {} s (signal again to release them now)",
        node.calls_up(),
        drain.as_secs()
    ));
    let deadline = tokio::time::Instant::now() + drain;
    tokio::select! {
        _ = async {
            while node.calls_up() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        } => {}
        _ = shutdown_signal() => say("switchboard: second signal".into()),
    }
    say(format!(
        "switchboard: shutting down, releasing {} call(s)",
        node.calls_up()
    ));
    node.shutdown(Duration::from_secs(3)).await;
    reloader.abort();
    let _ = stop_tx.send(());
    let _ = http_task.await;
    if let Some(mut s) = enum_server {
        let _ = s.shutdown_gracefully().await;
    }
    Ok(())
}

async fn plans(cmd: PlansCommand) -> Result<()> {
    let PlansCommand::Import { common, name, file } = cmd;
    let settings = load(&common, None, None)?;
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let deck = gateway::rates::parse_deck(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let store = open_store(&settings.data)?;
    let version = store.put_plan(&name, &text).await?;
    println!(
        "stored plan {name}: {} prefixes (version {version}); a running serve loads it within 10 s",
        deck.len()
    );
    Ok(())
}

async fn cdrs(cmd: CdrsCommand) -> Result<()> {
    use std::io::Write as _;
    let CdrsCommand::Export {
        common,
        payer,
        from,
        to,
    } = cmd;
    let settings = load(&common, None, None)?;
    let store = open_store(&settings.data)?;
    let from = from.map(|v| v.to_string());
    let to = to.map(|v| v.to_string());
    let mut q = gateway::cdrs::query(payer, from.as_deref(), to.as_deref(), None, Some("1000"))
        .map_err(|(field, why)| anyhow::anyhow!("--{field}: {why}"))?;
    let mut out = std::io::stdout().lock();
    out.write_all(gateway::cdrs::CSV_HEADER.as_bytes())?;
    out.write_all(b"\r\n")?;
    let mut n = 0usize;
    loop {
        let page = store.cdrs(&q).await?;
        for c in &page {
            out.write_all(gateway::cdrs::csv_row(c).as_bytes())?;
            out.write_all(b"\r\n")?;
        }
        n += page.len();
        match page.last() {
            Some(last) if page.len() == q.limit => {
                q.after = Some((last.setup_ms, last.call_id.clone()));
            }
            _ => break,
        }
    }
    out.flush()?;
    eprintln!("{n} CDRs");
    Ok(())
}

async fn rates(cmd: RatesCommand) -> Result<()> {
    let RatesCommand::Import {
        common,
        trunk,
        file,
    } = cmd;
    let settings = load(&common, None, None)?;
    if !settings.node.routing.trunks.is_empty()
        && !settings.node.routing.trunks.iter().any(|t| t.name == trunk)
    {
        bail!("no trunk {trunk} in the configuration");
    }
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let deck = gateway::rates::parse_deck(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let store = open_store(&settings.data)?;
    let version = store.put_rates(&trunk, &text).await?;
    println!(
        "stored {} prefixes for trunk {trunk} (version {version}); a running serve swaps it in within 10 s",
        deck.len()
    );
    Ok(())
}

/// Swap in the stored decks newer than the ones in use (versions in `known`).
/// Load the sell plans stored with `switchboard plans import` (or the
/// API) whose version changed, and swap the set in whole.
async fn load_stored_plans(
    store: &dyn Store,
    plans: &actors::billing::PlanSet,
    (minimum_secs, onnet): (u32, engine::rating::OnNet),
    known: &mut std::collections::HashMap<String, u64>,
) {
    let stored = match store.plans().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "reading the stored plans");
            return;
        }
    };
    let mut next = (**plans.load()).clone();
    let mut changed = false;
    for (name, version) in stored {
        if known.get(&name) == Some(&version) {
            continue;
        }
        let Ok(Some((csv, version))) = store.plan(&name).await else {
            continue;
        };
        match gateway::rates::parse_deck(&csv) {
            Ok(deck) => {
                tracing::info!(plan = %name, version, prefixes = deck.len(), "sell plan loaded");
                next.insert(
                    name.clone(),
                    Arc::new(engine::rating::Plan {
                        name: name.clone(),
                        deck,
                        minimum_secs,
                        onnet,
                    }),
                );
                changed = true;
            }
            Err(e) => tracing::warn!(plan = %name, error = %e, "stored plan refused"),
        }
        known.insert(name, version);
    }
    if changed {
        plans.store(Arc::new(next));
    }
}

async fn load_stored_rates(
    store: &dyn Store,
    routing: &actors::config::Routing,
    known: &mut std::collections::HashMap<String, u64>,
) {
    for t in &routing.trunks {
        let stored = match store.rates(&t.name).await {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(trunk = %t.name, error = %e, "reading the stored rate deck");
                continue;
            }
        };
        if known.get(&t.name) == Some(&stored.1) {
            continue;
        }
        match gateway::rates::parse_deck(&stored.0) {
            Ok(deck) => {
                let n = routing.lcr.replace(engine::lcr::TrunkDeck {
                    trunk: t.name.clone(),
                    priority: t.priority,
                    weight: t.weight,
                    deck,
                });
                tracing::info!(trunk = %t.name, version = stored.1, prefixes = n, "rate deck swapped in");
            }
            Err(e) => tracing::warn!(trunk = %t.name, error = %e, "stored rate deck refused"),
        }
        known.insert(t.name.clone(), stored.1);
    }
}

async fn numbers(cmd: NumbersCommand) -> Result<()> {
    match cmd {
        NumbersCommand::Import { common, file } => {
            let settings = load(&common, None, None)?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let rows = gateway::inventory::parse_csv(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let store = open_store(&settings.data)?;
            let report = gateway::inventory::import(
                &store,
                &settings.api.directory.plan,
                &settings.api.prices,
                rows,
            )
            .await?;
            for e in &report.errors {
                eprintln!("{}: row {}: {}", file.display(), e.row, e.message);
            }
            println!(
                "imported {}: {} added, {} already there, {} refused",
                file.display(),
                report.added,
                report.existing,
                report.errors.len()
            );
            if !report.errors.is_empty() {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[allow(clippy::disallowed_methods)]
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn member(cmd: MemberCommand) -> Result<()> {
    match cmd {
        MemberCommand::Add {
            common,
            number,
            password,
            name,
        } => {
            if !is_valid_number(&number) {
                bail!("--number must be 3 to 20 digits, got {number:?}");
            }
            if password.len() < 6 {
                bail!("--password must be at least 6 characters");
            }
            let settings = load(&common, None, None)?;
            let realm = settings.node.realm;
            let store = open_store(&settings.data)?;
            let member = Member {
                ha1_md5: Algorithm::Md5.ha1(&number, &realm, &password),
                ha1_sha256: Algorithm::Sha256.ha1(&number, &realm, &password),
                number: number.clone(),
                name,
                realm,
                created_at: unix_now(),
            };
            if !store.insert_member(&member).await? {
                bail!("member {number} already exists");
            }
            println!("added member {number}");
        }
        MemberCommand::List { common } => {
            let settings = load(&common, None, None)?;
            let store = open_store(&settings.data)?;
            let now = unix_now();
            for m in store.members().await? {
                let bindings = store.bindings(&m.number, now).await?;
                println!("{}\t{}\t{} contact(s)", m.number, m.name, bindings.len());
            }
        }
        MemberCommand::Remove { common, number } => {
            let settings = load(&common, None, None)?;
            let store = open_store(&settings.data)?;
            if !store.remove_member(&number).await? {
                bail!("no member {number}");
            }
            println!("removed member {number}");
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,switchboard=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Member { command } => member(command).await,
            Command::Numbers { command } => numbers(command).await,
            Command::Rates { command } => rates(command).await,
            Command::Cdrs { command } => cdrs(command).await,
            Command::Plans { command } => plans(command).await,
            Command::Migrate(args) => migrate(args).await,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every example configuration in ops/config parses with the file's
    /// schema (unknown keys are refused), and the regional ones keep their
    /// data in ScyllaDB in their own data center.
    #[test]
    fn the_example_configurations_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("ops/config");
        let mut seen = 0;
        let mut regions = Vec::new();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let file: FileConfig =
                toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if let Some(region) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.strip_prefix("region-"))
            {
                let uri = file.store.scylla.unwrap_or_default();
                let cfg =
                    schema::scylla::ScyllaConfig::parse(&uri).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(cfg.local_dc.as_deref(), Some(region), "{}", path.display());
                assert_eq!(cfg.nodes.len(), 3, "three contact points in the region");
                // The cluster's centers, each placed in a region, with the
                // trunks they name.
                let placed: Vec<(String, Option<String>)> = file
                    .centers
                    .iter()
                    .map(|c| (c.name.clone(), c.runs_in.clone()))
                    .collect();
                for c in &file.centers {
                    for t in &c.trunks {
                        assert!(
                            file.trunks.iter().any(|x| &x.name == t),
                            "{}: center {} names trunk {t}",
                            path.display(),
                            c.name
                        );
                    }
                }
                regions.push((region.to_owned(), placed));
            }
            seen += 1;
        }
        assert!(seen >= 3, "switchboard.toml and two regions");
        for (region, placed) in &regions {
            assert_eq!(
                placed, &regions[0].1,
                "{region}: the same centers everywhere"
            );
            assert!(
                placed
                    .iter()
                    .any(|(_, r)| r.as_deref() == Some(region.as_str())),
                "{region} runs a center"
            );
        }
    }
}

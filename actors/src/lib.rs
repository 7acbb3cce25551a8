//! Switchboard's actors: the supervision tree that owns sockets, timers and
//! the engine's sans-IO machines.
//!
//! ```text
//! Node ─┬─ Registrar          REGISTER, OPTIONS
//!       ├─ Calls (per center) supervises the center's calls
//!       │  └─ Call ─┬─ Leg    caller side (UAS)
//!       │           └─ Leg…   one per contact or trunk tried (UAC)
//!       ├─ Center (per country) new INVITEs → routing → Calls
//!       └─ Trunk…  (per trunk, restarted with its center) keep-alives, registration
//! ```
//!
//! The transport ([`transport`]) is a set of tasks that parse and route each
//! message straight to its actor. See [`supervision`] for restart policy,
//! [`node::start`] to run a node.

#![deny(missing_docs)]

pub mod admission;
pub mod billing;
pub mod call;
pub mod calls;
pub mod center;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod connections;
pub mod events;
pub mod leg;
pub mod media;
pub mod metrics;
pub mod node;
pub mod protection;
pub mod registrar;
pub mod supervision;
pub mod tls;
pub mod transport;
pub mod trunk;

use std::net::SocketAddr;

pub use config::NodeConfig;
pub use node::{NodeHandle, start};

/// Whether `host` (a Request-URI or To host) is one this node serves: its
/// listening or advertised address, a configured domain, or `localhost`. A
/// node listening on an unspecified address serves any host.
pub fn serves_host(cfg: &NodeConfig, local: SocketAddr, host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    // Addresses compare as addresses: ::1 and 0:0:0:0:0:0:0:1 are one host.
    let ip = host.parse::<std::net::IpAddr>().ok();
    cfg.sip_addr.ip().is_unspecified()
        || ip.is_some_and(|ip| ip == local.ip() || ip == cfg.sip_addr.ip())
        || host.eq_ignore_ascii_case("localhost")
        || cfg.domains.iter().any(|d| d.eq_ignore_ascii_case(host))
}

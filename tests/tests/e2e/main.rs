//! End-to-end tests against real peers on loopback: SIPp scenarios
//! (tests/scenarios), baresip, raw sockets for malformed input, and the
//! `switchboard` binary itself.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed step fails the test"
)]

mod aliases;
mod baresip;
mod billing;
mod browser;
mod calls;
mod centers;
mod cli;
mod click;
mod cluster;
mod inbound;
mod ipv6;
mod media;
mod numbering;
mod onnet;
mod overload;
mod regions;
mod registrar;
mod robustness;
mod store_faults;
mod tls;
mod trunks;
mod verify;

//! Media, sans-IO: the pieces of the RTP relay and of what the engine
//! plays and hears. Sockets and the relay loop live in the actors crate.
//!
//! - [`rtp`]: parsing (rtp-rs), per-stream statistics, the egress rewriter
//!   that keeps SSRC and sequence continuity across switches.
//! - [`ports`]: the pool of RTP/RTCP port pairs.
//! - [`g711`]: µ-law and A-law.
//! - [`tone`]: ringback cadences per country.
//! - [`player`]: shipped prompts and tones framed at 20 ms.
//! - [`dtmf`]: RFC 4733 events and SIP INFO digits.

pub mod dtmf;
pub mod g711;
pub mod player;
pub mod ports;
pub mod rtp;
pub mod tone;

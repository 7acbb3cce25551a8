//! Switchboard's engine: protocol and domain logic without I/O.
//!
//! Every machine here takes its inputs through `handle_*` methods with the
//! current time passed in, queues its outputs for `poll_output`, and names
//! its next deadline through `poll_timeout` (the str0m/quinn-proto shape).
//! Sockets, clocks, timers and persistence belong to the `actors` crate
//! above; the data model comes from `schema` below.
//!
//! - [`sip`]: messages, framing, transactions, dialogs, digest auth.
//! - [`registrar`]: REGISTER binding rules (RFC 3261 §10.3).
//! - [`ids`]: generation of tags, branches and Call-IDs from an injected RNG.
//! - [`media`]: RTP relay pieces, G.711, tones, prompts, DTMF.
//! - [`lcr`]: rate decks and least-cost candidate ranking.
//! - [`numbering`]: the worldwide number plan and dialled-string classification.
//! - [`rating`]: sell plans, charges, affordable durations.
//! - [`routing`]: routing decisions and number translation for trunks.
//! - [`sales`]: number sales decisions (approve, hold, confirm).

#![deny(missing_docs)]

pub mod cluster;
pub mod ids;
pub mod lcr;
pub mod media;
pub mod numbering;
pub mod rating;
pub mod registrar;
pub mod routing;
pub mod sales;
pub mod sdp;
pub mod sip;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

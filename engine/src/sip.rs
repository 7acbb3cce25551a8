//! SIP (RFC 3261) as sans-IO pieces: messages ([`msg`]), stream framing
//! ([`framing`]), transactions ([`transaction`]), dialogs ([`dialog`]),
//! digest authentication ([`digest`]) and outbound registration
//! ([`outbound`]). Transport I/O and the binding of machines to sockets live
//! in the `actors` crate.

pub mod dialog;
pub mod digest;
pub mod framing;
pub mod msg;
pub mod outbound;
pub mod transaction;

//! SIP (RFC 3261) as sans-IO pieces: messages ([`msg`]), stream framing
//! ([`framing`]), transactions ([`transaction`]), dialogs ([`dialog`]) and
//! digest authentication ([`digest`]). Transport I/O and the binding of
//! machines to sockets live in the `actors` crate.

pub mod dialog;
pub mod digest;
pub mod framing;
pub mod msg;
pub mod transaction;

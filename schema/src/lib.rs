//! Switchboard's data model and persistence.
//!
//! - [`model`]: plain types (members, bindings).
//! - [`store`]: the `Store` trait every backend honours.
//! - `embedded` (feature `embedded`): the default backend, SQLite in WAL
//!   mode in the data directory, shared safely by `switchboard serve` and
//!   the operator CLI running at the same time.
//!
//! The ScyllaDB backend (a later issue) implements the same trait.

#![deny(missing_docs)]

#[cfg(feature = "embedded")]
pub mod embedded;
pub mod model;
pub mod store;

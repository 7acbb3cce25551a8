//! Switchboard's data model and persistence.
//!
//! - [`model`]: plain types (members, bindings).
//! - [`store`]: the `Store` trait every backend honours.
//! - `embedded` (feature `embedded`): the default backend, SQLite in WAL
//!   mode in the data directory, shared safely by `switchboard serve` and
//!   the operator CLI running at the same time.
//!
//! - `scylla` (feature `scylla`): the distributed backend over the CQL
//!   tables of `schema/cql/` (docs/data-model.md), the same trait.

#![deny(missing_docs)]

#[cfg(feature = "embedded")]
pub mod embedded;
pub mod model;
#[cfg(feature = "scylla")]
pub mod scylla;
pub mod store;

//! The `Store` trait: the contract every backend honours.
//!
//! Rules that let the ScyllaDB backend honour the same contract:
//! - every operation touches one partition (one member's number); there
//!   are no multi-partition transactions;
//! - conditional writes are explicit (`insert_member` is insert-if-absent,
//!   a lightweight transaction in CQL);
//! - expiry is a property of the record (`Binding::expires_at`, a TTL in
//!   CQL): reads never return an expired binding, whether or not it has
//!   been swept yet.

use async_trait::async_trait;

use crate::model::{Binding, Member};

/// What a backend can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend is unreachable or failed; the operation may be retried.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Persistence for members and registrations.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Insert `member` unless its number is taken; `false` if it was.
    async fn insert_member(&self, member: &Member) -> Result<bool>;
    /// The member holding `number`.
    async fn member(&self, number: &str) -> Result<Option<Member>>;
    /// Every member, ordered by number.
    async fn members(&self) -> Result<Vec<Member>>;
    /// Remove a member and its bindings; `false` if there was none.
    async fn remove_member(&self, number: &str) -> Result<bool>;

    /// Live bindings of `number` at wall time `now` (Unix seconds).
    async fn bindings(&self, number: &str, now: u64) -> Result<Vec<Binding>>;
    /// Write bindings and delete contacts of one number in one atomic step.
    async fn update_bindings(&self, number: &str, put: &[Binding], delete: &[String])
    -> Result<()>;
    /// Delete bindings expired at `now`; returns how many. Backends with
    /// native TTLs may do nothing here.
    async fn sweep_bindings(&self, now: u64) -> Result<u64>;
    /// Number of live bindings at `now` (for metrics).
    async fn binding_count(&self, now: u64) -> Result<u64>;
}

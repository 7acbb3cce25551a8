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

use crate::model::{
    Account, ApiKey, Binding, Card, Cdr, CdrQuery, Hold, HoldOutcome, LedgerEntry, Member,
    NodeRecord, NumberQuery, NumberRecord, OpenCall, Posted, Session,
};

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
    /// Number of live bindings at `now` (for metrics), when the backend
    /// can count them cheaply; `None` when counting would mean scanning a
    /// cluster-wide table (ScyllaDB: watch its own monitoring instead).
    async fn binding_count(&self, now: u64) -> Result<Option<u64>>;

    /// Insert `account` unless its id or its login is taken; `false` if
    /// either was (an LWT on each in CQL).
    async fn insert_account(&self, account: &Account) -> Result<bool>;
    /// The account with this id.
    async fn account(&self, id: &str) -> Result<Option<Account>>;
    /// The account signing in with `login`.
    async fn account_by_login(&self, login: &str) -> Result<Option<Account>>;
    /// Every account, ordered by id.
    async fn accounts(&self) -> Result<Vec<Account>>;
    /// Replace the account if its stored version is `expected`; the written
    /// record carries `expected + 1`. `false` if someone changed it first.
    async fn update_account(&self, account: &Account, expected: u64) -> Result<bool>;

    /// Give `alias` to `account` unless another account has it; `true` if
    /// `account` holds it afterwards.
    async fn claim_alias(&self, alias: &str, account: &str) -> Result<bool>;
    /// Drop `alias` if `account` holds it; `false` otherwise.
    async fn release_alias(&self, alias: &str, account: &str) -> Result<bool>;
    /// Who holds `alias`.
    async fn alias_owner(&self, alias: &str) -> Result<Option<String>>;
    /// An account's aliases, ordered.
    async fn aliases_of(&self, account: &str) -> Result<Vec<String>>;

    /// Store a session.
    async fn put_session(&self, session: &Session) -> Result<()>;
    /// The session with this token hash, unless expired at `now`.
    async fn session(&self, token_hash: &str, now: u64) -> Result<Option<Session>>;
    /// End a session.
    async fn delete_session(&self, token_hash: &str) -> Result<()>;
    /// Store (or replace) an API key.
    async fn put_api_key(&self, key: &ApiKey) -> Result<()>;
    /// The API key with this token hash.
    async fn api_key(&self, token_hash: &str) -> Result<Option<ApiKey>>;
    /// A member's API keys, oldest first.
    async fn api_keys_of(&self, account: &str) -> Result<Vec<ApiKey>>;

    /// Add a number to the inventory unless present; `false` if it was.
    async fn insert_number(&self, record: &NumberRecord) -> Result<bool>;
    /// One number of the inventory.
    async fn number(&self, number: &str) -> Result<Option<NumberRecord>>;
    /// Numbers for sale at `now` matching `query`.
    async fn search_numbers(&self, query: &NumberQuery, now: u64) -> Result<Vec<NumberRecord>>;
    /// Numbers sold to `account`.
    async fn numbers_of(&self, account: &str) -> Result<Vec<NumberRecord>>;
    /// Replace the record if its stored version is `expected`; the written
    /// record carries `expected + 1`. `false` if someone changed it first.
    async fn update_number(&self, record: &NumberRecord, expected: u64) -> Result<bool>;

    /// Post an entry to its account's ledger: once per key; a debit larger
    /// than the spendable balance (the balance less the account's holds
    /// live at the entry's time: money held for calls cannot be spent) is
    /// refused. Atomic per account.
    async fn post(&self, entry: &LedgerEntry) -> Result<Posted>;
    /// The account's balance (sum of its entries).
    async fn balance(&self, account: &str) -> Result<i64>;
    /// Set `hold` (replacing that call's earlier amount) if the account's
    /// balance plus `credit_limit`, less its other holds live at `now`,
    /// covers it. Atomic per account: holds set at once on one account
    /// (from any node) never together exceed its funds.
    async fn put_hold(&self, hold: &Hold, credit_limit: i64, now: u64) -> Result<HoldOutcome>;
    /// Drop hold `id` of `account` and post `entry` (the call's charge), in
    /// one atomic step; `None` when there is no entry to post.
    async fn release_hold(
        &self,
        account: &str,
        id: &str,
        entry: Option<&LedgerEntry>,
    ) -> Result<Option<Posted>>;
    /// The account's holds live at `now`.
    async fn holds(&self, account: &str, now: u64) -> Result<Vec<Hold>>;
    /// The account's entries, oldest first.
    async fn ledger(&self, account: &str) -> Result<Vec<LedgerEntry>>;

    /// Store a trunk's rate deck (CSV text, validated by the caller) as its
    /// next version; returns that version.
    async fn put_rates(&self, trunk: &str, csv: &str) -> Result<u64>;
    /// A trunk's stored rate deck and its version.
    async fn rates(&self, trunk: &str) -> Result<Option<(String, u64)>>;

    /// Store (or replace, whole) the sell plan `name` (rate-deck CSV);
    /// returns its new version.
    async fn put_plan(&self, name: &str, csv: &str) -> Result<u64>;
    /// A sell plan's CSV and version.
    async fn plan(&self, name: &str) -> Result<Option<(String, u64)>>;
    /// Every stored plan's name and version.
    async fn plans(&self) -> Result<Vec<(String, u64)>>;

    /// Insert a new card (its `version` must be 1); `false` if its ID or
    /// token is taken.
    async fn insert_card(&self, card: &Card) -> Result<bool>;
    /// Save a card over version `expected` (its `version` becomes
    /// `expected + 1`); `false` when it changed meanwhile or is gone.
    async fn update_card(&self, card: &Card, expected: u64) -> Result<bool>;
    /// A card by ID.
    async fn card(&self, id: &str) -> Result<Option<Card>>;
    /// A card by its public token (always the latest version).
    async fn card_by_token(&self, token: &str) -> Result<Option<Card>>;
    /// A member's cards, newest first.
    async fn cards_of(&self, owner: &str) -> Result<Vec<Card>>;
    /// Delete a card (its link stops working); `false` if it was not there.
    async fn delete_card(&self, id: &str) -> Result<bool>;
    /// Remember that `owner`'s request with idempotency `key` placed call
    /// `call_id`, unless one was remembered: returns the call id that holds.
    async fn claim_idempotency(
        &self,
        owner: &str,
        key: &str,
        call_id: &str,
        at: u64,
    ) -> Result<String>;
    /// Forget `owner`'s idempotency `key` if it still names `call_id` (the
    /// call it stood for was never placed), so that a retry places it.
    async fn release_idempotency(&self, owner: &str, key: &str, call_id: &str) -> Result<()>;
    /// Record that a card (at `version`) was sent to `to` at `at`.
    async fn record_card_send(
        &self,
        owner: &str,
        card: &str,
        version: u64,
        to: &str,
        at: u64,
    ) -> Result<()>;
    /// How many card e-mails `owner` has sent since `since` (Unix seconds).
    async fn card_sends_since(&self, owner: &str, since: u64) -> Result<u64>;
    /// A card's sends, oldest first: (to, version, at).
    async fn card_sends(&self, card: &str) -> Result<Vec<(String, u64, u64)>>;

    /// Record a call in progress on its node.
    async fn put_open_call(&self, call: &OpenCall) -> Result<()>;
    /// Record (or rewrite) several calls in progress at once; backends
    /// write them together where they can (one transaction, concurrent
    /// requests). Not atomic across calls.
    async fn put_open_calls(&self, calls: &[OpenCall]) -> Result<()> {
        for c in calls {
            self.put_open_call(c).await?;
        }
        Ok(())
    }
    /// Forget a call in progress (its CDR is written).
    async fn close_open_call(&self, node: &str, call_id: &str) -> Result<()>;
    /// The calls in progress recorded for `node`.
    async fn open_calls(&self, node: &str) -> Result<Vec<OpenCall>>;

    /// Note that `node` is alive at `at` (Unix seconds): a real write, so a
    /// store that refuses writes (full or read-only disk, a cluster without
    /// quorum) fails it. Nodes probe with it to stop taking calls they
    /// could not bill, and to take them again when the store recovers.
    async fn heartbeat(&self, node: &str, at: u64) -> Result<()>;
    /// The last heartbeat of `node`.
    async fn last_heartbeat(&self, node: &str) -> Result<Option<u64>>;
    /// Record what a node is (region, SIP address, centers) beside its
    /// heartbeat; written when it starts and when that changes.
    async fn put_node(&self, node: &NodeRecord) -> Result<()>;
    /// Every node that has announced itself, with its last heartbeat, by
    /// name.
    async fn nodes(&self) -> Result<Vec<NodeRecord>>;

    /// Write a CDR once: `false` when one with its `call_id` exists (it is
    /// left as it was). One partition: the call id.
    async fn put_cdr(&self, cdr: &Cdr) -> Result<bool>;
    /// CDRs by setup time (oldest first), a page at a time.
    async fn cdrs(&self, query: &CdrQuery) -> Result<Vec<Cdr>>;
}

//! The ScyllaDB backend (feature `scylla`): the same [`Store`] contract as
//! the embedded one, over the tables of `schema/cql/` (docs/data-model.md).
//!
//! - Every statement is prepared once at start ([`STATEMENTS`]); a test
//!   checks each names only tables and columns of the CQL files.
//! - Sessions prefer the local data center and route by token; reads and
//!   writes are `LOCAL_QUORUM`. Lightweight transactions that guard
//!   something global (a number, a login, an alias, a card, a balance) are
//!   `SERIAL`: Paxos over a quorum of every region's replicas, so two
//!   regions never both win; only a CDR's insert-if-absent, written by the
//!   call's own region, is `LOCAL_SERIAL` (docs/data-model.md).
//! - Statements are marked idempotent only when repeating them is harmless,
//!   so the driver's retry policy never repeats a conditional write blindly.
//! - Races are settled by lightweight transactions on one partition: a
//!   number's version, an alias, a login, a card's version, a balance's
//!   version (with the last posts' keys in the same row, so a retried post
//!   is recognised by the write that would apply it twice), a CDR's call id.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::policies::retry::DefaultRetryPolicy;
use scylla::response::query_result::QueryResult;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::{CqlValue, Row};

use crate::model::{
    Account, ApiKey, Binding, Card, Cdr, CdrQuery, Hold, HoldOutcome, LedgerEntry, Member,
    NodeRecord, NumberQuery, NumberRecord, NumberState, OpenCall, Posted, Session as SessionRecord,
};
use crate::store::{Result, Store, StoreError};

/// The migrations, in order: (version, name, CQL text).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "tables", include_str!("../cql/0001_tables.cql")),
    (2, "heartbeats", include_str!("../cql/0002_heartbeats.cql")),
    (3, "api_keys", include_str!("../cql/0003_api_keys.cql")),
    (4, "nodes", include_str!("../cql/0004_nodes.cql")),
];

/// Posts remembered in a balance's row (older ones in `ledger_keys`).
const RECENT_POSTS: usize = 64;
/// Shards of one payer's day of CDRs.
pub const PAYER_SHARDS: i32 = 4;
/// Shards of one hour of CDRs (the operator's, a center's, a trunk's).
pub const HOUR_SHARDS: i32 = 64;
/// Bytes of rate-deck CSV per chunk row.
const DECK_CHUNK: usize = 512 * 1024;
/// Tries of a contended compare-and-set before giving up.
const CAS_TRIES: usize = 32;

/// How a statement is executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A read.
    Read,
    /// A write that may be repeated (same row, same values).
    Write,
    /// A lightweight transaction (`IF …`) on a global claim or on money:
    /// `SERIAL` (Paxos across every region), never retried blindly.
    Lwt,
    /// A lightweight transaction on a row only one region writes (a call's
    /// CDR): `LOCAL_SERIAL`, never retried blindly.
    RegionalLwt,
}

/// Every statement the backend prepares: (name, kind, CQL).
pub const STATEMENTS: &[(&str, Kind, &str)] = &[
    (
        "member_insert",
        Kind::Lwt,
        "INSERT INTO members (number, name, realm, ha1_md5, ha1_sha256, created_at) VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS",
    ),
    (
        "member_get",
        Kind::Read,
        "SELECT number, name, realm, ha1_md5, ha1_sha256, created_at FROM members WHERE number = ?",
    ),
    (
        "member_all",
        Kind::Read,
        "SELECT number, name, realm, ha1_md5, ha1_sha256, created_at FROM members",
    ),
    (
        "member_delete",
        Kind::Lwt,
        "DELETE FROM members WHERE number = ? IF EXISTS",
    ),
    (
        "reg_get",
        Kind::Read,
        "SELECT doc, expires_at FROM registrations WHERE number = ?",
    ),
    (
        "reg_put",
        Kind::Write,
        "INSERT INTO registrations (number, contact, expires_at, doc) VALUES (?, ?, ?, ?) USING TTL ?",
    ),
    (
        "reg_delete",
        Kind::Write,
        "DELETE FROM registrations WHERE number = ? AND contact = ?",
    ),
    (
        "reg_delete_all",
        Kind::Write,
        "DELETE FROM registrations WHERE number = ?",
    ),
    (
        "account_insert",
        Kind::Lwt,
        "INSERT INTO accounts (id, login, version, doc) VALUES (?, ?, ?, ?) IF NOT EXISTS",
    ),
    (
        "account_get",
        Kind::Read,
        "SELECT doc FROM accounts WHERE id = ?",
    ),
    ("account_all", Kind::Read, "SELECT doc FROM accounts"),
    (
        "account_update",
        Kind::Lwt,
        "UPDATE accounts SET doc = ?, version = ? WHERE id = ? IF version = ?",
    ),
    (
        "login_claim",
        Kind::Lwt,
        "INSERT INTO accounts_by_login (login, id) VALUES (?, ?) IF NOT EXISTS",
    ),
    (
        "login_release",
        Kind::Lwt,
        "DELETE FROM accounts_by_login WHERE login = ? IF id = ?",
    ),
    (
        "login_get",
        Kind::Read,
        "SELECT id FROM accounts_by_login WHERE login = ?",
    ),
    (
        "alias_claim",
        Kind::Lwt,
        "INSERT INTO aliases (alias, account) VALUES (?, ?) IF NOT EXISTS",
    ),
    (
        "alias_release",
        Kind::Lwt,
        "DELETE FROM aliases WHERE alias = ? IF account = ?",
    ),
    (
        "alias_get",
        Kind::Read,
        "SELECT account FROM aliases WHERE alias = ?",
    ),
    (
        "alias_list_put",
        Kind::Write,
        "INSERT INTO aliases_by_account (account, alias) VALUES (?, ?)",
    ),
    (
        "alias_list_delete",
        Kind::Write,
        "DELETE FROM aliases_by_account WHERE account = ? AND alias = ?",
    ),
    (
        "alias_list",
        Kind::Read,
        "SELECT alias FROM aliases_by_account WHERE account = ?",
    ),
    (
        "session_put",
        Kind::Write,
        "INSERT INTO sessions (token_hash, account, expires_at) VALUES (?, ?, ?) USING TTL ?",
    ),
    (
        "session_get",
        Kind::Read,
        "SELECT account, expires_at FROM sessions WHERE token_hash = ?",
    ),
    (
        "session_delete",
        Kind::Write,
        "DELETE FROM sessions WHERE token_hash = ?",
    ),
    (
        "number_insert",
        Kind::Lwt,
        "INSERT INTO numbers (number, country, area, state, holder, version, doc) VALUES (?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS",
    ),
    (
        "number_get",
        Kind::Read,
        "SELECT doc FROM numbers WHERE number = ?",
    ),
    (
        "number_update",
        Kind::Lwt,
        "UPDATE numbers SET state = ?, holder = ?, version = ?, doc = ? WHERE number = ? IF version = ?",
    ),
    (
        "for_sale_put",
        Kind::Write,
        "INSERT INTO numbers_for_sale (country, area, number, doc) VALUES (?, ?, ?, ?)",
    ),
    (
        "for_sale_delete",
        Kind::Write,
        "DELETE FROM numbers_for_sale WHERE country = ? AND area = ? AND number = ?",
    ),
    (
        "for_sale_bucket",
        Kind::Read,
        "SELECT doc FROM numbers_for_sale WHERE country = ? AND area = ?",
    ),
    (
        "area_put",
        Kind::Write,
        "INSERT INTO number_areas (country, area) VALUES (?, ?)",
    ),
    (
        "areas_of",
        Kind::Read,
        "SELECT area FROM number_areas WHERE country = ?",
    ),
    (
        "countries",
        Kind::Read,
        "SELECT DISTINCT country FROM number_areas",
    ),
    (
        "holder_put",
        Kind::Write,
        "INSERT INTO numbers_by_holder (holder, number) VALUES (?, ?)",
    ),
    (
        "holder_delete",
        Kind::Write,
        "DELETE FROM numbers_by_holder WHERE holder = ? AND number = ?",
    ),
    (
        "holder_numbers",
        Kind::Read,
        "SELECT number FROM numbers_by_holder WHERE holder = ?",
    ),
    (
        "balance_get",
        Kind::Read,
        "SELECT amount, version, recent, holds FROM balances WHERE account = ?",
    ),
    (
        "balance_init",
        Kind::Lwt,
        "INSERT INTO balances (account, amount, version, recent, holds) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS",
    ),
    (
        "balance_update",
        Kind::Lwt,
        "UPDATE balances SET amount = ?, version = ?, recent = ?, holds = ? WHERE account = ? IF version = ?",
    ),
    (
        "ledger_put",
        Kind::Write,
        "INSERT INTO ledger (account, month, seq, key, amount, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    ),
    (
        "ledger_month",
        Kind::Read,
        "SELECT seq, key, amount, reason, at FROM ledger WHERE account = ? AND month = ?",
    ),
    (
        "months_put",
        Kind::Write,
        "INSERT INTO ledger_months (account, month) VALUES (?, ?)",
    ),
    (
        "months_of",
        Kind::Read,
        "SELECT month FROM ledger_months WHERE account = ?",
    ),
    (
        "key_put",
        Kind::Write,
        "INSERT INTO ledger_keys (account, key, seq) VALUES (?, ?, ?)",
    ),
    (
        "key_get",
        Kind::Read,
        "SELECT seq FROM ledger_keys WHERE account = ? AND key = ?",
    ),
    (
        "deck_get",
        Kind::Read,
        "SELECT version, chunks FROM rate_decks WHERE kind = ? AND name = ?",
    ),
    (
        "deck_list",
        Kind::Read,
        "SELECT name, version FROM rate_decks WHERE kind = ?",
    ),
    (
        "deck_create",
        Kind::Lwt,
        "INSERT INTO rate_decks (kind, name, version, chunks) VALUES (?, ?, ?, ?) IF NOT EXISTS",
    ),
    (
        "deck_set",
        Kind::Lwt,
        "UPDATE rate_decks SET version = ?, chunks = ? WHERE kind = ? AND name = ? IF version = ?",
    ),
    (
        "chunk_put",
        Kind::Write,
        "INSERT INTO rate_deck_chunks (kind, name, version, chunk, csv) VALUES (?, ?, ?, ?, ?)",
    ),
    (
        "chunk_get",
        Kind::Read,
        "SELECT chunk, csv FROM rate_deck_chunks WHERE kind = ? AND name = ? AND version = ?",
    ),
    (
        "chunk_drop",
        Kind::Write,
        "DELETE FROM rate_deck_chunks WHERE kind = ? AND name = ? AND version = ?",
    ),
    (
        "card_insert",
        Kind::Lwt,
        "INSERT INTO cards (id, owner, share_token, version, updated_at, doc) VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS",
    ),
    ("card_get", Kind::Read, "SELECT doc FROM cards WHERE id = ?"),
    (
        "card_update",
        Kind::Lwt,
        "UPDATE cards SET version = ?, updated_at = ?, doc = ? WHERE id = ? IF version = ?",
    ),
    (
        "card_delete",
        Kind::Lwt,
        "DELETE FROM cards WHERE id = ? IF EXISTS",
    ),
    (
        "token_claim",
        Kind::Lwt,
        "INSERT INTO cards_by_token (share_token, id) VALUES (?, ?) IF NOT EXISTS",
    ),
    (
        "token_release",
        Kind::Lwt,
        "DELETE FROM cards_by_token WHERE share_token = ? IF id = ?",
    ),
    (
        "token_get",
        Kind::Read,
        "SELECT id FROM cards_by_token WHERE share_token = ?",
    ),
    (
        "button_put",
        Kind::Write,
        "INSERT INTO buttons (button_id, card, number) VALUES (?, ?, ?)",
    ),
    (
        "button_delete",
        Kind::Write,
        "DELETE FROM buttons WHERE button_id = ?",
    ),
    (
        "owner_card_put",
        Kind::Write,
        "INSERT INTO cards_by_owner (owner, id) VALUES (?, ?)",
    ),
    (
        "owner_card_delete",
        Kind::Write,
        "DELETE FROM cards_by_owner WHERE owner = ? AND id = ?",
    ),
    (
        "owner_cards",
        Kind::Read,
        "SELECT id FROM cards_by_owner WHERE owner = ?",
    ),
    (
        "apikey_put",
        Kind::Write,
        "INSERT INTO api_keys (token_hash, doc) VALUES (?, ?)",
    ),
    (
        "apikey_get",
        Kind::Read,
        "SELECT doc FROM api_keys WHERE token_hash = ?",
    ),
    (
        "apikey_index_put",
        Kind::Write,
        "INSERT INTO api_keys_by_account (account, created_at, token_hash) VALUES (?, ?, ?)",
    ),
    (
        "apikey_index_get",
        Kind::Read,
        "SELECT token_hash FROM api_keys_by_account WHERE account = ?",
    ),
    (
        "idem_claim",
        Kind::Lwt,
        "INSERT INTO idempotency (owner, key, call_id, at) VALUES (?, ?, ?, ?) IF NOT EXISTS USING TTL 86400",
    ),
    (
        "idem_get",
        Kind::Read,
        "SELECT call_id FROM idempotency WHERE owner = ? AND key = ?",
    ),
    (
        "idem_release",
        Kind::Lwt,
        "DELETE FROM idempotency WHERE owner = ? AND key = ? IF call_id = ?",
    ),
    (
        "send_owner_put",
        Kind::Write,
        "INSERT INTO card_sends_by_owner (owner, day, at, id, card, version, recipient) VALUES (?, ?, ?, ?, ?, ?, ?)",
    ),
    (
        "send_card_put",
        Kind::Write,
        "INSERT INTO card_sends_by_card (card, at, id, version, recipient) VALUES (?, ?, ?, ?, ?)",
    ),
    (
        "sends_since",
        Kind::Read,
        "SELECT at FROM card_sends_by_owner WHERE owner = ? AND day = ? AND at >= ?",
    ),
    (
        "sends_of_card",
        Kind::Read,
        "SELECT recipient, version, at FROM card_sends_by_card WHERE card = ?",
    ),
    (
        "open_call_put",
        Kind::Write,
        "INSERT INTO open_calls (node, call_id, doc) VALUES (?, ?, ?)",
    ),
    (
        "open_call_delete",
        Kind::Write,
        "DELETE FROM open_calls WHERE node = ? AND call_id = ?",
    ),
    (
        "heartbeat_put",
        Kind::Write,
        "INSERT INTO heartbeats (node, at) VALUES (?, ?)",
    ),
    (
        "heartbeat_of",
        Kind::Read,
        "SELECT at FROM heartbeats WHERE node = ?",
    ),
    (
        "node_put",
        Kind::Write,
        "UPDATE heartbeats SET doc = ? WHERE node = ?",
    ),
    (
        "nodes_all",
        Kind::Read,
        "SELECT node, at, doc FROM heartbeats",
    ),
    (
        "open_calls_of",
        Kind::Read,
        "SELECT doc FROM open_calls WHERE node = ?",
    ),
    (
        "cdr_insert",
        Kind::RegionalLwt,
        "INSERT INTO cdrs (call_id, doc) VALUES (?, ?) IF NOT EXISTS",
    ),
    (
        "cdr_get",
        Kind::Read,
        "SELECT doc FROM cdrs WHERE call_id = ?",
    ),
    (
        "cdr_payer_put",
        Kind::Write,
        "INSERT INTO cdrs_by_payer (payer, day, shard, setup_ms, call_id, doc) VALUES (?, ?, ?, ?, ?, ?)",
    ),
    (
        "cdr_center_put",
        Kind::Write,
        "INSERT INTO cdrs_by_center (center, hour, shard, setup_ms, call_id, doc) VALUES (?, ?, ?, ?, ?, ?)",
    ),
    (
        "cdr_trunk_put",
        Kind::Write,
        "INSERT INTO cdrs_by_trunk (trunk, hour, shard, setup_ms, call_id, doc) VALUES (?, ?, ?, ?, ?, ?)",
    ),
    (
        "cdr_hour_put",
        Kind::Write,
        "INSERT INTO cdrs_by_hour (hour, shard, setup_ms, call_id, doc) VALUES (?, ?, ?, ?, ?)",
    ),
    (
        "bucket_put",
        Kind::Write,
        "INSERT INTO cdr_buckets (scope, bucket) VALUES (?, ?)",
    ),
    (
        "buckets",
        Kind::Read,
        "SELECT bucket FROM cdr_buckets WHERE scope = ? AND bucket >= ? AND bucket <= ?",
    ),
    (
        "cdr_payer_page",
        Kind::Read,
        "SELECT doc FROM cdrs_by_payer WHERE payer = ? AND day = ? AND shard = ? AND (setup_ms, call_id) > (?, ?) AND (setup_ms) < (?) LIMIT ?",
    ),
    (
        "cdr_hour_page",
        Kind::Read,
        "SELECT doc FROM cdrs_by_hour WHERE hour = ? AND shard = ? AND (setup_ms, call_id) > (?, ?) AND (setup_ms) < (?) LIMIT ?",
    ),
];

/// Where the cluster is and how to talk to it.
#[derive(Debug, Clone)]
pub struct ScyllaConfig {
    /// Contact points, `host:port`.
    pub nodes: Vec<String>,
    /// Keyspace.
    pub keyspace: String,
    /// This node's data center (preferred for every request; no failover
    /// to remote DCs, whose latency a call cannot afford).
    pub local_dc: Option<String>,
    /// Timeout of one request.
    pub request_timeout: Duration,
}

impl ScyllaConfig {
    /// Parse `scylla://host:port[,host:port…]/keyspace[?dc=NAME]`.
    pub fn parse(uri: &str) -> std::result::Result<ScyllaConfig, String> {
        let rest = uri.strip_prefix("scylla://").ok_or_else(|| {
            format!("{uri:?}: expected scylla://host:port[,…]/keyspace[?dc=NAME]")
        })?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (hosts, keyspace) = rest.split_once('/').unwrap_or((rest, "switchboard"));
        let nodes: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| {
                if h.contains(':') {
                    h.to_owned()
                } else {
                    format!("{h}:9042")
                }
            })
            .collect();
        if nodes.is_empty() {
            return Err(format!("{uri:?}: no contact point"));
        }
        let keyspace = if keyspace.is_empty() {
            "switchboard"
        } else {
            keyspace
        };
        if !keyspace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(format!("{keyspace:?}: a keyspace is letters, digits and _"));
        }
        let local_dc = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("dc="))
            .map(str::to_owned);
        Ok(ScyllaConfig {
            nodes,
            keyspace: keyspace.to_owned(),
            local_dc,
            request_timeout: Duration::from_secs(2),
        })
    }
}

/// The ScyllaDB store.
pub struct Scylla {
    session: Arc<Session>,
    st: HashMap<&'static str, PreparedStatement>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn to_doc<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_doc<T: serde::de::DeserializeOwned>(doc: &str) -> Result<T> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// UTC month `YYYY-MM` of Unix seconds `at` (civil from days, Howard
/// Hinnant's algorithm).
pub fn month_of(at: u64) -> String {
    let days = i64_of(at / 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}")
}

/// The shard of a call id among `n` (FNV-1a, stable across processes).
pub fn shard_of(call_id: &str, n: i32) -> i32 {
    let h = call_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    i32::try_from(h % u64::try_from(n.max(1)).unwrap_or(1)).unwrap_or(0)
}

/// A balance's row as read: what a compare-and-set is conditioned on.
struct BalanceRow {
    amount: i64,
    version: i64,
    recent: BTreeMap<String, String>,
    holds: BTreeMap<String, String>,
}

/// What a balance's row becomes.
struct Next {
    amount: i64,
    recent: BTreeMap<String, String>,
    holds: BTreeMap<String, String>,
}

/// What posting an entry to a row comes to: an answer without a write
/// (a duplicate, insufficient funds) or the post and the row after it.
enum Plan {
    Done(Posted),
    Write(Recent, Next),
}

/// What one try of a lightweight transaction did.
enum Cas {
    Applied,
    NotApplied,
    Unknown,
}

/// Whether a failed request may still have been applied: a timeout of the
/// Paxos round (Cassandra and ScyllaDB answer a CAS write timeout; a
/// protocol-v5 server may say `CAS_WRITE_UNKNOWN`) or of the client.
fn outcome_unknown(e: &scylla::errors::ExecutionError) -> bool {
    use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
    match e {
        ExecutionError::RequestTimeout(_) => true,
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => {
            matches!(db, DbError::WriteTimeout { .. } | DbError::Other(0x1700))
        }
        _ => false,
    }
}

/// A pause before the next try of a contended compare-and-set: random, up
/// to 10 ms doubling with each try, at most 320 ms (Paxos rounds that
/// start together keep pre-empting each other).
async fn pause(attempt: usize) {
    use std::hash::{BuildHasher, Hasher};
    let cap = 10u64 << attempt.min(5);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    tokio::time::sleep(Duration::from_millis(random % (cap + 1))).await;
}

fn contended(account: &str) -> StoreError {
    StoreError::Unavailable(format!("balance of {account}: contended"))
}

/// Holds of a row that have not lapsed at `now`, by call id.
fn live_holds(docs: &BTreeMap<String, String>, now: u64) -> BTreeMap<String, Hold> {
    docs.values()
        .filter_map(|d| from_doc::<Hold>(d).ok())
        .filter(|h| h.expires_at > now)
        .map(|h| (h.id.clone(), h))
        .collect()
}

fn hold_docs(holds: &BTreeMap<String, Hold>) -> Result<BTreeMap<String, String>> {
    holds
        .iter()
        .map(|(id, h)| Ok((id.clone(), to_doc(h)?)))
        .collect()
}

/// A recent post as kept in a balance's row.
#[derive(serde::Serialize, serde::Deserialize)]
struct Recent {
    seq: i64,
    amount: i64,
    reason: String,
    at: u64,
}

impl Scylla {
    /// Connect, prepare every statement.
    pub async fn connect(cfg: &ScyllaConfig) -> Result<Scylla> {
        // Statements name their keyspace (no `USE`: a prepared statement
        // under `USE` is ambiguous, and Cassandra warns on each one).
        let session = session(cfg, None).await?;
        let mut st = HashMap::new();
        for (name, kind, cql) in STATEMENTS {
            let mut p = session
                .prepare(qualified(cql, &cfg.keyspace))
                .await
                .map_err(|e| StoreError::Unavailable(format!("preparing {name}: {e}")))?;
            p.set_consistency(Consistency::LocalQuorum);
            match kind {
                Kind::Read => p.set_is_idempotent(true),
                Kind::Write => p.set_is_idempotent(true),
                Kind::Lwt => {
                    // The commit reaches a quorum of all replicas too, so a
                    // region reading next at LOCAL_QUORUM rarely finds the
                    // row stale (and a stale read only fails its own CAS).
                    p.set_consistency(Consistency::Quorum);
                    p.set_serial_consistency(Some(SerialConsistency::Serial));
                    p.set_is_idempotent(false);
                }
                Kind::RegionalLwt => {
                    p.set_serial_consistency(Some(SerialConsistency::LocalSerial));
                    p.set_is_idempotent(false);
                }
            }
            st.insert(*name, p);
        }
        Ok(Scylla {
            session: Arc::new(session),
            st,
        })
    }

    fn st(&self, name: &str) -> Result<&PreparedStatement> {
        self.st
            .get(name)
            .ok_or_else(|| StoreError::Unavailable(format!("no statement {name}")))
    }

    async fn exec(&self, name: &str, values: impl SerializeRow) -> Result<QueryResult> {
        let r = self.session.execute_unpaged(self.st(name)?, values).await;
        if let Err(e) = &r {
            let kind = if e.to_string().to_ascii_lowercase().contains("timeout") {
                "timeout"
            } else {
                "error"
            };
            metrics::counter!("switchboard_store_errors_total", "backend" => "scylla", "kind" => kind)
                .increment(1);
        }
        r.map_err(|e| StoreError::Unavailable(format!("{name}: {e}")))
    }

    /// Rows of a read, untyped.
    async fn rows(&self, name: &str, values: impl SerializeRow) -> Result<Vec<Row>> {
        let r = self.exec(name, values).await?;
        let rows = r
            .into_rows_result()
            .map_err(|e| StoreError::Corrupt(format!("{name}: {e}")))?;
        rows.rows::<Row>()
            .map_err(|e| StoreError::Corrupt(format!("{name}: {e}")))?
            .map(|r| r.map_err(|e| StoreError::Corrupt(format!("{name}: {e}"))))
            .collect()
    }

    /// One try of a lightweight transaction: applied, not applied (its
    /// condition was false), or unknown (the Paxos round timed out, under
    /// contention or with a slow region: it may have applied).
    async fn cas(&self, name: &str, values: impl SerializeRow) -> Result<Cas> {
        let r = self.session.execute_unpaged(self.st(name)?, values).await;
        let rows = match r {
            Ok(r) => r,
            Err(e) if outcome_unknown(&e) => {
                metrics::counter!("switchboard_store_errors_total", "backend" => "scylla", "kind" => "cas_unknown")
                    .increment(1);
                return Ok(Cas::Unknown);
            }
            Err(e) => {
                metrics::counter!("switchboard_store_errors_total", "backend" => "scylla", "kind" => "error")
                    .increment(1);
                return Err(StoreError::Unavailable(format!("{name}: {e}")));
            }
        };
        let rows = rows
            .into_rows_result()
            .map_err(|e| StoreError::Corrupt(format!("{name}: {e}")))?;
        let applied = rows
            .rows::<Row>()
            .map_err(|e| StoreError::Corrupt(format!("{name}: {e}")))?
            .next()
            .and_then(|r| r.ok())
            .is_some_and(|r| matches!(r.columns.first(), Some(Some(CqlValue::Boolean(true)))));
        if applied {
            Ok(Cas::Applied)
        } else {
            metrics::counter!("switchboard_store_contention_total", "backend" => "scylla", "statement" => name.to_owned())
                .increment(1);
            Ok(Cas::NotApplied)
        }
    }

    /// A lightweight transaction, settled: tried again (after a pause)
    /// while the cluster cannot say whether it applied; when a repeat finds
    /// its condition false, `landed` reads whether an earlier try was the
    /// one that applied it.
    async fn lwt_settled<V, F, Fut>(&self, name: &str, values: V, landed: F) -> Result<bool>
    where
        V: SerializeRow + Clone + Send + Sync,
        F: Fn() -> Fut + Send + Sync,
        Fut: std::future::Future<Output = Result<bool>> + Send,
    {
        let mut unsure = false;
        for attempt in 0..CAS_TRIES {
            match self.cas(name, values.clone()).await? {
                Cas::Applied => return Ok(true),
                Cas::NotApplied if unsure => return landed().await,
                Cas::NotApplied => return Ok(false),
                Cas::Unknown => {
                    unsure = true;
                    pause(attempt).await;
                }
            }
        }
        Err(StoreError::Unavailable(format!("{name}: no outcome")))
    }

    /// A lightweight transaction whose repeat is its own answer (a release:
    /// a repeat that finds the row gone or changed means the first try, or
    /// someone, already did it; a caller that must know reads afterwards).
    async fn lwt<V>(&self, name: &str, values: V) -> Result<bool>
    where
        V: SerializeRow + Clone + Send + Sync,
    {
        self.lwt_settled(name, values, || async { Ok(true) }).await
    }

    async fn texts(&self, name: &str, values: impl SerializeRow) -> Result<Vec<String>> {
        Ok(self
            .rows(name, values)
            .await?
            .iter()
            .filter_map(|r| text(r, 0))
            .collect())
    }

    async fn docs<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        values: impl SerializeRow,
    ) -> Result<Vec<T>> {
        self.texts(name, values)
            .await?
            .iter()
            .map(|d| from_doc(d))
            .collect()
    }

    async fn doc<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        values: impl SerializeRow,
    ) -> Result<Option<T>> {
        Ok(self.docs(name, values).await?.into_iter().next())
    }

    async fn deck_put(&self, kind: &str, name: &str, csv: &str) -> Result<u64> {
        for _ in 0..CAS_TRIES {
            let current = self.rows("deck_get", (kind, name)).await?;
            let version = current.first().and_then(|r| big(r, 0));
            let next = version.unwrap_or(0) + 1;
            let chunks = chunked(csv);
            for (i, c) in chunks.iter().enumerate() {
                let i = i32::try_from(i).unwrap_or(i32::MAX);
                self.exec("chunk_put", (kind, name, next, i, *c)).await?;
            }
            let n = i32::try_from(chunks.len()).unwrap_or(i32::MAX);
            let landed = || async {
                let now = self.rows("deck_get", (kind, name)).await?;
                Ok(now.first().and_then(|r| big(r, 0)) == Some(next))
            };
            let applied = match version {
                None => {
                    self.lwt_settled("deck_create", (kind, name, next, n), landed)
                        .await?
                }
                Some(v) => {
                    self.lwt_settled("deck_set", (next, n, kind, name, v), landed)
                        .await?
                }
            };
            if applied {
                if let Some(v) = version {
                    self.exec("chunk_drop", (kind, name, v)).await?;
                }
                return Ok(u64_of(next));
            }
            self.exec("chunk_drop", (kind, name, next)).await?;
        }
        Err(StoreError::Unavailable(format!("{kind} {name}: contended")))
    }

    async fn deck_get(&self, kind: &str, name: &str) -> Result<Option<(String, u64)>> {
        let current = self.rows("deck_get", (kind, name)).await?;
        let Some(version) = current.first().and_then(|r| big(r, 0)) else {
            return Ok(None);
        };
        let mut parts: Vec<(i32, String)> = self
            .rows("chunk_get", (kind, name, version))
            .await?
            .iter()
            .filter_map(|r| Some((int(r, 0)?, text(r, 1)?)))
            .collect();
        parts.sort_by_key(|(i, _)| *i);
        Ok(Some((
            parts.into_iter().map(|(_, c)| c).collect(),
            u64_of(version),
        )))
    }

    /// Write a CDR's index rows (idempotent: keyed by its call id).
    async fn index_cdr(&self, cdr: &Cdr, doc: &str) -> Result<()> {
        let setup = i64_of(cdr.setup_ms);
        let day = setup / 86_400_000;
        let hour = setup / 3_600_000;
        let id = cdr.call_id.as_str();
        self.exec(
            "cdr_payer_put",
            (&cdr.payer, day, shard_of(id, PAYER_SHARDS), setup, id, doc),
        )
        .await?;
        self.exec("bucket_put", (format!("payer:{}", cdr.payer), day))
            .await?;
        let hs = shard_of(id, HOUR_SHARDS);
        self.exec("cdr_hour_put", (hour, hs, setup, id, doc))
            .await?;
        self.exec("bucket_put", ("all", hour)).await?;
        self.exec("cdr_center_put", (&cdr.center, hour, hs, setup, id, doc))
            .await?;
        self.exec("bucket_put", (format!("center:{}", cdr.center), hour))
            .await?;
        for t in cdr
            .attempts
            .iter()
            .map(|a| &a.trunk)
            .collect::<std::collections::BTreeSet<_>>()
        {
            self.exec("cdr_trunk_put", (t, hour, hs, setup, id, doc))
                .await?;
            self.exec("bucket_put", (format!("trunk:{t}"), hour))
                .await?;
        }
        Ok(())
    }

    async fn number_indexes(&self, old: Option<&NumberRecord>, new: &NumberRecord) -> Result<()> {
        let doc = to_doc(new)?;
        let for_sale = !matches!(new.state, NumberState::Sold { .. });
        if for_sale {
            self.exec("for_sale_put", (&new.country, &new.area, &new.number, &doc))
                .await?;
        } else {
            self.exec("for_sale_delete", (&new.country, &new.area, &new.number))
                .await?;
        }
        self.exec("area_put", (&new.country, &new.area)).await?;
        let holder = |r: &NumberRecord| match &r.state {
            NumberState::Sold { account, .. } => Some(account.clone()),
            _ => None,
        };
        if let Some(h) = old.and_then(holder)
            && Some(&h) != holder(new).as_ref()
        {
            self.exec("holder_delete", (&h, &new.number)).await?;
        }
        if let Some(h) = holder(new) {
            self.exec("holder_put", (&h, &new.number)).await?;
        }
        Ok(())
    }
}

/// A session to the cluster: local DC first, token aware, retries only
/// what is idempotent, `keyspace` used when given.
pub async fn session(cfg: &ScyllaConfig, keyspace: Option<&str>) -> Result<Session> {
    let mut policy = DefaultPolicy::builder().token_aware(true);
    if let Some(dc) = &cfg.local_dc {
        policy = policy
            .prefer_datacenter(dc.clone())
            .permit_dc_failover(false);
    }
    let profile = ExecutionProfile::builder()
        .load_balancing_policy(policy.build())
        .retry_policy(Arc::new(DefaultRetryPolicy::new()))
        .request_timeout(Some(cfg.request_timeout))
        .consistency(Consistency::LocalQuorum)
        .build();
    let mut b = SessionBuilder::new()
        .known_nodes(&cfg.nodes)
        .connection_timeout(Duration::from_secs(5))
        .default_execution_profile_handle(profile.into_handle());
    if let Some(ks) = keyspace {
        b = b.use_keyspace(ks, false);
    }
    b.build().await.map_err(unavailable)
}

fn text(r: &Row, i: usize) -> Option<String> {
    match r.columns.get(i) {
        Some(Some(CqlValue::Text(s) | CqlValue::Ascii(s))) => Some(s.clone()),
        _ => None,
    }
}

fn big(r: &Row, i: usize) -> Option<i64> {
    match r.columns.get(i) {
        Some(Some(CqlValue::BigInt(v))) => Some(*v),
        _ => None,
    }
}

fn int(r: &Row, i: usize) -> Option<i32> {
    match r.columns.get(i) {
        Some(Some(CqlValue::Int(v))) => Some(*v),
        _ => None,
    }
}

fn text_map(r: &Row, i: usize) -> BTreeMap<String, String> {
    match r.columns.get(i) {
        Some(Some(CqlValue::Map(kv))) => kv
            .iter()
            .filter_map(|(k, v)| match (k, v) {
                (CqlValue::Text(k), CqlValue::Text(v)) => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// A CSV cut into chunks at line ends.
fn chunked(csv: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = csv;
    while rest.len() > DECK_CHUNK {
        let cut = rest[..DECK_CHUNK].rfind('\n').map_or(DECK_CHUNK, |i| i + 1);
        let cut = (1..=cut)
            .rev()
            .find(|c| rest.is_char_boundary(*c))
            .unwrap_or(rest.len());
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out.push(rest);
    out
}

fn member_of(r: &Row) -> Option<Member> {
    Some(Member {
        number: text(r, 0)?,
        name: text(r, 1).unwrap_or_default(),
        realm: text(r, 2).unwrap_or_default(),
        ha1_md5: text(r, 3).unwrap_or_default(),
        ha1_sha256: text(r, 4).unwrap_or_default(),
        created_at: u64_of(big(r, 5).unwrap_or(0)),
    })
}

/// A TTL in seconds for a record expiring at `expires_at` (at least 1).
fn ttl(expires_at: u64, now: u64) -> i32 {
    i32::try_from(expires_at.saturating_sub(now).max(1)).unwrap_or(i32::MAX)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[async_trait]
impl Store for Scylla {
    async fn insert_member(&self, m: &Member) -> Result<bool> {
        self.lwt_settled(
            "member_insert",
            (
                &m.number,
                &m.name,
                &m.realm,
                &m.ha1_md5,
                &m.ha1_sha256,
                i64_of(m.created_at),
            ),
            || async { Ok(self.member(&m.number).await?.as_ref() == Some(m)) },
        )
        .await
    }

    async fn member(&self, number: &str) -> Result<Option<Member>> {
        Ok(self
            .rows("member_get", (number,))
            .await?
            .iter()
            .find_map(member_of))
    }

    async fn members(&self) -> Result<Vec<Member>> {
        let mut all: Vec<Member> = self
            .rows("member_all", ())
            .await?
            .iter()
            .filter_map(member_of)
            .collect();
        all.sort_by(|a, b| a.number.cmp(&b.number));
        Ok(all)
    }

    async fn remove_member(&self, number: &str) -> Result<bool> {
        let gone = self.lwt("member_delete", (number,)).await?;
        self.exec("reg_delete_all", (number,)).await?;
        Ok(gone)
    }

    async fn bindings(&self, number: &str, now: u64) -> Result<Vec<Binding>> {
        let mut out = Vec::new();
        for r in self.rows("reg_get", (number,)).await? {
            if big(&r, 1).is_some_and(|e| u64_of(e) > now)
                && let Some(doc) = text(&r, 0)
            {
                out.push(from_doc::<Binding>(&doc)?);
            }
        }
        Ok(out)
    }

    async fn update_bindings(
        &self,
        number: &str,
        put: &[Binding],
        delete: &[String],
    ) -> Result<()> {
        // One partition (the number): a batch of it is applied atomically.
        let now = unix_now();
        let mut batch = Batch::new(BatchType::Unlogged);
        let mut values: Vec<Vec<CqlValue>> = Vec::new();
        for c in delete {
            batch.append_statement(self.st("reg_delete")?.clone());
            values.push(vec![
                CqlValue::Text(number.to_owned()),
                CqlValue::Text(c.clone()),
            ]);
        }
        for b in put {
            batch.append_statement(self.st("reg_put")?.clone());
            values.push(vec![
                CqlValue::Text(number.to_owned()),
                CqlValue::Text(b.contact.clone()),
                CqlValue::BigInt(i64_of(b.expires_at)),
                CqlValue::Text(to_doc(b)?),
                CqlValue::Int(ttl(b.expires_at, now)),
            ]);
        }
        if values.is_empty() {
            return Ok(());
        }
        batch.set_consistency(Consistency::LocalQuorum);
        batch.set_is_idempotent(true);
        self.session
            .batch(&batch, values)
            .await
            .map(|_| ())
            .map_err(|e| StoreError::Unavailable(format!("bindings of {number}: {e}")))
    }

    async fn sweep_bindings(&self, _now: u64) -> Result<u64> {
        // Rows expire by their TTL.
        Ok(0)
    }

    async fn binding_count(&self, _now: u64) -> Result<Option<u64>> {
        // A count would scan every node's registrations every few seconds.
        Ok(None)
    }

    async fn insert_account(&self, a: &Account) -> Result<bool> {
        let claimed = self
            .lwt_settled("login_claim", (&a.login, &a.id), || async {
                let holder = self.texts("login_get", (&a.login,)).await?;
                Ok(holder.first() == Some(&a.id))
            })
            .await?;
        if !claimed {
            return Ok(false);
        }
        let mut first = a.clone();
        first.version = 0;
        let doc = to_doc(&first)?;
        if self
            .lwt_settled("account_insert", (&a.id, &a.login, 0i64, &doc), || async {
                Ok(self.account(&a.id).await?.as_ref() == Some(&first))
            })
            .await?
        {
            return Ok(true);
        }
        // The id was taken: give the login back.
        self.lwt("login_release", (&a.login, &a.id)).await?;
        Ok(false)
    }

    async fn account(&self, id: &str) -> Result<Option<Account>> {
        self.doc("account_get", (id,)).await
    }

    async fn account_by_login(&self, login: &str) -> Result<Option<Account>> {
        let Some(id) = self.texts("login_get", (login,)).await?.into_iter().next() else {
            return Ok(None);
        };
        Ok(self.account(&id).await?.filter(|a| a.login == login))
    }

    async fn accounts(&self) -> Result<Vec<Account>> {
        let mut all: Vec<Account> = self.docs("account_all", ()).await?;
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }

    async fn update_account(&self, a: &Account, expected: u64) -> Result<bool> {
        let mut next = a.clone();
        next.version = expected + 1;
        let doc = to_doc(&next)?;
        self.lwt_settled(
            "account_update",
            (&doc, i64_of(expected + 1), &a.id, i64_of(expected)),
            || async { Ok(self.account(&a.id).await?.as_ref() == Some(&next)) },
        )
        .await
    }

    async fn claim_alias(&self, alias: &str, account: &str) -> Result<bool> {
        // A repeat that finds the alias taken reads who holds it.
        let holds = self
            .lwt_settled("alias_claim", (alias, account), || async { Ok(false) })
            .await?
            || self.alias_owner(alias).await?.as_deref() == Some(account);
        if holds {
            self.exec("alias_list_put", (account, alias)).await?;
        }
        Ok(holds)
    }

    async fn release_alias(&self, alias: &str, account: &str) -> Result<bool> {
        let released = self.lwt("alias_release", (alias, account)).await?;
        if released {
            self.exec("alias_list_delete", (account, alias)).await?;
        }
        Ok(released)
    }

    async fn alias_owner(&self, alias: &str) -> Result<Option<String>> {
        Ok(self.texts("alias_get", (alias,)).await?.into_iter().next())
    }

    async fn aliases_of(&self, account: &str) -> Result<Vec<String>> {
        let mut all = self.texts("alias_list", (account,)).await?;
        all.sort();
        Ok(all)
    }

    async fn put_session(&self, s: &SessionRecord) -> Result<()> {
        let ttl = ttl(s.expires_at, unix_now());
        self.exec(
            "session_put",
            (&s.token_hash, &s.account, i64_of(s.expires_at), ttl),
        )
        .await
        .map(|_| ())
    }

    async fn session(&self, token_hash: &str, now: u64) -> Result<Option<SessionRecord>> {
        Ok(self
            .rows("session_get", (token_hash,))
            .await?
            .iter()
            .find_map(|r| {
                let expires_at = u64_of(big(r, 1)?);
                (expires_at > now).then(|| SessionRecord {
                    token_hash: token_hash.to_owned(),
                    account: text(r, 0).unwrap_or_default(),
                    expires_at,
                })
            }))
    }

    async fn delete_session(&self, token_hash: &str) -> Result<()> {
        self.exec("session_delete", (token_hash,)).await.map(|_| ())
    }

    async fn put_api_key(&self, k: &ApiKey) -> Result<()> {
        self.exec("apikey_put", (&k.token_hash, to_doc(k)?)).await?;
        self.exec(
            "apikey_index_put",
            (&k.account, i64_of(k.created_at), &k.token_hash),
        )
        .await
        .map(|_| ())
    }

    async fn api_key(&self, token_hash: &str) -> Result<Option<ApiKey>> {
        self.texts("apikey_get", (token_hash,))
            .await?
            .first()
            .map(|d| from_doc(d))
            .transpose()
    }

    async fn api_keys_of(&self, account: &str) -> Result<Vec<ApiKey>> {
        let mut out = Vec::new();
        for hash in self.texts("apikey_index_get", (account,)).await? {
            if let Some(k) = self.api_key(&hash).await?
                && k.account == account
            {
                out.push(k);
            }
        }
        Ok(out)
    }

    async fn insert_number(&self, r: &NumberRecord) -> Result<bool> {
        let mut first = r.clone();
        first.version = 0;
        let (state, holder) = state_columns(&first);
        let doc = to_doc(&first)?;
        let inserted = self
            .lwt_settled(
                "number_insert",
                (&r.number, &r.country, &r.area, state, holder, 0i64, &doc),
                || async { Ok(self.number(&r.number).await?.as_ref() == Some(&first)) },
            )
            .await?;
        if inserted {
            self.number_indexes(None, &first).await?;
        }
        Ok(inserted)
    }

    async fn number(&self, number: &str) -> Result<Option<NumberRecord>> {
        self.doc("number_get", (number,)).await
    }

    async fn search_numbers(&self, q: &NumberQuery, now: u64) -> Result<Vec<NumberRecord>> {
        let countries = match &q.country {
            Some(c) => vec![c.clone()],
            None => self.texts("countries", ()).await?,
        };
        let mut out: Vec<NumberRecord> = Vec::new();
        for country in countries {
            let areas = match &q.area {
                Some(a) => vec![a.clone()],
                None => self.texts("areas_of", (&country,)).await?,
            };
            for area in areas {
                let bucket: Vec<NumberRecord> =
                    self.docs("for_sale_bucket", (&country, &area)).await?;
                out.extend(bucket.into_iter().filter(|r| {
                    r.available_at(now)
                        && q.kind.is_none_or(|k| r.kind == k)
                        && q.contains.as_deref().is_none_or(|c| r.number.contains(c))
                }));
            }
        }
        out.sort_by(|a, b| a.number.cmp(&b.number));
        out.truncate(q.limit);
        Ok(out)
    }

    async fn numbers_of(&self, account: &str) -> Result<Vec<NumberRecord>> {
        let mut out = Vec::new();
        for n in self.texts("holder_numbers", (account,)).await? {
            if let Some(r) = self.number(&n).await?
                && matches!(&r.state, NumberState::Sold { account: a, .. } if a == account)
            {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.number.cmp(&b.number));
        Ok(out)
    }

    async fn update_number(&self, r: &NumberRecord, expected: u64) -> Result<bool> {
        let old = self.number(&r.number).await?;
        let mut next = r.clone();
        next.version = expected + 1;
        let (state, holder) = state_columns(&next);
        let doc = to_doc(&next)?;
        let applied = self
            .lwt_settled(
                "number_update",
                (
                    state,
                    holder,
                    i64_of(expected + 1),
                    &doc,
                    &r.number,
                    i64_of(expected),
                ),
                || async { Ok(self.number(&r.number).await?.as_ref() == Some(&next)) },
            )
            .await?;
        if applied {
            self.number_indexes(old.as_ref(), &next).await?;
        }
        Ok(applied)
    }

    async fn post(&self, e: &LedgerEntry) -> Result<Posted> {
        let mut unsure = false;
        for attempt in 0..CAS_TRIES {
            if attempt > 0 {
                pause(attempt).await;
            }
            let row = self.balance_row(&e.account).await?;
            // Money held for live calls is not spendable.
            let held: i64 = live_holds(&row.holds, e.at)
                .values()
                .map(|h| h.amount)
                .sum();
            let (posted, next) = match self.plan_post(&row, e, held.max(0)).await? {
                // An earlier try whose outcome was unknown did post it.
                Plan::Done(Posted::Duplicate(b)) if unsure => return Ok(Posted::Posted(b)),
                Plan::Done(p) => return Ok(p),
                Plan::Write(posted, next) => (posted, next),
            };
            match self.balance_cas(&e.account, &row, next).await? {
                Cas::Applied => {
                    self.write_entry(&e.account, &e.key, &posted).await?;
                    return Ok(Posted::Posted(row.amount + e.amount));
                }
                Cas::Unknown => unsure = true,
                Cas::NotApplied => {}
            }
        }
        Err(contended(&e.account))
    }

    async fn put_hold(&self, h: &Hold, credit_limit: i64, now: u64) -> Result<HoldOutcome> {
        for attempt in 0..CAS_TRIES {
            if attempt > 0 {
                pause(attempt).await;
            }
            let row = self.balance_row(&h.account).await?;
            let mut holds = live_holds(&row.holds, now);
            // An earlier try whose outcome was unknown set it.
            if holds.get(&h.id) == Some(h) {
                let others: i64 = holds
                    .iter()
                    .filter(|(id, _)| **id != h.id)
                    .map(|(_, x)| x.amount)
                    .sum();
                return Ok(HoldOutcome {
                    set: true,
                    available: row.amount + credit_limit - others,
                });
            }
            let others: i64 = holds
                .iter()
                .filter(|(id, _)| **id != h.id)
                .map(|(_, x)| x.amount)
                .sum();
            let available = row.amount + credit_limit - others;
            if h.amount > available {
                return Ok(HoldOutcome {
                    set: false,
                    available,
                });
            }
            holds.insert(h.id.clone(), h.clone());
            let next = Next {
                amount: row.amount,
                recent: row.recent.clone(),
                holds: hold_docs(&holds)?,
            };
            if let Cas::Applied = self.balance_cas(&h.account, &row, next).await? {
                return Ok(HoldOutcome {
                    set: true,
                    available,
                });
            }
        }
        Err(contended(&h.account))
    }

    async fn release_hold(
        &self,
        account: &str,
        id: &str,
        entry: Option<&LedgerEntry>,
    ) -> Result<Option<Posted>> {
        let mut unsure = false;
        for attempt in 0..CAS_TRIES {
            if attempt > 0 {
                pause(attempt).await;
            }
            let row = self.balance_row(account).await?;
            let mut holds = row.holds.clone();
            let had = holds.remove(id).is_some();
            let (outcome, next, write) = match entry {
                None => (
                    None,
                    Next {
                        amount: row.amount,
                        recent: row.recent.clone(),
                        holds,
                    },
                    None,
                ),
                // A call's charge is what its own hold covered: it may use
                // all of the balance, never below zero.
                Some(e) => match self.plan_post(&row, e, 0).await? {
                    Plan::Done(p) => (
                        // An earlier try whose outcome was unknown posted it.
                        Some(match p {
                            Posted::Duplicate(b) if unsure => Posted::Posted(b),
                            p => p,
                        }),
                        Next {
                            amount: row.amount,
                            recent: row.recent.clone(),
                            holds,
                        },
                        None,
                    ),
                    Plan::Write(posted, mut next) => {
                        next.holds = holds;
                        (
                            Some(Posted::Posted(row.amount + e.amount)),
                            next,
                            Some((e, posted)),
                        )
                    }
                },
            };
            if !had && write.is_none() {
                return Ok(outcome);
            }
            match self.balance_cas(account, &row, next).await? {
                Cas::Applied => {
                    if let Some((e, posted)) = write {
                        self.write_entry(account, &e.key, &posted).await?;
                    }
                    return Ok(outcome);
                }
                Cas::Unknown => unsure = true,
                Cas::NotApplied => {}
            }
        }
        Err(contended(account))
    }

    async fn holds(&self, account: &str, now: u64) -> Result<Vec<Hold>> {
        let row = self.balance_row(account).await?;
        Ok(live_holds(&row.holds, now).into_values().collect())
    }

    async fn balance(&self, account: &str) -> Result<i64> {
        Ok(self
            .rows("balance_get", (account,))
            .await?
            .first()
            .and_then(|r| big(r, 0))
            .unwrap_or(0))
    }

    async fn ledger(&self, account: &str) -> Result<Vec<LedgerEntry>> {
        let mut by_seq: BTreeMap<i64, LedgerEntry> = BTreeMap::new();
        for month in self.texts("months_of", (account,)).await? {
            for r in self.rows("ledger_month", (account, &month)).await? {
                if let Some(seq) = big(&r, 0) {
                    by_seq.insert(
                        seq,
                        LedgerEntry {
                            account: account.to_owned(),
                            key: text(&r, 1).unwrap_or_default(),
                            amount: big(&r, 2).unwrap_or(0),
                            reason: text(&r, 3).unwrap_or_default(),
                            at: u64_of(big(&r, 4).unwrap_or(0)),
                        },
                    );
                }
            }
        }
        // Posts whose rows a crash left unwritten are still in the balance.
        if let Some(row) = self.rows("balance_get", (account,)).await?.first() {
            for (key, doc) in text_map(row, 2) {
                let r: Recent = from_doc(&doc)?;
                by_seq.entry(r.seq).or_insert(LedgerEntry {
                    account: account.to_owned(),
                    key,
                    amount: r.amount,
                    reason: r.reason,
                    at: r.at,
                });
            }
        }
        Ok(by_seq.into_values().collect())
    }

    async fn put_rates(&self, trunk: &str, csv: &str) -> Result<u64> {
        self.deck_put("rates", trunk, csv).await
    }

    async fn rates(&self, trunk: &str) -> Result<Option<(String, u64)>> {
        self.deck_get("rates", trunk).await
    }

    async fn put_plan(&self, name: &str, csv: &str) -> Result<u64> {
        self.deck_put("plan", name, csv).await
    }

    async fn plan(&self, name: &str) -> Result<Option<(String, u64)>> {
        self.deck_get("plan", name).await
    }

    async fn plans(&self) -> Result<Vec<(String, u64)>> {
        let mut all: Vec<(String, u64)> = self
            .rows("deck_list", ("plan",))
            .await?
            .iter()
            .filter_map(|r| Some((text(r, 0)?, u64_of(big(r, 1)?))))
            .collect();
        all.sort();
        Ok(all)
    }

    async fn insert_card(&self, c: &Card) -> Result<bool> {
        let claimed = self
            .lwt_settled("token_claim", (&c.token, &c.id), || async {
                let holder = self.texts("token_get", (&c.token,)).await?;
                Ok(holder.first() == Some(&c.id))
            })
            .await?;
        if !claimed {
            return Ok(false);
        }
        let doc = to_doc(c)?;
        let inserted = self
            .lwt_settled(
                "card_insert",
                (
                    &c.id,
                    &c.owner,
                    &c.token,
                    i64_of(c.version),
                    i64_of(c.updated_at),
                    &doc,
                ),
                || async { Ok(self.card(&c.id).await?.as_ref() == Some(c)) },
            )
            .await?;
        if !inserted {
            self.lwt("token_release", (&c.token, &c.id)).await?;
            return Ok(false);
        }
        self.exec("owner_card_put", (&c.owner, &c.id)).await?;
        self.put_buttons(c, None).await?;
        Ok(true)
    }

    async fn update_card(&self, c: &Card, expected: u64) -> Result<bool> {
        let before = self.card(&c.id).await?;
        let mut next = c.clone();
        next.version = expected + 1;
        let doc = to_doc(&next)?;
        let applied = self
            .lwt_settled(
                "card_update",
                (
                    i64_of(expected + 1),
                    i64_of(c.updated_at),
                    &doc,
                    &c.id,
                    i64_of(expected),
                ),
                || async { Ok(self.card(&c.id).await?.as_ref() == Some(&next)) },
            )
            .await?;
        if applied {
            self.put_buttons(c, before.as_ref()).await?;
        }
        Ok(applied)
    }

    async fn card(&self, id: &str) -> Result<Option<Card>> {
        self.doc("card_get", (id,)).await
    }

    async fn card_by_token(&self, token: &str) -> Result<Option<Card>> {
        let Some(id) = self.texts("token_get", (token,)).await?.into_iter().next() else {
            return Ok(None);
        };
        Ok(self.card(&id).await?.filter(|c| c.token == token))
    }

    async fn cards_of(&self, owner: &str) -> Result<Vec<Card>> {
        let mut out = Vec::new();
        for id in self.texts("owner_cards", (owner,)).await? {
            if let Some(c) = self.card(&id).await?
                && c.owner == owner
            {
                out.push(c);
            }
        }
        out.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(b.id.cmp(&a.id)));
        Ok(out)
    }

    async fn delete_card(&self, id: &str) -> Result<bool> {
        let Some(c) = self.card(id).await? else {
            return Ok(false);
        };
        if !self.lwt("card_delete", (id,)).await? {
            return Ok(false);
        }
        self.lwt("token_release", (&c.token, id)).await?;
        self.exec("owner_card_delete", (&c.owner, id)).await?;
        for p in &c.info.phones {
            self.exec("button_delete", (&p.button_id,)).await?;
        }
        Ok(true)
    }

    async fn claim_idempotency(
        &self,
        owner: &str,
        key: &str,
        call_id: &str,
        at: u64,
    ) -> Result<String> {
        // A repeat that finds the key claimed reads whose call it is.
        if self
            .lwt_settled("idem_claim", (owner, key, call_id, i64_of(at)), || async {
                Ok(false)
            })
            .await?
        {
            return Ok(call_id.to_owned());
        }
        self.texts("idem_get", (owner, key))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Unavailable(format!("idempotency key {key}: lost")))
    }

    async fn release_idempotency(&self, owner: &str, key: &str, call_id: &str) -> Result<()> {
        // Applied or not (another call holds the key now), nothing to do.
        self.lwt("idem_release", (owner, key, call_id)).await?;
        Ok(())
    }

    async fn record_card_send(
        &self,
        owner: &str,
        card: &str,
        version: u64,
        to: &str,
        at: u64,
    ) -> Result<()> {
        let id = format!(
            "{:016x}{:08x}",
            at,
            shard_of(&format!("{card}{to}{at}"), i32::MAX)
        );
        let day = i64_of(at / 86_400);
        self.exec(
            "send_owner_put",
            (owner, day, i64_of(at), &id, card, i64_of(version), to),
        )
        .await?;
        self.exec(
            "send_card_put",
            (card, i64_of(at), &id, i64_of(version), to),
        )
        .await
        .map(|_| ())
    }

    async fn card_sends_since(&self, owner: &str, since: u64) -> Result<u64> {
        let mut n = 0;
        let (first, last) = (since / 86_400, unix_now().max(since) / 86_400);
        for day in first..=last {
            n += self
                .rows("sends_since", (owner, i64_of(day), i64_of(since)))
                .await?
                .len() as u64;
        }
        Ok(n)
    }

    async fn card_sends(&self, card: &str) -> Result<Vec<(String, u64, u64)>> {
        Ok(self
            .rows("sends_of_card", (card,))
            .await?
            .iter()
            .filter_map(|r| Some((text(r, 0)?, u64_of(big(r, 1)?), u64_of(big(r, 2)?))))
            .collect())
    }

    async fn put_open_call(&self, c: &OpenCall) -> Result<()> {
        self.exec("open_call_put", (&c.node, &c.call_id, to_doc(c)?))
            .await
            .map(|_| ())
    }

    async fn close_open_call(&self, node: &str, call_id: &str) -> Result<()> {
        self.exec("open_call_delete", (node, call_id))
            .await
            .map(|_| ())
    }

    async fn open_calls(&self, node: &str) -> Result<Vec<OpenCall>> {
        self.docs("open_calls_of", (node,)).await
    }

    async fn heartbeat(&self, node: &str, at: u64) -> Result<()> {
        self.exec("heartbeat_put", (node, i64_of(at)))
            .await
            .map(|_| ())
    }

    async fn last_heartbeat(&self, node: &str) -> Result<Option<u64>> {
        let rows = self.rows("heartbeat_of", (node,)).await?;
        Ok(rows.first().and_then(|r| big(r, 0)).map(|at| at as u64))
    }

    async fn put_node(&self, node: &NodeRecord) -> Result<()> {
        self.exec("node_put", (to_doc(node)?, &node.name))
            .await
            .map(|_| ())
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        let mut out = Vec::new();
        for r in self.rows("nodes_all", ()).await? {
            let (Some(name), Some(doc)) = (text(&r, 0), text(&r, 2)) else {
                continue;
            };
            let mut n: NodeRecord = from_doc(&doc)?;
            n.name = name;
            n.at = big(&r, 1).map_or(0, u64_of);
            out.push(n);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn put_cdr(&self, cdr: &Cdr) -> Result<bool> {
        let doc = to_doc(cdr)?;
        let landed = || async {
            let stored = self.texts("cdr_get", (&cdr.call_id,)).await?;
            Ok(stored.first() == Some(&doc))
        };
        if self
            .lwt_settled("cdr_insert", (&cdr.call_id, &doc), landed)
            .await?
        {
            self.index_cdr(cdr, &doc).await?;
            return Ok(true);
        }
        // Already there: (re)write its index rows from the stored record,
        // in case the first writer stopped between the two.
        if let Some(stored) = self.doc::<Cdr>("cdr_get", (&cdr.call_id,)).await? {
            let doc = to_doc(&stored)?;
            self.index_cdr(&stored, &doc).await?;
        }
        Ok(false)
    }

    async fn cdrs(&self, q: &CdrQuery) -> Result<Vec<Cdr>> {
        let (scope, unit, shards, page) = match &q.payer {
            Some(p) => (
                format!("payer:{p}"),
                86_400_000u64,
                PAYER_SHARDS,
                "cdr_payer_page",
            ),
            None => ("all".to_owned(), 3_600_000u64, HOUR_SHARDS, "cdr_hour_page"),
        };
        let from = q
            .after
            .as_ref()
            .map_or(q.from_ms, |(s, _)| (*s).max(q.from_ms));
        if q.limit == 0 || from >= q.to_ms {
            return Ok(Vec::new());
        }
        let (first, last) = (from / unit, (q.to_ms - 1) / unit);
        let mut buckets: Vec<i64> = self
            .rows("buckets", (&scope, i64_of(first), i64_of(last)))
            .await?
            .iter()
            .filter_map(|r| big(r, 0))
            .collect();
        buckets.sort_unstable();
        let (after_ms, after_id) = q
            .after
            .clone()
            .map_or((i64_of(q.from_ms) - 1, String::new()), |(s, id)| {
                (i64_of(s), id)
            });
        let limit = i32::try_from(q.limit).unwrap_or(i32::MAX);
        let mut out: Vec<Cdr> = Vec::new();
        for bucket in buckets {
            let mut found: Vec<Cdr> = Vec::new();
            for shard in 0..shards {
                let rows: Vec<Cdr> = match &q.payer {
                    Some(p) => {
                        self.docs(
                            page,
                            (
                                p,
                                bucket,
                                shard,
                                after_ms,
                                &after_id,
                                i64_of(q.to_ms),
                                limit,
                            ),
                        )
                        .await?
                    }
                    None => {
                        self.docs(
                            page,
                            (bucket, shard, after_ms, &after_id, i64_of(q.to_ms), limit),
                        )
                        .await?
                    }
                };
                found.extend(rows);
            }
            found.retain(|c| c.setup_ms >= q.from_ms);
            found.sort_by(|a, b| (a.setup_ms, &a.call_id).cmp(&(b.setup_ms, &b.call_id)));
            out.extend(found);
            if out.len() >= q.limit {
                break;
            }
        }
        out.truncate(q.limit);
        Ok(out)
    }
}

impl Scylla {
    /// The balance's row (created empty when the account has none).
    async fn balance_row(&self, account: &str) -> Result<BalanceRow> {
        for _ in 0..2 {
            if let Some(r) = self.rows("balance_get", (account,)).await?.first() {
                return Ok(BalanceRow {
                    amount: big(r, 0).unwrap_or(0),
                    version: big(r, 1).unwrap_or(0),
                    recent: text_map(r, 2),
                    holds: text_map(r, 3),
                });
            }
            let empty: BTreeMap<String, String> = BTreeMap::new();
            self.lwt("balance_init", (account, 0i64, 0i64, empty.clone(), empty))
                .await?;
        }
        Err(StoreError::Unavailable(format!(
            "balance of {account}: cannot create"
        )))
    }

    /// Write `next` over `row` if nobody changed it meanwhile. The loops
    /// that call it read the row again after anything but `Applied`: a
    /// post or a hold is keyed, so a try whose outcome was unknown is found
    /// in the row (its key among the recent posts, its id among the holds)
    /// rather than applied twice.
    async fn balance_cas(&self, account: &str, row: &BalanceRow, next: Next) -> Result<Cas> {
        self.cas(
            "balance_update",
            (
                next.amount,
                row.version + 1,
                next.recent,
                next.holds,
                account,
                row.version,
            ),
        )
        .await
    }

    /// Posting `e` over `row`: a duplicate (its rows rewritten, in case a
    /// crash left them unwritten), refused (a debit below `floor`), or the
    /// row after it.
    async fn plan_post(&self, row: &BalanceRow, e: &LedgerEntry, floor: i64) -> Result<Plan> {
        if let Some(r) = row.recent.get(&e.key) {
            let r: Recent = from_doc(r)?;
            self.write_entry(&e.account, &e.key, &r).await?;
            return Ok(Plan::Done(Posted::Duplicate(row.amount)));
        }
        if !self
            .texts_i64("key_get", (&e.account, &e.key))
            .await?
            .is_empty()
        {
            return Ok(Plan::Done(Posted::Duplicate(row.amount)));
        }
        if e.amount < 0 && row.amount + e.amount < floor {
            return Ok(Plan::Done(Posted::Insufficient(row.amount - floor)));
        }
        let posted = Recent {
            seq: row.version + 1,
            amount: e.amount,
            reason: e.reason.clone(),
            at: e.at,
        };
        let mut recent = row.recent.clone();
        recent.insert(e.key.clone(), to_doc(&posted)?);
        while recent.len() > RECENT_POSTS {
            let oldest = recent
                .iter()
                .filter_map(|(k, v)| Some((from_doc::<Recent>(v).ok()?.seq, k.clone())))
                .min();
            match oldest {
                Some((_, k)) => recent.remove(&k),
                None => break,
            };
        }
        Ok(Plan::Write(
            posted,
            Next {
                amount: row.amount + e.amount,
                recent,
                holds: row.holds.clone(),
            },
        ))
    }

    async fn texts_i64(&self, name: &str, values: impl SerializeRow) -> Result<Vec<i64>> {
        Ok(self
            .rows(name, values)
            .await?
            .iter()
            .filter_map(|r| big(r, 0))
            .collect())
    }

    /// A card's call buttons (button ID → card and number); buttons of
    /// `before` that the card no longer has are dropped.
    async fn put_buttons(&self, c: &Card, before: Option<&Card>) -> Result<()> {
        for p in &c.info.phones {
            self.exec("button_put", (&p.button_id, &c.id, &p.number))
                .await?;
        }
        for old in before.map(|b| b.info.phones.as_slice()).unwrap_or_default() {
            if !c.info.phones.iter().any(|p| p.button_id == old.button_id) {
                self.exec("button_delete", (&old.button_id,)).await?;
            }
        }
        Ok(())
    }

    /// Write a post's ledger rows (idempotent: keyed by its sequence).
    async fn write_entry(&self, account: &str, key: &str, r: &Recent) -> Result<()> {
        let month = month_of(r.at);
        self.exec(
            "ledger_put",
            (
                account,
                &month,
                r.seq,
                key,
                r.amount,
                &r.reason,
                i64_of(r.at),
            ),
        )
        .await?;
        self.exec("months_put", (account, &month)).await?;
        self.exec("key_put", (account, key, r.seq)).await?;
        Ok(())
    }
}

fn state_columns(r: &NumberRecord) -> (&'static str, Option<String>) {
    match &r.state {
        NumberState::Available => ("available", None),
        NumberState::Held { account, .. } => ("held", Some(account.clone())),
        NumberState::Sold { account, .. } => ("sold", Some(account.clone())),
    }
}

/// A replication spec, `DC=RF[,DC=RF…]`, as `migrate` takes it.
pub fn parse_replication(spec: &str) -> std::result::Result<Vec<(String, u32)>, String> {
    spec.split(',')
        .map(|kv| {
            let (dc, rf) = kv
                .split_once('=')
                .ok_or_else(|| format!("{kv:?}: expected DC=RF"))?;
            let rf = rf
                .trim()
                .parse::<u32>()
                .map_err(|_| format!("{kv:?}: RF is a number"))?;
            Ok((dc.trim().to_owned(), rf))
        })
        .collect()
}

/// Create the keyspace (NetworkTopologyStrategy with `replication`: DC name
/// to replication factor) and apply every migration not applied yet, in
/// order, recording each in `schema_migrations`. Idempotent. Returns the
/// versions applied now.
pub async fn migrate(cfg: &ScyllaConfig, replication: &[(String, u32)]) -> Result<Vec<i32>> {
    if replication.is_empty()
        || replication.iter().any(|(dc, rf)| {
            *rf == 0
                || !dc
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
    {
        return Err(StoreError::Unavailable(
            "replication: one or more DC=FACTOR with a factor of at least 1".into(),
        ));
    }
    let s = session(cfg, None).await?;
    let dcs = replication
        .iter()
        .map(|(dc, rf)| format!("'{dc}': {rf}"))
        .collect::<Vec<_>>()
        .join(", ");
    let ks = &cfg.keyspace;
    let ddl = |e: scylla::errors::ExecutionError| StoreError::Unavailable(e.to_string());
    s.query_unpaged(
        format!(
            "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {{'class': 'NetworkTopologyStrategy', {dcs}}}"
        ),
        (),
    )
    .await
    .map_err(ddl)?;
    s.query_unpaged(
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.schema_migrations (version int PRIMARY KEY, name text, applied_at bigint)"
        ),
        (),
    )
    .await
    .map_err(ddl)?;
    let applied: Vec<i32> = s
        .query_unpaged(format!("SELECT version FROM {ks}.schema_migrations"), ())
        .await
        .map_err(ddl)?
        .into_rows_result()
        .map_err(unavailable)?
        .rows::<(i32,)>()
        .map_err(unavailable)?
        .filter_map(|r| r.ok().map(|(v,)| v))
        .collect();
    let mut done = Vec::new();
    for (version, name, cql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        for statement in statements_of(cql) {
            let statement = statement
                .replacen(
                    "CREATE TABLE IF NOT EXISTS ",
                    &format!("CREATE TABLE IF NOT EXISTS {ks}."),
                    1,
                )
                .replacen("ALTER TABLE ", &format!("ALTER TABLE {ks}."), 1);
            s.query_unpaged(statement, ()).await.map_err(ddl)?;
        }
        s.query_unpaged(
            format!(
                "INSERT INTO {ks}.schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"
            ),
            (*version, *name, i64_of(unix_now())),
        )
        .await
        .map_err(ddl)?;
        done.push(*version);
    }
    Ok(done)
}

/// `cql` with its table named in `keyspace` (the word after `FROM`,
/// `INTO` or `UPDATE`).
pub fn qualified(cql: &str, keyspace: &str) -> String {
    let mut out = String::with_capacity(cql.len() + keyspace.len() + 1);
    let mut next_is_table = false;
    for (i, word) in cql.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if next_is_table && !word.is_empty() {
            out.push_str(keyspace);
            out.push('.');
        }
        next_is_table = matches!(word, "FROM" | "INTO" | "UPDATE");
        out.push_str(word);
    }
    out
}

/// The statements of a CQL file: comments dropped, split at `;`.
pub fn statements_of(cql: &str) -> Vec<String> {
    cql.lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
        .split(';')
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_utc_calendar_months() {
        assert_eq!(month_of(0), "1970-01");
        assert_eq!(month_of(951_782_399), "2000-02"); // 2000-02-28T23:59:59Z
        assert_eq!(month_of(951_868_800), "2000-03"); // leap day passed
        assert_eq!(month_of(1_798_761_599), "2026-12"); // 2026-12-31T23:59:59Z
        assert_eq!(month_of(1_798_761_600), "2027-01");
    }

    #[test]
    fn uris_name_nodes_keyspace_and_dc() {
        let c = ScyllaConfig::parse("scylla://10.0.0.1,10.0.0.2:19042/sb?dc=seoul")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.nodes, ["10.0.0.1:9042", "10.0.0.2:19042"]);
        assert_eq!(
            (c.keyspace.as_str(), c.local_dc.as_deref()),
            ("sb", Some("seoul"))
        );
        assert!(ScyllaConfig::parse("http://x").is_err());
        assert!(ScyllaConfig::parse("scylla:///ks").is_err());
        assert!(ScyllaConfig::parse("scylla://h/bad-name;").is_err());
    }

    #[test]
    fn shards_are_stable_and_in_range() {
        assert_eq!(shard_of("abc@click", 16), shard_of("abc@click", 16));
        assert!((0..1000).all(|i| (0..16).contains(&shard_of(&format!("{i}"), 16))));
        let used: std::collections::BTreeSet<_> = (0..1000)
            .map(|i| shard_of(&format!("call-{i}"), 4))
            .collect();
        assert_eq!(used.len(), 4, "every shard gets calls");
    }

    /// Tables and their columns as the CQL files create them.
    fn schema() -> BTreeMap<String, Vec<String>> {
        let mut tables = BTreeMap::new();
        for (_, _, cql) in MIGRATIONS {
            for st in statements_of(cql) {
                let Some(rest) = st.strip_prefix("CREATE TABLE IF NOT EXISTS ") else {
                    continue;
                };
                let (name, body) = rest.split_once(" (").unwrap_or((rest, ""));
                let columns: Vec<String> = body
                    .split(',')
                    .map(str::trim)
                    .filter(|c| !c.starts_with("PRIMARY KEY") && !c.starts_with('('))
                    .filter_map(|c| c.split_whitespace().next())
                    .filter(|c| !c.ends_with(')'))
                    .map(str::to_owned)
                    .collect();
                tables.insert(name.to_owned(), columns);
            }
            for st in statements_of(cql) {
                let Some(rest) = st.strip_prefix("ALTER TABLE ") else {
                    continue;
                };
                let words: Vec<&str> = rest.split_whitespace().collect();
                if let [table, "ADD", column, ..] = words[..] {
                    tables
                        .get_mut(table)
                        .unwrap_or_else(|| panic!("ALTER of unknown table {table}"))
                        .push(column.to_owned());
                }
            }
        }
        tables
    }

    const KEYWORDS: &[&str] = &[
        "SELECT", "FROM", "WHERE", "AND", "INSERT", "INTO", "VALUES", "UPDATE", "SET", "DELETE",
        "IF", "NOT", "EXISTS", "USING", "TTL", "LIMIT", "DISTINCT",
    ];

    #[test]
    fn every_statement_names_tables_and_columns_of_the_cql_files() {
        let tables = schema();
        assert!(tables.len() >= 29, "{tables:?}");
        assert!(tables["cdrs_by_payer"].contains(&"shard".to_owned()));
        let mut used = std::collections::BTreeSet::new();
        for (name, kind, cql) in STATEMENTS {
            let words: Vec<&str> = cql
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| !w.is_empty())
                .collect();
            let table = words
                .iter()
                .zip(words.iter().skip(1))
                .find(|(k, _)| matches!(**k, "FROM" | "INTO" | "UPDATE"))
                .map(|(_, t)| *t)
                .unwrap_or_else(|| panic!("{name}: no table"));
            let columns = tables
                .get(table)
                .unwrap_or_else(|| panic!("{name}: no table {table} in schema/cql"));
            used.insert(table);
            for w in &words {
                let known = KEYWORDS.contains(w)
                    || *w == table
                    || w.parse::<u64>().is_ok()
                    || columns.iter().any(|c| c == w);
                assert!(known, "{name}: {w:?} is not a column of {table}");
            }
            // Conditional writes are lightweight transactions, and only they.
            let conditional = words.windows(2).any(|p| p[0] == "IF") || words.contains(&"IF");
            assert_eq!(
                conditional,
                matches!(kind, Kind::Lwt | Kind::RegionalLwt),
                "{name}: kind {kind:?} but {cql}"
            );
            let names = STATEMENTS.iter().filter(|(n, _, _)| n == name).count();
            assert_eq!(names, 1, "{name} is named once");
        }
        let unused: Vec<_> = tables
            .keys()
            .filter(|t| !used.contains(t.as_str()))
            .collect();
        assert!(unused.is_empty(), "tables no statement uses: {unused:?}");
    }

    #[test]
    fn statements_name_their_keyspace() {
        assert_eq!(
            qualified("SELECT doc FROM cards WHERE id = ?", "ks"),
            "SELECT doc FROM ks.cards WHERE id = ?"
        );
        assert_eq!(
            qualified(
                "UPDATE balances SET amount = ? WHERE account = ? IF version = ?",
                "ks"
            ),
            "UPDATE ks.balances SET amount = ? WHERE account = ? IF version = ?"
        );
        assert_eq!(
            qualified(
                "INSERT INTO members (number) VALUES (?) IF NOT EXISTS",
                "ks"
            ),
            "INSERT INTO ks.members (number) VALUES (?) IF NOT EXISTS"
        );
        for (_, _, cql) in STATEMENTS {
            let q = qualified(cql, "ks");
            assert_eq!(q.matches("ks.").count(), 1, "{q}");
        }
    }

    #[test]
    fn decks_are_cut_at_line_ends() {
        let csv: String = (0..200_000).map(|i| format!("{i},100\n")).collect();
        let parts = chunked(&csv);
        assert!(parts.len() > 1);
        assert_eq!(parts.concat(), csv);
        assert!(
            parts[..parts.len() - 1]
                .iter()
                .all(|p| p.ends_with('\n') && p.len() <= DECK_CHUNK)
        );
    }
}

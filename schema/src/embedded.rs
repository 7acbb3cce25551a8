//! The embedded backend: SQLite (bundled) in WAL mode, file
//! `<data>/switchboard.db`.
//!
//! Why SQLite and not a single-process engine (redb, fjall): the operator CLI
//! (`switchboard member add`) must write while `switchboard serve` runs on
//! the same data directory, and the server must see the change at once.
//! SQLite's WAL mode gives concurrent readers and one writer across
//! processes; redb and fjall lock the database to one process. See
//! docs/decisions.md.
//!
//! The store runs on threads of its own, never on the async runtime's
//! workers: one writer thread with one connection takes every write and
//! commits the writes queued together in one transaction (group commit;
//! each write in a savepoint of its own, answered only once its
//! transaction has committed), and reader threads, each with its own
//! connection, run the reads beside it (WAL: readers see every committed
//! write and never wait for the writer). Every statement is prepared once
//! per connection (the statement cache). `synchronous=NORMAL` in WAL mode
//! does not fsync each commit: a committed write survives the process
//! being killed; the busy timeout covers the moments the operator's CLI
//! writes from its own process.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use crate::model::{
    Account, ApiKey, Binding, Card, Cdr, CdrQuery, Hold, HoldOutcome, LedgerEntry, Member,
    NodeRecord, NumberQuery, NumberRecord, NumberState, OpenCall, Posted, Session,
};
use crate::store::{Result, Store, StoreError};

/// SQLite-backed store.
pub struct Embedded {
    /// The writer thread's queue: every write, group-committed.
    writes: crossbeam_channel::Sender<Job>,
    /// Idle read connections: a read takes one (or opens one), runs on it
    /// where it is called (a read in WAL mode never waits for the writer,
    /// and takes microseconds: handing it to another thread would cost
    /// more than it), and puts it back.
    readers: parking_lot::Mutex<Vec<Connection>>,
    /// The database file, for more read connections.
    path: std::path::PathBuf,
    /// Tells the checkpoint thread to stop.
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Work for a store thread: run on its connection (`None`: not run, the
/// transaction could not begin), it returns whether it succeeded and what
/// to do once its transaction's fate is known (`None`: committed;
/// `Some(why)`: it failed).
type Job = Box<dyn FnOnce(Option<&mut Connection>) -> (bool, Finish) + Send>;
type Finish = Box<dyn FnOnce(Option<String>) + Send>;

/// The most writes one transaction commits together.
const GROUP_COMMIT: usize = 128;

/// Wrap `work` as a [`Job`] whose result reaches the returned receiver once
/// its transaction is settled. A panic in `work` fails that job only.
fn job<T: Send + 'static>(
    work: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
) -> (Job, tokio::sync::oneshot::Receiver<Result<T>>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move |conn| {
        let r = match conn {
            Some(conn) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(conn)))
                .unwrap_or_else(|_| Err(StoreError::Unavailable("a store job panicked".into()))),
            None => Err(StoreError::Unavailable("not run".into())),
        };
        let ok = r.is_ok();
        let finish: Finish = Box::new(move |failed| {
            let _ = tx.send(match failed {
                None => r,
                Some(why) => Err(StoreError::Unavailable(why)),
            });
        });
        (ok, finish)
    });
    (job, rx)
}

/// The writer: takes the writes queued, runs up to [`GROUP_COMMIT`] of
/// them in one transaction, each in a savepoint of its own (a failed one
/// is rolled back alone), commits, and only then answers each: a write
/// acknowledged is committed. Stops when the store is dropped.
fn writer_thread(mut conn: Connection, jobs: crossbeam_channel::Receiver<Job>) {
    // Transaction control through the statement cache too.
    let control = |conn: &Connection, sql: &str| -> rusqlite::Result<()> {
        conn.prepare_cached(sql)?.execute([]).map(|_| ())
    };
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < GROUP_COMMIT {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        if let Err(e) = control(&conn, "BEGIN IMMEDIATE") {
            let why = format!("begin: {e}");
            for j in batch {
                let (_, finish) = j(None);
                finish(Some(why.clone()));
            }
            continue;
        }
        let alone = batch.len() == 1;
        let mut done = Vec::with_capacity(batch.len());
        let mut any = false;
        for j in batch {
            // One write alone is its transaction; several each get a
            // savepoint, so a failed one is undone alone.
            let began = !alone && control(&conn, "SAVEPOINT job").is_ok();
            let (ok, finish) = j(Some(&mut conn));
            if began {
                if !ok {
                    let _ = control(&conn, "ROLLBACK TO job");
                }
                let _ = control(&conn, "RELEASE job");
            }
            any |= ok;
            done.push(finish);
        }
        let failed = if any {
            control(&conn, "COMMIT").err().map(|e| {
                let _ = control(&conn, "ROLLBACK");
                format!("commit: {e}")
            })
        } else {
            // Nothing to keep: the failed writes' answers stand.
            let _ = control(&conn, "ROLLBACK");
            None
        };
        for finish in done {
            finish(failed.clone());
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How often the checkpoint thread copies the write-ahead log into the
/// database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Checkpoint the write-ahead log of the database at `path` from a thread
/// of its own (passive: writers are never blocked), every
/// [`CHECKPOINT_EVERY`], until `stop`. The writers' connection does not
/// checkpoint: SQLite's automatic checkpoint runs inside the commit that
/// crosses 1,000 pages, copying them and syncing the file while every
/// other caller of the store waits on that commit; the engine's calls
/// would stall behind it.
fn checkpoint_thread(
    path: std::path::PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<()> {
    let conn = Connection::open(&path).map_err(unavailable)?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(unavailable)?;
    std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || {
            let tick = Duration::from_millis(50);
            let mut waited = Duration::ZERO;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(tick);
                waited += tick;
                if waited >= CHECKPOINT_EVERY {
                    waited = Duration::ZERO;
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            }
            // A last one, so a clean stop leaves the log copied.
            let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        })
        .map(|_| ())
        .map_err(|e| StoreError::Unavailable(format!("checkpoint thread: {e}")))
}

/// Statements through the connection's statement cache, each prepared
/// once per connection: `Connection::execute` and `query_row` prepare the
/// statement again on every call (issue 22: ~3% of the engine's CPU).
trait Cached {
    fn run<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;

    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn run<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// Statements the cache keeps per connection: every statement of this
/// file, so none is evicted and prepared again.
const STATEMENT_CACHE: usize = 256;

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS members (
    number TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    realm TEXT NOT NULL,
    ha1_md5 TEXT NOT NULL,
    ha1_sha256 TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS bindings (
    number TEXT NOT NULL,
    contact TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    call_id TEXT NOT NULL,
    cseq INTEGER NOT NULL,
    source TEXT NOT NULL,
    PRIMARY KEY (number, contact)
);
CREATE INDEX IF NOT EXISTS bindings_expiry ON bindings(expires_at);
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    login TEXT NOT NULL UNIQUE,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS aliases (
    alias TEXT PRIMARY KEY,
    account TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS aliases_account ON aliases(account);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    token_hash TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS api_keys_by_account ON api_keys (account, created_at);
CREATE TABLE IF NOT EXISTS numbers (
    number TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    country TEXT NOT NULL,
    area TEXT NOT NULL,
    state TEXT NOT NULL,
    holder TEXT,
    until INTEGER NOT NULL,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS numbers_search ON numbers(country, area);
CREATE INDEX IF NOT EXISTS numbers_holder ON numbers(holder);
CREATE TABLE IF NOT EXISTS rates (
    trunk TEXT PRIMARY KEY,
    csv TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cards (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    token TEXT NOT NULL UNIQUE,
    version INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cards_by_owner ON cards (owner, updated_at);
CREATE TABLE IF NOT EXISTS idempotency (
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    call_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (owner, key)
);
CREATE TABLE IF NOT EXISTS card_sends (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    card TEXT NOT NULL,
    version INTEGER NOT NULL,
    to_addr TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS card_sends_by_owner ON card_sends (owner, at);
CREATE INDEX IF NOT EXISTS card_sends_by_card ON card_sends (card, seq);
CREATE TABLE IF NOT EXISTS plans (
    name TEXT PRIMARY KEY,
    csv TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cdrs (
    call_id TEXT PRIMARY KEY,
    payer TEXT NOT NULL,
    setup_ms INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cdrs_by_payer ON cdrs (payer, setup_ms, call_id);
CREATE INDEX IF NOT EXISTS cdrs_by_time ON cdrs (setup_ms, call_id);
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    key TEXT NOT NULL,
    amount INTEGER NOT NULL,
    reason TEXT NOT NULL,
    at INTEGER NOT NULL,
    UNIQUE (account, key)
);
CREATE TABLE IF NOT EXISTS open_calls (
    node TEXT NOT NULL,
    call_id TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (node, call_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS holds (
    account TEXT NOT NULL,
    id TEXT NOT NULL,
    amount INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (account, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS heartbeats (
    node TEXT PRIMARY KEY,
    at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS balances (
    account TEXT PRIMARY KEY,
    amount INTEGER NOT NULL
) WITHOUT ROWID;
";

impl Embedded {
    /// Open (creating if needed) the store in directory `dir`.
    pub fn open(dir: &Path) -> Result<Embedded> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
        let conn = Connection::open(dir.join("switchboard.db")).map_err(unavailable)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(unavailable)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(unavailable)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(unavailable)?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(unavailable)?;
        let had_balances: bool = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'balances'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(unavailable)?
            > 0;
        conn.execute_batch(SCHEMA).map_err(unavailable)?;
        if !had_balances {
            // A store from before balances were kept: sum each ledger once.
            conn.execute(
                "INSERT INTO balances (account, amount) SELECT account, SUM(amount) FROM ledger GROUP BY account",
                [],
            )
            .map_err(unavailable)?;
        }
        // Columns added since the first release, to stores made before.
        for (table, column, ddl) in [
            (
                "bindings",
                "node",
                "ALTER TABLE bindings ADD COLUMN node TEXT NOT NULL DEFAULT ''",
            ),
            (
                "heartbeats",
                "doc",
                "ALTER TABLE heartbeats ADD COLUMN doc TEXT",
            ),
        ] {
            let has: bool = conn
                .query_row(
                    "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
                    params![table, column],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(unavailable)?
                > 0;
            if !has {
                conn.execute(ddl, []).map_err(unavailable)?;
            }
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let path = dir.join("switchboard.db");
        checkpoint_thread(path.clone(), stop.clone())?;
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name)
                .spawn(f)
                .map(|_| ())
                .map_err(|e| StoreError::Unavailable(format!("store thread: {e}")))
        };
        let (writes, queue) = crossbeam_channel::unbounded::<Job>();
        spawn(
            "store-writer".into(),
            Box::new(move || writer_thread(conn, queue)),
        )?;
        Ok(Embedded {
            writes,
            readers: parking_lot::Mutex::new(Vec::new()),
            path,
            stop,
        })
    }

    /// A connection for reads.
    fn reader(&self) -> Result<Connection> {
        if let Some(conn) = self.readers.lock().pop() {
            return Ok(conn);
        }
        let conn = Connection::open(&self.path).map_err(unavailable)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(unavailable)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    /// Run `work` on the writer thread; its result once its transaction
    /// has committed.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (j, answer) = job(work);
        self.writes
            .send(j)
            .map_err(|_| StoreError::Unavailable("the store's writer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the store's writer stopped".into()))?
    }

    /// Run `work` on a read connection, here.
    async fn read<T>(&self, work: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut conn = self.reader()?;
        let r = work(&mut conn);
        self.readers.lock().push(conn);
        r
    }
}

fn member_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Member> {
    Ok(Member {
        number: r.get(0)?,
        name: r.get(1)?,
        realm: r.get(2)?,
        ha1_md5: r.get(3)?,
        ha1_sha256: r.get(4)?,
        created_at: r.get::<_, i64>(5)?.max(0) as u64,
    })
}

fn to_doc<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_doc<T: serde::de::DeserializeOwned>(doc: &str) -> Result<T> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn docs<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(unavailable)?;
    let rows = stmt
        .query_map(args, |r| r.get::<_, String>(0))
        .map_err(unavailable)?;
    let mut out = Vec::new();
    for doc in rows {
        out.push(from_doc(&doc.map_err(unavailable)?)?);
    }
    Ok(out)
}

/// The indexed columns of a number: state, holder, hold expiry.
fn number_columns(r: &NumberRecord) -> (&'static str, Option<&str>, i64) {
    match &r.state {
        NumberState::Available => ("available", None, 0),
        NumberState::Held { account, until, .. } => ("held", Some(account), *until as i64),
        NumberState::Sold { account, .. } => ("sold", Some(account), 0),
    }
}

/// Named CSV documents replaced whole, with a version that rises on each
/// replacement: the trunks' rate decks and the sell plans.
#[derive(Clone, Copy)]
enum Csvs {
    Rates,
    Plans,
}

impl Csvs {
    fn upsert(self) -> &'static str {
        match self {
            Csvs::Rates => {
                "INSERT INTO rates (trunk, csv, version) VALUES (?1, ?2, 1) \
                 ON CONFLICT(trunk) DO UPDATE SET csv = excluded.csv, version = version + 1"
            }
            Csvs::Plans => {
                "INSERT INTO plans (name, csv, version) VALUES (?1, ?2, 1) \
                 ON CONFLICT(name) DO UPDATE SET csv = excluded.csv, version = version + 1"
            }
        }
    }

    fn select(self) -> &'static str {
        match self {
            Csvs::Rates => "SELECT csv, version FROM rates WHERE trunk = ?1",
            Csvs::Plans => "SELECT csv, version FROM plans WHERE name = ?1",
        }
    }
}

/// Store `csv` under `key`; its new version.
fn put_csv(conn: &Connection, t: Csvs, key: &str, csv: &str) -> Result<u64> {
    conn.run(t.upsert(), params![key, csv])
        .map_err(unavailable)?;
    get_csv(conn, t, key)?
        .map(|(_, v)| v)
        .ok_or_else(|| StoreError::Unavailable(format!("{key} vanished after its write")))
}

/// The CSV stored under `key` and its version.
fn get_csv(conn: &Connection, t: Csvs, key: &str) -> Result<Option<(String, u64)>> {
    conn.row(t.select(), params![key], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
    })
    .optional()
    .map_err(unavailable)
}

/// The balance kept beside the ledger (the sum of its entries, updated in
/// the transaction that posts each), so reading it costs the same however
/// long the ledger grows.
fn balance_of(conn: &Connection, account: &str) -> Result<i64> {
    conn.prepare_cached("SELECT amount FROM balances WHERE account = ?1")
        .and_then(|mut st| {
            st.query_row(params![account], |r| r.get::<_, i64>(0))
                .optional()
        })
        .map(Option::unwrap_or_default)
        .map_err(unavailable)
}

/// Post `e` inside transaction `tx`: once per key, never below zero.
/// Post `e` in `tx`; a debit may not take the balance below `floor`.
fn post_in(tx: &Connection, e: &LedgerEntry, floor: i64) -> Result<Posted> {
    let exists: Option<i64> = tx
        .row(
            "SELECT 1 FROM ledger WHERE account = ?1 AND key = ?2",
            params![e.account, e.key],
            |r| r.get(0),
        )
        .optional()
        .map_err(unavailable)?;
    let balance = balance_of(tx, &e.account)?;
    if exists.is_some() {
        return Ok(Posted::Duplicate(balance));
    }
    if e.amount < 0 && balance + e.amount < floor {
        return Ok(Posted::Insufficient(balance - floor));
    }
    tx.run(
        "INSERT INTO ledger (account, key, amount, reason, at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![e.account, e.key, e.amount, e.reason, e.at as i64],
    )
    .map_err(unavailable)?;
    tx.run(
        "INSERT INTO balances (account, amount) VALUES (?1, ?2) \
         ON CONFLICT (account) DO UPDATE SET amount = amount + excluded.amount",
        params![e.account, e.amount],
    )
    .map_err(unavailable)?;
    Ok(Posted::Posted(balance + e.amount))
}

const MEMBER_COLUMNS: &str = "number, name, realm, ha1_md5, ha1_sha256, created_at";

#[async_trait]
impl Store for Embedded {
    async fn insert_member(&self, m: &Member) -> Result<bool> {
        let m = m.clone();
        self.write(move |conn| {
            let n = conn
                .run(
                    "INSERT OR IGNORE INTO members (number, name, realm, ha1_md5, ha1_sha256, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![m.number, m.name, m.realm, m.ha1_md5, m.ha1_sha256, m.created_at as i64],
                )
                .map_err(unavailable)?;
            Ok(n == 1)
        })
        .await
    }

    async fn member(&self, number: &str) -> Result<Option<Member>> {
        let number = number.to_owned();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {MEMBER_COLUMNS} FROM members WHERE number = ?1"
                ))
                .map_err(unavailable)?;
            stmt.query_row(params![number], member_row)
                .optional()
                .map_err(unavailable)
        })
        .await
    }

    async fn members(&self) -> Result<Vec<Member>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {MEMBER_COLUMNS} FROM members ORDER BY number"
                ))
                .map_err(unavailable)?;
            let rows = stmt.query_map([], member_row).map_err(unavailable)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(unavailable)
        })
        .await
    }

    async fn remove_member(&self, number: &str) -> Result<bool> {
        let number = number.to_owned();
        self.write(move |conn| {
            let tx = conn.savepoint().map_err(unavailable)?;
            tx.run("DELETE FROM bindings WHERE number = ?1", params![number])
                .map_err(unavailable)?;
            let n = tx
                .run("DELETE FROM members WHERE number = ?1", params![number])
                .map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            Ok(n == 1)
        })
        .await
    }

    async fn bindings(&self, number: &str, now: u64) -> Result<Vec<Binding>> {
        let number = number.to_owned();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT number, contact, expires_at, call_id, cseq, source, node FROM bindings \
                     WHERE number = ?1 AND expires_at > ?2 ORDER BY contact",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![number, now as i64], |r| {
                    Ok(Binding {
                        number: r.get(0)?,
                        contact: r.get(1)?,
                        expires_at: r.get::<_, i64>(2)?.max(0) as u64,
                        call_id: r.get(3)?,
                        cseq: r.get::<_, i64>(4)?.clamp(0, u32::MAX as i64) as u32,
                        source: r.get(5)?,
                        node: r.get(6)?,
                    })
                })
                .map_err(unavailable)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(unavailable)
        })
        .await
    }

    async fn update_bindings(
        &self,
        number: &str,
        put: &[Binding],
        delete: &[String],
    ) -> Result<()> {
        let number = number.to_owned();
        let put = put.to_vec();
        let delete = delete.to_vec();
        self.write(move |conn| {
            let tx = conn.savepoint().map_err(unavailable)?;
            for contact in delete {
                tx.run(
                    "DELETE FROM bindings WHERE number = ?1 AND contact = ?2",
                    params![number, contact],
                )
                .map_err(unavailable)?;
            }
            for b in put {
                tx.run(
                    "INSERT OR REPLACE INTO bindings (number, contact, expires_at, call_id, cseq, source, node) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![number, b.contact, b.expires_at as i64, b.call_id, b.cseq, b.source, b.node],
                )
                .map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn sweep_bindings(&self, now: u64) -> Result<u64> {
        self.write(move |conn| {
            let n = conn
                .run(
                    "DELETE FROM bindings WHERE expires_at <= ?1",
                    params![now as i64],
                )
                .map_err(unavailable)?;
            Ok(n as u64)
        })
        .await
    }

    async fn binding_count(&self, now: u64) -> Result<Option<u64>> {
        self.read(move |conn| {
            conn.row(
                "SELECT COUNT(*) FROM bindings WHERE expires_at > ?1",
                params![now as i64],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| Some(n.max(0) as u64))
            .map_err(unavailable)
        })
        .await
    }

    async fn insert_account(&self, a: &Account) -> Result<bool> {
        let a = a.clone();
        self.write(move |conn| {
            let doc = to_doc(&a)?;
            let n = conn
                .run(
                    "INSERT OR IGNORE INTO accounts (id, login, version, doc) VALUES (?1, ?2, ?3, ?4)",
                    params![a.id, a.login, a.version as i64, doc],
                )
                .map_err(unavailable)?;
            Ok(n == 1)
        })
        .await
    }

    async fn account(&self, id: &str) -> Result<Option<Account>> {
        let id = id.to_owned();
        self.read(move |conn| {
            Ok(docs(conn, "SELECT doc FROM accounts WHERE id = ?1", params![id])?.pop())
        })
        .await
    }

    async fn account_by_login(&self, login: &str) -> Result<Option<Account>> {
        let login = login.to_owned();
        self.read(move |conn| {
            Ok(docs(
                conn,
                "SELECT doc FROM accounts WHERE login = ?1",
                params![login],
            )?
            .pop())
        })
        .await
    }

    async fn accounts(&self) -> Result<Vec<Account>> {
        self.read(move |conn| docs(conn, "SELECT doc FROM accounts ORDER BY id", []))
            .await
    }

    async fn update_account(&self, a: &Account, expected: u64) -> Result<bool> {
        let a = a.clone();
        self.write(move |conn| {
            let mut next = a.clone();
            next.version = expected + 1;
            let doc = to_doc(&next)?;
            let n = conn
                .run(
                    "UPDATE accounts SET version = ?3, doc = ?4 WHERE id = ?1 AND version = ?2",
                    params![a.id, expected as i64, next.version as i64, doc],
                )
                .map_err(unavailable)?;
            Ok(n == 1)
        })
        .await
    }

    async fn claim_alias(&self, alias: &str, account: &str) -> Result<bool> {
        let alias = alias.to_owned();
        let account = account.to_owned();
        self.write(move |conn| {
            conn.run(
                "INSERT OR IGNORE INTO aliases (alias, account) VALUES (?1, ?2)",
                params![alias, account],
            )
            .map_err(unavailable)?;
            let owner: String = conn
                .row(
                    "SELECT account FROM aliases WHERE alias = ?1",
                    params![alias],
                    |r| r.get(0),
                )
                .map_err(unavailable)?;
            Ok(owner == account)
        })
        .await
    }

    async fn release_alias(&self, alias: &str, account: &str) -> Result<bool> {
        let alias = alias.to_owned();
        let account = account.to_owned();
        self.write(move |conn| {
            let n = conn
                .run(
                    "DELETE FROM aliases WHERE alias = ?1 AND account = ?2",
                    params![alias, account],
                )
                .map_err(unavailable)?;
            Ok(n == 1)
        })
        .await
    }

    async fn alias_owner(&self, alias: &str) -> Result<Option<String>> {
        let alias = alias.to_owned();
        self.read(move |conn| {
            conn.row(
                "SELECT account FROM aliases WHERE alias = ?1",
                params![alias],
                |r| r.get(0),
            )
            .optional()
            .map_err(unavailable)
        })
        .await
    }

    async fn aliases_of(&self, account: &str) -> Result<Vec<String>> {
        let account = account.to_owned();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT alias FROM aliases WHERE account = ?1 ORDER BY alias")
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![account], |r| r.get(0))
                .map_err(unavailable)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(unavailable)
        })
        .await
    }

    async fn put_session(&self, s: &Session) -> Result<()> {
        let s = s.clone();
        self.write(move |conn| {
            conn.run(
                "INSERT OR REPLACE INTO sessions (token_hash, account, expires_at) VALUES (?1, ?2, ?3)",
                params![s.token_hash, s.account, s.expires_at as i64],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn session(&self, token_hash: &str, now: u64) -> Result<Option<Session>> {
        let token_hash = token_hash.to_owned();
        self.read(move |conn| {
            conn.row(
                "SELECT token_hash, account, expires_at FROM sessions \
                     WHERE token_hash = ?1 AND expires_at > ?2",
                params![token_hash, now as i64],
                |r| {
                    Ok(Session {
                        token_hash: r.get(0)?,
                        account: r.get(1)?,
                        expires_at: r.get::<_, i64>(2)?.max(0) as u64,
                    })
                },
            )
            .optional()
            .map_err(unavailable)
        })
        .await
    }

    async fn delete_session(&self, token_hash: &str) -> Result<()> {
        let token_hash = token_hash.to_owned();
        self.write(move |conn| {
            conn.run(
                "DELETE FROM sessions WHERE token_hash = ?1",
                params![token_hash],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn put_api_key(&self, k: &ApiKey) -> Result<()> {
        let k = k.clone();
        self.write(move |conn| {
            let doc = to_doc(&k)?;
            conn
                .run(
                    "INSERT OR REPLACE INTO api_keys (token_hash, account, created_at, doc) VALUES (?1, ?2, ?3, ?4)",
                    params![k.token_hash, k.account, k.created_at as i64, doc],
                )
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn api_key(&self, token_hash: &str) -> Result<Option<ApiKey>> {
        let token_hash = token_hash.to_owned();
        self.read(move |conn| {
            let doc: Option<String> = conn
                .row(
                    "SELECT doc FROM api_keys WHERE token_hash = ?1",
                    params![token_hash],
                    |r| r.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            doc.map(|d| from_doc(&d)).transpose()
        })
        .await
    }

    async fn api_keys_of(&self, account: &str) -> Result<Vec<ApiKey>> {
        let account = account.to_owned();
        self.read(move |conn| {
            let docs: Vec<String> = {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT doc FROM api_keys WHERE account = ?1 ORDER BY created_at, token_hash",
                    )
                    .map_err(unavailable)?;
                let rows = stmt
                    .query_map(params![account], |r| r.get::<_, String>(0))
                    .map_err(unavailable)?;
                rows.collect::<std::result::Result<_, _>>()
                    .map_err(unavailable)?
            };
            docs.iter().map(|d| from_doc(d)).collect()
        })
        .await
    }

    async fn insert_number(&self, r: &NumberRecord) -> Result<bool> {
        let r = r.clone();
        self.write(move |conn| {
            let doc = to_doc(&r)?;
            let (state, holder, until) = number_columns(&r);
            let n = conn
                .run(
                    "INSERT OR IGNORE INTO numbers (number, kind, country, area, state, holder, until, version, doc) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![r.number, r.kind.as_str(), r.country, r.area, state, holder, until, r.version as i64, doc],
                )
                .map_err(unavailable)?;
            Ok(n == 1)
        })
        .await
    }

    async fn number(&self, number: &str) -> Result<Option<NumberRecord>> {
        let number = number.to_owned();
        self.read(move |conn| {
            Ok(docs(
                conn,
                "SELECT doc FROM numbers WHERE number = ?1",
                params![number],
            )?
            .pop())
        })
        .await
    }

    async fn search_numbers(&self, q: &NumberQuery, now: u64) -> Result<Vec<NumberRecord>> {
        let q = q.clone();
        self.read(move |conn| {
            docs(
                conn,
                "SELECT doc FROM numbers WHERE (state = 'available' OR (state = 'held' AND until <= ?1)) \
                 AND (?2 IS NULL OR country = ?2) AND (?3 IS NULL OR area = ?3) \
                 AND (?4 IS NULL OR kind = ?4) AND (?5 IS NULL OR instr(number, ?5) > 0) \
                 ORDER BY number LIMIT ?6",
                params![
                    now as i64,
                    q.country,
                    q.area,
                    q.kind.map(|k| k.as_str()),
                    q.contains,
                    q.limit as i64
                ],
            )
        })
        .await
    }

    async fn numbers_of(&self, account: &str) -> Result<Vec<NumberRecord>> {
        let account = account.to_owned();
        self.read(move |conn| {
            docs(
                conn,
                "SELECT doc FROM numbers WHERE holder = ?1 AND state = 'sold' ORDER BY number",
                params![account],
            )
        })
        .await
    }

    async fn update_number(&self, r: &NumberRecord, expected: u64) -> Result<bool> {
        let r = r.clone();
        self.write(move |conn| {
            let mut next = r.clone();
            next.version = expected + 1;
            let doc = to_doc(&next)?;
            let (state, holder, until) = number_columns(&next);
            let n = conn
                .run(
                    "UPDATE numbers SET state = ?3, holder = ?4, until = ?5, version = ?6, doc = ?7 \
                     WHERE number = ?1 AND version = ?2",
                    params![
                        r.number,
                        expected as i64,
                        state,
                        holder,
                        until,
                        next.version as i64,
                        doc
                    ],
                )
                .map_err(unavailable)?;
            Ok(n == 1)
        })
        .await
    }

    async fn post(&self, e: &LedgerEntry) -> Result<Posted> {
        let e = e.clone();
        self.write(move |conn| {
            let tx = conn
                .savepoint()
                .map_err(unavailable)?;
            // Money held for live calls is not spendable.
            let held: i64 = tx
                .row(
                    "SELECT COALESCE(SUM(amount), 0) FROM holds WHERE account = ?1 AND expires_at > ?2",
                    params![e.account, e.at as i64],
                    |r| r.get(0),
                )
                .map_err(unavailable)?;
            let posted = post_in(&tx, &e, held.max(0))?;
            tx.commit().map_err(unavailable)?;
            Ok(posted)
        })
        .await
    }

    async fn put_hold(&self, h: &Hold, credit_limit: i64, now: u64) -> Result<HoldOutcome> {
        let h = h.clone();
        self.write(move |conn| {
            let tx = conn
                .savepoint()
                .map_err(unavailable)?;
            let others: i64 = tx
                .row(
                    "SELECT COALESCE(SUM(amount), 0) FROM holds WHERE account = ?1 AND id != ?2 AND expires_at > ?3",
                    params![h.account, h.id, now as i64],
                    |r| r.get(0),
                )
                .map_err(unavailable)?;
            let available = balance_of(&tx, &h.account)? + credit_limit - others;
            let set = h.amount <= available;
            if set {
                tx.run(
                    "INSERT OR REPLACE INTO holds (account, id, amount, expires_at) VALUES (?1, ?2, ?3, ?4)",
                    params![h.account, h.id, h.amount, h.expires_at as i64],
                )
                .map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)?;
            Ok(HoldOutcome { set, available })
        })
        .await
    }

    async fn release_hold(
        &self,
        account: &str,
        id: &str,
        entry: Option<&LedgerEntry>,
    ) -> Result<Option<Posted>> {
        let account = account.to_owned();
        let id = id.to_owned();
        let entry = entry.map(ToOwned::to_owned);
        self.write(move |conn| {
            let tx = conn.savepoint().map_err(unavailable)?;
            // A call's charge is what its own hold covered: it may use all of
            // the balance, never below zero.
            let posted = entry.as_ref().map(|e| post_in(&tx, e, 0)).transpose()?;
            tx.run(
                "DELETE FROM holds WHERE account = ?1 AND id = ?2",
                params![account, id],
            )
            .map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            Ok(posted)
        })
        .await
    }

    async fn holds(&self, account: &str, now: u64) -> Result<Vec<Hold>> {
        let account = account.to_owned();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, amount, expires_at FROM holds WHERE account = ?1 AND expires_at > ?2 ORDER BY id",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![account, now as i64], |r| {
                    Ok(Hold {
                        account: account.to_owned(),
                        id: r.get(0)?,
                        amount: r.get(1)?,
                        expires_at: r.get::<_, i64>(2)?.max(0) as u64,
                    })
                })
                .map_err(unavailable)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(unavailable)
        })
        .await
    }

    async fn balance(&self, account: &str) -> Result<i64> {
        let account = account.to_owned();
        self.read(move |conn| balance_of(conn, &account)).await
    }

    async fn ledger(&self, account: &str) -> Result<Vec<LedgerEntry>> {
        let account = account.to_owned();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT account, key, amount, reason, at FROM ledger WHERE account = ?1 ORDER BY seq",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![account], |r| {
                    Ok(LedgerEntry {
                        account: r.get(0)?,
                        key: r.get(1)?,
                        amount: r.get(2)?,
                        reason: r.get(3)?,
                        at: r.get::<_, i64>(4)?.max(0) as u64,
                    })
                })
                .map_err(unavailable)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(unavailable)
        })
        .await
    }

    async fn put_rates(&self, trunk: &str, csv: &str) -> Result<u64> {
        let trunk = trunk.to_owned();
        let csv = csv.to_owned();
        self.write(move |conn| put_csv(conn, Csvs::Rates, &trunk, &csv))
            .await
    }

    async fn insert_card(&self, c: &Card) -> Result<bool> {
        let c = c.clone();
        self.write(move |conn| {
            let doc = to_doc(&c)?;
            let n = conn
                .run(
                    "INSERT INTO cards (id, owner, token, version, updated_at, doc) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                    params![
                        c.id,
                        c.owner,
                        c.token,
                        c.version as i64,
                        c.updated_at as i64,
                        doc
                    ],
                )
                .map_err(unavailable)?;
            Ok(n == 1)
        })
        .await
    }

    async fn update_card(&self, c: &Card, expected: u64) -> Result<bool> {
        let c = c.clone();
        self.write(move |conn| {
            let mut next = c.clone();
            next.version = expected + 1;
            let doc = to_doc(&next)?;
            let n = conn
                .run(
                    "UPDATE cards SET version = ?3, updated_at = ?4, doc = ?5 \
                     WHERE id = ?1 AND version = ?2",
                    params![
                        c.id,
                        expected as i64,
                        next.version as i64,
                        c.updated_at as i64,
                        doc
                    ],
                )
                .map_err(unavailable)?;
            Ok(n == 1)
        })
        .await
    }

    async fn card(&self, id: &str) -> Result<Option<Card>> {
        let id = id.to_owned();
        self.read(move |conn| {
            Ok(docs(conn, "SELECT doc FROM cards WHERE id = ?1", params![id])?.pop())
        })
        .await
    }

    async fn card_by_token(&self, token: &str) -> Result<Option<Card>> {
        let token = token.to_owned();
        self.read(move |conn| {
            Ok(docs(
                conn,
                "SELECT doc FROM cards WHERE token = ?1",
                params![token],
            )?
            .pop())
        })
        .await
    }

    async fn cards_of(&self, owner: &str) -> Result<Vec<Card>> {
        let owner = owner.to_owned();
        self.read(move |conn| {
            docs(
                conn,
                "SELECT doc FROM cards WHERE owner = ?1 ORDER BY updated_at DESC, id",
                params![owner],
            )
        })
        .await
    }

    async fn delete_card(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |conn| {
            let n = conn
                .run("DELETE FROM cards WHERE id = ?1", params![id])
                .map_err(unavailable)?;
            Ok(n == 1)
        })
        .await
    }

    async fn claim_idempotency(
        &self,
        owner: &str,
        key: &str,
        call_id: &str,
        at: u64,
    ) -> Result<String> {
        let owner = owner.to_owned();
        let key = key.to_owned();
        let call_id = call_id.to_owned();
        self.write(move |conn| {
            conn.run(
                "INSERT INTO idempotency (owner, key, call_id, at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(owner, key) DO NOTHING",
                params![owner, key, call_id, at as i64],
            )
            .map_err(unavailable)?;
            conn.row(
                "SELECT call_id FROM idempotency WHERE owner = ?1 AND key = ?2",
                params![owner, key],
                |r| r.get::<_, String>(0),
            )
            .map_err(unavailable)
        })
        .await
    }

    async fn release_idempotency(&self, owner: &str, key: &str, call_id: &str) -> Result<()> {
        let owner = owner.to_owned();
        let key = key.to_owned();
        let call_id = call_id.to_owned();
        self.write(move |conn| {
            conn.run(
                "DELETE FROM idempotency WHERE owner = ?1 AND key = ?2 AND call_id = ?3",
                params![owner, key, call_id],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn record_card_send(
        &self,
        owner: &str,
        card: &str,
        version: u64,
        to: &str,
        at: u64,
    ) -> Result<()> {
        let owner = owner.to_owned();
        let card = card.to_owned();
        let to = to.to_owned();
        self.write(move |conn| {
            conn
                .run(
                    "INSERT INTO card_sends (owner, card, version, to_addr, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![owner, card, version as i64, to, at as i64],
                )
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn card_sends_since(&self, owner: &str, since: u64) -> Result<u64> {
        let owner = owner.to_owned();
        self.read(move |conn| {
            conn.row(
                "SELECT COUNT(*) FROM card_sends WHERE owner = ?1 AND at >= ?2",
                params![owner, since as i64],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(unavailable)
        })
        .await
    }

    async fn card_sends(&self, card: &str) -> Result<Vec<(String, u64, u64)>> {
        let card = card.to_owned();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT to_addr, version, at FROM card_sends WHERE card = ?1 ORDER BY seq",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![card], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?.max(0) as u64,
                        r.get::<_, i64>(2)?.max(0) as u64,
                    ))
                })
                .map_err(unavailable)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(unavailable)
        })
        .await
    }

    async fn put_plan(&self, name: &str, csv: &str) -> Result<u64> {
        let name = name.to_owned();
        let csv = csv.to_owned();
        self.write(move |conn| put_csv(conn, Csvs::Plans, &name, &csv))
            .await
    }

    async fn plan(&self, name: &str) -> Result<Option<(String, u64)>> {
        let name = name.to_owned();
        self.read(move |conn| get_csv(conn, Csvs::Plans, &name))
            .await
    }

    async fn plans(&self) -> Result<Vec<(String, u64)>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT name, version FROM plans ORDER BY name")
                .map_err(unavailable)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
                })
                .map_err(unavailable)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(unavailable)
        })
        .await
    }

    async fn put_open_call(&self, c: &OpenCall) -> Result<()> {
        let c = c.clone();
        self.write(move |conn| {
            let doc = to_doc(&c)?;
            conn.run(
                "INSERT OR REPLACE INTO open_calls (node, call_id, doc) VALUES (?1, ?2, ?3)",
                params![c.node, c.call_id, doc],
            )
            .map(|_| ())
            .map_err(unavailable)
        })
        .await
    }

    async fn put_open_calls(&self, calls: &[OpenCall]) -> Result<()> {
        let calls = calls.to_vec();
        self.write(move |conn| {
            let docs = calls.iter().map(to_doc).collect::<Result<Vec<_>>>()?;
            let tx = conn.savepoint().map_err(unavailable)?;
            {
                let mut st = tx
                    .prepare_cached(
                        "INSERT OR REPLACE INTO open_calls (node, call_id, doc) VALUES (?1, ?2, ?3)",
                    )
                    .map_err(unavailable)?;
                for (c, doc) in calls.iter().zip(&docs) {
                    st.execute(params![c.node, c.call_id, doc])
                        .map_err(unavailable)?;
                }
            }
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn close_open_call(&self, node: &str, call_id: &str) -> Result<()> {
        let node = node.to_owned();
        let call_id = call_id.to_owned();
        self.write(move |conn| {
            conn.run(
                "DELETE FROM open_calls WHERE node = ?1 AND call_id = ?2",
                params![node, call_id],
            )
            .map(|_| ())
            .map_err(unavailable)
        })
        .await
    }

    async fn open_calls(&self, node: &str) -> Result<Vec<OpenCall>> {
        let node = node.to_owned();
        self.read(move |conn| {
            docs(
                conn,
                "SELECT doc FROM open_calls WHERE node = ?1 ORDER BY call_id",
                params![node],
            )
        })
        .await
    }

    async fn heartbeat(&self, node: &str, at: u64) -> Result<()> {
        let node = node.to_owned();
        self.write(move |conn| {
            conn.run(
                "INSERT INTO heartbeats (node, at) VALUES (?1, ?2) \
                     ON CONFLICT (node) DO UPDATE SET at = excluded.at",
                params![node, i64::try_from(at).unwrap_or(i64::MAX)],
            )
            .map(|_| ())
            .map_err(unavailable)
        })
        .await
    }

    async fn put_node(&self, node: &NodeRecord) -> Result<()> {
        let node = node.clone();
        self.write(move |conn| {
            let doc =
                serde_json::to_string(&node).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            conn.run(
                "INSERT INTO heartbeats (node, at, doc) VALUES (?1, 0, ?2) \
                     ON CONFLICT (node) DO UPDATE SET doc = excluded.doc",
                params![node.name, doc],
            )
            .map(|_| ())
            .map_err(unavailable)
        })
        .await
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT node, at, doc FROM heartbeats WHERE doc IS NOT NULL ORDER BY node",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .map_err(unavailable)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(unavailable)?;
            rows.into_iter()
                .map(|(name, at, doc)| {
                    let mut n: NodeRecord = serde_json::from_str(&doc)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    n.name = name;
                    n.at = u64::try_from(at).unwrap_or(0);
                    Ok(n)
                })
                .collect()
        })
        .await
    }

    async fn last_heartbeat(&self, node: &str) -> Result<Option<u64>> {
        let node = node.to_owned();
        self.read(move |conn| {
            use rusqlite::OptionalExtension as _;
            conn.row(
                "SELECT at FROM heartbeats WHERE node = ?1 AND at > 0",
                params![node],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|at| at.map(|a| u64::try_from(a).unwrap_or(0)))
            .map_err(unavailable)
        })
        .await
    }

    async fn put_cdr(&self, cdr: &Cdr) -> Result<bool> {
        let cdr = cdr.clone();
        self.write(move |conn| {
            let doc =
                serde_json::to_string(&cdr).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let n = conn
                .run(
                    "INSERT INTO cdrs (call_id, payer, setup_ms, doc) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT(call_id) DO NOTHING",
                    params![cdr.call_id, cdr.payer, cdr.setup_ms as i64, doc],
                )
                .map_err(unavailable)?;
            Ok(n == 1)
        })
        .await
    }

    async fn cdrs(&self, q: &CdrQuery) -> Result<Vec<Cdr>> {
        let q = q.clone();
        self.read(move |conn| {
            let (after_ms, after_id) = q
                .after
                .clone()
                .map_or((-1i64, String::new()), |(ms, id)| (ms as i64, id));
            let limit = q.limit.min(10_000) as i64;
            let sql = if q.payer.is_some() {
                "SELECT doc FROM cdrs WHERE payer = ?1 AND setup_ms >= ?2 AND setup_ms < ?3 \
                 AND (setup_ms, call_id) > (?4, ?5) ORDER BY setup_ms, call_id LIMIT ?6"
            } else {
                "SELECT doc FROM cdrs WHERE ?1 IS NULL AND setup_ms >= ?2 AND setup_ms < ?3 \
                 AND (setup_ms, call_id) > (?4, ?5) ORDER BY setup_ms, call_id LIMIT ?6"
            };
            docs(
                conn,
                sql,
                params![
                    q.payer,
                    q.from_ms as i64,
                    q.to_ms.min(i64::MAX as u64) as i64,
                    after_ms,
                    after_id,
                    limit
                ],
            )
        })
        .await
    }

    async fn rates(&self, trunk: &str) -> Result<Option<(String, u64)>> {
        let trunk = trunk.to_owned();
        self.read(move |conn| get_csv(conn, Csvs::Rates, &trunk))
            .await
    }
}

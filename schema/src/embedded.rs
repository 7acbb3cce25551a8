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
//! Calls are synchronous and short (microseconds; `synchronous=NORMAL` in
//! WAL mode does not fsync each commit); they run under one connection mutex
//! per process. The busy timeout covers the moments the other process
//! writes.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};

use crate::model::{Binding, Member};
use crate::store::{Result, Store, StoreError};

/// SQLite-backed store.
pub struct Embedded {
    conn: Mutex<Connection>,
}

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
";

impl Embedded {
    /// Open (creating if needed) the store in directory `dir`.
    pub fn open(dir: &Path) -> Result<Embedded> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
        let conn = Connection::open(dir.join("switchboard.db")).map_err(unavailable)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(unavailable)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(unavailable)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(unavailable)?;
        conn.execute_batch(SCHEMA).map_err(unavailable)?;
        Ok(Embedded {
            conn: Mutex::new(conn),
        })
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

const MEMBER_COLUMNS: &str = "number, name, realm, ha1_md5, ha1_sha256, created_at";

#[async_trait]
impl Store for Embedded {
    async fn insert_member(&self, m: &Member) -> Result<bool> {
        let n = self
            .conn
            .lock()
            .execute(
                "INSERT OR IGNORE INTO members (number, name, realm, ha1_md5, ha1_sha256, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![m.number, m.name, m.realm, m.ha1_md5, m.ha1_sha256, m.created_at as i64],
            )
            .map_err(unavailable)?;
        Ok(n == 1)
    }

    async fn member(&self, number: &str) -> Result<Option<Member>> {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {MEMBER_COLUMNS} FROM members WHERE number = ?1"
            ))
            .map_err(unavailable)?;
        stmt.query_row(params![number], member_row)
            .optional()
            .map_err(unavailable)
    }

    async fn members(&self) -> Result<Vec<Member>> {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {MEMBER_COLUMNS} FROM members ORDER BY number"
            ))
            .map_err(unavailable)?;
        let rows = stmt.query_map([], member_row).map_err(unavailable)?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(unavailable)
    }

    async fn remove_member(&self, number: &str) -> Result<bool> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(unavailable)?;
        tx.execute("DELETE FROM bindings WHERE number = ?1", params![number])
            .map_err(unavailable)?;
        let n = tx
            .execute("DELETE FROM members WHERE number = ?1", params![number])
            .map_err(unavailable)?;
        tx.commit().map_err(unavailable)?;
        Ok(n == 1)
    }

    async fn bindings(&self, number: &str, now: u64) -> Result<Vec<Binding>> {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT number, contact, expires_at, call_id, cseq, source FROM bindings \
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
                })
            })
            .map_err(unavailable)?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(unavailable)
    }

    async fn update_bindings(
        &self,
        number: &str,
        put: &[Binding],
        delete: &[String],
    ) -> Result<()> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(unavailable)?;
        for contact in delete {
            tx.execute(
                "DELETE FROM bindings WHERE number = ?1 AND contact = ?2",
                params![number, contact],
            )
            .map_err(unavailable)?;
        }
        for b in put {
            tx.execute(
                "INSERT OR REPLACE INTO bindings (number, contact, expires_at, call_id, cseq, source) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![number, b.contact, b.expires_at as i64, b.call_id, b.cseq, b.source],
            )
            .map_err(unavailable)?;
        }
        tx.commit().map_err(unavailable)
    }

    async fn sweep_bindings(&self, now: u64) -> Result<u64> {
        let n = self
            .conn
            .lock()
            .execute(
                "DELETE FROM bindings WHERE expires_at <= ?1",
                params![now as i64],
            )
            .map_err(unavailable)?;
        Ok(n as u64)
    }

    async fn binding_count(&self, now: u64) -> Result<u64> {
        self.conn
            .lock()
            .query_row(
                "SELECT COUNT(*) FROM bindings WHERE expires_at > ?1",
                params![now as i64],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(unavailable)
    }
}

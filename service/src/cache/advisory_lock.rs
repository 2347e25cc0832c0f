//! Cross-process single flight: a PostgreSQL advisory lock per cache key, held on a
//! connection of its own while the key's value is computed. On a session connection
//! it is a session-level lock and no transaction is open meanwhile; through a
//! transaction-mode pooler (no `DIRECT_URL`) it is transaction-scoped, and that
//! transaction stays open, idle, until the value is stored.

use std::time::{Duration, Instant};

use sea_orm::sqlx::{self, PgConnection, PgPool, Postgres, pool::PoolConnection};
use sha2::{Digest, Sha256};

/// Tries to take a session-level advisory lock without waiting: whether it was taken.
/// A statement of its own: SeaORM has no builder for function calls on a session.
const TRY_LOCK_SQL: &str = "SELECT pg_try_advisory_lock($1)";
/// Releases the lock [`TRY_LOCK_SQL`] took.
const UNLOCK_SQL: &str = "SELECT pg_advisory_unlock($1)";
/// [`TRY_LOCK_SQL`] for a lock that ends with its transaction.
const TRY_XACT_LOCK_SQL: &str = "SELECT pg_try_advisory_xact_lock($1)";

/// How a key lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LockScope {
    /// A session-level lock on a session connection; released by unlocking.
    Session,
    /// A transaction-scoped lock on a pooler's connection, in a transaction opened
    /// for it; released by committing (which also commits the store made under it).
    Transaction,
}

/// An advisory lock (session-level, or transaction-scoped: [`LockScope`]) and the
/// pooled connection that holds it. If it is dropped without a successful
/// [`HeldLock::release`] — the caller's future was cancelled, a statement failed, or
/// the release failed — the connection is closed instead of going back to the pool,
/// so the server ends the session, its transaction and its lock.
pub(super) struct HeldLock {
    conn: PoolConnection<Postgres>,
    scope: LockScope,
    id: i64,
    released: bool,
}

impl HeldLock {
    /// Takes lock `id` on a connection from `pool`, polling `pg_try_advisory_lock`
    /// (or, transaction-scoped, `pg_try_advisory_xact_lock` after a `BEGIN`: one
    /// round trip more) every 2 ms, doubling up to 50 ms, until `deadline`, so an
    /// abandoned wait never leaves a lock request queued on the server.
    /// `on_first_wait` runs once, when the first try finds the lock taken. `None`
    /// when the deadline passed. One round trip per try. From the first statement
    /// on, the connection is this value's: any early exit closes it.
    pub(super) async fn acquire(
        pool: &PgPool,
        scope: LockScope,
        id: i64,
        deadline: Instant,
        on_first_wait: impl FnOnce(),
    ) -> Result<Option<Self>, sqlx::Error> {
        // Held from here: a `?` or a cancellation drops it, which closes the
        // connection (see `Drop`) rather than pooling a session in a transaction.
        let mut held = Self {
            conn: pool.acquire().await?,
            scope,
            id,
            released: false,
        };
        let try_sql = match scope {
            LockScope::Session => TRY_LOCK_SQL,
            LockScope::Transaction => {
                sqlx::raw_sql("BEGIN").execute(&mut *held.conn).await?;
                TRY_XACT_LOCK_SQL
            }
        };
        let mut pause = Duration::from_millis(2);
        let mut on_first_wait = Some(on_first_wait);
        loop {
            let taken: bool = sqlx::query_scalar(try_sql)
                .bind(id)
                .fetch_one(&mut *held.conn)
                .await?;
            if taken {
                return Ok(Some(held));
            }
            if let Some(f) = on_first_wait.take() {
                f();
            }
            if Instant::now() + pause > deadline {
                if scope == LockScope::Transaction {
                    sqlx::raw_sql("ROLLBACK").execute(&mut *held.conn).await?;
                }
                // Nothing held any more: the connection may go back to the pool.
                held.released = true;
                return Ok(None);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// The connection that holds the lock: what runs the re-read and the store, so a
    /// compute never needs a second pooled connection.
    pub(super) fn conn(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    /// Unlocks — or, transaction-scoped, commits (with the store made under the
    /// lock) — in one round trip, and returns the connection to the pool; if that
    /// fails, the connection is closed instead (which frees the lock).
    pub(super) async fn release(mut self) {
        let unlocked = match self.scope {
            LockScope::Session => sqlx::query(UNLOCK_SQL)
                .bind(self.id)
                .execute(&mut *self.conn)
                .await
                .map(drop),
            LockScope::Transaction => sqlx::raw_sql("COMMIT")
                .execute(&mut *self.conn)
                .await
                .map(drop),
        };
        match unlocked {
            Ok(_) => self.released = true,
            Err(e) => tracing::warn!(error = %e, "advisory unlock failed; closing the connection"),
        }
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        if !self.released {
            self.conn.close_on_drop();
        }
    }
}

/// The advisory-lock id of a cache key: the first 8 bytes of SHA-256(cache, key).
pub(super) fn lock_id(cache: &str, key_text: &str) -> i64 {
    let digest = Sha256::new()
        .chain_update(cache.as_bytes())
        .chain_update([0u8])
        .chain_update(key_text.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

//! Cross-process single flight: a session-level PostgreSQL advisory lock per cache
//! key, held on a pooled connection of its own while the key's value is computed (no
//! transaction is open meanwhile).

use std::time::{Duration, Instant};

use sea_orm::sqlx::{self, PgConnection, PgPool, Postgres, pool::PoolConnection};
use sha2::{Digest, Sha256};

/// Tries to take a session-level advisory lock without waiting: whether it was taken.
/// A statement of its own: SeaORM has no builder for function calls on a session.
const TRY_LOCK_SQL: &str = "SELECT pg_try_advisory_lock($1)";
/// Releases the lock [`TRY_LOCK_SQL`] took.
const UNLOCK_SQL: &str = "SELECT pg_advisory_unlock($1)";

/// A session-level advisory lock and the pooled connection that holds it. If it is
/// dropped without a successful [`HeldLock::release`] (the caller's future was
/// cancelled, or the unlock failed), the connection is closed instead of going back
/// to the pool, so the server ends the session and frees the lock.
pub(super) struct HeldLock {
    conn: PoolConnection<Postgres>,
    id: i64,
    released: bool,
}

impl HeldLock {
    /// Takes lock `id` on a connection from `pool`, polling `pg_try_advisory_lock`
    /// (2 ms, doubling up to 50 ms) until `deadline`, so an abandoned wait never
    /// leaves a lock request queued on the server. `on_first_wait` runs once, when
    /// the first try finds the lock taken. `None` when the deadline passed. One
    /// round trip per try.
    pub(super) async fn acquire(
        pool: &PgPool,
        id: i64,
        deadline: Instant,
        on_first_wait: impl FnOnce(),
    ) -> Result<Option<Self>, sqlx::Error> {
        let mut conn = pool.acquire().await?;
        let mut pause = Duration::from_millis(2);
        let mut on_first_wait = Some(on_first_wait);
        loop {
            let taken: bool = sqlx::query_scalar(TRY_LOCK_SQL)
                .bind(id)
                .fetch_one(&mut *conn)
                .await?;
            if taken {
                return Ok(Some(Self {
                    conn,
                    id,
                    released: false,
                }));
            }
            if let Some(f) = on_first_wait.take() {
                f();
            }
            if Instant::now() + pause > deadline {
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

    /// Unlocks (one round trip) and returns the connection to the pool; if the
    /// unlock fails, the connection is closed instead (which frees the lock).
    pub(super) async fn release(mut self) {
        let unlocked = sqlx::query(UNLOCK_SQL)
            .bind(self.id)
            .execute(&mut *self.conn)
            .await;
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

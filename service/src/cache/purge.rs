//! Purging a cache on an operator's behalf: expired entries, entries beyond a maximum
//! (least recently used first), or everything — with the `cache.purged` audit row in
//! the same transaction.

use sea_orm::{ConnectionTrait, TransactionSession, TransactionTrait};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::CacheError;
use super::registry::{self, CacheKind};
use crate::audit::{self, AuditEvent};

/// What to purge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "what", content = "max")]
pub enum Purge {
    /// Entries past their expiry (the vision and exercise caches have one).
    Expired,
    /// All but the `max` most recently used (the vision cache's `evict_lru_cache`).
    KeepRecent(i32),
    /// Every entry.
    All,
}

/// Purges `what` from cache `kind` on behalf of `actor`, and records `cache.purged`
/// (cache, what, rows) in `audit_logs`, in one transaction (a savepoint inside the
/// caller's); how many entries went. A purge the cache has no notion of (expiry of a
/// cache whose entries do not expire, LRU eviction to a count where its table has none:
/// see [`registry::CacheTable`]) is [`CacheError::InvalidField`]. A running cache's buffered bookkeeping is not
/// flushed first: flush it for current recency. Round trips: begin, the purge, the
/// audit row, commit.
pub async fn purge<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    kind: CacheKind,
    what: Purge,
    actor: Option<Uuid>,
) -> Result<u64, CacheError> {
    let txn = db.begin().await?;
    let rows = match what {
        Purge::Expired => registry::delete_expired(&txn, kind).await?,
        Purge::KeepRecent(max) => registry::keep_recent(&txn, kind, max).await?,
        Purge::All => registry::delete_all(&txn, kind).await?,
    };
    let mut event = AuditEvent::new("cache.purged")
        .resource(kind.table(), kind.name())
        .action("purge")
        .details(json!({"cache": kind.name(), "purge": what, "rows": rows}));
    if let Some(actor) = actor {
        event = event.actor(actor);
    }
    audit::record(&txn, &event).await?;
    txn.commit().await?;
    Ok(rows)
}

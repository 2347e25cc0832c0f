//! Purging a cache on an operator's behalf: expired entries, entries beyond a maximum
//! (least recently used first), or everything — with the `cache.purged` audit row in
//! the same transaction.

use std::fmt;
use std::str::FromStr;

use entity::{ai_response_cache, exercise_cache, pdf_cache, vision_api_cache};
use sea_orm::{ConnectionTrait, EntityTrait, TransactionSession, TransactionTrait};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::{CacheError, exercise, vision};
use crate::audit::{self, AuditEvent};

/// The four caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheKind {
    /// `pdf_cache` (seed 000).
    Pdf,
    /// `ai_response_cache` (seed 001).
    Ai,
    /// `vision_api_cache` (seed 004).
    Vision,
    /// `exercise_cache` (seed 004).
    Exercise,
}

impl CacheKind {
    /// Every cache.
    pub const ALL: [CacheKind; 4] = [
        CacheKind::Pdf,
        CacheKind::Ai,
        CacheKind::Vision,
        CacheKind::Exercise,
    ];

    /// Its short name (`pdf`, `ai`, `vision`, `exercise`).
    pub fn name(self) -> &'static str {
        match self {
            CacheKind::Pdf => "pdf",
            CacheKind::Ai => "ai",
            CacheKind::Vision => "vision",
            CacheKind::Exercise => "exercise",
        }
    }

    /// Its table.
    pub fn table(self) -> &'static str {
        match self {
            CacheKind::Pdf => "pdf_cache",
            CacheKind::Ai => "ai_response_cache",
            CacheKind::Vision => "vision_api_cache",
            CacheKind::Exercise => "exercise_cache",
        }
    }
}

impl fmt::Display for CacheKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CacheKind {
    type Err = CacheError;

    /// `pdf`, `ai`, `vision` or `exercise`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CacheKind::ALL
            .into_iter()
            .find(|k| k.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| CacheError::InvalidField {
                cache: "cache",
                field: "kind",
                value: s.to_owned(),
                reason: "pdf, ai, vision or exercise",
            })
    }
}

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
/// caller's); how many entries went. A purge the cache has no notion of (expiry of
/// the PDF or AI-response cache, LRU outside the vision cache) is
/// [`CacheError::InvalidField`]. A running cache's buffered bookkeeping is not
/// flushed first: flush it for current recency. Round trips: begin, the purge, the
/// audit row, commit.
pub async fn purge<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    kind: CacheKind,
    what: Purge,
    actor: Option<Uuid>,
) -> Result<u64, CacheError> {
    let unsupported = |reason| CacheError::InvalidField {
        cache: kind.table(),
        field: "purge",
        value: format!("{what:?}"),
        reason,
    };
    let txn = db.begin().await?;
    let rows = match (kind, what) {
        (CacheKind::Vision, Purge::Expired) => vision::cleanup_expired_entries(&txn).await?,
        (CacheKind::Exercise, Purge::Expired) => exercise::cleanup_expired_exercises(&txn).await?,
        (_, Purge::Expired) => return Err(unsupported("this cache's entries do not expire")),
        (CacheKind::Vision, Purge::KeepRecent(max)) => vision::evict_lru_entries(&txn, max).await?,
        (_, Purge::KeepRecent(_)) => {
            return Err(unsupported("LRU eviction to a count is the vision cache's"));
        }
        (CacheKind::Pdf, Purge::All) => {
            pdf_cache::Entity::delete_many()
                .exec(&txn)
                .await?
                .rows_affected
        }
        (CacheKind::Ai, Purge::All) => {
            ai_response_cache::Entity::delete_many()
                .exec(&txn)
                .await?
                .rows_affected
        }
        (CacheKind::Vision, Purge::All) => {
            vision_api_cache::Entity::delete_many()
                .exec(&txn)
                .await?
                .rows_affected
        }
        (CacheKind::Exercise, Purge::All) => {
            exercise_cache::Entity::delete_many()
                .exec(&txn)
                .await?
                .rows_affected
        }
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

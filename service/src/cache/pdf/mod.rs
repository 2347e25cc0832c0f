//! Seed 000's Layer 0 PDF cache: results of processing a PDF, keyed by the SHA-256 of
//! its bytes, stored zstd-compressed in `pdf_cache`, every lookup's cost recorded in
//! `layer0_cost_tracking`.
//!
//! Files: this one (the key, the settings, the adapter), `store` (how entries are
//! read, written and accounted: the zstd contexts, the hit path, the flush).

mod store;

use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::registry::{CacheAction, CacheKind, CacheTable, CacheTask, Expiry};
use super::{CacheConfig, CacheCore, CacheError, is_sha256_hex};
use crate::error::DbError;

pub use store::{LOOKUP_SQL, PdfEvent, PdfStore};

const NAME: &str = "pdf_cache";

/// The PDF cache in the registry: entries do not expire; seed 000's monthly
/// retention deletes those not accessed for 90 days.
pub const KIND: CacheKind = CacheKind(&CacheTable {
    name: "pdf",
    table: NAME,
    check: "cache pdf",
    hits_column: "access_count",
    created_column: "created_at",
    accessed_column: "last_accessed",
    expiry: Expiry::Never,
    keep_recent: None,
    tasks: &[CacheTask {
        name: "pdf_cache_retention",
        table: NAME,
        action: CacheAction::Retention {
            column: "last_accessed",
            default_days: 90,
        },
    }],
});

/// The key of a PDF: the lower-case hex SHA-256 of its bytes, and its size when known
/// (the cost model prices by size).
#[derive(Debug, Clone)]
pub struct PdfKey {
    hash: Arc<str>,
    pdf_bytes: Option<u64>,
}

impl PartialEq for PdfKey {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
    }
}
impl Eq for PdfKey {}
impl Hash for PdfKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.hash.hash(state);
    }
}

impl PdfKey {
    /// A key from a known hash; refused unless it is 64 lower-case hex characters.
    pub fn parse(hash: &str) -> Result<Self, CacheError> {
        if !is_sha256_hex(hash) {
            return Err(CacheError::InvalidKey {
                cache: NAME,
                key: hash.to_owned(),
                reason: "expected the lower-case hex SHA-256 of the PDF (64 characters 0-9a-f)"
                    .into(),
            });
        }
        Ok(Self {
            hash: hash.into(),
            pdf_bytes: None,
        })
    }

    /// The key of the PDF `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self {
            hash: format!("{:x}", Sha256::digest(bytes)).into(),
            pdf_bytes: Some(bytes.len() as u64),
        }
    }

    /// The key of the PDF read from `reader`, hashed in 64 KiB chunks, so a large
    /// file is never held in memory.
    pub async fn from_reader<R: AsyncRead + Unpin>(mut reader: R) -> std::io::Result<Self> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            total += n as u64;
        }
        Ok(Self {
            hash: format!("{:x}", hasher.finalize()).into(),
            pdf_bytes: Some(total),
        })
    }

    /// The hex hash.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The PDF's size in bytes, when the key was made from its content.
    pub fn pdf_bytes(&self) -> Option<u64> {
        self.pdf_bytes
    }
}

/// What processing a PDF costs, to record misses and the savings of hits:
/// `per_request_usd + per_mb_usd × PDF size in MiB` (the size term is 0 when the key
/// carries no size).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PdfCostModel {
    /// The fixed cost of one processing call.
    pub per_request_usd: f64,
    /// The cost per MiB of PDF.
    pub per_mb_usd: f64,
}

impl Default for PdfCostModel {
    fn default() -> Self {
        Self {
            per_request_usd: 0.01,
            per_mb_usd: 0.005,
        }
    }
}

impl PdfCostModel {
    /// The cost of processing the PDF of `key`.
    pub fn cost(&self, key: &PdfKey) -> f64 {
        let mb = key.pdf_bytes.unwrap_or(0) as f64 / 1_048_576.0;
        self.per_request_usd + self.per_mb_usd * mb
    }
}

/// The PDF cache's own settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PdfSettings {
    /// zstd level, 1 (fast) to 22 (small). Default 3.
    pub compression_level: i32,
    /// The cost model of the cost tracking.
    pub cost: PdfCostModel,
}

impl Default for PdfSettings {
    fn default() -> Self {
        Self {
            compression_level: 3,
            cost: PdfCostModel::default(),
        }
    }
}

/// `layer0_stats` after a refresh.
#[derive(Debug, Clone, PartialEq, FromQueryResult)]
pub struct PdfStats {
    /// Entries in `pdf_cache`.
    pub total_cache_entries: i64,
    /// Their stored (compressed) size in MiB.
    pub total_size_mb: f64,
    /// Lookups that hit.
    pub cache_hits: i64,
    /// Lookups that missed.
    pub cache_misses: i64,
    /// Hits in percent of lookups.
    pub hit_rate: f64,
    /// What the misses cost.
    pub total_cost_usd: f64,
    /// What the hits saved.
    pub total_saved_usd: f64,
}

/// Evicts the least recently used entries past a size budget (`$1` bytes): a running
/// sum over a window in one DELETE, which SeaORM's builder cannot say.
const EVICT_TO_BUDGET_SQL: &str = "WITH ranked AS (
         SELECT pdf_hash,
                sum(storage_size_bytes) OVER (
                    ORDER BY last_accessed DESC, access_count DESC, pdf_hash
                    ROWS UNBOUNDED PRECEDING) AS running
         FROM pdf_cache)
     DELETE FROM pdf_cache p USING ranked r
     WHERE p.pdf_hash = r.pdf_hash AND r.running > $1";

/// Seed 000's refresh of its materialized view: a call of the seed's function.
const REFRESH_LAYER0_STATS_SQL: &str = "SELECT refresh_layer0_stats()";

/// Refreshes `layer0_stats` (`refresh_layer0_stats()`: `REFRESH MATERIALIZED VIEW
/// CONCURRENTLY`, so readers go on) on any connection, by the bookkeeping stored now
/// (a [`PdfCache`]'s buffered hits count once flushed). One round trip.
pub async fn refresh_pdf_stats<C: ConnectionTrait>(db: &C) -> Result<(), CacheError> {
    db.execute_unprepared(REFRESH_LAYER0_STATS_SQL).await?;
    Ok(())
}

/// Reads `layer0_stats`, a materialized view (no entity is generated for views), its
/// numerics as float8.
const LAYER0_STATS_SQL: &str = "SELECT total_cache_entries, total_size_mb::float8 AS total_size_mb,
        cache_hits, cache_misses, hit_rate::float8 AS hit_rate,
        total_cost_usd::float8 AS total_cost_usd, total_saved_usd::float8 AS total_saved_usd
 FROM layer0_stats";

/// The PDF cache: [`CacheCore`] over [`PdfStore`] (its `get`, `put`,
/// `get_or_compute`, `delete`, `flush`, `shutdown`, `stats` through `Deref`), plus the
/// size budget and the Layer 0 statistics.
pub struct PdfCache {
    core: CacheCore<PdfStore>,
}

impl Deref for PdfCache {
    type Target = CacheCore<PdfStore>;
    fn deref(&self) -> &Self::Target {
        &self.core
    }
}

impl PdfCache {
    /// A PDF cache on `db`. Refuses a zstd level outside 1..=22.
    pub fn new(
        db: impl Into<crate::db::Topology>,
        config: CacheConfig,
        settings: PdfSettings,
    ) -> Result<Self, CacheError> {
        if !(1..=22).contains(&settings.compression_level) {
            return Err(CacheError::InvalidField {
                cache: NAME,
                field: "compression_level",
                value: settings.compression_level.to_string(),
                reason: "zstd levels are 1 to 22",
            });
        }
        Ok(Self {
            core: CacheCore::new(PdfStore { settings }, db, config)?,
        })
    }

    /// Evicts entries until the stored size is at most `max_bytes`: the least
    /// recently used go first, and among equally recent ones the least used. Flushes
    /// the buffered bookkeeping first so recency is current. Returns how many went.
    /// Two round trips (flush, one DELETE).
    pub async fn enforce_size_budget(&self, max_bytes: i64) -> Result<u64, CacheError> {
        if max_bytes < 0 {
            return Err(CacheError::InvalidField {
                cache: NAME,
                field: "max_bytes",
                value: max_bytes.to_string(),
                reason: "a size budget cannot be negative",
            });
        }
        self.core.flush().await?;
        let done = self
            .core
            .db()
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                EVICT_TO_BUDGET_SQL,
                [max_bytes.into()],
            ))
            .await?;
        Ok(done.rows_affected())
    }

    /// Flushes the bookkeeping, refreshes `layer0_stats` (`refresh_layer0_stats()`)
    /// and reads it. Three round trips.
    pub async fn stored_stats(&self) -> Result<PdfStats, CacheError> {
        self.core.flush().await?;
        let db = self.core.db();
        refresh_pdf_stats(db).await?;
        PdfStats::find_by_statement(Statement::from_string(
            DbBackend::Postgres,
            LAYER0_STATS_SQL,
        ))
        .one(db)
        .await?
        .ok_or_else(|| DbError::no_row("layer0_stats").into())
    }
}

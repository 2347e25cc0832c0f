//! Seed 000's Layer 0 PDF cache: results of processing a PDF, keyed by the SHA-256 of
//! its bytes, stored zstd-compressed in `pdf_cache`, every lookup's cost recorded in
//! `layer0_cost_tracking`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::pdf_cache;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::sqlx::{self, PgConnection};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    FromQueryResult, QueryFilter, QueryTrait, Statement,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::core::db_err;
use super::registry::{CacheAction, CacheKind, CacheTable, CacheTask, Expiry};
use super::{CacheConfig, CacheCore, CacheError, Found, RowId, Store, is_sha256_hex};
use crate::error::DbError;

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

/// One flush of buffered lookups: access counts by row address (`ctid`, then by key
/// for rows that moved) and the cost-tracking rows, in one data-modifying CTE over
/// `unnest` of the batch's arrays, which SeaORM's builder cannot say.
const FLUSH_SQL: &str = "WITH v AS (
                 SELECT * FROM unnest($1::tid[], $2::text[], $3::int8[], $4::timestamptz[], $5::int4[])
                     AS v(r, h, n, t, ms)
             ),
             found AS (
                 UPDATE pdf_cache p SET
                     access_count = p.access_count + v.n,
                     last_accessed = greatest(p.last_accessed, v.t),
                     processing_time_ms = coalesce(v.ms, p.processing_time_ms)
                 FROM v WHERE p.ctid = v.r AND p.pdf_hash = v.h
                 RETURNING p.pdf_hash
             ),
             moved AS (
                 UPDATE pdf_cache p SET
                     access_count = p.access_count + v.n,
                     last_accessed = greatest(p.last_accessed, v.t),
                     processing_time_ms = coalesce(v.ms, p.processing_time_ms)
                 FROM v WHERE p.pdf_hash = v.h AND v.h NOT IN (SELECT pdf_hash FROM found)
             )
             INSERT INTO layer0_cost_tracking
                 (pdf_hash, cache_hit, lookups, cost_usd, cost_saved_usd, processing_time_ms, file_size_bytes, created_at)
             SELECT h, false, 1, c::numeric(12, 6), 0, ms, sz, t
             FROM unnest($6::text[], $7::float8[], $8::int4[], $9::int8[], $10::timestamptz[]) AS e(h, c, ms, sz, t)
             UNION ALL
             SELECT NULL, true, $11, 0, $12::numeric(12, 6), NULL, NULL, $13
             WHERE $11 > 0";

/// The statement of a lookup (`$1` the key's hash): the stored blob, how it was
/// compressed, its original size, and the row's address for the flush. A hit is this
/// one round trip; the cache bench issues it directly as its raw baseline.
pub const LOOKUP_SQL: &str = "SELECT result_data, compression_algorithm, original_size_bytes, ctid FROM pdf_cache WHERE pdf_hash = $1";

thread_local! {
    // A zstd context costs ~100 KB of allocation and set-up: one per thread, reused,
    // keeps it off the hit path.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
}

/// Decompresses `data`, at most `capacity` bytes, with this thread's context.
fn decompress(data: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|slot| {
        let mut slot = slot.borrow_mut();
        let context = match &mut *slot {
            Some(context) => context,
            None => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        context.decompress(data, capacity)
    })
}

/// Compresses `data` at `level` with this thread's context.
fn compress(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|slot| {
        let mut slot = slot.borrow_mut();
        let (current, context) = match &mut *slot {
            Some(pair) => pair,
            None => slot.insert((level, zstd::bulk::Compressor::new(level)?)),
        };
        if *current != level {
            context.set_compression_level(level)?;
            *current = level;
        }
        context.compress(data)
    })
}

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

/// One lookup, for `pdf_cache`'s access counts and `layer0_cost_tracking`.
#[derive(Debug)]
pub struct PdfEvent {
    hash: Arc<str>,
    /// Where a hit read the entry.
    row: Option<RowId>,
    hit: bool,
    at: DateTime<Utc>,
    cost_usd: f64,
    saved_usd: f64,
    processing_ms: Option<i32>,
    pdf_bytes: Option<i64>,
}

/// The [`Store`] of `pdf_cache`.
pub struct PdfStore {
    settings: PdfSettings,
}

impl Store for PdfStore {
    type Key = PdfKey;
    type Value = Vec<u8>;
    type Event = PdfEvent;

    fn name(&self) -> &'static str {
        NAME
    }

    fn key_text(key: &PdfKey) -> String {
        key.hash.to_string()
    }

    async fn load(
        &self,
        db: &mut PgConnection,
        key: &PdfKey,
    ) -> Result<Option<Found<Vec<u8>>>, CacheError> {
        let row: Option<(Vec<u8>, String, i64, RowId)> = sqlx::query_as(LOOKUP_SQL)
            .bind(key.hash())
            .fetch_optional(db)
            .await
            .map_err(db_err)?;
        let Some((data, algorithm, original, ctid)) = row else {
            return Ok(None);
        };
        let corrupt = |reason: String| CacheError::Corrupt {
            cache: NAME,
            key: key.hash.to_string(),
            reason,
        };
        if algorithm != "zstd" {
            return Err(corrupt(format!(
                "unknown compression algorithm {algorithm:?}"
            )));
        }
        let value = decompress(&data, original.max(0) as usize)
            .map_err(|e| corrupt(format!("zstd: {e}")))?;
        if value.len() as i64 != original {
            return Err(corrupt(format!(
                "decompressed to {} bytes, expected {original}",
                value.len()
            )));
        }
        Ok(Some(Found {
            value,
            row: Some(ctid),
        }))
    }

    fn size_of(&self, value: &Vec<u8>) -> Result<usize, CacheError> {
        Ok(value.len())
    }

    fn save(&self, key: &PdfKey, value: &Vec<u8>) -> Result<Statement, CacheError> {
        // The level was checked in `PdfCache::new`, so compression cannot fail on input.
        let compressed = compress(value, self.settings.compression_level).map_err(|_| {
            CacheError::InvalidField {
                cache: NAME,
                field: "value",
                value: format!("{} bytes", value.len()),
                reason: "zstd could not compress it",
            }
        })?;
        let ratio = if compressed.is_empty() {
            0.0
        } else {
            value.len() as f64 / compressed.len() as f64
        };
        let entry = pdf_cache::ActiveModel {
            pdf_hash: Set(key.hash().to_owned()),
            storage_size_bytes: Set(compressed.len() as i64),
            result_data: Set(compressed),
            compression_algorithm: Set("zstd".to_owned()),
            original_size_bytes: Set(value.len() as i64),
            compression_ratio: Set(ratio),
            access_count: Set(0),
            ..Default::default()
        };
        use pdf_cache::Column as C;
        let replace = OnConflict::column(C::PdfHash)
            .update_columns([
                C::ResultData,
                C::CompressionAlgorithm,
                C::OriginalSizeBytes,
                C::StorageSizeBytes,
                C::CompressionRatio,
            ])
            .value(C::LastAccessed, Expr::current_timestamp())
            .to_owned();
        Ok(pdf_cache::Entity::insert(entry)
            .on_conflict(replace)
            .build(DbBackend::Postgres))
    }

    fn remove(&self, key: &PdfKey) -> Result<Statement, CacheError> {
        Ok(pdf_cache::Entity::delete_many()
            .filter(pdf_cache::Column::PdfHash.eq(key.hash()))
            .build(DbBackend::Postgres))
    }

    fn hit_event(&self, key: &PdfKey, _value: &Vec<u8>, row: Option<RowId>) -> PdfEvent {
        PdfEvent {
            hash: key.hash.clone(),
            row,
            hit: true,
            at: Utc::now(),
            cost_usd: 0.0,
            saved_usd: self.settings.cost.cost(key),
            processing_ms: None,
            pdf_bytes: key.pdf_bytes.map(|b| b as i64),
        }
    }

    fn miss_event(&self, key: &PdfKey, _value: &Vec<u8>, elapsed: Duration) -> Option<PdfEvent> {
        Some(PdfEvent {
            hash: key.hash.clone(),
            hit: false,
            at: Utc::now(),
            cost_usd: self.settings.cost.cost(key),
            saved_usd: 0.0,
            processing_ms: Some(elapsed.as_millis().min(i32::MAX as u128) as i32),
            row: None,
            pdf_bytes: key.pdf_bytes.map(|b| b as i64),
        })
    }

    /// One statement: the access counts of `pdf_cache` (and a miss's processing
    /// time), one `layer0_cost_tracking` row per miss, and one row for all the hits of
    /// the flush (`lookups` = their number, `cost_saved_usd` = their savings).
    ///
    /// Each entry's hits are summed in memory and its row is rewritten once, found by
    /// the address its latest hit read it at (a TID lookup, no index descent) or, when
    /// the row has moved since (a later update, or a miss: no address), by key.
    async fn flush(&self, conn: &mut PgConnection, events: &[PdfEvent]) -> Result<(), CacheError> {
        struct Access {
            hits: i64,
            at: DateTime<Utc>,
            processing_ms: Option<i32>,
            row: Option<RowId>,
        }
        let mut per_hash: HashMap<&str, Access> = HashMap::with_capacity(events.len());
        let (mut hits, mut saved, mut last_hit) = (0i32, 0f64, None::<DateTime<Utc>>);
        for e in events {
            let entry = per_hash.entry(&e.hash).or_insert(Access {
                hits: 0,
                at: e.at,
                processing_ms: None,
                row: None,
            });
            if e.hit {
                entry.hits += 1;
                hits += 1;
                saved += e.saved_usd;
                last_hit = last_hit.max(Some(e.at));
            }
            if e.at >= entry.at {
                entry.at = e.at;
                entry.row = e.row.or(entry.row);
            }
            entry.processing_ms = entry.processing_ms.or(e.processing_ms);
        }
        let n = per_hash.len();
        let (mut rows, mut hashes, mut counts, mut lasts, mut millis) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (hash, a) in per_hash {
            rows.push(a.row);
            hashes.push(hash);
            counts.push(a.hits);
            lasts.push(a.at);
            millis.push(a.processing_ms);
        }
        let misses: Vec<&PdfEvent> = events.iter().filter(|e| !e.hit).collect();
        sqlx::query(FLUSH_SQL)
            // Named, not the unnamed statement: describing it makes sqlx look up `tid`,
            // a type it does not know, with a query of its own that would replace the
            // unnamed statement between its Parse and Bind.
            .persistent(true)
            .bind(rows)
            .bind(hashes)
            .bind(counts)
            .bind(lasts)
            .bind(millis)
            .bind(misses.iter().map(|e| &*e.hash).collect::<Vec<_>>())
            .bind(misses.iter().map(|e| e.cost_usd).collect::<Vec<_>>())
            .bind(misses.iter().map(|e| e.processing_ms).collect::<Vec<_>>())
            .bind(misses.iter().map(|e| e.pdf_bytes).collect::<Vec<_>>())
            .bind(misses.iter().map(|e| e.at).collect::<Vec<_>>())
            .bind(hits)
            .bind(saved)
            .bind(last_hit.unwrap_or_else(Utc::now))
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        Ok(())
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
        db: DatabaseConnection,
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

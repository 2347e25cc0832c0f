//! The [`Store`] of `pdf_cache`: the hit path, zstd compression with per-thread
//! contexts, and the flush of buffered lookups.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::pdf_cache;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::sqlx::{self, PgConnection};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DbBackend, EntityTrait, QueryFilter, QueryTrait, Statement,
};

use super::super::core::db_err;
use super::super::{CacheError, Found, RowId, Store};
use super::{NAME, PdfKey, PdfSettings};

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
    pub(super) settings: PdfSettings,
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

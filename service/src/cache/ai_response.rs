//! Seed 001's AI response cache: answers generated from lectures, keyed by a canonical
//! hash of the request and of the lectures' content, invalidated when a lecture's
//! content changes (the migration's trigger), with daily statistics in
//! `ai_cache_stats`.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{ai_response_cache, lecture_content_hashes};
use sea_orm::sea_query::extension::postgres::PgBinOper;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::sqlx::{self, PgConnection};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult,
    QueryFilter, QueryTrait, Statement,
};
use serde_json::Value;
use uuid::Uuid;

use super::core::db_err;
use super::registry::{CacheAction, CacheKind, CacheTable, CacheTask, Expiry};
use super::{CacheConfig, CacheCore, CacheError, Found, RowId, Store, canonical_json, sha256_hex};
use crate::error::DbError;

const NAME: &str = "ai_response_cache";

/// The AI-response cache in the registry: entries do not expire; seed 001's weekly
/// retention deletes those written over 30 days ago.
pub const KIND: CacheKind = CacheKind(&CacheTable {
    name: "ai",
    table: NAME,
    check: "cache ai",
    hits_column: "hit_count",
    created_column: "created_at",
    accessed_column: "last_accessed_at",
    expiry: Expiry::Never,
    keep_recent: None,
    tasks: &[CacheTask {
        name: "ai_response_cache_retention",
        table: NAME,
        action: CacheAction::Retention {
            column: "created_at",
            default_days: 30,
        },
    }],
});

/// The hit path (`$1` the cache key): one round trip on the pool's sqlx session,
/// measured against a raw SELECT in the cache bench.
const LOAD_SQL: &str =
    "SELECT response_data, tokens_used FROM ai_response_cache WHERE cache_key = $1";

/// One flush of buffered lookups (`$1` keys, NULL for a miss; `$2` times; `$3`
/// tokens saved): hit counts and the daily statistics upsert in one data-modifying
/// CTE over `unnest` of the batch, which SeaORM's builder cannot say.
const FLUSH_SQL: &str = "WITH e AS (
                 SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::int8[]) AS e(k, t, tokens)
             ),
             access AS (
                 UPDATE ai_response_cache c SET
                     hit_count = c.hit_count + v.n,
                     last_accessed_at = greatest(c.last_accessed_at, v.t)
                 FROM (SELECT k, count(*)::int AS n, max(t) AS t FROM e WHERE k IS NOT NULL GROUP BY k) v
                 WHERE c.cache_key = ANY($1) AND c.cache_key = v.k
             )
             INSERT INTO ai_cache_stats AS s (date, total_requests, cache_hits, cache_misses, tokens_saved)
             SELECT t::date, count(*), count(*) FILTER (WHERE k IS NOT NULL),
                    count(*) FILTER (WHERE k IS NULL), coalesce(sum(tokens), 0)::bigint
             FROM e GROUP BY 1
             ON CONFLICT (date) DO UPDATE SET
                 total_requests = s.total_requests + EXCLUDED.total_requests,
                 cache_hits = s.cache_hits + EXCLUDED.cache_hits,
                 cache_misses = s.cache_misses + EXCLUDED.cache_misses,
                 tokens_saved = s.tokens_saved + EXCLUDED.tokens_saved";

/// A request to an AI operation over lectures.
#[derive(Debug, Clone, PartialEq)]
pub struct AiRequest {
    /// What is generated (`quiz`, `summary`, …): 1 to 200 characters.
    pub operation_type: String,
    /// The lectures it reads; order and repetitions do not matter.
    pub lecture_ids: Vec<Uuid>,
    /// Its parameters (a JSON object, or null); key order does not matter.
    pub params: Value,
}

/// The key of a request: `cache_key` is the SHA-256 of the canonical encoding of the
/// operation type, the sorted lecture ids, the params with sorted keys and the
/// lectures' content hashes, so logically equal requests over unchanged lectures
/// share an entry.
#[derive(Debug, Clone)]
pub struct AiKey {
    cache_key: String,
    operation_type: String,
    lecture_ids: Vec<Uuid>,
    params: Value,
    content_hash: String,
}

impl PartialEq for AiKey {
    fn eq(&self, other: &Self) -> bool {
        self.cache_key == other.cache_key
    }
}
impl Eq for AiKey {}
impl Hash for AiKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.cache_key.hash(state);
    }
}

impl AiKey {
    /// The key of `request` given the content hash of each of its lectures
    /// (`hashes`; a lecture without one counts as the empty hash). No I/O.
    pub fn derive(request: &AiRequest, hashes: &HashMap<Uuid, String>) -> Result<Self, CacheError> {
        let op = request.operation_type.trim();
        if op.is_empty() || op.chars().count() > 200 {
            return Err(CacheError::InvalidKey {
                cache: NAME,
                key: request.operation_type.clone(),
                reason: "operation_type must be 1 to 200 characters".into(),
            });
        }
        if !(request.params.is_object() || request.params.is_null()) {
            return Err(CacheError::InvalidField {
                cache: NAME,
                field: "params",
                value: request.params.to_string(),
                reason: "params must be a JSON object or null",
            });
        }
        let mut ids = request.lecture_ids.clone();
        ids.sort();
        ids.dedup();
        let lecture_hashes: Vec<String> = ids
            .iter()
            .map(|id| hashes.get(id).cloned().unwrap_or_default())
            .collect();
        let encoded = canonical_json(&serde_json::json!([
            op,
            ids,
            request.params,
            lecture_hashes
        ]));
        Ok(Self {
            cache_key: sha256_hex(encoded.as_bytes()),
            operation_type: op.to_owned(),
            lecture_ids: ids,
            params: request.params.clone(),
            content_hash: sha256_hex(lecture_hashes.join("\n").as_bytes()),
        })
    }

    /// The hex cache key.
    pub fn hash(&self) -> &str {
        &self.cache_key
    }
}

/// A cached answer.
#[derive(Debug, Clone, PartialEq)]
pub struct AiResponse {
    /// The response, as JSON.
    pub data: Value,
    /// Tokens the generation used: what each hit saves.
    pub tokens_used: i32,
}

/// One lookup, for `hit_count` and `ai_cache_stats`.
#[derive(Debug)]
pub struct AiEvent {
    cache_key: Option<String>,
    at: DateTime<Utc>,
    tokens_saved: i64,
}

/// The [`Store`] of `ai_response_cache`.
pub struct AiResponseStore;

impl Store for AiResponseStore {
    type Key = AiKey;
    type Value = AiResponse;
    type Event = AiEvent;

    fn name(&self) -> &'static str {
        NAME
    }

    fn key_text(key: &AiKey) -> String {
        key.cache_key.clone()
    }

    async fn load(
        &self,
        db: &mut PgConnection,
        key: &AiKey,
    ) -> Result<Option<Found<AiResponse>>, CacheError> {
        let row: Option<(Value, i32)> = sqlx::query_as(LOAD_SQL)
            .bind(&key.cache_key)
            .fetch_optional(db)
            .await
            .map_err(db_err)?;
        Ok(row.map(|(data, tokens_used)| Found {
            value: AiResponse { data, tokens_used },
            row: None,
        }))
    }

    fn size_of(&self, value: &AiResponse) -> Result<usize, CacheError> {
        if value.tokens_used < 0 {
            return Err(CacheError::InvalidField {
                cache: NAME,
                field: "tokens_used",
                value: value.tokens_used.to_string(),
                reason: "cannot be negative",
            });
        }
        Ok(value.data.to_string().len())
    }

    fn save(&self, key: &AiKey, value: &AiResponse) -> Result<Statement, CacheError> {
        let entry = ai_response_cache::ActiveModel {
            cache_key: Set(key.cache_key.clone()),
            operation_type: Set(key.operation_type.clone()),
            lecture_ids: Set(key.lecture_ids.clone()),
            params: Set(if key.params.is_null() {
                serde_json::json!({})
            } else {
                key.params.clone()
            }),
            content_hash: Set(key.content_hash.clone()),
            content_size: Set(value.data.to_string().len() as i32),
            response_data: Set(value.data.clone()),
            tokens_used: Set(value.tokens_used),
            ..Default::default()
        };
        use ai_response_cache::Column as C;
        let replace = OnConflict::column(C::CacheKey)
            .update_columns([
                C::ResponseData,
                C::TokensUsed,
                C::ContentSize,
                C::ContentHash,
            ])
            .value(C::LastAccessedAt, Expr::current_timestamp())
            .to_owned();
        Ok(ai_response_cache::Entity::insert(entry)
            .on_conflict(replace)
            .build(DbBackend::Postgres))
    }

    fn remove(&self, key: &AiKey) -> Result<Statement, CacheError> {
        Ok(ai_response_cache::Entity::delete_many()
            .filter(ai_response_cache::Column::CacheKey.eq(&key.cache_key))
            .build(DbBackend::Postgres))
    }

    fn hit_event(&self, key: &AiKey, value: &AiResponse, _row: Option<RowId>) -> AiEvent {
        AiEvent {
            cache_key: Some(key.cache_key.clone()),
            at: Utc::now(),
            tokens_saved: i64::from(value.tokens_used),
        }
    }

    fn miss_event(&self, _key: &AiKey, _value: &AiResponse, _elapsed: Duration) -> Option<AiEvent> {
        Some(AiEvent {
            cache_key: None,
            at: Utc::now(),
            tokens_saved: 0,
        })
    }

    /// One statement: `hit_count`/`last_accessed_at` of the entries hit, and one
    /// upsert of `ai_cache_stats` per day (what the seed's `increment_cache_stats`
    /// does for one request, for the whole batch).
    async fn flush(&self, conn: &mut PgConnection, events: &[AiEvent]) -> Result<(), CacheError> {
        sqlx::query(FLUSH_SQL)
            .persistent(false)
            .bind(
                events
                    .iter()
                    .map(|e| e.cache_key.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(events.iter().map(|e| e.at).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.tokens_saved).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

/// The AI response cache: [`CacheCore`] over [`AiResponseStore`] (its `get`, `put`,
/// `get_or_compute`, `delete`, `flush`, `shutdown`, `stats` through `Deref`), plus
/// keys from requests and lecture invalidation.
pub struct AiResponseCache {
    core: CacheCore<AiResponseStore>,
}

impl Deref for AiResponseCache {
    type Target = CacheCore<AiResponseStore>;
    fn deref(&self) -> &Self::Target {
        &self.core
    }
}

/// The daily statistics of `get_cache_stats(start, end)`.
#[derive(Debug, Clone, PartialEq, FromQueryResult)]
pub struct AiCacheDailyStats {
    /// Lookups in the range.
    pub total_requests: i64,
    /// Hits.
    pub cache_hits: i64,
    /// Misses.
    pub cache_misses: i64,
    /// Tokens the hits saved.
    pub tokens_saved: i64,
    /// Hits in percent of lookups.
    pub hit_rate: f64,
}

/// Seed 001's `get_cache_stats(start, end)`: a call of the seed's function, its
/// numeric hit rate as float8.
const DAILY_STATS_SQL: &str = "SELECT total_requests, cache_hits, cache_misses, tokens_saved,
        hit_rate::float8 AS hit_rate
 FROM get_cache_stats($1, $2)";

impl AiResponseCache {
    /// An AI response cache on `db` (a PostgreSQL pool; another kind of connection is
    /// refused, see [`CacheCore::new`]).
    pub fn new(
        db: impl Into<crate::db::Topology>,
        config: CacheConfig,
    ) -> Result<Self, CacheError> {
        Ok(Self {
            core: CacheCore::new(AiResponseStore, db, config)?,
        })
    }

    /// The key of `request`, read on `db` (any SeaORM connection: inside a
    /// transaction that changed a lecture, the key over its new content): the
    /// lectures' content hashes through the `lecture_content_hashes` entity (one round
    /// trip), then [`AiKey::derive`].
    pub async fn key<C: ConnectionTrait>(
        &self,
        db: &C,
        request: &AiRequest,
    ) -> Result<AiKey, CacheError> {
        let hashes: HashMap<Uuid, String> = lecture_content_hashes::Entity::find()
            .filter(
                lecture_content_hashes::Column::LectureId
                    .is_in(request.lecture_ids.iter().copied()),
            )
            .all(db)
            .await?
            .into_iter()
            .map(|h| (h.lecture_id, h.content_hash))
            .collect();
        AiKey::derive(request, &hashes)
    }

    /// Deletes every cached response over `lecture_id` on `db` (any SeaORM
    /// connection; a transaction joins it); how many went. One round trip through the
    /// entity, served by the GIN index on `lecture_ids`.
    pub async fn invalidate_lecture<C: ConnectionTrait>(
        &self,
        db: &C,
        lecture_id: Uuid,
    ) -> Result<u64, CacheError> {
        use sea_orm::sea_query::ExprTrait;
        let done = ai_response_cache::Entity::delete_many()
            .filter(Expr::col(ai_response_cache::Column::LectureIds).binary(
                PgBinOper::Contains,
                Expr::val(vec![lecture_id]).cast_as("uuid[]"),
            ))
            .exec(db)
            .await?;
        Ok(done.rows_affected)
    }

    /// Flushes the bookkeeping and reads `get_cache_stats(start, end)`. Two round trips.
    pub async fn stored_stats(
        &self,
        start: chrono::NaiveDate,
        end: chrono::NaiveDate,
    ) -> Result<AiCacheDailyStats, CacheError> {
        self.core.flush().await?;
        AiCacheDailyStats::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            DAILY_STATS_SQL,
            [start.into(), end.into()],
        ))
        .one(self.core.db())
        .await?
        .ok_or_else(|| DbError::no_row("get_cache_stats").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(ids: &[u128], params: Value) -> AiRequest {
        AiRequest {
            operation_type: "quiz".into(),
            lecture_ids: ids.iter().map(|i| Uuid::from_u128(*i)).collect(),
            params,
        }
    }

    #[test]
    fn equal_requests_share_a_key_whatever_the_order() {
        let hashes = HashMap::from([
            (Uuid::from_u128(1), "a".into()),
            (Uuid::from_u128(2), "b".into()),
        ]);
        let a = AiKey::derive(
            &request(&[1, 2], serde_json::json!({"n": 5, "lang": "es"})),
            &hashes,
        )
        .unwrap();
        let b = AiKey::derive(
            &request(&[2, 1, 2], serde_json::json!({"lang": "es", "n": 5})),
            &hashes,
        )
        .unwrap();
        assert_eq!(a.hash(), b.hash());
        let other_params = AiKey::derive(
            &request(&[1, 2], serde_json::json!({"n": 6, "lang": "es"})),
            &hashes,
        )
        .unwrap();
        assert_ne!(a.hash(), other_params.hash());
        let changed = HashMap::from([
            (Uuid::from_u128(1), "a2".into()),
            (Uuid::from_u128(2), "b".into()),
        ]);
        let after_edit = AiKey::derive(
            &request(&[1, 2], serde_json::json!({"n": 5, "lang": "es"})),
            &changed,
        )
        .unwrap();
        assert_ne!(
            a.hash(),
            after_edit.hash(),
            "a lecture's new content gives a new key"
        );
    }

    #[test]
    fn bad_requests_are_refused() {
        let empty_op = AiRequest {
            operation_type: " ".into(),
            ..request(&[1], Value::Null)
        };
        assert!(matches!(
            AiKey::derive(&empty_op, &HashMap::new()),
            Err(CacheError::InvalidKey { .. })
        ));
        assert!(matches!(
            AiKey::derive(&request(&[1], serde_json::json!([1, 2])), &HashMap::new()),
            Err(CacheError::InvalidField {
                field: "params",
                ..
            })
        ));
    }
}

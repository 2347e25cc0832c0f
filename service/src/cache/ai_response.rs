//! Seed 001's AI response cache: answers generated from lectures, keyed by a canonical
//! hash of the request and of the lectures' content, invalidated when a lecture's
//! content changes (the migration's trigger), with daily statistics in
//! `ai_cache_stats`.

use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use sea_orm::sqlx::{self, PgConnection};
use serde_json::Value;
use uuid::Uuid;

use super::core::db_err;
use super::{CacheConfig, CacheCore, CacheError, Found, RowId, Store, canonical_json, sha256_hex};

const NAME: &str = "ai_response_cache";

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
    pub fn derive(request: &AiRequest, hashes: &[(Uuid, String)]) -> Result<Self, CacheError> {
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
            .map(|id| {
                hashes
                    .iter()
                    .find(|(l, _)| l == id)
                    .map(|(_, h)| h.clone())
                    .unwrap_or_default()
            })
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
    pub fn cache_key(&self) -> &str {
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
        let row: Option<(Value, i32)> = sqlx::query_as(
            "SELECT response_data, tokens_used FROM ai_response_cache WHERE cache_key = $1",
        )
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

    async fn save(
        &self,
        db: &mut PgConnection,
        key: &AiKey,
        value: &AiResponse,
    ) -> Result<(), CacheError> {
        let size = value.data.to_string().len() as i32;
        sqlx::query(
            "INSERT INTO ai_response_cache (cache_key, operation_type, lecture_ids, params, content_hash,
                                            response_data, tokens_used, content_size)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (cache_key) DO UPDATE SET
                 response_data = EXCLUDED.response_data,
                 tokens_used = EXCLUDED.tokens_used,
                 content_size = EXCLUDED.content_size,
                 content_hash = EXCLUDED.content_hash,
                 last_accessed_at = now()",
        )
        .bind(&key.cache_key)
        .bind(&key.operation_type)
        .bind(&key.lecture_ids)
        .bind(if key.params.is_null() { serde_json::json!({}) } else { key.params.clone() })
        .bind(&key.content_hash)
        .bind(&value.data)
        .bind(value.tokens_used)
        .bind(size)
        .execute(db)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn remove(&self, db: &mut PgConnection, key: &AiKey) -> Result<u64, CacheError> {
        let done = sqlx::query("DELETE FROM ai_response_cache WHERE cache_key = $1")
            .bind(&key.cache_key)
            .execute(db)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected())
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
        sqlx::query(
            "WITH e AS (
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
                 tokens_saved = s.tokens_saved + EXCLUDED.tokens_saved",
        )
        .persistent(false)
        .bind(events.iter().map(|e| e.cache_key.clone()).collect::<Vec<_>>())
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
#[derive(Debug, Clone, PartialEq)]
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

impl AiResponseCache {
    /// An AI response cache on `db`.
    pub fn new(db: DatabaseConnection, config: CacheConfig) -> Self {
        Self {
            core: CacheCore::new(AiResponseStore, db, config),
        }
    }

    /// The key of `request`: reads the lectures' content hashes (one round trip) and
    /// derives the key with [`AiKey::derive`].
    pub async fn key(&self, request: &AiRequest) -> Result<AiKey, CacheError> {
        let hashes: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT lecture_id, content_hash FROM lecture_content_hashes WHERE lecture_id = ANY($1)",
        )
        .bind(&request.lecture_ids)
        .fetch_all(self.core.db().get_postgres_connection_pool())
        .await
        .map_err(db_err)?;
        AiKey::derive(request, &hashes)
    }

    /// Deletes every cached response over `lecture_id`; how many went. One round trip.
    pub async fn invalidate_lecture(&self, lecture_id: Uuid) -> Result<u64, CacheError> {
        let done =
            sqlx::query("DELETE FROM ai_response_cache WHERE lecture_ids @> ARRAY[$1]::uuid[]")
                .bind(lecture_id)
                .execute(self.core.db().get_postgres_connection_pool())
                .await
                .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    /// Flushes the bookkeeping and reads `get_cache_stats(start, end)`. Two round trips.
    pub async fn daily_stats(
        &self,
        start: chrono::NaiveDate,
        end: chrono::NaiveDate,
    ) -> Result<AiCacheDailyStats, CacheError> {
        self.core.flush().await?;
        let row: (i64, i64, i64, i64, f64) = sqlx::query_as(
            "SELECT total_requests, cache_hits, cache_misses, tokens_saved, hit_rate::float8
             FROM get_cache_stats($1, $2)",
        )
        .bind(start)
        .bind(end)
        .fetch_one(self.core.db().get_postgres_connection_pool())
        .await
        .map_err(db_err)?;
        Ok(AiCacheDailyStats {
            total_requests: row.0,
            cache_hits: row.1,
            cache_misses: row.2,
            tokens_saved: row.3,
            hit_rate: row.4,
        })
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
        let hashes = [
            (Uuid::from_u128(1), "a".into()),
            (Uuid::from_u128(2), "b".into()),
        ];
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
        assert_eq!(a.cache_key(), b.cache_key());
        let other_params = AiKey::derive(
            &request(&[1, 2], serde_json::json!({"n": 6, "lang": "es"})),
            &hashes,
        )
        .unwrap();
        assert_ne!(a.cache_key(), other_params.cache_key());
        let changed = [
            (Uuid::from_u128(1), "a2".into()),
            (Uuid::from_u128(2), "b".into()),
        ];
        let after_edit = AiKey::derive(
            &request(&[1, 2], serde_json::json!({"n": 5, "lang": "es"})),
            &changed,
        )
        .unwrap();
        assert_ne!(
            a.cache_key(),
            after_edit.cache_key(),
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
            AiKey::derive(&empty_op, &[]),
            Err(CacheError::InvalidKey { .. })
        ));
        assert!(matches!(
            AiKey::derive(&request(&[1], serde_json::json!([1, 2])), &[]),
            Err(CacheError::InvalidField {
                field: "params",
                ..
            })
        ));
    }
}

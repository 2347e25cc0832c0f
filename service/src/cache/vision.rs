//! Seed 004's vision-API cache: responses per (normalised image URL, provider), with a
//! time-to-live and least-recently-used eviction (`evict_lru_cache`).

use std::ops::Deref;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use entity::sea_orm_active_enums::AiProvider;
use entity::vision_api_cache;
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::sqlx::{self, PgConnection};
use sea_orm::{
    ActiveEnum, ColumnTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, QueryTrait,
    Statement,
};
use serde_json::Value;

use super::core::db_err;
use super::registry::{self, CacheAction, CacheKind, CacheTable, CacheTask, Expiry};
use super::{
    CacheConfig, CacheCore, CacheError, Found, RowId, Store, check_ttl, expires_in, sha256_hex,
};
use crate::error::DbError;
use crate::provider;

const NAME: &str = "vision_api_cache";

/// The vision cache in the registry. Its expiry and LRU eviction are seed 004's
/// functions `cleanup_expired_cache()` and `evict_lru_cache(max)`.
pub const KIND: CacheKind = CacheKind(&CacheTable {
    name: "vision",
    table: NAME,
    check: "cache vision",
    hits_column: "access_count",
    created_column: "created_at",
    accessed_column: "last_accessed_at",
    expiry: Expiry::Function("SELECT cleanup_expired_cache()"),
    keep_recent: Some("SELECT evict_lru_cache($1)"),
    tasks: &[
        CacheTask {
            name: "cleanup_expired_vision_cache",
            table: NAME,
            action: CacheAction::DeleteExpired,
        },
        CacheTask {
            name: "evict_vision_cache",
            table: NAME,
            action: CacheAction::KeepRecent {
                default_max: 10_000,
            },
        },
    ],
});

/// The hit path (`$1` the URL hash, `$2` the provider): one round trip on the pool's
/// sqlx session.
const LOAD_SQL: &str = "SELECT response_data, response_time_ms FROM vision_api_cache
             WHERE url_hash = $1 AND provider = $2::ai_provider AND expires_at > now()";

/// One flush of buffered hits: an UPDATE … FROM the grouped `unnest` of the
/// batch's arrays, which SeaORM's builder cannot say.
const FLUSH_SQL: &str = "UPDATE vision_api_cache c SET
                 access_count = c.access_count + v.n,
                 last_accessed_at = greatest(c.last_accessed_at, v.t)
             FROM (SELECT h, p, count(*) AS n, max(t) AS t
                   FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS e(h, p, t)
                   GROUP BY h, p) v
             WHERE c.url_hash = ANY($1) AND c.url_hash = v.h AND c.provider = v.p::ai_provider";

/// The key of a vision call: the normalised image URL, its SHA-256, and the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisionKey {
    url: String,
    url_hash: String,
    provider: AiProvider,
}

impl std::hash::Hash for VisionKey {
    /// The URL's hash and the provider's name (the generated enum has no `Hash`).
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.url_hash.hash(state);
        provider::name(&self.provider).hash(state);
    }
}

impl VisionKey {
    /// The key of `image_url` for `provider`. The URL is normalised first — scheme and
    /// host lower-cased, default port, fragment and empty query dropped, query
    /// parameters sorted — so equivalent spellings share an entry. Refuses a URL that
    /// does not parse or is not http(s).
    pub fn new(image_url: &str, provider: AiProvider) -> Result<Self, CacheError> {
        let invalid = |reason: String| CacheError::InvalidKey {
            cache: NAME,
            key: image_url.to_owned(),
            reason,
        };
        let mut url = url::Url::parse(image_url.trim()).map_err(|e| invalid(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "scheme {:?} is not http or https",
                url.scheme()
            )));
        }
        url.set_fragment(None);
        let mut pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        if pairs.is_empty() {
            url.set_query(None);
        } else {
            pairs.sort();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        let url = url.to_string();
        Ok(Self {
            url_hash: sha256_hex(url.as_bytes()),
            url,
            provider,
        })
    }

    /// The normalised URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The provider.
    pub fn provider(&self) -> &AiProvider {
        &self.provider
    }

    /// The provider's name (`openai`, …), as the table stores it.
    pub fn provider_name(&self) -> &'static str {
        provider::name(&self.provider)
    }

    /// The hex SHA-256 of the normalised URL.
    pub fn hash(&self) -> &str {
        &self.url_hash
    }
}

/// A cached vision response.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionResponse {
    /// The provider's answer, as JSON.
    pub data: Value,
    /// How long the provider took, if measured.
    pub response_time_ms: Option<i32>,
}

/// A hit, for `access_count`/`last_accessed_at`.
#[derive(Debug)]
pub struct VisionEvent {
    url_hash: String,
    provider: &'static str,
    at: DateTime<Utc>,
}

/// The [`Store`] of `vision_api_cache`.
pub struct VisionStore {
    ttl: TimeDelta,
}

impl Store for VisionStore {
    type Key = VisionKey;
    type Value = VisionResponse;
    type Event = VisionEvent;

    fn name(&self) -> &'static str {
        NAME
    }

    fn key_text(key: &VisionKey) -> String {
        format!("{}:{}", key.provider_name(), key.url_hash)
    }

    async fn load(
        &self,
        db: &mut PgConnection,
        key: &VisionKey,
    ) -> Result<Option<Found<VisionResponse>>, CacheError> {
        let row: Option<(Value, Option<i32>)> = sqlx::query_as(LOAD_SQL)
            .bind(&key.url_hash)
            .bind(key.provider_name())
            .fetch_optional(db)
            .await
            .map_err(db_err)?;
        Ok(row.map(|(data, response_time_ms)| Found {
            value: VisionResponse {
                data,
                response_time_ms,
            },
            row: None,
        }))
    }

    fn size_of(&self, value: &VisionResponse) -> Result<usize, CacheError> {
        Ok(value.data.to_string().len())
    }

    fn save(&self, key: &VisionKey, value: &VisionResponse) -> Result<Statement, CacheError> {
        use vision_api_cache::Column as C;
        let mut insert = Query::insert();
        insert
            .into_table(vision_api_cache::Entity)
            .columns([
                C::ImageUrl,
                C::UrlHash,
                C::Provider,
                C::ResponseData,
                C::ResponseSizeBytes,
                C::ResponseTimeMs,
                C::ExpiresAt,
            ])
            .values_panic([
                Expr::val(key.url.as_str()),
                Expr::val(key.url_hash.as_str()),
                key.provider.as_enum(),
                Expr::val(value.data.clone()),
                Expr::val(value.data.to_string().len() as i32),
                Expr::val(value.response_time_ms),
                expires_in(self.ttl),
            ])
            .on_conflict(
                OnConflict::columns([C::UrlHash, C::Provider])
                    .update_columns([
                        C::ImageUrl,
                        C::ResponseData,
                        C::ResponseSizeBytes,
                        C::ResponseTimeMs,
                        C::ExpiresAt,
                    ])
                    .value(C::CreatedAt, Expr::current_timestamp())
                    .value(C::LastAccessedAt, Expr::current_timestamp())
                    .to_owned(),
            );
        Ok(DbBackend::Postgres.build(&insert))
    }

    fn remove(&self, key: &VisionKey) -> Result<Statement, CacheError> {
        use vision_api_cache::Column as C;
        Ok(vision_api_cache::Entity::delete_many()
            .filter(C::UrlHash.eq(&key.url_hash))
            .filter(C::Provider.eq(key.provider.clone()))
            .build(DbBackend::Postgres))
    }

    fn hit_event(
        &self,
        key: &VisionKey,
        _value: &VisionResponse,
        _row: Option<RowId>,
    ) -> VisionEvent {
        VisionEvent {
            url_hash: key.url_hash.clone(),
            provider: key.provider_name(),
            at: Utc::now(),
        }
    }

    fn miss_event(&self, _: &VisionKey, _: &VisionResponse, _: Duration) -> Option<VisionEvent> {
        None
    }

    /// One statement: `access_count` and `last_accessed_at` of every entry hit.
    async fn flush(
        &self,
        conn: &mut PgConnection,
        events: &[VisionEvent],
    ) -> Result<(), CacheError> {
        sqlx::query(FLUSH_SQL)
            .bind(
                events
                    .iter()
                    .map(|e| e.url_hash.clone())
                    .collect::<Vec<_>>(),
            )
            .persistent(false)
            .bind(events.iter().map(|e| e.provider).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.at).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

/// The vision-API cache: [`CacheCore`] over [`VisionStore`] (its `get`, `put`,
/// `get_or_compute`, `delete`, `flush`, `shutdown`, `stats` through `Deref`), plus
/// expiry clean-up and LRU eviction.
pub struct VisionCache {
    core: CacheCore<VisionStore>,
}

impl Deref for VisionCache {
    type Target = CacheCore<VisionStore>;
    fn deref(&self) -> &Self::Target {
        &self.core
    }
}

impl VisionCache {
    /// A vision cache on `db` whose entries live `ttl` (expired entries are misses
    /// even before clean-up). A negative TTL is refused.
    pub fn new(
        db: impl Into<crate::db::Topology>,
        config: CacheConfig,
        ttl: TimeDelta,
    ) -> Result<Self, CacheError> {
        let ttl = check_ttl(NAME, ttl)?;
        Ok(Self {
            core: CacheCore::new(VisionStore { ttl }, db, config)?,
        })
    }

    /// Deletes expired entries (`cleanup_expired_cache()`); how many went. One round
    /// trip.
    pub async fn delete_expired(&self) -> Result<u64, CacheError> {
        registry::delete_expired(self.core.db(), KIND).await
    }

    /// Keeps the `max_entries` most recently used entries and deletes the rest
    /// (`evict_lru_cache(max_entries)`), after flushing the buffered accesses so
    /// recency is current; how many went. Two round trips.
    pub async fn keep_recent(&self, max_entries: i32) -> Result<u64, CacheError> {
        if max_entries >= 0 {
            self.core.flush().await?;
        }
        registry::keep_recent(self.core.db(), KIND, max_entries).await
    }
}

/// Seed 004's `get_cache_stats()`: a call of the seed's function, its numeric size
/// as float8.
const DB_STATS_SQL: &str = "SELECT total_entries, active_entries, expired_entries, total_hits,
        total_size_mb::float8 AS total_size_mb
 FROM get_cache_stats()";

/// One row of `get_cache_stats()`: the whole vision cache.
#[derive(Debug, Clone, PartialEq, FromQueryResult)]
pub struct VisionCacheStats {
    /// Entries stored.
    pub total_entries: i64,
    /// Entries not expired.
    pub active_entries: i64,
    /// Entries expired but not yet cleaned up.
    pub expired_entries: i64,
    /// Hits recorded (flushed).
    pub total_hits: i64,
    /// Stored response size in MiB.
    pub total_size_mb: f64,
}

impl VisionCache {
    /// Flushes the bookkeeping and reads `get_cache_stats()`. Two round trips.
    pub async fn stored_stats(&self) -> Result<VisionCacheStats, CacheError> {
        self.core.flush().await?;
        VisionCacheStats::find_by_statement(Statement::from_string(
            DbBackend::Postgres,
            DB_STATS_SQL,
        ))
        .one(self.core.db())
        .await?
        .ok_or_else(|| DbError::no_row("get_cache_stats").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equivalent_urls_share_a_key() {
        let a = VisionKey::new(
            "HTTPS://Example.COM:443/birds/a.jpg?w=2&h=1#top",
            AiProvider::Openai,
        )
        .unwrap();
        let b = VisionKey::new(
            "https://example.com/birds/a.jpg?h=1&w=2",
            AiProvider::Openai,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.url(), "https://example.com/birds/a.jpg?h=1&w=2");
        let other = VisionKey::new(
            "https://example.com/birds/a.jpg?h=1&w=2",
            AiProvider::Google,
        )
        .unwrap();
        assert_ne!(a, other);
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(matches!(
            VisionKey::new("", AiProvider::Openai),
            Err(CacheError::InvalidKey { .. })
        ));
        assert!(matches!(
            VisionKey::new("ftp://x.org/a.jpg", AiProvider::Openai),
            Err(CacheError::InvalidKey { .. })
        ));
    }
}

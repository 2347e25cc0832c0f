//! Caches for expensive AI and API results: one get-or-compute core
//! ([`CacheCore`]) and four thin adapters over it, one per table:
//!
//! | adapter | table | key |
//! | --- | --- | --- |
//! | [`pdf::PdfCache`] | `pdf_cache` (+ `layer0_cost_tracking`) | SHA-256 of the PDF bytes |
//! | [`ai_response::AiResponseCache`] | `ai_response_cache` (+ `ai_cache_stats`) | SHA-256 of the canonical request and the lectures' content hashes |
//! | [`vision::VisionCache`] | `vision_api_cache` | SHA-256 of the normalised image URL, and the provider |
//! | [`exercise::ExerciseCache`] | `exercise_cache` | (user, type, difficulty, topic) |
//!
//! What every cache does (the core's work, written once):
//! - a **hit costs one round trip** and writes nothing; its bookkeeping (access
//!   counts, last access, statistics, cost tracking) is buffered in memory and
//!   written in batches, one statement per table, every `flush_interval` and on
//!   `shutdown()`;
//! - **single flight**: concurrent misses for one key, in one process or several,
//!   compute once; no transaction is held open while computing;
//! - **bad input** (malformed keys, oversize payloads, unknown providers, negative
//!   TTLs) is a typed [`CacheError`] before anything is written;
//! - a **corrupt** stored value is logged, counted and treated as a miss, and the
//!   next compute replaces it;
//! - [`CacheStats`]: hits, misses, computes, waits, errors and flushes, in memory.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::DbError;

mod advisory_lock;
pub mod ai_response;
mod core;
pub mod exercise;
mod fetched;
pub mod pdf;
mod purge;
mod registry;
mod row_id;
mod stats;
mod store;
pub mod vision;

pub use self::core::CacheCore;
pub use self::fetched::{Fetched, Origin};
pub use self::purge::{Purge, purge};
pub use self::registry::{
    CACHES, CacheAction, CacheKind, CacheTable, CacheTask, Expiry, delete_all, delete_expired,
    delete_older_than, keep_recent,
};
pub use self::row_id::RowId;
pub use self::stats::{CacheTableStats, cache_stats};
pub use self::store::{Found, Store};

use crate::error::BoxError;

/// Settings every cache shares.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// The largest value (encoded, before compression) a cache stores; larger ones
    /// are refused with [`CacheError::Oversize`]. Default 16 MiB.
    pub max_value_bytes: usize,
    /// How long a miss waits for another caller's compute of the same key before
    /// [`CacheError::WaitTimeout`]. Default 60 s.
    pub wait_timeout: Duration,
    /// How often buffered bookkeeping is written. Default 30 s.
    ///
    /// A flush rewrites each entry hit since the last one once, so a longer interval
    /// folds more hits into one rewrite: on `pdf_cache` with 100,000 entries and
    /// uniformly random hits, bookkeeping cost 24-31 % of hit throughput at 1 s and
    /// ~5 % at 30 s (`docs/performance.md`). The price: the database's counters and statistics lag by up to this long, a
    /// crash (not a [`CacheCore::shutdown`]) loses up to this long of them, and the
    /// buffer holds one event per lookup of the interval (~100 bytes each; at 20,000
    /// hits/s and 30 s, ~60 MB) or up to `max_batch_events`.
    /// Operations that need them current ([`pdf::PdfCache::enforce_size_budget`],
    /// [`vision::VisionCache::evict_lru`], the statistics readers) flush first.
    pub flush_interval: Duration,
    /// Whether hits are counted in the database at all (access counts, last access,
    /// statistics, cost tracking). Default on.
    pub bookkeeping: bool,
    /// How many buffered bookkeeping events start a flush before `flush_interval` has
    /// passed, which bounds the buffer's memory at high hit rates. Default 500,000.
    pub max_batch_events: usize,
    /// How many bookkeeping events are kept while the database refuses the flushes;
    /// past that the oldest are dropped (and counted as an error). Default 1,000,000.
    pub max_buffered_events: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_value_bytes: 16 * 1024 * 1024,
            wait_timeout: Duration::from_secs(60),
            flush_interval: Duration::from_secs(30),
            bookkeeping: true,
            max_batch_events: 500_000,
            max_buffered_events: 1_000_000,
        }
    }
}

/// What can go wrong in a cache call. Each names the cache and the offending value.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A key that is empty or not of the cache's form.
    #[error("{cache}: invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The cache.
        cache: &'static str,
        /// The key as given.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value larger than [`CacheConfig::max_value_bytes`]; nothing was written.
    #[error("{cache}: value for key {key} is {size} bytes, over the limit of {limit} bytes")]
    Oversize {
        /// The cache.
        cache: &'static str,
        /// The key.
        key: String,
        /// The value's encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A time-to-live below zero.
    #[error("{cache}: negative time-to-live {seconds} s")]
    NegativeTtl {
        /// The cache.
        cache: &'static str,
        /// The TTL given, in seconds.
        seconds: i64,
    },
    /// A field of a request or key outside its range.
    #[error("{cache}: {field} = {value}: {reason}")]
    InvalidField {
        /// The cache.
        cache: &'static str,
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// Another caller's compute of the same key did not finish in time.
    #[error("{cache}: waited {waited:?} for another computation of key {key}")]
    WaitTimeout {
        /// The cache.
        cache: &'static str,
        /// The key.
        key: String,
        /// How long it waited.
        waited: Duration,
    },
    /// A stored value that cannot be decoded (the cache treats it as a miss).
    #[error("{cache}: stored value for key {key} is corrupt: {reason}")]
    Corrupt {
        /// The cache.
        cache: &'static str,
        /// The key.
        key: String,
        /// What failed.
        reason: String,
    },
    /// The caller's compute failed; nothing was stored.
    #[error("{cache}: computing key {key} failed: {source}")]
    Compute {
        /// The cache.
        cache: &'static str,
        /// The key.
        key: String,
        /// The compute's error.
        source: BoxError,
    },
    /// An operator's action could not be audited (it was rolled back).
    #[error("audit: {0}")]
    Audit(#[from] crate::audit::AuditError),
    /// The database failed; the variant says how (see [`DbError`]).
    #[error("database: {0}")]
    Database(#[from] DbError),
}

impl From<sea_orm::DbErr> for CacheError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Database(e.into())
    }
}

/// In-memory counters of one cache since it was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Lookups answered from the cache (including waiters served by another's compute).
    pub hits: u64,
    /// Lookups that found nothing live.
    pub misses: u64,
    /// Computes run (misses that computed).
    pub computes: u64,
    /// Lookups that waited for another caller's compute of the same key.
    pub waits: u64,
    /// Corrupt entries, failed computes, timeouts and failed flushes.
    pub errors: u64,
    /// Successful bookkeeping flushes.
    pub flushes: u64,
    /// Bookkeeping events waiting for the next flush.
    pub pending_events: u64,
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Whether `text` is a lower-case hex SHA-256 (64 characters of `0-9a-f`).
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `value` with every object's keys sorted, recursively, serialised compactly: equal
/// JSON values give equal text whatever their key order.
pub fn canonical_json(value: &serde_json::Value) -> String {
    fn write(value: &serde_json::Value, out: &mut String) {
        match value {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                out.push('{');
                for (i, (k, v)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push(':');
                    write(v, out);
                }
                out.push('}');
            }
            serde_json::Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(v, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// `now() + ttl` on the server's clock, which the lookups' `expires_at > now()` read:
/// an entry's lifetime does not depend on the application host's clock.
pub(crate) fn expires_in(ttl: chrono::TimeDelta) -> sea_orm::sea_query::Expr {
    sea_orm::sea_query::Expr::cust_with_values(
        "now() + make_interval(secs => $1)",
        [ttl.num_milliseconds() as f64 / 1000.0],
    )
}

/// A TTL as a checked, non-negative [`chrono::TimeDelta`].
pub(crate) fn check_ttl(
    cache: &'static str,
    ttl: chrono::TimeDelta,
) -> Result<chrono::TimeDelta, CacheError> {
    if ttl < chrono::TimeDelta::zero() {
        return Err(CacheError::NegativeTtl {
            cache,
            seconds: ttl.num_seconds(),
        });
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let a = serde_json::json!({"b": 1, "a": {"y": [1, {"d": 0, "c": 1}], "x": null}});
        let b = serde_json::json!({"a": {"x": null, "y": [1, {"c": 1, "d": 0}]}, "b": 1});
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"x":null,"y":[1,{"c":1,"d":0}]},"b":1}"#
        );
    }

    #[test]
    fn sha256_hex_is_checked() {
        let h = sha256_hex(b"abc");
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_sha256_hex(&h));
        assert!(!is_sha256_hex(&h.to_uppercase()));
        assert!(!is_sha256_hex(""));
        assert!(!is_sha256_hex(&h[..63]));
    }

    #[test]
    fn negative_ttl_is_refused() {
        assert!(matches!(
            check_ttl("x", chrono::TimeDelta::seconds(-1)),
            Err(CacheError::NegativeTtl { seconds: -1, .. })
        ));
        assert!(check_ttl("x", chrono::TimeDelta::zero()).is_ok());
    }
}

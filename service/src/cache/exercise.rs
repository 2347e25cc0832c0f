//! Seed 004's exercise cache (`007_exercise_cache`): generated exercises per learner,
//! exercise type, difficulty and topic, with a time-to-live.

use std::ops::Deref;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use entity::exercise_cache;
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::sqlx::{self, PgConnection};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryTrait, Statement,
};
use serde_json::Value;
use uuid::Uuid;

use super::core::db_err;
use super::registry::{self, CacheAction, CacheKind, CacheTable, CacheTask, Expiry};
use super::{CacheConfig, CacheCore, CacheError, Found, RowId, Store, check_ttl, expires_in};

const NAME: &str = "exercise_cache";

/// The exercise cache in the registry: entries expire at `expires_at`.
pub const KIND: CacheKind = CacheKind(&CacheTable {
    name: "exercise",
    table: NAME,
    check: "cache exercise",
    hits_column: "access_count",
    created_column: "created_at",
    accessed_column: "last_accessed_at",
    expiry: Expiry::Column("expires_at"),
    keep_recent: None,
    tasks: &[CacheTask {
        name: "cleanup_expired_exercises",
        table: NAME,
        action: CacheAction::DeleteExpired,
    }],
});

/// The hit path (`$1`-`$4` the key): one round trip on the pool's sqlx session.
const LOAD_SQL: &str = "SELECT exercise_data FROM exercise_cache
             WHERE user_id = $1 AND exercise_type = $2 AND difficulty_level = $3 AND topic = $4
               AND expires_at > now()";

/// One flush of buffered hits: an UPDATE … FROM the grouped `unnest` of the
/// batch's arrays, which SeaORM's builder cannot say.
const FLUSH_SQL: &str = "UPDATE exercise_cache c SET
                 access_count = c.access_count + v.n,
                 last_accessed_at = greatest(c.last_accessed_at, v.t)
             FROM (SELECT u, k, d, tp, count(*) AS n, max(t) AS t
                   FROM unnest($1::uuid[], $2::text[], $3::int4[], $4::text[], $5::timestamptz[])
                        AS e(u, k, d, tp, t)
                   GROUP BY u, k, d, tp) v
             WHERE c.user_id = ANY($1) AND c.user_id = v.u AND c.exercise_type = v.k AND c.difficulty_level = v.d AND c.topic = v.tp";

/// The key of an exercise: (user, type, difficulty, topic).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExerciseKey {
    user_id: Uuid,
    exercise_type: String,
    difficulty: i32,
    topic: String,
}

impl ExerciseKey {
    /// A key; refuses an empty or over-long (100) exercise type and a difficulty
    /// outside 1..=5. An empty topic means "no topic".
    pub fn new(
        user_id: Uuid,
        exercise_type: &str,
        difficulty: i32,
        topic: &str,
    ) -> Result<Self, CacheError> {
        let kind = exercise_type.trim();
        if kind.is_empty() || kind.chars().count() > 100 {
            return Err(CacheError::InvalidKey {
                cache: NAME,
                key: exercise_type.to_owned(),
                reason: "exercise_type must be 1 to 100 characters".into(),
            });
        }
        if !(1..=5).contains(&difficulty) {
            return Err(CacheError::InvalidField {
                cache: NAME,
                field: "difficulty",
                value: difficulty.to_string(),
                reason: "difficulty levels are 1 to 5",
            });
        }
        Ok(Self {
            user_id,
            exercise_type: kind.to_owned(),
            difficulty,
            topic: topic.trim().to_owned(),
        })
    }
}

/// A hit, for `access_count`/`last_accessed_at`.
#[derive(Debug)]
pub struct ExerciseEvent {
    key: ExerciseKey,
    at: DateTime<Utc>,
}

/// The [`Store`] of `exercise_cache`.
pub struct ExerciseStore {
    ttl: TimeDelta,
}

impl Store for ExerciseStore {
    type Key = ExerciseKey;
    type Value = Value;
    type Event = ExerciseEvent;

    fn name(&self) -> &'static str {
        NAME
    }

    fn key_text(key: &ExerciseKey) -> String {
        format!(
            "{}/{}/{}/{}",
            key.user_id, key.exercise_type, key.difficulty, key.topic
        )
    }

    async fn load(
        &self,
        db: &mut PgConnection,
        key: &ExerciseKey,
    ) -> Result<Option<Found<Value>>, CacheError> {
        let value = sqlx::query_scalar(LOAD_SQL)
            .bind(key.user_id)
            .bind(&key.exercise_type)
            .bind(key.difficulty)
            .bind(&key.topic)
            .fetch_optional(db)
            .await
            .map_err(db_err)?;
        Ok(value.map(|value| Found { value, row: None }))
    }

    fn size_of(&self, value: &Value) -> Result<usize, CacheError> {
        Ok(value.to_string().len())
    }

    fn save(&self, key: &ExerciseKey, value: &Value) -> Result<Statement, CacheError> {
        use exercise_cache::Column as C;
        let mut insert = Query::insert();
        insert
            .into_table(exercise_cache::Entity)
            .columns([
                C::UserId,
                C::ExerciseType,
                C::DifficultyLevel,
                C::Topic,
                C::ExerciseData,
                C::ExpiresAt,
            ])
            .values_panic([
                Expr::val(key.user_id),
                Expr::val(key.exercise_type.as_str()),
                Expr::val(key.difficulty),
                Expr::val(key.topic.as_str()),
                Expr::val(value.clone()),
                expires_in(self.ttl),
            ])
            .on_conflict(
                OnConflict::columns([C::UserId, C::ExerciseType, C::DifficultyLevel, C::Topic])
                    .update_columns([C::ExerciseData, C::ExpiresAt])
                    .value(C::CreatedAt, Expr::current_timestamp())
                    .value(C::LastAccessedAt, Expr::current_timestamp())
                    .to_owned(),
            );
        Ok(DbBackend::Postgres.build(&insert))
    }

    fn remove(&self, key: &ExerciseKey) -> Result<Statement, CacheError> {
        use exercise_cache::Column as C;
        Ok(exercise_cache::Entity::delete_many()
            .filter(C::UserId.eq(key.user_id))
            .filter(C::ExerciseType.eq(&key.exercise_type))
            .filter(C::DifficultyLevel.eq(key.difficulty))
            .filter(C::Topic.eq(&key.topic))
            .build(DbBackend::Postgres))
    }

    fn hit_event(&self, key: &ExerciseKey, _value: &Value, _row: Option<RowId>) -> ExerciseEvent {
        ExerciseEvent {
            key: key.clone(),
            at: Utc::now(),
        }
    }

    fn miss_event(&self, _: &ExerciseKey, _: &Value, _: Duration) -> Option<ExerciseEvent> {
        None
    }

    /// One statement: `access_count` and `last_accessed_at` of every entry hit.
    async fn flush(
        &self,
        conn: &mut PgConnection,
        events: &[ExerciseEvent],
    ) -> Result<(), CacheError> {
        sqlx::query(FLUSH_SQL)
            .persistent(false)
            .bind(events.iter().map(|e| e.key.user_id).collect::<Vec<_>>())
            .bind(
                events
                    .iter()
                    .map(|e| e.key.exercise_type.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(events.iter().map(|e| e.key.difficulty).collect::<Vec<_>>())
            .bind(
                events
                    .iter()
                    .map(|e| e.key.topic.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(events.iter().map(|e| e.at).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

/// The exercise cache: [`CacheCore`] over [`ExerciseStore`] (its `get`, `put`,
/// `get_or_compute`, `delete`, `flush`, `shutdown`, `stats` through `Deref`), plus
/// per-user invalidation and expiry clean-up.
pub struct ExerciseCache {
    core: CacheCore<ExerciseStore>,
}

impl Deref for ExerciseCache {
    type Target = CacheCore<ExerciseStore>;
    fn deref(&self) -> &Self::Target {
        &self.core
    }
}

impl ExerciseCache {
    /// An exercise cache on `db` whose entries live `ttl`. A negative TTL is refused.
    pub fn new(
        db: impl Into<crate::db::Topology>,
        config: CacheConfig,
        ttl: TimeDelta,
    ) -> Result<Self, CacheError> {
        let ttl = check_ttl(NAME, ttl)?;
        Ok(Self {
            core: CacheCore::new(ExerciseStore { ttl }, db, config)?,
        })
    }

    /// Deletes every cached exercise of `user_id` on `db` (any SeaORM connection; a
    /// transaction joins it); how many went. One round trip through the entity.
    pub async fn invalidate_user<C: ConnectionTrait>(
        &self,
        db: &C,
        user_id: Uuid,
    ) -> Result<u64, CacheError> {
        let done = exercise_cache::Entity::delete_many()
            .filter(exercise_cache::Column::UserId.eq(user_id))
            .exec(db)
            .await?;
        Ok(done.rows_affected)
    }

    /// Deletes expired exercises; how many went. One round trip.
    pub async fn delete_expired(&self) -> Result<u64, CacheError> {
        registry::delete_expired(self.core.db(), KIND).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        let u = Uuid::from_u128(7);
        assert!(ExerciseKey::new(u, "quiz", 3, "birds").is_ok());
        assert!(matches!(
            ExerciseKey::new(u, " ", 3, ""),
            Err(CacheError::InvalidKey { .. })
        ));
        assert!(matches!(
            ExerciseKey::new(u, "quiz", 0, ""),
            Err(CacheError::InvalidField {
                field: "difficulty",
                ..
            })
        ));
    }
}

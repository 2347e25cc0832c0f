//! Courses and lectures: this module writes `lectures`. The AI-response cache relies
//! on it only through the database: every change of a lecture's content, by any
//! client, updates its content hash (migration `m20250601_000003_lecture_hash_sync`),
//! and a changed hash deletes the cached responses over that lecture.

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use uuid::Uuid;

use crate::error::DbError;

/// What can go wrong with a lecture.
#[derive(Debug, thiserror::Error)]
pub enum LectureError {
    /// No lecture has this id; nothing was written.
    #[error("no lecture {0}")]
    NotFound(Uuid),
    /// The database failed; the variant says how.
    #[error("database: {0}")]
    Database(#[from] DbError),
}

impl From<sea_orm::DbErr> for LectureError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Database(e.into())
    }
}

/// Sets the lecture's content and counts the cached AI responses over it that the
/// change invalidates (read in the same snapshot, before the database's trigger
/// deletes them; 0 when the content is unchanged — the trigger's own condition).
/// Raw SQL: one statement doing the update and the count, which SeaORM's builder
/// cannot put in one CTE.
const SET_CONTENT_SQL: &str = "WITH before AS (SELECT content FROM lectures WHERE id = $1),
     lecture AS (UPDATE lectures SET content = $2 WHERE id = $1 RETURNING id)
     SELECT (SELECT count(*) FROM lecture) AS found,
            CASE WHEN EXISTS (SELECT 1 FROM before WHERE content IS DISTINCT FROM $2)
                 THEN (SELECT count(*) FROM ai_response_cache WHERE lecture_ids @> ARRAY[$1]::uuid[])
                 ELSE 0 END AS invalidated";

/// Sets lecture `lecture_id`'s content and returns how many cached AI responses over
/// it the change invalidated (0 for an unchanged content). Runs on any connection,
/// so inside the caller's transaction too: the invalidation commits or rolls back
/// with it. One round trip; the database's triggers update the content hash and
/// delete the responses in the same statement. An unknown lecture is
/// [`LectureError::NotFound`] and nothing is written.
pub async fn set_content<C: ConnectionTrait>(
    conn: &C,
    lecture_id: Uuid,
    content: &str,
) -> Result<u64, LectureError> {
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            SET_CONTENT_SQL,
            [lecture_id.into(), content.into()],
        ))
        .await?
        .ok_or(LectureError::NotFound(lecture_id))?;
    let found: i64 = row.try_get("", "found")?;
    if found == 0 {
        return Err(LectureError::NotFound(lecture_id));
    }
    let invalidated: i64 = row.try_get("", "invalidated")?;
    Ok(invalidated as u64)
}

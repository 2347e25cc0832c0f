//! Database failures keep their class through the service: a duplicate key, a missing
//! parent row, a refused check, a transaction that lost to another and a lost
//! connection are each their own `DbError` variant, matched by variant — never by
//! message text.

use entity::sea_orm_active_enums::AiProvider;
use sea_orm::{ActiveModelTrait, ConnectionTrait, IsolationLevel, Set, TransactionTrait};
use serde_json::json;
use service::error::DbError;
use service::queue::QueueError;
use service::queue::ai::{self, NewAiJob};
use tests::TestDb;

#[tokio::test]
async fn a_missing_parent_row_through_the_service_is_a_foreign_key_violation() {
    let t = TestDb::new().await;
    let missing_image = uuid::Uuid::new_v4();
    let err = ai::enqueue_ai_jobs(
        &t.db,
        &[NewAiJob::new(missing_image, AiProvider::Openai, json!({}))],
    )
    .await
    .expect_err("no such image");
    assert!(
        matches!(
            &err,
            QueueError::Database(DbError::ForeignKeyViolation { constraint: Some(c), .. })
                if c.contains("image")
        ),
        "{err:?}"
    );
    assert_eq!(
        t.scalar("SELECT count(*) FROM ai_annotation_jobs").await,
        "0"
    );
}

#[tokio::test]
async fn a_duplicate_key_through_an_entity_is_a_unique_violation() {
    let t = TestDb::new().await;
    let image = entity::images::ActiveModel {
        id: Set(uuid::Uuid::new_v4()),
        url: Set("https://example.com/a.jpg".into()),
        ..Default::default()
    };
    image.clone().insert(&t.db).await.expect("first insert");
    let err = DbError::from(image.insert(&t.db).await.expect_err("same id"));
    assert!(
        matches!(&err, DbError::UniqueViolation { constraint: Some(c), .. } if c == "images_pkey"),
        "{err:?}"
    );
    assert_eq!(err.code(), Some("23505"));
    assert!(!err.is_transient());
}

#[tokio::test]
async fn a_transaction_that_loses_to_another_is_a_serialization_failure() {
    let t = TestDb::new().await;
    // Write skew under SERIALIZABLE: each reads what the other writes.
    let a =
        t.db.begin_with_config(Some(IsolationLevel::Serializable), None)
            .await
            .expect("begin a");
    let b =
        t.db.begin_with_config(Some(IsolationLevel::Serializable), None)
            .await
            .expect("begin b");
    let insert = |name: &str| {
        format!(
            "INSERT INTO jobs (job_type, payload) SELECT '{name}', '{{}}' WHERE NOT EXISTS (SELECT 1 FROM jobs)"
        )
    };
    a.execute_unprepared(&insert("a")).await.expect("a writes");
    let b_wrote = b.execute_unprepared(&insert("b")).await;
    a.commit().await.expect("a commits");
    let err = match b_wrote {
        Err(e) => e,
        Ok(_) => b.commit().await.expect_err("b must lose"),
    };
    let err = DbError::from(err);
    assert!(
        matches!(&err, DbError::SerializationFailure { code, .. } if code == "40001"),
        "{err:?}"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn a_connection_the_server_ended_is_a_connection_error() {
    use sea_orm::sqlx::{self, Connection};
    let t = TestDb::new().await;
    // One connection of its own (a pool would test and replace a dead one).
    let mut own = sqlx::PgConnection::connect(&t.url).await.expect("connect");
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut own)
        .await
        .expect("pid");
    t.sql(&format!("SELECT pg_terminate_backend({pid})")).await;
    let err = DbError::from(
        sqlx::query("SELECT 1")
            .execute(&mut own)
            .await
            .expect_err("the session was terminated"),
    );
    assert!(matches!(err, DbError::Connection { .. }), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(err.code(), None);
}

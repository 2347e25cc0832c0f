//! Service writes join the caller's transaction: an application's row and the job
//! that processes it, or the cached answer computed over it, are written together or
//! not at all; a rolled-back enqueue wakes and runs nothing; cancel, retry, batch
//! progress and cache deletes roll back with the transaction that made them.

use std::time::Duration;

use sea_orm::{ActiveModelTrait, Set, TransactionTrait};
use serde_json::json;
use service::error::BoxError;
use service::queue::worker::Worker;
use service::queue::{self, JOBS, NewJob};
use tests::TestDb;
use tests::queue::{fast, spawn, wait_for};

fn document(id: uuid::Uuid) -> entity::documents::ActiveModel {
    entity::documents::ActiveModel {
        id: Set(id),
        content: Set("a document to embed".into()),
        metadata: Set(json!({})),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_document_and_its_job_commit_together_or_not_at_all() {
    let t = TestDb::new().await;
    // A worker waits the whole time: a rolled-back job must never reach it.
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&ran);
    let worker = Worker::new(t.db.clone(), JOBS, fast())
        .expect("worker")
        .handle("embed", move |ctx| {
            let counter = std::sync::Arc::clone(&counter);
            async move {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, BoxError>(json!({"embedded": ctx.payload["document"]}))
            }
        })
        .expect("handler");
    let (stop, handle) = spawn(worker);

    // Rolled back: neither the document nor its job.
    let lost = uuid::Uuid::new_v4();
    let txn = t.db.begin().await.expect("begin");
    document(lost).insert(&txn).await.expect("document");
    let ids = queue::enqueue(
        &txn,
        &[
            NewJob::new("embed", json!({"document": lost})),
            NewJob::new("embed", json!({"document": lost, "again": true})).dedup_key("k"),
        ],
    )
    .await
    .expect("enqueue");
    assert_eq!(ids.len(), 2);
    txn.rollback().await.expect("rollback");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        t.sql("SELECT (SELECT count(*) FROM documents)::text, (SELECT count(*) FROM jobs)::text")
            .await,
        [["0", "0"]]
    );
    assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), 0);

    // Committed: both, and the job runs.
    let kept = uuid::Uuid::new_v4();
    let txn = t.db.begin().await.expect("begin");
    document(kept).insert(&txn).await.expect("document");
    let id = queue::enqueue(
        &txn,
        &[NewJob::new("embed", json!({"document": kept})).dedup_key(kept.to_string())],
    )
    .await
    .expect("enqueue")[0];
    // Inside the transaction, the same key again resolves to the job just added.
    let again = queue::enqueue(
        &txn,
        &[NewJob::new("embed", json!({})).dedup_key(kept.to_string())],
    )
    .await
    .expect("enqueue");
    assert_eq!(again, [id]);
    txn.commit().await.expect("commit");
    wait_for(
        &t,
        &format!("SELECT status FROM jobs WHERE id = '{id}'"),
        "completed",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        t.sql(&format!(
            "SELECT (SELECT count(*) FROM documents WHERE id = '{kept}')::text, result->>'embedded' FROM jobs WHERE id = '{id}'"
        ))
        .await,
        [["1", kept.to_string().as_str()]]
    );
    let _ = stop.send(());
    handle.await.expect("join").expect("run");
    assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn cancel_and_retry_roll_back_with_the_callers_transaction() {
    let t = TestDb::new().await;
    let ids = queue::enqueue(
        &t.db,
        &[NewJob::new("a", json!({})), NewJob::new("b", json!({}))],
    )
    .await
    .expect("enqueue");
    t.sql(&format!(
        "UPDATE jobs SET status = 'failed', attempts = 3 WHERE id = '{}'",
        ids[1]
    ))
    .await;
    // Rolled back, they change nothing; committed, they take effect.
    for (commit, expected) in [
        (false, ["pending", "failed"]),
        (true, ["cancelled", "pending"]),
    ] {
        let txn = t.db.begin().await.expect("begin");
        assert!(queue::cancel(&txn, JOBS, ids[0]).await.expect("cancel"));
        assert_eq!(
            queue::retry_failed(&txn, JOBS, &[ids[1]])
                .await
                .expect("retry"),
            1
        );
        if commit {
            txn.commit().await.expect("commit");
        } else {
            txn.rollback().await.expect("rollback");
        }
        assert_eq!(
            t.column("SELECT status FROM jobs ORDER BY id").await,
            expected
        );
    }
}

#[tokio::test]
async fn batch_progress_commits_with_the_items_own_writes() {
    use service::queue::ai::{self, ItemError};
    let t = TestDb::new().await;
    let batch = ai::create_batch(&t.db, "annotate", 2, &json!({}), None)
        .await
        .expect("batch");
    let errors = [ItemError {
        item_index: 1,
        item_ref: None,
        error: "no birds".into(),
    }];
    let txn = t.db.begin().await.expect("begin");
    let progress = ai::record_batch_progress(&txn, batch, 1, &errors)
        .await
        .expect("progress")
        .expect("known batch");
    assert_eq!(
        (
            progress.processed_items,
            progress.failed_items,
            progress.status.as_str()
        ),
        (1, 1, "completed")
    );
    txn.rollback().await.expect("rollback");
    assert_eq!(
        t.sql("SELECT status, processed_items::text, (SELECT count(*) FROM batch_job_errors)::text FROM batch_jobs")
            .await,
        [["pending", "0", "0"]]
    );
    let txn = t.db.begin().await.expect("begin");
    ai::record_batch_progress(&txn, batch, 1, &errors)
        .await
        .expect("progress");
    txn.commit().await.expect("commit");
    assert_eq!(
        t.sql("SELECT status, coalesce(item_ref, 'NULL'), error_message FROM batch_jobs, batch_job_errors")
            .await,
        [["completed", "NULL", "no birds"]]
    );
}

#[tokio::test]
async fn a_cache_put_and_the_apps_own_rows_roll_back_together() {
    use service::cache::CacheConfig;
    use service::cache::ai_response::{AiRequest, AiResponse, AiResponseCache};
    use service::cache::pdf::{PdfCache, PdfKey, PdfSettings};

    let t = TestDb::new().await;
    let ai = AiResponseCache::new(t.db.clone(), CacheConfig::default()).expect("cache");
    let pdfs =
        PdfCache::new(t.db.clone(), CacheConfig::default(), PdfSettings::default()).expect("cache");
    let answer = AiResponse {
        data: json!({"summary": "corvids are clever"}),
        tokens_used: 120,
    };
    // In one transaction: a course and a lecture through the entities, the cached
    // answer over the lecture (its key read inside the transaction, over the content
    // the trigger just hashed), and a PDF result.
    let write_all = async |commit: bool| {
        let course = uuid::Uuid::new_v4();
        let lecture = uuid::Uuid::new_v4();
        let txn = t.db.begin().await.expect("begin");
        entity::courses::ActiveModel {
            id: Set(course),
            title: Set("Birds".into()),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .expect("course");
        entity::lectures::ActiveModel {
            id: Set(lecture),
            course_id: Set(course),
            title: Set("Corvids".into()),
            content: Set(format!("corvids {commit}")),
            position: Set(1),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .expect("lecture");
        let request = AiRequest {
            operation_type: "summary".into(),
            lecture_ids: vec![lecture],
            params: json!({}),
        };
        let key = ai.key(&txn, &request).await.expect("key");
        ai.put(&txn, &key, &answer).await.expect("put");
        let pdf = PdfKey::from_bytes(format!("pdf {commit}").as_bytes());
        pdfs.put(&txn, &pdf, &b"parsed".to_vec())
            .await
            .expect("put");
        // Inside the transaction the entry is there; outside it is not yet.
        assert_eq!(
            t.sql(&format!(
                "SELECT count(*)::text FROM ai_response_cache WHERE cache_key = '{}'",
                key.hash()
            ))
            .await,
            [["0"]]
        );
        if commit {
            txn.commit().await.expect("commit");
        } else {
            txn.rollback().await.expect("rollback");
        }
        (request, key, pdf)
    };

    let (_, lost_key, lost_pdf) = write_all(false).await;
    assert_eq!(
        t.sql(
            "SELECT (SELECT count(*) FROM courses)::text, (SELECT count(*) FROM lectures)::text,
                    (SELECT count(*) FROM lecture_content_hashes)::text,
                    (SELECT count(*) FROM ai_response_cache)::text, (SELECT count(*) FROM pdf_cache)::text"
        )
        .await,
        [["0", "0", "0", "0", "0"]],
        "a rolled-back transaction leaves no course, lecture, hash or cache entry"
    );
    assert_eq!(ai.get(&lost_key).await.expect("get"), None);
    assert_eq!(pdfs.get(&lost_pdf).await.expect("get"), None);

    let (request, key, pdf) = write_all(true).await;
    assert_eq!(ai.key(&t.db, &request).await.expect("key"), key);
    assert_eq!(ai.get(&key).await.expect("get"), Some(answer.clone()));
    assert_eq!(pdfs.get(&pdf).await.expect("get"), Some(b"parsed".to_vec()));

    // A delete rolled back deletes nothing; committed, it does.
    let txn = t.db.begin().await.expect("begin");
    assert!(ai.delete(&txn, &key).await.expect("delete"));
    assert!(pdfs.delete(&txn, &pdf).await.expect("delete"));
    txn.rollback().await.expect("rollback");
    assert_eq!(ai.get(&key).await.expect("get"), Some(answer));
    assert!(pdfs.get(&pdf).await.expect("get").is_some());
    let txn = t.db.begin().await.expect("begin");
    assert!(pdfs.delete(&txn, &pdf).await.expect("delete"));
    txn.commit().await.expect("commit");
    assert_eq!(pdfs.get(&pdf).await.expect("get"), None);
    ai.shutdown().await.expect("shutdown");
    pdfs.shutdown().await.expect("shutdown");
}

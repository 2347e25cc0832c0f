//! Purging caches on an operator's behalf: what each purge removes, what a cache has
//! no notion of is refused with nothing removed, and the `cache.purged` audit row
//! commits — or rolls back — with the purge.

use sea_orm::TransactionTrait;
use service::cache::{CacheError, CacheKind, Purge, ai_response, pdf, purge, vision};
use tests::TestDb;
use uuid::Uuid;

async fn vision_entries(t: &TestDb) {
    for (i, (expires, accessed)) in [("-1 hour", "0"), ("+1 day", "-2 hours"), ("+1 day", "0")]
        .iter()
        .enumerate()
    {
        t.sql(&format!(
            "INSERT INTO vision_api_cache (image_url, url_hash, provider, response_data,
                                           response_size_bytes, created_at, expires_at, last_accessed_at)
             VALUES ('u{i}', '{:064x}', 'openai', '{{}}', 1, now() - interval '2 days',
                     now() + interval '{expires}', now() + interval '{accessed} hours')",
            i
        ))
        .await;
    }
}

async fn purges_audited(t: &TestDb) -> Vec<String> {
    t.column(
        "SELECT (details->>'cache') || ':' || (details->>'rows') FROM audit_logs
         WHERE event_type = 'cache.purged' ORDER BY created_at",
    )
    .await
}

#[tokio::test]
async fn each_purge_removes_what_it_names_and_is_audited() {
    let t = TestDb::new().await;
    let operator = Uuid::new_v4();
    vision_entries(&t).await;
    assert_eq!(
        purge(&t.db, vision::KIND, Purge::Expired, Some(operator))
            .await
            .expect("expired"),
        1
    );
    assert_eq!(
        purge(&t.db, vision::KIND, Purge::KeepRecent(1), Some(operator))
            .await
            .expect("lru"),
        1
    );
    assert_eq!(
        t.column("SELECT image_url FROM vision_api_cache").await,
        ["u2"]
    );
    t.sql(&format!(
        "INSERT INTO pdf_cache (pdf_hash, result_data, original_size_bytes, storage_size_bytes, compression_ratio)
         VALUES ('{:064x}', '\\x00', 1, 1, 1), ('{:064x}', '\\x00', 1, 1, 1)",
        1, 2
    ))
    .await;
    assert_eq!(
        purge(&t.db, pdf::KIND, Purge::All, None)
            .await
            .expect("all"),
        2
    );
    assert_eq!(purges_audited(&t).await, ["vision:1", "vision:1", "pdf:2"]);
    assert_eq!(
        t.scalar(&format!(
            "SELECT count(*)::text FROM audit_logs WHERE user_id = '{operator}'"
        ))
        .await,
        "2"
    );
}

#[tokio::test]
async fn a_purge_a_cache_cannot_do_is_refused_and_a_rolled_back_one_leaves_all() {
    let t = TestDb::new().await;
    vision_entries(&t).await;
    for (kind, what) in [
        (pdf::KIND, Purge::Expired),
        (ai_response::KIND, Purge::KeepRecent(10)),
        (vision::KIND, Purge::KeepRecent(-1)),
    ] {
        assert!(
            matches!(
                purge(&t.db, kind, what, None).await,
                Err(CacheError::InvalidField { .. })
            ),
            "{kind} {what:?}"
        );
    }
    assert!("bitmap".parse::<CacheKind>().is_err());
    assert_eq!("Vision".parse::<CacheKind>().expect("kind"), vision::KIND);

    let txn = t.db.begin().await.expect("begin");
    assert_eq!(
        purge(&txn, vision::KIND, Purge::All, None)
            .await
            .expect("all"),
        3
    );
    txn.rollback().await.expect("rollback");
    assert_eq!(
        t.scalar("SELECT count(*)::text FROM vision_api_cache")
            .await,
        "3"
    );
    assert!(purges_audited(&t).await.is_empty());
}

/// The registry is the one place a cache is described: every cache it lists has its
/// row in the statistics, its check in the doctor, its tasks in the schedule (and no
/// schedule row names a cache task it does not list), and purges by its description.
#[tokio::test]
async fn every_cache_of_the_registry_has_statistics_a_check_tasks_and_purges() {
    use service::cache::{CACHES, Expiry, cache_stats};
    use service::doctor::{Expectations, examine};
    use service::maintenance::Task;

    let t = TestDb::new().await;
    let stats = cache_stats(&t.db).await.expect("stats");
    assert_eq!(
        stats.iter().map(|s| s.kind).collect::<Vec<_>>(),
        CACHES.to_vec()
    );
    let exam = examine(&t.db, &Expectations::new(migration::names()))
        .await
        .expect("examine");
    let scheduled = service::maintenance::list(&t.db).await.expect("schedule");
    for kind in CACHES {
        let described = kind.describe();
        assert!(
            exam.check(described.check).is_some(),
            "no doctor check {}",
            described.check
        );
        for task in described.tasks {
            assert!(
                scheduled.iter().any(|row| row.task == task.name),
                "{} is not in maintenance_tasks",
                task.name
            );
            assert_eq!(task.name.parse::<Task>().expect("task"), Task::Cache(task));
        }
        let expired = purge(&t.db, kind, Purge::Expired, None).await;
        assert_eq!(
            expired.is_ok(),
            described.expiry != Expiry::Never,
            "{kind}: {expired:?}"
        );
        let recent = purge(&t.db, kind, Purge::KeepRecent(0), None).await;
        assert_eq!(
            recent.is_ok(),
            described.keep_recent.is_some(),
            "{kind}: {recent:?}"
        );
        assert_eq!(purge(&t.db, kind, Purge::All, None).await.expect("all"), 0);
    }
    let cache_tasks = Task::all()
        .into_iter()
        .filter(|t| matches!(t, Task::Cache(_)))
        .count();
    assert_eq!(
        cache_tasks,
        CACHES
            .iter()
            .map(|k| k.describe().tasks.len())
            .sum::<usize>()
    );
    assert_eq!(Task::all().len(), scheduled.len(), "one row per task");
}

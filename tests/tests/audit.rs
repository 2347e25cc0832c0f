//! The audit log: events recorded with every field and read back by actor, resource,
//! type, outcome and time, newest first a page at a time; bad events refused with
//! nothing written; recording joins the caller's transaction; `cleanup_old_logs`
//! deletes exactly the old rows and counts them.

use std::net::IpAddr;

use chrono::{Duration, Utc};
use sea_orm::TransactionTrait;
use serde_json::json;
use service::audit::{self, AuditError, AuditEvent, AuditQuery, Outcome};
use service::error::InvalidInput;
use service::page::Page;
use tests::TestDb;
use uuid::Uuid;

#[tokio::test]
async fn events_are_recorded_and_queried_by_each_field() {
    let t = TestDb::new().await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let ip: IpAddr = "192.0.2.7".parse().expect("ip");
    let first = audit::record(
        &t.db,
        &AuditEvent::new("cache.purged")
            .actor(alice)
            .resource("vision_api_cache", "all")
            .action("purge")
            .details(json!({"rows": 12}))
            .client(Some(ip), Some("strata/1.0".into())),
    )
    .await
    .expect("record");
    assert_eq!(
        (
            first.outcome.as_str(),
            first.ip_address.as_deref(),
            first.details.clone()
        ),
        ("success", Some("192.0.2.7"), json!({"rows": 12}))
    );
    audit::record(
        &t.db,
        &AuditEvent::new("annotation.reviewed")
            .actor(bob)
            .resource("annotations", 42)
            .action("approve"),
    )
    .await
    .expect("record");
    audit::record(
        &t.db,
        &AuditEvent::new("annotation.reviewed")
            .actor(alice)
            .resource("annotations", 43)
            .action("approve")
            .outcome(Outcome::Denied),
    )
    .await
    .expect("record");

    let page = Page::default();
    let ids = |rows: Vec<entity::audit_logs::Model>| -> Vec<Option<String>> {
        rows.into_iter().map(|r| r.resource_id).collect()
    };
    let by = |q: AuditQuery| {
        let db = &t.db;
        async move { ids(audit::query(db, &q, page).await.expect("query")) }
    };
    assert_eq!(
        by(AuditQuery {
            actor: Some(alice),
            ..Default::default()
        })
        .await,
        [Some("43".to_owned()), Some("all".to_owned())],
        "newest first"
    );
    assert_eq!(
        by(AuditQuery {
            event_type: Some("annotation.reviewed".into()),
            ..Default::default()
        })
        .await,
        [Some("43".to_owned()), Some("42".to_owned())]
    );
    assert_eq!(
        by(AuditQuery {
            resource: Some("annotations".into()),
            resource_id: Some("42".into()),
            ..Default::default()
        })
        .await,
        [Some("42".to_owned())]
    );
    assert_eq!(
        by(AuditQuery {
            outcome: Some(Outcome::Denied),
            ..Default::default()
        })
        .await,
        [Some("43".to_owned())]
    );
    assert_eq!(
        by(AuditQuery {
            since: Some(Utc::now() + Duration::minutes(1)),
            ..Default::default()
        })
        .await,
        Vec::<Option<String>>::new()
    );
    assert_eq!(
        by(AuditQuery {
            until: Some(Utc::now() + Duration::minutes(1)),
            ..Default::default()
        })
        .await
        .len(),
        3
    );
    let second_page = audit::query(
        &t.db,
        &AuditQuery::default(),
        Page::first(2).expect("page").next(),
    )
    .await
    .expect("query");
    assert_eq!(ids(second_page), [Some("all".to_owned())]);
}

#[tokio::test]
async fn bad_events_are_refused_and_write_nothing() {
    let t = TestDb::new().await;
    for bad in ["", "Cache Purged", "drop table;"] {
        assert!(matches!(
            audit::record(&t.db, &AuditEvent::new(bad)).await,
            Err(AuditError::Invalid(InvalidInput {
                field: "event_type",
                ..
            }))
        ));
    }
    assert!(matches!(
        audit::record(&t.db, &AuditEvent::new("x.y").details(json!([1, 2]))).await,
        Err(AuditError::Invalid(InvalidInput {
            field: "details",
            ..
        }))
    ));
    assert!(matches!(
        audit::cleanup_old_logs(&t.db, 0).await,
        Err(AuditError::Invalid(InvalidInput { field: "days", .. }))
    ));
    assert_eq!(t.scalar("SELECT count(*)::text FROM audit_logs").await, "0");
}

#[tokio::test]
async fn recording_joins_the_callers_transaction() {
    let t = TestDb::new().await;
    let txn = t.db.begin().await.expect("begin");
    audit::record(&txn, &AuditEvent::new("x.done"))
        .await
        .expect("record");
    txn.rollback().await.expect("rollback");
    assert_eq!(t.scalar("SELECT count(*)::text FROM audit_logs").await, "0");
}

#[tokio::test]
async fn cleanup_deletes_exactly_the_old_events() {
    let t = TestDb::new().await;
    for age in [1, 29, 31, 400] {
        let row = audit::record(
            &t.db,
            &AuditEvent::new("x.aged").details(json!({"age": age})),
        )
        .await
        .expect("record");
        t.sql(&format!(
            "UPDATE audit_logs SET created_at = now() - interval '{age} days' WHERE id = '{}'",
            row.id
        ))
        .await;
    }
    assert_eq!(
        audit::cleanup_old_logs(&t.db, 30).await.expect("cleanup"),
        2
    );
    assert_eq!(
        t.column("SELECT details->>'age' FROM audit_logs ORDER BY created_at DESC")
            .await,
        ["1", "29"]
    );
    assert_eq!(
        audit::cleanup_old_logs(&t.db, 30).await.expect("cleanup"),
        0
    );
}

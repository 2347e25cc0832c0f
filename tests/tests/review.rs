//! Review of AI annotations: the pending queue (lowest confidence first, filters,
//! pages); approve, reject and correct-then-approve by a moderator or admin, each with
//! its audit row; every refusal typed (a plain user, a person's annotation, a second
//! decision, a missing annotation, a bad correction) with nothing decided; two
//! reviewers at once — one wins; bulk approval above a threshold; the statistics views.

use std::sync::Arc;

use entity::sea_orm_active_enums::{AiJobStatus, AiProvider, ReviewStatus};
use service::accounts::{NewUser, Role, create_user};
use service::error::InvalidInput;
use service::page::Page;
use service::provider;
use service::review::{self, Correction, PendingFilter, ReviewError};
use service::vision::BoundingBox;
use tests::TestDb;
use uuid::Uuid;

const BOX: &str = r#"{"topLeft": {"x": 0.1, "y": 0.1}, "bottomRight": {"x": 0.4, "y": 0.5}, "width": 0.3, "height": 0.4}"#;

struct Fixture {
    t: TestDb,
    admin: Uuid,
    moderator: Uuid,
    plain: Uuid,
    image: Uuid,
}

async fn fixture() -> Fixture {
    let t = TestDb::new().await;
    let mut ids = Vec::new();
    for (email, role) in [
        ("admin@example.org", Role::Admin),
        ("mod@example.org", Role::Moderator),
        ("user@example.org", Role::User),
    ] {
        ids.push(
            create_user(&t.db, NewUser::new(email, "hash").with_role(role))
                .await
                .expect("user")
                .id,
        );
    }
    let image: Uuid = t
        .scalar("INSERT INTO images (url, species) VALUES ('https://img.example/1.jpg', 'Corvus corax') RETURNING id::text")
        .await
        .parse()
        .expect("uuid");
    Fixture {
        t,
        admin: ids[0],
        moderator: ids[1],
        plain: ids[2],
        image,
    }
}

impl Fixture {
    /// An AI annotation pending review.
    async fn ai(&self, label: &str, confidence: f64, provider: &str) -> Uuid {
        self.t
            .scalar(&format!(
                "INSERT INTO annotations (image_id, label, bounding_box, vision_generated,
                                          vision_confidence, vision_provider)
                 VALUES ('{}', '{label}', '{BOX}', true, {confidence}, '{provider}')
                 RETURNING id::text",
                self.image
            ))
            .await
            .parse()
            .expect("uuid")
    }

    async fn status(&self, id: Uuid) -> Vec<Vec<String>> {
        self.t
            .sql(&format!(
                "SELECT review_status::text, coalesce(reviewed_by::text, ''),
                        (reviewed_at IS NOT NULL)::text, label
                 FROM annotations WHERE id = '{id}'"
            ))
            .await
    }

    async fn audits(&self, outcome: &str) -> String {
        self.t
            .scalar(&format!(
                "SELECT count(*)::text FROM audit_logs
                 WHERE event_type = 'annotation.reviewed' AND outcome = '{outcome}'"
            ))
            .await
    }
}

#[tokio::test]
async fn the_pending_queue_puts_the_least_confident_first_and_filters() {
    let f = fixture().await;
    let low = f.ai("raven", 0.31, "openai").await;
    let mid = f.ai("crow", 0.62, "google").await;
    let high = f.ai("rook", 0.95, "openai").await;
    f.t.sql(&format!(
        "INSERT INTO annotations (image_id, label, bounding_box) VALUES ('{}', 'manual', '{BOX}')",
        f.image
    ))
    .await;

    let ids =
        |rows: Vec<review::PendingAnnotation>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let all = review::pending(&f.t.db, &PendingFilter::default(), Page::default())
        .await
        .expect("pending");
    assert_eq!(all[0].image_url, "https://img.example/1.jpg");
    assert_eq!(
        (provider::name(&all[0].provider), all[0].confidence),
        ("openai", 0.31)
    );
    assert_eq!(
        ids(all),
        [low, mid, high],
        "AI annotations only, least confident first"
    );
    let openai = PendingFilter {
        provider: Some(AiProvider::Openai),
        ..Default::default()
    };
    assert_eq!(
        ids(review::pending(&f.t.db, &openai, Page::default())
            .await
            .expect("pending")),
        [low, high]
    );
    let middle = PendingFilter {
        min_confidence: Some(0.5),
        max_confidence: Some(0.9),
        ..Default::default()
    };
    assert_eq!(
        ids(review::pending(&f.t.db, &middle, Page::default())
            .await
            .expect("pending")),
        [mid]
    );
    let second = Page::first(2).expect("page").next();
    assert_eq!(
        ids(review::pending(&f.t.db, &PendingFilter::default(), second)
            .await
            .expect("pending")),
        [high]
    );
    let bad = PendingFilter {
        min_confidence: Some(1.5),
        ..Default::default()
    };
    assert!(matches!(
        review::pending(&f.t.db, &bad, Page::default()).await,
        Err(ReviewError::Invalid(InvalidInput {
            field: "min_confidence",
            ..
        }))
    ));
}

#[tokio::test]
async fn each_decision_sets_the_review_and_writes_its_audit_row() {
    let f = fixture().await;
    let a = f.ai("raven", 0.4, "openai").await;
    let b = f.ai("crow", 0.5, "openai").await;
    let c = f.ai("jay", 0.6, "google").await;

    let approved = review::approve(&f.t.db, a, f.moderator)
        .await
        .expect("approve");
    assert_eq!(
        (approved.review_status, approved.reviewed_by),
        (ReviewStatus::Approved, Some(f.moderator))
    );
    assert_eq!(
        f.status(a).await,
        [["approved", &f.moderator.to_string(), "true", "raven"]]
    );
    review::reject(&f.t.db, b, f.admin).await.expect("reject");
    assert_eq!(
        f.status(b).await,
        [["rejected", &f.admin.to_string(), "true", "crow"]]
    );

    let fixed = BoundingBox::new(0.2, 0.2, 0.6, 0.7).expect("box");
    let corrected = review::correct_and_approve(
        &f.t.db,
        c,
        f.moderator,
        Correction {
            label: Some("Eurasian jay".into()),
            bounding_box: Some(fixed),
        },
    )
    .await
    .expect("correct");
    assert_eq!(corrected.label, "Eurasian jay");
    assert_eq!(BoundingBox::from_json(&corrected.bounding_box), Ok(fixed));
    assert_eq!(corrected.review_status, ReviewStatus::Approved);
    assert_eq!(f.audits("success").await, "3");
    assert_eq!(
        f.t.scalar(&format!(
            "SELECT details->>'label' FROM audit_logs WHERE action = 'correct' AND resource_id = '{c}'"
        ))
        .await,
        "Eurasian jay"
    );

    let stats = review::reviewer_stats(&f.t.db).await.expect("stats");
    let lines: Vec<(String, i64, i64, i64)> = stats
        .into_iter()
        .map(|s| {
            (
                s.reviewer_email,
                s.total_reviews,
                s.approved_count,
                s.rejected_count,
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            ("mod@example.org".to_owned(), 2, 2, 0),
            ("admin@example.org".to_owned(), 1, 0, 1)
        ]
    );
}

#[tokio::test]
async fn every_refusal_is_typed_and_decides_nothing() {
    let f = fixture().await;
    let a = f.ai("raven", 0.4, "openai").await;
    let manual: Uuid =
        f.t.scalar(&format!(
            "INSERT INTO annotations (image_id, label, bounding_box)
             VALUES ('{}', 'manual', '{BOX}') RETURNING id::text",
            f.image
        ))
        .await
        .parse()
        .expect("uuid");

    assert!(matches!(
        review::approve(&f.t.db, a, f.plain).await,
        Err(ReviewError::NotPermitted(u)) if u == f.plain
    ));
    assert_eq!(f.audits("denied").await, "1", "the refusal is audited");
    assert!(matches!(
        review::approve(&f.t.db, manual, f.moderator).await,
        Err(ReviewError::NotAiGenerated(id)) if id == manual
    ));
    let missing = Uuid::new_v4();
    assert!(matches!(
        review::reject(&f.t.db, missing, f.moderator).await,
        Err(ReviewError::NotFound(id)) if id == missing
    ));
    assert!(matches!(
        review::correct_and_approve(&f.t.db, a, f.moderator, Correction::default()).await,
        Err(ReviewError::Invalid(InvalidInput {
            field: "correction",
            ..
        }))
    ));
    assert!(matches!(
        review::correct_and_approve(
            &f.t.db,
            a,
            f.moderator,
            Correction {
                label: Some("  ".into()),
                bounding_box: None
            }
        )
        .await,
        Err(ReviewError::Invalid(InvalidInput { field: "label", .. }))
    ));
    assert_eq!(f.status(a).await, [["pending", "", "false", "raven"]]);
    assert_eq!(f.audits("success").await, "0");

    review::approve(&f.t.db, a, f.moderator)
        .await
        .expect("approve");
    assert!(matches!(
        review::reject(&f.t.db, a, f.admin).await,
        Err(ReviewError::AlreadyReviewed { ref status, reviewed_by, .. })
            if status == "approved" && reviewed_by == Some(f.moderator)
    ));
    assert_eq!(
        f.status(a).await,
        [["approved", &f.moderator.to_string(), "true", "raven"]]
    );
    assert_eq!(f.audits("success").await, "1");
}

#[tokio::test]
async fn of_two_reviewers_at_once_one_wins_and_the_other_gets_a_conflict() {
    let f = Arc::new(fixture().await);
    for round in 0..5 {
        let a = f.ai(&format!("bird {round}"), 0.5, "openai").await;
        let approve = {
            let f = f.clone();
            tokio::spawn(async move { review::approve(&f.t.db, a, f.moderator).await })
        };
        let reject = {
            let f = f.clone();
            tokio::spawn(async move { review::reject(&f.t.db, a, f.admin).await })
        };
        let results = [approve.await.expect("join"), reject.await.expect("join")];
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(ReviewError::AlreadyReviewed { .. }))),
            "{results:?}"
        );
        let stored = &f.status(a).await[0];
        assert_eq!(
            stored[1],
            winners[0].reviewed_by.expect("reviewer").to_string()
        );
    }
    assert_eq!(f.audits("success").await, "5");
}

#[tokio::test]
async fn bulk_approval_takes_what_is_confident_enough() {
    let f = fixture().await;
    let low = f.ai("raven", 0.5, "openai").await;
    let high = f.ai("crow", 0.92, "openai").await;
    let high_google = f.ai("rook", 0.97, "google").await;
    assert!(matches!(
        review::bulk_approve(&f.t.db, f.plain, 0.9, None).await,
        Err(ReviewError::NotPermitted(_))
    ));
    assert!(matches!(
        review::bulk_approve(&f.t.db, f.admin, -0.1, None).await,
        Err(ReviewError::Invalid(_))
    ));
    assert_eq!(
        review::bulk_approve(&f.t.db, f.admin, 0.9, Some(AiProvider::Google))
            .await
            .expect("bulk"),
        1
    );
    assert_eq!(f.status(high_google).await[0][0], "approved");
    assert_eq!(
        review::bulk_approve(&f.t.db, f.admin, 0.9, None)
            .await
            .expect("bulk"),
        1
    );
    assert_eq!(f.status(high).await[0][0], "approved");
    assert_eq!(f.status(low).await[0][0], "pending");
    assert_eq!(
        f.t.column(
            "SELECT details->>'approved' FROM audit_logs
             WHERE action = 'bulk_approve' AND outcome = 'success' ORDER BY created_at"
        )
        .await,
        ["1", "1"]
    );
}

#[tokio::test]
async fn ai_job_stats_are_read_by_provider_and_status() {
    let f = fixture().await;
    f.t.sql(&format!(
        "INSERT INTO ai_annotation_jobs (image_id, provider, status, annotations_created)
         VALUES ('{0}', 'openai', 'completed', 3), ('{0}', 'openai', 'completed', 2),
                ('{0}', 'google', 'failed', 0)",
        f.image
    ))
    .await;
    let stats = review::ai_job_stats(&f.t.db).await.expect("stats");
    // In JSON, the database's names (not the generated enums' Rust names).
    assert_eq!(
        serde_json::to_value(&stats[0]).expect("json")["provider"],
        "google"
    );
    assert_eq!(
        serde_json::to_value(&stats[0]).expect("json")["status"],
        "failed"
    );
    let lines: Vec<(AiProvider, AiJobStatus, i64, Option<i64>)> = stats
        .into_iter()
        .map(|s| (s.provider, s.status, s.job_count, s.annotations_created))
        .collect();
    assert_eq!(
        lines,
        [
            (AiProvider::Google, AiJobStatus::Failed, 1, Some(0)),
            (AiProvider::Openai, AiJobStatus::Completed, 2, Some(5))
        ]
    );
}

#[tokio::test]
async fn a_decision_holds_the_reviewers_role_until_it_commits() {
    use sea_orm::TransactionTrait;
    use service::accounts::change_user_role;
    let f = Arc::new(fixture().await);
    let a = f.ai("raven", 0.4, "openai").await;
    let b = f.ai("crow", 0.5, "openai").await;

    // A decision inside the caller's transaction, still open.
    let txn = f.t.db.begin().await.expect("begin");
    review::approve(&txn, a, f.moderator)
        .await
        .expect("approve");
    // Demoting the reviewer meanwhile waits for that transaction.
    let demotion = {
        let f = f.clone();
        tokio::spawn(
            async move { change_user_role(&f.t.db, f.moderator, Role::User, f.admin).await },
        )
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !demotion.is_finished(),
        "the role change waits for the decision"
    );
    txn.commit().await.expect("commit");
    demotion.await.expect("join").expect("demote");

    // Demoted, the same user may no longer review.
    assert!(matches!(
        review::approve(&f.t.db, b, f.moderator).await,
        Err(ReviewError::NotPermitted(_))
    ));
    assert_eq!(f.status(a).await[0][0], "approved");
}

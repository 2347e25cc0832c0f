//! Accounts and review from an application: a moderator, an image with an AI
//! annotation waiting for review, the moderator's permission, and a decision.

use std::io::Write;

use entity::sea_orm_active_enums::AiProvider;
use entity::{annotations, images};
use sea_orm::prelude::Decimal;
use sea_orm::{ActiveModelTrait, DatabaseConnection, Set};
use service::accounts::{self, NewUser, Permission, Role};
use service::error::BoxError;
use service::page::Page;
use service::review::{self, PendingFilter};
use service::vision::BoundingBox;
use uuid::Uuid;

/// Creates a moderator and an AI annotation, lists what waits for review and
/// approves it.
pub async fn review_tour(db: &DatabaseConnection, out: &mut impl Write) -> Result<(), BoxError> {
    let moderator = accounts::create_user(
        db,
        NewUser::new("mod@example.org", "!").with_role(Role::Moderator),
    )
    .await?;
    let may_review =
        accounts::has_permission(db, moderator.id, Permission::AnnotationsReview).await?;
    writeln!(out, "{} may review: {may_review}", moderator.email)?;

    let image = images::ActiveModel {
        id: Set(Uuid::new_v4()),
        url: Set("https://example.org/birds/raven.jpg".to_owned()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    // What the vision pipeline writes for each box a provider found.
    annotations::ActiveModel {
        id: Set(Uuid::new_v4()),
        image_id: Set(image.id),
        label: Set("beak".to_owned()),
        bounding_box: Set(BoundingBox::new(0.1, 0.1, 0.4, 0.5)?.to_json()),
        vision_generated: Set(true),
        vision_confidence: Set(Some(Decimal::new(62, 2))),
        vision_provider: Set(Some(AiProvider::Openai)),
        ..Default::default()
    }
    .insert(db)
    .await?;

    let pending = review::pending(db, &PendingFilter::default(), Page::default()).await?;
    let first = &pending[0];
    writeln!(
        out,
        "pending: {} ({:.2}, {})",
        first.label,
        first.confidence,
        service::provider::name(&first.provider)
    )?;
    let approved = review::approve(db, first.id, moderator.id).await?;
    writeln!(out, "approved: {}", approved.label)?;
    Ok(())
}

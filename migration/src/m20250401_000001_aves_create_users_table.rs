//! Seed 004, `001_create_users_table.sql` with the base schema it relies on
//! (`001_create_tables.sql`, SPEC.md decision 2).
//!
//! - `users (id, email, password_hash, display_name, created_at, updated_at)`;
//!   `idx_users_email` is the UNIQUE constraint on `email` (lookup and uniqueness in
//!   one). `update_updated_at_column()` itself comes from the foundation migration.
//! - `images (id, url, species, width, height, uploaded_by → users ON DELETE SET NULL,
//!   created_at, updated_at)`, indexed on `uploaded_by`.
//! - `annotations (id, image_id → images ON DELETE CASCADE, user_id → users ON DELETE
//!   SET NULL, label, annotation_type, bounding_box jsonb, notes, created_at,
//!   updated_at)`, indexed on `image_id` and `user_id`. Migration 003 adds the AI and
//!   review columns and the bounding-box checks.
//!
//! Each table keeps `updated_at` current with `update_updated_at_column()`.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::helpers::{
    create_indexes, drop_tables, exec, foreign_key, id, index, now_column, updated_at_trigger,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("users")
                    .col(id())
                    .col(text("email"))
                    .col(text("password_hash"))
                    .col(text_null("display_name"))
                    .col(now_column("created_at"))
                    .col(now_column("updated_at"))
                    .index(
                        Index::create()
                            .unique()
                            .name("idx_users_email")
                            .col("email"),
                    )
                    .check((
                        "check_users_email",
                        Expr::cust("email ~ '^[^@[:space:]]+@[^@[:space:]]+$'"),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("images")
                    .col(id())
                    .col(text("url"))
                    .col(text_null("species"))
                    .col(integer_null("width"))
                    .col(integer_null("height"))
                    .col(uuid_null("uploaded_by"))
                    .col(now_column("created_at"))
                    .col(now_column("updated_at"))
                    .foreign_key(&mut foreign_key(
                        "images_uploaded_by_fkey",
                        "images",
                        "uploaded_by",
                        "users",
                        ForeignKeyAction::SetNull,
                    ))
                    .check((
                        "check_images_dimensions",
                        Expr::cust(
                            "(width IS NULL OR width > 0) AND (height IS NULL OR height > 0)",
                        ),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("annotations")
                    .col(id())
                    .col(uuid("image_id"))
                    .col(uuid_null("user_id"))
                    .col(text("label"))
                    .col(text("annotation_type").default("bounding_box"))
                    .col(json_binary("bounding_box"))
                    .col(text_null("notes"))
                    .col(now_column("created_at"))
                    .col(now_column("updated_at"))
                    .foreign_key(&mut foreign_key(
                        "annotations_image_id_fkey",
                        "annotations",
                        "image_id",
                        "images",
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut foreign_key(
                        "annotations_user_id_fkey",
                        "annotations",
                        "user_id",
                        "users",
                        ForeignKeyAction::SetNull,
                    ))
                    .check((
                        "check_annotations_label",
                        Expr::cust("char_length(label) > 0"),
                    ))
                    .to_owned(),
            )
            .await?;
        create_indexes(
            manager,
            vec![
                index("idx_images_uploaded_by", "images")
                    .col("uploaded_by")
                    .take(),
                index("idx_annotations_image_id", "annotations")
                    .col("image_id")
                    .take(),
                index("idx_annotations_user_id", "annotations")
                    .col("user_id")
                    .take(),
            ],
        )
        .await?;
        exec(
            manager,
            &[
                updated_at_trigger("users"),
                updated_at_trigger("images"),
                updated_at_trigger("annotations"),
            ]
            .join("\n"),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(manager, &["annotations", "images", "users"]).await
    }
}

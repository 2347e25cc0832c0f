//! Seed 001's prerequisites (SPEC.md decision 2): `courses` and `lectures`, which the
//! AI response cache assumes "from previous migrations".
//!
//! - `courses (id, title, description, created_at, updated_at)`;
//! - `lectures (id, course_id → courses ON DELETE CASCADE, title, content, position,
//!   created_at, updated_at)`, indexed on `(course_id, position)`.
//!
//! Both keep `updated_at` current with `update_updated_at_column()`.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::helpers::{drop_tables, exec, foreign_key, id, index, now_column, updated_at_trigger};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("courses")
                    .col(id())
                    .col(text("title"))
                    .col(text_null("description"))
                    .col(now_column("created_at"))
                    .col(now_column("updated_at"))
                    .check(("check_courses_title", Expr::cust("char_length(title) > 0")))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("lectures")
                    .col(id())
                    .col(uuid("course_id"))
                    .col(text("title"))
                    .col(text("content").default(""))
                    .col(integer("position").default(0))
                    .col(now_column("created_at"))
                    .col(now_column("updated_at"))
                    .foreign_key(&mut foreign_key(
                        "lectures_course_id_fkey",
                        "lectures",
                        "course_id",
                        "courses",
                        ForeignKeyAction::Cascade,
                    ))
                    .check(("check_lectures_title", Expr::cust("char_length(title) > 0")))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("idx_lectures_course_position", "lectures")
                    .col("course_id")
                    .col("position")
                    .take(),
            )
            .await?;
        exec(
            manager,
            &format!(
                "{}\n{}",
                updated_at_trigger("courses"),
                updated_at_trigger("lectures")
            ),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(manager, &["lectures", "courses"]).await
    }
}

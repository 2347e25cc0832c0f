//! Seed 004, `007_exercise_cache.sql` (named, not shown, by the seed): generated
//! exercises, cached per learner and kind.
//!
//! `exercise_cache (id, user_id → users ON DELETE CASCADE, exercise_type,
//! difficulty_level 1..5, topic ('' for none), exercise_data, created_at, expires_at,
//! last_accessed_at, access_count)`; one entry per (`user_id`, `exercise_type`,
//! `difficulty_level`, `topic`), the unique constraint
//! `exercise_cache_key`. Migration 009
//! adds the lookup index with `expires_at` and the expiry index.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::helpers::{drop_tables, exec, foreign_key, id, now_column};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("exercise_cache")
                    .col(id())
                    .col(uuid("user_id"))
                    .col(text("exercise_type"))
                    .col(integer("difficulty_level"))
                    .col(text("topic").default(""))
                    .col(json_binary("exercise_data"))
                    .col(now_column("created_at"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(now_column("last_accessed_at"))
                    .col(big_integer("access_count").default(0))
                    .foreign_key(&mut foreign_key(
                        "exercise_cache_user_id_fkey",
                        "exercise_cache",
                        "user_id",
                        "users",
                        ForeignKeyAction::Cascade,
                    ))
                    .index(
                        Index::create()
                            .unique()
                            .name("exercise_cache_key")
                            .col("user_id")
                            .col("exercise_type")
                            .col("difficulty_level")
                            .col("topic"),
                    )
                    .check((
                        "check_exercise_difficulty",
                        Expr::cust("difficulty_level BETWEEN 1 AND 5"),
                    ))
                    .check((
                        "check_exercise_type",
                        Expr::cust("char_length(exercise_type) BETWEEN 1 AND 100"),
                    ))
                    .check((
                        "check_exercise_expiry",
                        Expr::cust("expires_at >= created_at"),
                    ))
                    .to_owned(),
            )
            .await?;
        // Hits update access_count and last_accessed_at, neither indexed: free space
        // on each page keeps those updates on the page (HOT).
        exec(manager, "ALTER TABLE exercise_cache SET (fillfactor = 90);").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(manager, &["exercise_cache"]).await
    }
}

//! Strata's schema as SeaORM migrations, one per seed migration, in dependency order,
//! each with an `up` and a `down` (see `SPEC.md`).
//!
//! [`up`] applies them under the migration lock ([`MigrationLock`]), so concurrent runs
//! are safe.

pub use lock::{MIGRATION_LOCK_KEY, MigrationLock};
pub use sea_orm_migration::MigrationStatus;
pub use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectOptions, Database};

#[cfg(feature = "cli")]
pub mod command;
mod helpers;
mod lock;
mod m20250101_000001_foundation;
mod m20250124_000002_layer0_tables;
mod m20250201_000001_create_courses_and_lectures;
mod m20250201_000002_add_ai_response_cache;
mod m20250201_000003_add_lecture_content_hashes;
mod m20250201_000004_add_ai_cache_stats;
mod m20250301_000001_sheratan_store;
mod m20250401_000001_aves_create_users_table;
mod m20250401_000002_aves_add_user_roles;
mod m20250401_000003_aves_create_ai_annotations;
mod m20250401_000004_aves_create_vision_cache;
mod m20250401_000005_aves_batch_jobs;
mod m20250401_000006_aves_exercise_cache;
mod m20250401_000007_aves_optimize_cache_indexes;
mod m20250501_000001_queue_hot_path;
mod m20250501_000002_cache_hot_path;
mod m20250501_000003_cache_key_checks;
mod m20250601_000001_queue_claim_tokens;
mod m20250601_000002_seed_fidelity;
mod m20250601_000003_lecture_hash_sync;
mod m20250701_000001_vector_store;
mod m20250801_000001_audit_outcome;
mod m20250801_000002_maintenance_schedule;
mod m20250801_000003_batch_item_progress;
mod m20261201_000001_one_lease_rescuer;
mod m20261207_000001_deny_client_roles;
mod m20261208_000001_access_tokens;
mod m20261208_000002_pending_run_at;
mod m20261208_000003_completed_at;

pub use m20250301_000001_sheratan_store::{
    DEFAULT_VECTOR_DIMENSION, MAX_VECTOR_DIMENSION, vector_dimension,
};
pub use m20261207_000001_deny_client_roles::{CLIENT_ROLES, SEED_GRANTS, SeedGrant};

/// Every migration of the project, in the order they apply.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250101_000001_foundation::Migration),
            Box::new(m20250124_000002_layer0_tables::Migration),
            Box::new(m20250201_000001_create_courses_and_lectures::Migration),
            Box::new(m20250201_000002_add_ai_response_cache::Migration),
            Box::new(m20250201_000003_add_lecture_content_hashes::Migration),
            Box::new(m20250201_000004_add_ai_cache_stats::Migration),
            Box::new(m20250301_000001_sheratan_store::Migration),
            Box::new(m20250401_000001_aves_create_users_table::Migration),
            Box::new(m20250401_000002_aves_add_user_roles::Migration),
            Box::new(m20250401_000003_aves_create_ai_annotations::Migration),
            Box::new(m20250401_000004_aves_create_vision_cache::Migration),
            Box::new(m20250401_000005_aves_batch_jobs::Migration),
            Box::new(m20250401_000006_aves_exercise_cache::Migration),
            Box::new(m20250401_000007_aves_optimize_cache_indexes::Migration),
            Box::new(m20250501_000001_queue_hot_path::Migration),
            Box::new(m20250501_000002_cache_hot_path::Migration),
            Box::new(m20250501_000003_cache_key_checks::Migration),
            Box::new(m20250601_000001_queue_claim_tokens::Migration),
            Box::new(m20250601_000002_seed_fidelity::Migration),
            Box::new(m20250601_000003_lecture_hash_sync::Migration),
            Box::new(m20250701_000001_vector_store::Migration),
            Box::new(m20250801_000001_audit_outcome::Migration),
            Box::new(m20250801_000002_maintenance_schedule::Migration),
            Box::new(m20250801_000003_batch_item_progress::Migration),
            Box::new(m20261201_000001_one_lease_rescuer::Migration),
            Box::new(m20261207_000001_deny_client_roles::Migration),
            Box::new(m20261208_000001_access_tokens::Migration),
            Box::new(m20261208_000002_pending_run_at::Migration),
            Box::new(m20261208_000003_completed_at::Migration),
        ]
    }
}

/// The names of the migrations compiled in, in order (for `service::db::inventory`).
pub fn names() -> Vec<String> {
    Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect()
}

/// Checks the settings the migrations read from the environment (`VECTOR_DIMENSION`)
/// before anything runs, so a bad value stops `up` before any DDL. No I/O.
pub fn check_environment() -> Result<(), DbErr> {
    vector_dimension().map(|_| ())
}

/// Applies every pending migration to the database at `url` under the migration lock,
/// so concurrent callers (processes or tasks) apply each migration once; the others
/// wait and then find nothing pending. Each migration runs in its own transaction.
pub async fn up(url: &str) -> Result<(), DbErr> {
    check_environment()?;
    let lock = MigrationLock::acquire(url).await?;
    let mut opt = ConnectOptions::new(url.to_owned());
    opt.max_connections(2).sqlx_logging(false);
    let db = Database::connect(opt).await?;
    let result = Migrator::up(&db, None).await;
    db.close().await?;
    lock.release().await?;
    result
}

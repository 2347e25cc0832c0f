//! Strata's schema as SeaORM migrations, one per seed migration, in dependency order,
//! each with an `up` and a `down` (see `SPEC.md`).
//!
//! Also here, because the `migration` binary, the `strata` CLI and the tests all need
//! them: the embedded default database ([`embedded`]) and the advisory lock that makes
//! concurrent `up` runs safe ([`MigrationLock`], [`up`]).

pub use sea_orm_migration::MigrationStatus;
pub use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectOptions, Database, DatabaseConnection};

pub mod command;
pub mod embedded;
mod m20250101_000001_foundation;

/// Every migration of the project, in the order they apply.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20250101_000001_foundation::Migration)]
    }
}

/// The PostgreSQL advisory-lock key that serialises migration runs on one database
/// (sea-orm-migration has no lock of its own). ASCII "STRATAMG".
pub const MIGRATION_LOCK_KEY: i64 = 0x5354_5241_5441_4d47;

/// The session-level advisory lock [`MIGRATION_LOCK_KEY`], held on a dedicated
/// connection for as long as this value lives. If the process dies, PostgreSQL ends
/// the session and the lock goes with it.
pub struct MigrationLock {
    conn: DatabaseConnection,
}

impl MigrationLock {
    /// Opens one connection to `url` and waits for the lock on it (one round trip once
    /// the lock is free). Other databases on the same server are not affected.
    pub async fn acquire(url: &str) -> Result<Self, DbErr> {
        let mut opt = ConnectOptions::new(url.to_owned());
        opt.max_connections(1)
            .min_connections(1)
            .sqlx_logging(false);
        let conn = Database::connect(opt).await?;
        conn.execute_unprepared(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
            .await?;
        Ok(Self { conn })
    }

    /// Releases the lock and closes its connection (one round trip).
    pub async fn release(self) -> Result<(), DbErr> {
        self.conn
            .execute_unprepared(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
            .await?;
        self.conn.close().await
    }
}

/// Applies every pending migration to the database at `url` under the migration lock,
/// so concurrent callers (processes or tasks) apply each migration once; the others
/// wait and then find nothing pending. Each migration runs in its own transaction.
pub async fn up(url: &str) -> Result<(), DbErr> {
    let lock = MigrationLock::acquire(url).await?;
    let mut opt = ConnectOptions::new(url.to_owned());
    opt.max_connections(2).sqlx_logging(false);
    let db = Database::connect(opt).await?;
    let result = Migrator::up(&db, None).await;
    db.close().await?;
    lock.release().await?;
    result
}

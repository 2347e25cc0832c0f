//! The advisory lock that makes concurrent migration runs safe (sea-orm-migration has
//! none of its own).

use sea_orm_migration::sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr,
};

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

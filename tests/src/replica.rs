//! A primary and a real streaming replica of it, for the topology tests: a cluster of
//! the test's own (`devdb`'s embedded cluster in a directory of its own, migrated),
//! and a standby made from it by `pg_basebackup -R` on a port of its own. Both are
//! stopped (immediately) and removed when the pair is dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use devdb::embedded::{Cluster, pg_command, running_as_root, start_or_reuse};
use sea_orm::ConnectionTrait;

/// A primary and its streaming replica.
pub struct ReplicaPair {
    /// The primary cluster.
    pub primary: Cluster,
    /// The replica's port (127.0.0.1).
    pub replica_port: u16,
    base: PathBuf,
}

/// Runs `command`, panicking with its output when it fails.
fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl ReplicaPair {
    /// Starts a primary (`initdb`, migrations applied to its `strata` database) and a
    /// replica streaming from it; returns when the replica accepts connections.
    pub async fn start() -> Self {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = std::env::temp_dir().join(format!("strata-pair-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).expect("pair directory");
        if running_as_root() {
            run(Command::new("chown").arg("postgres:postgres").arg(&base));
        }
        let primary_dir = base.join("primary");
        let primary = tokio::task::spawn_blocking(move || start_or_reuse(&primary_dir))
            .await
            .expect("join")
            .expect("start the primary");
        let url = primary.url();
        let db = crate::pool(&url, 2).await;
        db.execute_unprepared(crate::SUPABASE_PREPARATION)
            .await
            .expect("prepare the primary");
        let _ = db.close().await;
        migration::up(&url).await.expect("migrate the primary");

        let replica_port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let pair = Self {
            primary,
            replica_port,
            base,
        };
        run(pg_command(&pair.primary.bindir, "pg_basebackup")
            .arg("-D")
            .arg(pair.replica_dir())
            .args(["-R", "-X", "stream", "-c", "fast", "-h", "127.0.0.1"])
            .arg("-p")
            .arg(pair.primary.port.to_string())
            .args(["-U", "postgres"]));
        pair.start_replica();
        pair
    }

    fn replica_dir(&self) -> PathBuf {
        self.base.join("replica")
    }

    /// Starts the replica (after [`ReplicaPair::stop_replica`]), waiting until it
    /// accepts connections.
    pub fn start_replica(&self) {
        let data = self.replica_dir();
        run(pg_command(&self.primary.bindir, "pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(self.base.join("replica.log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {}",
                self.replica_port,
                self.base.display()
            ))
            .args(["-w", "start"]));
    }

    /// Stops the replica (`pg_ctl stop -m immediate`).
    pub fn stop_replica(&self) {
        run(pg_command(&self.primary.bindir, "pg_ctl")
            .arg("-D")
            .arg(self.replica_dir())
            .args(["-m", "immediate", "-w", "stop"]));
    }

    /// Stops the primary; `mode` is `fast` (a clean shutdown: every committed change
    /// reaches the replica first) or `immediate` (a crash).
    pub fn stop_primary(&self, mode: &str) {
        run(pg_command(&self.primary.bindir, "pg_ctl")
            .arg("-D")
            .arg(self.primary.dir.join("data"))
            .args(["-m", mode, "-w", "stop"]));
    }

    /// Restarts the primary (`pg_ctl restart -m fast`).
    pub fn restart_primary(&self) {
        self.stop_primary("fast");
        let primary_dir = self.primary.dir.clone();
        start_or_reuse(&primary_dir).expect("restart the primary");
    }

    /// Promotes the replica to a primary (`pg_ctl promote`, waiting until it is).
    pub fn promote_replica(&self) {
        run(pg_command(&self.primary.bindir, "pg_ctl")
            .arg("-D")
            .arg(self.replica_dir())
            .args(["-w", "promote"]));
    }

    /// The URL of the primary's `strata` database.
    pub fn primary_url(&self) -> String {
        self.primary.url()
    }

    /// The URL of the replica's `strata` database.
    pub fn replica_url(&self) -> String {
        self.primary.url().replace(
            &format!(":{}/", self.primary.port),
            &format!(":{}/", self.replica_port),
        )
    }

    /// Waits until the replica has replayed everything the primary has written (at
    /// most 30 s).
    pub async fn wait_for_replay(&self) {
        let primary = crate::pool(&self.primary_url(), 1).await;
        let target = crate::column(&primary, "SELECT pg_current_wal_insert_lsn()::text")
            .await
            .remove(0);
        let _ = primary.close().await;
        let replica = crate::pool(&self.replica_url(), 1).await;
        let started = Instant::now();
        loop {
            let caught_up = crate::column(
                &replica,
                &format!("SELECT (pg_last_wal_replay_lsn() >= '{target}'::pg_lsn)::text"),
            )
            .await;
            if caught_up.first().map(String::as_str) == Some("true") {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the replica did not catch up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = replica.close().await;
    }
}

impl Drop for ReplicaPair {
    fn drop(&mut self) {
        for data in [self.replica_dir(), self.primary.dir.join("data")] {
            let _ = pg_command(&self.primary.bindir, "pg_ctl")
                .arg("-D")
                .arg(&data)
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

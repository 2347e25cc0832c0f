//! A real PgBouncer (Debian's `pgbouncer`, installed by `scripts/setup-postgres.sh`)
//! in transaction mode in front of the test server: one per test that asks, on a
//! port of its own, stopped when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `pgbouncer` binary: `PGBOUNCER` when set, else Debian's path, else `PATH`'s.
fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("PGBOUNCER") {
        return PathBuf::from(path);
    }
    let debian = PathBuf::from("/usr/sbin/pgbouncer");
    if debian.exists() {
        debian
    } else {
        PathBuf::from("pgbouncer")
    }
}

/// A running PgBouncer with `pool_mode = transaction`.
pub struct PgBouncer {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

impl PgBouncer {
    /// Starts one in front of the server of [`crate::server_url`], with server pools
    /// of `pool_size` per database and user (the server connections that clients
    /// share), and waits until it accepts connections. Run as root, it drops to the
    /// `postgres` user (PgBouncer refuses to run as root).
    pub fn start(pool_size: u32) -> Self {
        let server = crate::server_url();
        let rest = server.split_once("://").map_or(server.as_str(), |(_, r)| r);
        let authority = rest.split('/').next().unwrap_or(rest);
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, server_port) = host_port.rsplit_once(':').unwrap_or((host_port, "5432"));
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port for pgbouncer")
            .port();
        let dir =
            std::env::temp_dir().join(format!("strata-pgbouncer-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("pgbouncer's directory");
        let users = dir.join("users.txt");
        std::fs::write(&users, "\"postgres\" \"\"\n").expect("pgbouncer's auth file");
        let root = devdb::embedded::running_as_root();
        let config = format!(
            "[databases]\n\
             * = host={host} port={server_port}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {users}\n\
             pool_mode = transaction\n\
             default_pool_size = {pool_size}\n\
             max_client_conn = 1000\n\
             server_reset_query =\n\
             ignore_startup_parameters = extra_float_digits\n\
             {user}",
            users = users.display(),
            user = if root { "user = postgres\n" } else { "" },
        );
        let ini = dir.join("pgbouncer.ini");
        std::fs::write(&ini, config).expect("pgbouncer.ini");
        let log = std::fs::File::create(dir.join("pgbouncer.log")).expect("pgbouncer.log");
        let child = Command::new(binary())
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start {}: {e} (scripts/setup-postgres.sh installs it)",
                    binary().display()
                )
            });
        let mut bouncer = Self { port, dir, child };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = bouncer.child.try_wait() {
                panic!("pgbouncer exited with {status}: {}", bouncer.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "pgbouncer did not listen on {port}: {}",
                bouncer.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        bouncer
    }

    /// The URL of database `db` through this pooler (as the server's `postgres`
    /// user; no TLS between the client and the pooler).
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// What it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

//! The embedded cluster, database-per-test isolation, and the migration CLI
//! under concurrency.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sea_orm::ConnectionTrait;
use tests::TestDb;

const EMBEDDED_BIN: &str = env!("CARGO_BIN_EXE_strata-test-embedded");
const MIGRATE_BIN: &str = env!("CARGO_BIN_EXE_strata-test-migrate");

/// Stops the cluster in `dir` and removes the directory, even when the test fails.
struct ClusterDir(PathBuf);

impl Drop for ClusterDir {
    fn drop(&mut self) {
        let data = self.0.join("data");
        if data.join("postmaster.pid").exists() {
            // postmaster.opts starts with the server binary's path; pg_ctl sits beside it.
            let opts = std::fs::read_to_string(data.join("postmaster.opts")).unwrap_or_default();
            let postgres = opts
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_matches('"');
            let pg_ctl = Path::new(postgres).with_file_name("pg_ctl");
            let mut cmd = if is_root() {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(&pg_ctl);
                c
            } else {
                Command::new(&pg_ctl)
            };
            let _ = cmd
                .arg("-D")
                .arg(&data)
                .args(["stop", "-m", "immediate", "-w"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn start(dir: &Path) -> std::process::Child {
    start_with_tls(dir, false)
}

/// Runs the starter on `dir`, with `STRATA_PG_TLS=1` when `tls`.
fn start_with_tls(dir: &Path, tls: bool) -> std::process::Child {
    Command::new(EMBEDDED_BIN)
        .arg(dir)
        .env(devdb::embedded::TLS_ENV, if tls { "1" } else { "0" })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn strata-test-embedded")
}

fn parse(out: Output) -> (u16, String) {
    assert!(
        out.status.success(),
        "starter failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    let port = parts.next().and_then(|p| p.parse().ok()).expect("a port");
    (port, parts.next().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn embedded_cluster_starts_from_nothing_is_reused_and_concurrent_starters_share_one() {
    let dir = ClusterDir(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("embedded-{}", std::process::id())),
    );
    assert!(!dir.0.exists());

    // Three processes start it at once from nothing.
    let children: Vec<_> = (0..3).map(|_| start(&dir.0)).collect();
    let results: Vec<(u16, String)> = children
        .into_iter()
        .map(|c| parse(c.wait_with_output().expect("wait")))
        .collect();
    let port = results[0].0;
    assert!(results.iter().all(|(p, _)| *p == port), "{results:?}");
    let started = results.iter().filter(|(_, s)| s == "started").count();
    let reused = results.iter().filter(|(_, s)| s == "reused").count();
    assert_eq!((started, reused), (1, 2), "{results:?}");

    // One postmaster runs for the directory, and it serves database `strata`.
    let pid_file =
        std::fs::read_to_string(dir.0.join("data/postmaster.pid")).expect("postmaster.pid");
    let pid = pid_file.lines().next().expect("pid line").trim().to_owned();
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "postmaster {pid} runs"
    );
    let url = format!("postgres://postgres@127.0.0.1:{port}/strata");
    let db = tests::pool(&url, 1).await;
    assert_eq!(
        tests::column(&db, "SELECT current_database()::text").await,
        ["strata"]
    );
    let backends =
        tests::column(&db, "SELECT (pg_postmaster_start_time() IS NOT NULL)::text").await;
    assert_eq!(backends, ["true"]);
    db.close().await.expect("close");

    // A later run reuses it: same port, same postmaster.
    let (again, how) = parse(start(&dir.0).wait_with_output().expect("wait"));
    assert_eq!((again, how.as_str()), (port, "reused"));
    let pid_again = std::fs::read_to_string(dir.0.join("data/postmaster.pid")).expect("pid");
    assert_eq!(pid_again.lines().next().map(str::trim), Some(pid.as_str()));
}

/// TLS is off by default (the URL says `sslmode=disable`); `STRATA_PG_TLS=1` on a
/// running cluster makes its certificate, turns `ssl` on by a reload, and hands out
/// `sslmode=require` URLs whose connections are encrypted.
#[tokio::test]
async fn the_embedded_cluster_serves_tls_when_asked() {
    let dir = ClusterDir(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("embedded-tls-{}", std::process::id())),
    );
    let url_of = |out: Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_whitespace().nth(2).expect("a URL").to_owned()
    };
    let ssl_of = async |url: &str| {
        let db = tests::pool(url, 1).await;
        let ssl = tests::column(
            &db,
            "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        )
        .await;
        db.close().await.expect("close");
        ssl
    };

    let plain = url_of(
        start_with_tls(&dir.0, false)
            .wait_with_output()
            .expect("wait"),
    );
    assert!(plain.ends_with("/strata?sslmode=disable"), "{plain}");
    assert_eq!(ssl_of(&plain).await, ["false"]);
    assert!(!dir.0.join("data/server.key").exists());

    let tls = url_of(
        start_with_tls(&dir.0, true)
            .wait_with_output()
            .expect("wait"),
    );
    assert!(tls.ends_with("/strata?sslmode=require"), "{tls}");
    assert_eq!(ssl_of(&tls).await, ["true"]);
    use std::os::unix::fs::PermissionsExt;
    let key_mode = std::fs::metadata(dir.0.join("data/server.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o077, 0, "the key is private: {key_mode:o}");
    // Without the variable again: the server still accepts TLS, the URL does not ask.
    let again = url_of(
        start_with_tls(&dir.0, false)
            .wait_with_output()
            .expect("wait"),
    );
    assert_eq!(ssl_of(&again).await, ["false"]);
}

#[tokio::test]
async fn each_test_database_is_isolated() {
    let (a, b) = tokio::join!(TestDb::new(), TestDb::new());
    assert_ne!(a.name, b.name);
    let insert = |id: &str| {
        format!("INSERT INTO auth.users (id, email) VALUES ('{id}', 'same@example.com')")
    };
    let id_a = "00000000-0000-0000-0000-00000000000a";
    let id_b = "00000000-0000-0000-0000-00000000000b";
    // The same unique key written in both databases: no conflict, each sees only its own.
    let (sql_a, sql_b) = (insert(id_a), insert(id_b));
    let (ra, rb) = tokio::join!(
        a.db.execute_unprepared(&sql_a),
        b.db.execute_unprepared(&sql_b)
    );
    assert_eq!(ra.expect("insert a").rows_affected(), 1);
    assert_eq!(rb.expect("insert b").rows_affected(), 1);
    let q = "SELECT id::text FROM auth.users WHERE email = 'same@example.com'";
    assert_eq!(a.column(q).await, [id_a]);
    assert_eq!(b.column(q).await, [id_b]);
}

fn migrate(url: &str, args: &[&str]) -> Output {
    Command::new(MIGRATE_BIN)
        .arg("-u")
        .arg(url)
        .args(args)
        .output()
        .expect("run strata-test-migrate")
}

fn ok(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "migration command failed: {text}");
    text
}

#[tokio::test]
async fn concurrent_up_applies_once_then_status_down_and_up_round_trip() {
    let t = TestDb::empty().await;
    let names: Vec<String> = {
        use migration::MigratorTrait;
        migration::Migrator::migrations()
            .iter()
            .map(|m| m.name().to_owned())
            .collect()
    };

    // Two processes run `up` at once: both succeed, each migration is applied once.
    let url = t.url.clone();
    let a = std::thread::spawn({
        let url = url.clone();
        move || migrate(&url, &["up"])
    });
    let b = std::thread::spawn(move || migrate(&url, &["up"]));
    let (a, b) = (a.join().expect("a"), b.join().expect("b"));
    let outputs = [ok(&a), ok(&b)];
    assert_eq!(
        outputs
            .iter()
            .filter(|o| o.contains("No pending migrations"))
            .count(),
        1,
        "exactly one run found nothing to do: {outputs:?}"
    );
    let applied = t
        .column("SELECT version FROM seaql_migrations ORDER BY version")
        .await;
    assert_eq!(applied, names);
    let before = service::db::inventory(&t.db, &migration::names())
        .await
        .expect("inventory");
    assert!(before.pending.is_empty());
    assert!(
        before
            .functions
            .iter()
            .any(|f| f == "update_updated_at_column()")
    );
    let stamps = t
        .column("SELECT applied_at FROM seaql_migrations ORDER BY version")
        .await;

    // `up` again is a no-op.
    let again = ok(&migrate(&t.url, &["up"]));
    assert!(again.contains("No pending migrations"), "{again}");
    assert_eq!(
        t.column("SELECT applied_at FROM seaql_migrations ORDER BY version")
            .await,
        stamps
    );

    // `status` lists every migration as applied.
    let status = ok(&migrate(&t.url, &["status"]));
    for name in &names {
        assert!(
            status.contains(&format!("Migration '{name}'... Applied")),
            "{status}"
        );
    }

    // `down` all the way, then `up`: the same schema again.
    ok(&migrate(&t.url, &["down", "-n", &names.len().to_string()]));
    assert!(
        t.column("SELECT version FROM seaql_migrations")
            .await
            .is_empty()
    );
    let down = service::db::inventory(&t.db, &migration::names())
        .await
        .expect("inventory");
    assert!(down.functions.is_empty(), "{down:?}");
    assert_eq!(
        t.scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'auth'")
            .await,
        "0"
    );
    ok(&migrate(&t.url, &["up"]));
    let after = service::db::inventory(&t.db, &migration::names())
        .await
        .expect("inventory");
    assert_eq!(before, after);
}

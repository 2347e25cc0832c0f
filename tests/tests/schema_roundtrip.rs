//! The whole migration set: up → down to zero → up gives the same schema, down leaves
//! nothing of the project, and `VECTOR_DIMENSION` is honoured or refused up front.

use std::process::Command;

use migration::MigratorTrait;
use tests::TestDb;

const MIGRATE_BIN: &str = env!("CARGO_BIN_EXE_strata-test-migrate");

fn schema_dump(url: &str) -> String {
    let bindir = devdb::embedded::find_bindir().expect("PostgreSQL binaries");
    let out = Command::new(bindir.join("pg_dump"))
        .args(["--schema-only", "--no-owner"])
        .arg(url)
        .output()
        .expect("run pg_dump");
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        // pg_dump 15.14+ brackets its output with a random \restrict key.
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn up_down_to_zero_up_gives_an_identical_schema_and_down_leaves_nothing() {
    let t = TestDb::empty().await;
    migration::up(&t.url).await.expect("up");
    let first = schema_dump(&t.url);
    assert!(first.contains("CREATE TABLE public.document_chunks"));

    migration::Migrator::down(&t.db, None)
        .await
        .expect("down to zero");
    let leftovers = t
        .sql(
            "SELECT 'relation ' || relname FROM pg_class
               WHERE relnamespace = 'public'::regnamespace AND relname NOT LIKE 'seaql_migrations%'
             UNION ALL SELECT 'function ' || oid::regprocedure::text FROM pg_proc
               WHERE pronamespace = 'public'::regnamespace
             UNION ALL SELECT 'type ' || typname FROM pg_type
               WHERE typnamespace = 'public'::regnamespace AND typname NOT LIKE '%seaql_migrations'
             UNION ALL SELECT 'policy ' || policyname FROM pg_policies
             UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger WHERE NOT tgisinternal
             UNION ALL SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname = 'auth'
             UNION ALL SELECT 'extension ' || extname FROM pg_extension WHERE extname <> 'plpgsql'",
        )
        .await;
    assert!(leftovers.is_empty(), "left after down: {leftovers:?}");
    assert_eq!(t.scalar("SELECT count(*) FROM seaql_migrations").await, "0");

    migration::up(&t.url).await.expect("up again");
    let second = schema_dump(&t.url);
    assert!(
        first == second,
        "the schema differs after down and up again"
    );
}

fn migrate_with_dimension(url: &str, dimension: &str) -> std::process::Output {
    Command::new(MIGRATE_BIN)
        .args(["-u", url, "up"])
        .env("VECTOR_DIMENSION", dimension)
        .output()
        .expect("run strata-test-migrate")
}

#[tokio::test]
async fn vector_dimension_768_is_used() {
    let t = TestDb::empty().await;
    let out = migrate_with_dimension(&t.url, "768");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        t.scalar("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'document_chunks'::regclass AND attname = 'embedding'")
            .await,
        "vector(768)"
    );
}

#[tokio::test]
async fn vector_dimension_out_of_range_is_refused_before_any_ddl() {
    for bad in ["2001", "0", "many"] {
        let t = TestDb::empty().await;
        let out = migrate_with_dimension(&t.url, bad);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "VECTOR_DIMENSION={bad} was accepted");
        assert!(
            stderr.contains("VECTOR_DIMENSION") && stderr.contains(bad),
            "the error names the setting and its value: {stderr}"
        );
        let created = t
            .sql("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace")
            .await;
        assert_eq!(
            created,
            [["0"]],
            "nothing was created for VECTOR_DIMENSION={bad}"
        );
    }
}

#[tokio::test]
async fn concurrent_demotions_never_remove_the_last_admin() {
    let t = TestDb::new().await;
    let (a, b) = (
        "00000000-0000-0000-0000-0000000000a1",
        "00000000-0000-0000-0000-0000000000a2",
    );
    t.sql(&format!(
        "INSERT INTO users (id, email, password_hash, role) VALUES
           ('{a}', 'a@example.com', 'x', 'admin'), ('{b}', 'b@example.com', 'x', 'admin')"
    ))
    .await;
    for _ in 0..5 {
        // Each admin demotes the other at the same moment: exactly one may succeed.
        let demote_b = format!("SELECT change_user_role('{b}', 'user', '{a}')");
        let demote_a = format!("SELECT change_user_role('{a}', 'user', '{b}')");
        let (ra, rb) = tokio::join!(t.try_sql(&demote_b), t.try_sql(&demote_a));
        assert_eq!(ra.is_ok() as u8 + rb.is_ok() as u8, 1, "{ra:?} {rb:?}");
        assert_eq!(
            t.scalar("SELECT count(*) FROM users WHERE role = 'admin'")
                .await,
            "1"
        );
        t.sql("UPDATE users SET role = 'admin'").await;
    }
}

#[tokio::test]
async fn fresh_rebuilds_a_migrated_database() {
    // sea-orm-migration's `fresh` drops tables and types but keeps functions: the
    // migrations must still apply on top of them.
    let t = TestDb::new().await;
    t.sql("INSERT INTO courses (title) VALUES ('kept?')").await;
    let out = Command::new(MIGRATE_BIN)
        .args(["-u", &t.url, "fresh"])
        .output()
        .expect("run strata-test-migrate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(t.scalar("SELECT count(*) FROM courses").await, "0");
    let inventory = service::db::inventory(&t.db, &migration::names())
        .await
        .expect("inventory");
    assert!(inventory.pending.is_empty(), "{:?}", inventory.pending);
    assert_eq!(inventory.tables.len(), 25);
}

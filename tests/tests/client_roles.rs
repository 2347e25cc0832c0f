//! Safe on Supabase by default. Every test database is prepared as Supabase prepares
//! one (the roles `anon`, `authenticated` and `service_role`, `USAGE` on `public`,
//! default privileges granting them everything created there: `tests::SUPABASE_PREPARATION`)
//! before the migrations run. Then:
//! - as `anon` and as `authenticated`, no Strata table can be read, inserted into,
//!   updated or deleted from, no view or materialized view read, no Strata function
//!   run: each refusal is a permission error (SQLSTATE 42501), except what seed 001
//!   opens on purpose (`authenticated` reads `ai_response_cache`, whose writes RLS
//!   refuses);
//! - when someone later grants the client roles everything, RLS still shows them no
//!   row and lets them change none, and the views obey it (`security_invoker`);
//! - the doctor names what is open, `fail` for Strata's objects, `warn` for the
//!   application's;
//! - the service works as the tables' owner (not a superuser, subject to nothing but
//!   ownership) and as Supabase's `service_role` (`BYPASSRLS`, owns nothing), whose
//!   `ANALYZE` task is refused by name. `make test` also runs the queue, cache, store,
//!   review and maintenance tests as `service_role` (`STRATA_TEST_ROLE`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sea_orm::DatabaseConnection;
use serde_json::json;
use service::accounts::{self, NewUser, Role};
use service::cache::ai_response::{AiRequest, AiResponse, AiResponseCache};
use service::cache::{CacheConfig, CacheError, Origin};
use service::doctor::{self, Examination, Expectations, ObjectKind, REQUIRED_OBJECTS, Status};
use service::error::BoxError;
use service::maintenance::{self, MaintenanceError, RunOutcome, Task};
use service::queue::worker::Worker;
use service::queue::{self, NewJob};
use service::store::{self, EmbeddingModel, NewChunk, NewDocument, VectorStore};
use tests::TestDb;

const CLIENTS: [&str; 2] = ["anon", "authenticated"];

/// Strata's objects of `kind`, from the doctor's list (a test there ties it to what
/// the migrations create).
fn strata(kind: ObjectKind) -> Vec<&'static str> {
    REQUIRED_OBJECTS
        .iter()
        .filter(|o| o.kind == kind)
        .map(|o| o.name)
        .collect()
}

/// Runs `sql` as `role` (`SET LOCAL ROLE`) in a transaction that is rolled back.
async fn as_role(t: &TestDb, role: &str, sql: &str) -> tests::Rows {
    t.rolled_back(&format!("SET LOCAL ROLE {role}; {sql}"))
        .await
}

/// `sql` as `role` must be refused with a permission error (42501).
async fn refused(t: &TestDb, role: &str, sql: &str) {
    match as_role(t, role, sql).await {
        Err(e) => assert_eq!(tests::sqlstate(&e), "42501", "{role}: {sql}: {e}"),
        Ok(rows) => panic!("{role}: {sql}: not refused, returned {rows:?}"),
    }
}

/// `sql` as `role` must run and return `expected` (one row, one column).
async fn returns(t: &TestDb, role: &str, sql: &str, expected: &str) {
    let rows = as_role(t, role, sql)
        .await
        .unwrap_or_else(|e| panic!("{role}: {sql}: {e}"));
    assert_eq!(rows, [[expected]], "{role}: {sql}");
}

/// An admin and a plain user (Eve), a cached AI answer, a job and a document: rows
/// for the client roles to try.
async fn seed_rows(t: &TestDb) -> (String, String) {
    let admin = t
        .scalar("INSERT INTO users (email, password_hash, role) VALUES ('admin@example.com', 'h', 'admin') RETURNING id::text")
        .await;
    let eve = t
        .scalar("INSERT INTO users (email, password_hash) VALUES ('eve@example.com', 'h') RETURNING id::text")
        .await;
    t.sql(
        "INSERT INTO ai_response_cache (cache_key, operation_type, content_hash, response_data)
           VALUES ('k1', 'quiz', 'h', '{\"q\": 1}');
         INSERT INTO jobs (job_type) VALUES ('work');
         INSERT INTO documents (title, content) VALUES ('t', 'c');",
    )
    .await;
    (admin, eve)
}

/// The first column of `table`, for an `UPDATE … SET c = c`.
async fn first_column(t: &TestDb, table: &str) -> String {
    t.scalar(&format!(
        "SELECT attname::text FROM pg_attribute WHERE attrelid = '{table}'::regclass AND attnum = 1"
    ))
    .await
}

#[tokio::test]
async fn client_roles_reach_no_strata_row_but_what_seed_001_opens() {
    let t = TestDb::new().await;
    let (admin, eve) = seed_rows(&t).await;
    let tables = strata(ObjectKind::RowLevelSecurity);
    assert_eq!(
        tables.len(),
        26,
        "every Strata table, the migration history too"
    );
    for role in CLIENTS {
        for table in &tables {
            let column = first_column(&t, table).await;
            let seed_read = role == "authenticated" && *table == "ai_response_cache";
            if seed_read {
                // Seed 001: signed-in users read the cache; no policy lets them write.
                returns(&t, role, &format!("SELECT count(*) FROM {table}"), "1").await;
                returns(
                    &t,
                    role,
                    &format!("WITH u AS (UPDATE {table} SET {column} = {column} RETURNING 1) SELECT count(*) FROM u"),
                    "0",
                )
                .await;
                returns(
                    &t,
                    role,
                    &format!("WITH d AS (DELETE FROM {table} RETURNING 1) SELECT count(*) FROM d"),
                    "0",
                )
                .await;
                refused(
                    &t,
                    role,
                    &format!("INSERT INTO {table} SELECT * FROM {table}"),
                )
                .await;
            } else {
                refused(&t, role, &format!("SELECT count(*) FROM {table}")).await;
                refused(&t, role, &format!("INSERT INTO {table} DEFAULT VALUES")).await;
                refused(&t, role, &format!("UPDATE {table} SET {column} = {column}")).await;
                refused(&t, role, &format!("DELETE FROM {table}")).await;
            }
        }
        for view in strata(ObjectKind::View)
            .into_iter()
            .chain(strata(ObjectKind::MaterializedView))
        {
            refused(&t, role, &format!("SELECT count(*) FROM {view}")).await;
        }
        // No Strata function is executable, the writing ones called to be sure.
        let functions = strata(ObjectKind::Function);
        assert_eq!(functions.len(), 21);
        for function in &functions {
            returns(
                &t,
                "postgres",
                &format!("SELECT has_function_privilege('{role}', '{function}', 'EXECUTE')::text"),
                "false",
            )
            .await;
        }
        for call in [
            format!("SELECT change_user_role('{eve}', 'admin', '{eve}')"),
            format!("SELECT change_user_role('{eve}', 'admin', '{admin}')"),
            "SELECT increment_cache_stats(CURRENT_DATE, true, 100)".to_owned(),
            "SELECT record_batch_item(gen_random_uuid(), true, 0, 'x', NULL)".to_owned(),
            "SELECT cleanup_expired_cache()".to_owned(),
            "SELECT evict_lru_cache(0)".to_owned(),
            "SELECT refresh_layer0_stats()".to_owned(),
            "SELECT refresh_cache_metrics()".to_owned(),
            format!("SELECT has_permission('{admin}', 'approve_annotations')"),
        ] {
            refused(&t, role, &call).await;
        }
        // Eve's way to admin, as the issue found it open.
        refused(
            &t,
            role,
            "UPDATE users SET role = 'admin' WHERE email = 'eve@example.com'",
        )
        .await;
    }
    // Nothing of it landed.
    assert_eq!(
        t.scalar("SELECT role FROM users WHERE email = 'eve@example.com'")
            .await,
        "user"
    );
    assert_eq!(
        t.sql("SELECT (SELECT count(*) FROM ai_response_cache)::text, (SELECT count(*) FROM ai_cache_stats)::text")
            .await,
        [["1", "0"]]
    );
    // Sequences of Strata's tables (none today) are closed too.
    assert_eq!(
        t.scalar(
            "SELECT count(*)::text FROM pg_class s JOIN pg_namespace n ON n.oid = s.relnamespace
             WHERE n.nspname = 'public' AND s.relkind = 'S'
               AND (has_sequence_privilege('anon', s.oid, 'USAGE, SELECT, UPDATE')
                    OR has_sequence_privilege('authenticated', s.oid, 'USAGE, SELECT, UPDATE'))"
        )
        .await,
        "0"
    );
}

#[tokio::test]
async fn a_later_grant_of_everything_still_shows_clients_no_row() {
    let t = TestDb::new().await;
    let (admin, eve) = seed_rows(&t).await;
    t.sql(
        "GRANT ALL ON ALL TABLES IN SCHEMA public TO anon, authenticated;
         GRANT ALL ON ALL FUNCTIONS IN SCHEMA public TO anon, authenticated;",
    )
    .await;
    for role in CLIENTS {
        returns(&t, role, "SELECT count(*) FROM users", "0").await;
        returns(
            &t,
            role,
            "WITH u AS (UPDATE users SET role = 'admin' WHERE email = 'eve@example.com' RETURNING 1) SELECT count(*) FROM u",
            "0",
        )
        .await;
        returns(
            &t,
            role,
            "WITH d AS (DELETE FROM jobs RETURNING 1) SELECT count(*) FROM d",
            "0",
        )
        .await;
        // RLS refuses the new row: no policy allows it.
        refused(
            &t,
            role,
            "INSERT INTO users (email, password_hash, role) VALUES ('mallory@example.com', 'h', 'admin')",
        )
        .await;
        // The views read the tables as the caller: nothing.
        returns(&t, role, "SELECT count(*) FROM user_roles_summary", "0").await;
        returns(&t, role, "SELECT count(*) FROM pending_ai_annotations", "0").await;
        // change_user_role runs as its caller: it cannot see the admin who would
        // authorise the change, nor update Eve.
        let _ = as_role(
            &t,
            role,
            &format!("SELECT change_user_role('{eve}', 'admin', '{admin}')"),
        )
        .await;
    }
    returns(
        &t,
        "authenticated",
        "SELECT count(*) FROM ai_response_cache",
        "1",
    )
    .await;
    returns(&t, "anon", "SELECT count(*) FROM ai_response_cache", "0").await;
    assert_eq!(
        t.scalar("SELECT role FROM users WHERE email = 'eve@example.com'")
            .await,
        "user"
    );

    // The doctor sees what the grant opened: the views and materialized views (no
    // RLS of their own) and the functions; the tables stay closed by RLS.
    let e = examined(&t.db).await;
    assert_eq!(status(&e, "client access to tables"), Status::Ok, "{e:#?}");
    for name in [
        "views",
        "materialized views in the api",
        "client access to functions and sequences",
    ] {
        assert_eq!(status(&e, name), Status::Fail, "{name}: {e:#?}");
    }
    let mv = e.check("materialized views in the api").expect("check");
    assert!(
        mv.details.iter().any(|d| d == "layer0_stats to anon"),
        "{mv:?}"
    );
}

async fn examined(db: &DatabaseConnection) -> Examination {
    doctor::examine(db, &Expectations::new(migration::names()))
        .await
        .expect("examine")
}

fn status(e: &Examination, name: &str) -> Status {
    e.check(name)
        .unwrap_or_else(|| panic!("no check {name}: {e:#?}"))
        .status
}

const SECURITY_CHECKS: [&str; 8] = [
    "rls disabled in public",
    "policy without rls",
    "client access to tables",
    "views",
    "materialized views in the api",
    "function search_path",
    "security definer functions",
    "client access to functions and sequences",
];

#[tokio::test]
async fn the_doctor_checks_what_supabases_advisor_checks() {
    let t = TestDb::new().await;
    let e = examined(&t.db).await;
    for name in SECURITY_CHECKS {
        assert_eq!(status(&e, name), Status::Ok, "{name}: {e:#?}");
    }
    let tables = e.check("client access to tables").expect("check");
    assert!(
        tables
            .reason
            .contains("ai_response_cache to authenticated (SELECT)"),
        "the seed's exception is named: {tables:?}"
    );

    // The application's own objects, as Supabase's defaults leave them: warnings.
    t.sql(
        "CREATE TABLE app_notes (id int PRIMARY KEY, body text);
         CREATE POLICY notes_read ON app_notes FOR SELECT USING (true);
         CREATE FUNCTION app_touch() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';
         CREATE VIEW app_view AS SELECT id FROM app_notes;",
    )
    .await;
    let e = examined(&t.db).await;
    let expect_warn = [
        ("rls disabled in public", "app_notes"),
        ("policy without rls", "app_notes"),
        (
            "client access to tables",
            "app_notes to anon (DELETE, INSERT, SELECT, UPDATE)",
        ),
        ("views", "app_view (security definer)"),
        ("function search_path", "app_touch()"),
        ("security definer functions", "app_touch() to anon"),
    ];
    for (name, detail) in expect_warn {
        let c = e.check(name).expect("check");
        assert_eq!(c.status, Status::Warn, "{name}: {c:?}");
        assert!(c.details.iter().any(|d| d == detail), "{name}: {c:?}");
    }
    assert_eq!(e.count(Status::Fail), 0, "{e:#?}");

    // Strata's objects opened: failures, by name.
    t.sql(
        "ALTER TABLE users DISABLE ROW LEVEL SECURITY;
         GRANT SELECT, UPDATE ON users TO anon;
         CREATE POLICY jobs_open ON jobs FOR SELECT TO authenticated USING (true);
         GRANT SELECT ON jobs TO authenticated;
         ALTER VIEW user_roles_summary RESET (security_invoker);
         GRANT SELECT ON layer0_stats TO authenticated;
         ALTER FUNCTION has_permission(uuid, text) RESET search_path;
         GRANT EXECUTE ON FUNCTION refresh_layer0_stats() TO anon;",
    )
    .await;
    let e = examined(&t.db).await;
    let expect_fail = [
        ("rls disabled in public", "users"),
        ("client access to tables", "users to anon (SELECT, UPDATE)"),
        ("client access to tables", "jobs to authenticated (SELECT)"),
        ("views", "user_roles_summary (security definer)"),
        (
            "materialized views in the api",
            "layer0_stats to authenticated",
        ),
        ("function search_path", "has_permission(uuid,text)"),
        (
            "security definer functions",
            "refresh_layer0_stats() to anon",
        ),
        (
            "client access to functions and sequences",
            "function refresh_layer0_stats() to anon",
        ),
    ];
    for (name, detail) in expect_fail {
        let c = e.check(name).expect("check");
        assert_eq!(c.status, Status::Fail, "{name}: {c:?}");
        assert!(c.details.iter().any(|d| d == detail), "{name}: {c:?}");
    }
    assert_eq!(e.status, Status::Fail);
}

/// A login role that owns every Strata object of `t`'s database and is neither a
/// superuser nor `BYPASSRLS`: the tables' owner, as Supabase's `postgres` is.
struct OwnerRole {
    name: String,
    url: String,
}

impl OwnerRole {
    async fn new(t: &TestDb) -> Self {
        let name = format!("{}_owner", t.name);
        t.sql(&format!(
            "CREATE ROLE \"{name}\" LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD 'owner';
             GRANT CREATE ON SCHEMA public TO \"{name}\";
             DO $$ DECLARE r record; BEGIN
               FOR r IN SELECT c.oid::regclass AS obj, c.relkind FROM pg_class c
                        JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm') LOOP
                 EXECUTE format('ALTER %s %s OWNER TO \"{name}\"',
                   CASE r.relkind WHEN 'r' THEN 'TABLE' WHEN 'v' THEN 'VIEW' ELSE 'MATERIALIZED VIEW' END, r.obj);
               END LOOP;
               FOR r IN SELECT p.oid::regprocedure AS obj FROM pg_proc p
                        JOIN pg_namespace n ON n.oid = p.pronamespace
                        WHERE n.nspname = 'public'
                          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e') LOOP
                 EXECUTE format('ALTER FUNCTION %s OWNER TO \"{name}\"', r.obj);
               END LOOP;
             END $$;"
        ))
        .await;
        let (scheme, rest) = t.url.split_once("://").expect("a URL with a scheme");
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        let url = format!("{scheme}://{name}:owner@{host}");
        Self { name, url }
    }

    /// Gives everything back to the server user and drops the role.
    async fn drop(self, t: &TestDb) {
        let name = &self.name;
        t.sql(&format!(
            "REASSIGN OWNED BY \"{name}\" TO CURRENT_USER; DROP OWNED BY \"{name}\"; DROP ROLE \"{name}\""
        ))
        .await;
    }
}

/// The service's everyday work on `db`, acting as `role`: enqueue, claim and
/// complete a job; compute and hit a cached AI answer (its statistics flushed through
/// `increment_cache_stats`); ingest and search a document; change a user's role;
/// run every due maintenance task. `owns_tables`: whether `role` can `ANALYZE`.
async fn serve(t: &TestDb, db: &DatabaseConnection, role: &str, owns_tables: bool) {
    assert_eq!(
        tests::column(db, "SELECT current_user::text").await,
        [role],
        "acting as {role}"
    );

    queue::enqueue(db, &[NewJob::new("work", json!({"n": 1}))])
        .await
        .expect("enqueue");
    let ran = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&ran);
    let worker = Worker::new(db.clone(), queue::JOBS, tests::queue::fast())
        .expect("worker")
        .handle("work", move |_| {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok::<_, BoxError>(json!({"done": true}))
            }
        })
        .expect("handler");
    let worked = service::testing::work_one(&worker, db)
        .await
        .expect("work")
        .expect("a job");
    assert_eq!(worked.result, Ok(json!({"done": true})));
    assert_eq!(ran.load(Ordering::SeqCst), 1);

    let cache = AiResponseCache::new(
        db.clone(),
        CacheConfig {
            flush_interval: Duration::from_millis(100),
            ..CacheConfig::default()
        },
    )
    .expect("cache");
    let request = AiRequest {
        operation_type: "quiz".into(),
        lecture_ids: vec![],
        params: json!({"n": 1}),
    };
    let key = cache.key(db, &request).await.expect("key");
    let computed: Result<_, CacheError> = cache
        .get_or_compute(&key, || async {
            Ok::<_, BoxError>(AiResponse {
                data: json!({"q": 1}),
                tokens_used: 10,
            })
        })
        .await;
    assert_eq!(computed.expect("miss").origin, Origin::Computed);
    assert!(cache.get(&key).await.expect("get").is_some());
    cache.shutdown().await.expect("flush");
    assert_eq!(
        t.scalar("SELECT (cache_hits + cache_misses)::text FROM ai_cache_stats")
            .await,
        "2"
    );

    let model = EmbeddingModel::new("test/model-384", 384).expect("model");
    let vector = tests::vectors::unit_vector(7, 384);
    store::ingest(
        db,
        &model,
        &[NewDocument {
            key: None,
            title: Some("Corvids".into()),
            content: "ravens remember faces".into(),
            source: None,
            metadata: json!({}),
            chunks: vec![NewChunk::new(
                "ravens remember faces",
                "test/model-384",
                vector.clone(),
            )],
        }],
    )
    .await
    .expect("ingest");
    let hits = VectorStore::new(model)
        .search(db, &vector, 1, None)
        .await
        .expect("search");
    assert_eq!(hits[0].content, "ravens remember faces");

    let admin = accounts::create_user(
        db,
        NewUser {
            role: Role::Admin,
            ..NewUser::new(format!("admin-{role}@example.com"), "h")
        },
    )
    .await
    .expect("admin");
    let user = accounts::create_user(db, NewUser::new(format!("user-{role}@example.com"), "h"))
        .await
        .expect("user");
    let change = accounts::change_user_role(db, user.id, Role::Moderator, admin.id)
        .await
        .expect("role change");
    assert_eq!(change.new, Role::Moderator);

    let runs = maintenance::run_due(db, "client-roles-test")
        .await
        .expect("run_due");
    let failed: Vec<(Task, String)> = runs
        .iter()
        .filter_map(|r| match &r.outcome {
            RunOutcome::Failure { error } => Some((r.task, error.clone())),
            _ => None,
        })
        .collect();
    if owns_tables {
        assert!(failed.is_empty(), "{failed:?}");
    } else {
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0].0, Task::AnalyzeTables);
        assert!(failed[0].1.contains("needs the owner"), "{failed:?}");
        let refused = Task::AnalyzeTables.run(db, &json!({})).await;
        assert!(
            matches!(&refused, Err(MaintenanceError::NotOwner { role: r, .. }) if r == role),
            "{refused:?}"
        );
    }
}

#[tokio::test]
async fn the_service_works_as_the_tables_owner_and_as_service_role() {
    let t = TestDb::new().await;
    let owner = OwnerRole::new(&t).await;
    let db = tests::pool(&owner.url, 4).await;
    serve(&t, &db, &owner.name, true).await;
    let _ = db.close().await;
    owner.drop(&t).await;

    let t = TestDb::new().await;
    let url = tests::with_role(
        &tests::url_with_database(&tests::server_url(), &t.name),
        "service_role",
    );
    let db = tests::pool(&url, 4).await;
    serve(&t, &db, "service_role", false).await;
    let _ = db.close().await;
}

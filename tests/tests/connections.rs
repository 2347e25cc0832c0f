//! `TCP_NODELAY` on every TCP connection Strata opens and on a pool an application
//! builds itself with `Database::connect(url)`: sqlx 0.9.1 sets it again (0.9.0 did
//! not, and Strata carried a workaround; see `docs/tls.md`). The guard that a sqlx
//! update does not bring the ~40 ms Nagle stall back.

use std::time::Duration;

use sea_orm::Database;
use sea_orm::sqlx::{self, Connection};
use serde_json::json;
use service::error::BoxError;
use service::queue::JOBS;
use service::queue::worker::Worker;
use tests::TestDb;
use tests::queue::{enqueue_one, fast, spawn, wait_for};
use tests::socket::nodelay_of_socket;

/// `url` with `application_name=name`, so this test's connections can be told apart.
fn named(url: &str, name: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}application_name={name}")
}

/// Whether `TCP_NODELAY` is on for each of this process's connections named `app`.
async fn nodelay_of(t: &TestDb, app: &str) -> Vec<Option<bool>> {
    let rows = t
        .sql(&format!(
            "SELECT host(client_addr) || ':' || client_port,
                    host(inet_server_addr()) || ':' || inet_server_port()
             FROM pg_stat_activity
             WHERE application_name = '{app}' AND client_port IS NOT NULL ORDER BY pid"
        ))
        .await;
    rows.iter()
        .map(|row| {
            let local = row[0].parse().expect("client address");
            let peer = row[1].parse().expect("server address");
            nodelay_of_socket(local, peer)
        })
        .collect()
}

#[tokio::test]
async fn every_connection_has_tcp_nodelay_without_help() {
    let t = TestDb::new().await;

    // A pool the application builds itself, and a worker on it: its claimer and
    // completer open connections of their own, its LISTEN connection comes from the
    // pool.
    let app = "strata_nodelay_app";
    let db = Database::connect(named(&t.url, app))
        .await
        .expect("connect");
    let worker = Worker::new(db.clone(), JOBS, fast())
        .expect("worker")
        .handle("job", |_| async { Ok::<_, BoxError>(json!(1)) })
        .expect("handler");
    let (stop, handle) = spawn(worker);
    enqueue_one(&db, "job").await;
    wait_for(
        &t,
        "SELECT status FROM jobs",
        "completed",
        Duration::from_secs(30),
    )
    .await;
    let ours = nodelay_of(&t, app).await;
    assert!(
        ours.len() >= 3,
        "pool, claimer and completer connections: {ours:?}"
    );
    assert!(
        ours.iter().all(|n| *n == Some(true)),
        "every connection has TCP_NODELAY: {ours:?}"
    );
    let _ = stop.send(());
    handle.await.expect("join").expect("run");

    // A plain sqlx connection, as sqlx makes it.
    let plain_app = "strata_nodelay_plain";
    let plain = sqlx::PgConnection::connect(&named(&t.url, plain_app))
        .await
        .expect("connect");
    assert_eq!(nodelay_of(&t, plain_app).await, [Some(true)]);
    plain.close().await.expect("close");
    db.close().await.expect("close");
}

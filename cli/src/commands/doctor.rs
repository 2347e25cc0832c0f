//! `strata doctor`: PgHero's checks that SQL can make, plus this schema's own, each
//! ok / warn / fail with a reason; a failing check makes the exit status non-zero.

use std::time::Duration;

use serde::Serialize;
use service::db::DatabaseUrls;
use service::doctor::{Examination, Expectations, Status};

use super::Output;

/// What `doctor` reports: where, and every check.
#[derive(Serialize)]
struct Report<'a> {
    database: String,
    #[serde(flatten)]
    examination: &'a Examination,
}

/// Examines the database (each check under `timeout`), prints the checks, and fails
/// naming the failing checks when any did.
pub async fn run(
    urls: &DatabaseUrls,
    timeout: Duration,
    out: &mut Output<'_>,
) -> anyhow::Result<()> {
    let db = super::connect(urls, super::POOL_SIZE).await?;
    let mut expect = Expectations::new(migration::names());
    expect.statement_timeout = timeout;
    // The checks read the primary: statistics views (vacuum, scans, sessions) are
    // each node's own, and the primary's are the ones to act on.
    let examination = service::doctor::examine(&db, &expect).await;
    let replicas = service::doctor::replica_checks(&db).await;
    db.close().await;
    let examination = examination?
        .with(service::doctor::connection_checks(urls).await)
        .with(replicas);
    let report = Report {
        database: service::db::redact(&urls.database_url),
        examination: &examination,
    };
    let rows = examination
        .checks
        .iter()
        .map(|c| vec![c.status.to_string(), c.name.to_owned(), c.reason.clone()])
        .collect();
    out.show(&report, &["status", "check", "reason"], rows)?;
    if examination.status == Status::Fail {
        let failing: Vec<&str> = examination
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.name)
            .collect();
        anyhow::bail!("doctor: {} failing: {}", failing.len(), failing.join(", "));
    }
    Ok(())
}

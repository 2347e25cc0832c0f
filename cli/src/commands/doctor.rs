//! `strata doctor`: where the database is and what it holds.

use serde::Serialize;

use super::Output;

/// What `doctor` reports.
#[derive(Serialize)]
struct Report {
    database: String,
    server_version: String,
    pgvector_version: Option<String>,
    applied: usize,
    pending: Vec<String>,
    tables: Vec<String>,
    views: Vec<String>,
    materialized_views: Vec<String>,
    functions: Vec<String>,
    enums: Vec<String>,
    indexes: i64,
    triggers: i64,
    policies: i64,
}

/// Reports the server, pgvector, the migrations and the schema's objects.
pub async fn run(url: Option<&str>, out: &mut Output<'_>) -> Result<(), String> {
    let url = service::db::resolve_url(url).map_err(|e| e.to_string())?;
    let db = super::connect(Some(&url)).await?;
    let inv = service::db::inventory(&db, &migration::names())
        .await
        .map_err(|e| e.to_string())?;
    let _ = db.close().await;
    let report = Report {
        database: service::db::redact(&url),
        server_version: inv.server_version.clone(),
        pgvector_version: inv.pgvector_version.clone(),
        applied: inv.applied.len(),
        pending: inv.pending.clone(),
        tables: inv.tables.clone(),
        views: inv.views.clone(),
        materialized_views: inv.materialized_views.clone(),
        functions: inv.functions.clone(),
        enums: inv.enums.clone(),
        indexes: inv.indexes,
        triggers: inv.triggers,
        policies: inv.policies,
    };
    let list = |items: &[String]| format!("{}: {}", items.len(), items.join(", "));
    let rows = vec![
        vec!["database".into(), report.database.clone()],
        vec![
            "server".into(),
            format!("PostgreSQL {}", report.server_version),
        ],
        vec![
            "pgvector".into(),
            super::output::or_dash(report.pgvector_version.clone()),
        ],
        vec![
            "migrations".into(),
            format!(
                "{} applied, {} pending",
                report.applied,
                report.pending.len()
            ),
        ],
        vec!["tables".into(), list(&report.tables)],
        vec!["views".into(), list(&report.views)],
        vec![
            "materialized views".into(),
            list(&report.materialized_views),
        ],
        vec!["functions".into(), list(&report.functions)],
        vec!["enums".into(), list(&report.enums)],
        vec!["indexes".into(), report.indexes.to_string()],
        vec!["triggers".into(), report.triggers.to_string()],
        vec!["policies".into(), report.policies.to_string()],
    ];
    out.show(&report, &["check", "state"], rows)
}

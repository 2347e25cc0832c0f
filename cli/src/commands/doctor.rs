//! `strata doctor`: where the database is and what it holds.

use serde::Serialize;

use super::Output;

/// What `doctor` reports: where, and the inventory.
#[derive(Serialize)]
struct Report<'a> {
    database: String,
    #[serde(flatten)]
    inventory: &'a service::db::Inventory,
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
        inventory: &inv,
    };
    let list = |items: &[String]| format!("{}: {}", items.len(), items.join(", "));
    let rows = vec![
        vec!["database".into(), report.database.clone()],
        vec![
            "server".into(),
            format!("PostgreSQL {}", inv.server_version),
        ],
        vec![
            "pgvector".into(),
            super::output::or_dash(inv.pgvector_version.clone()),
        ],
        vec![
            "migrations".into(),
            format!(
                "{} applied, {} pending",
                inv.applied.len(),
                inv.pending.len()
            ),
        ],
        vec!["tables".into(), list(&inv.tables)],
        vec!["views".into(), list(&inv.views)],
        vec!["materialized views".into(), list(&inv.materialized_views)],
        vec!["functions".into(), list(&inv.functions)],
        vec!["enums".into(), list(&inv.enums)],
        vec!["indexes".into(), inv.indexes.to_string()],
        vec!["triggers".into(), inv.triggers.to_string()],
        vec!["policies".into(), inv.policies.to_string()],
    ];
    out.show(&report, &["check", "state"], rows)
}

//! `strata audit list`.

use service::audit::{self, AuditQuery};
use service::db::Topology;

use super::Output;
use super::output::or_dash;
use crate::cli::AuditCommand;

/// Runs `strata audit …`.
pub async fn run(db: &Topology, command: AuditCommand, out: &mut Output<'_>) -> anyhow::Result<()> {
    let AuditCommand::List {
        actor,
        event_type,
        resource,
        since,
        page,
    } = command;
    let actor = match actor {
        Some(email) => Some(super::user_id(db, &email).await?),
        None => None,
    };
    let query = AuditQuery {
        actor,
        event_type,
        resource,
        since,
        ..Default::default()
    };
    let events = audit::query(&db.reader().await, &query, super::page(page)?).await?;
    let rows = events
        .iter()
        .map(|e| {
            vec![
                e.created_at.format("%F %T").to_string(),
                e.event_type.clone(),
                e.outcome.clone(),
                or_dash(e.user_id),
                format!(
                    "{} {}",
                    or_dash(e.resource.clone()),
                    or_dash(e.resource_id.clone())
                ),
                e.details.to_string(),
            ]
        })
        .collect();
    out.show(
        &events,
        &["time", "event", "outcome", "actor", "resource", "details"],
        rows,
    )
}

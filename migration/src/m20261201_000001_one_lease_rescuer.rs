//! One lease rescuer: the runtime's (`service::runtime`), in every process that runs
//! workers, returns expired leases to pending. The maintenance task that did the same
//! every five minutes goes from the schedule (its past runs with it); `down` puts it
//! back as it was.

use sea_orm_migration::prelude::*;

use crate::helpers::sql_migration;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "DELETE FROM maintenance_tasks WHERE task = 'rescue_expired_leases';";

const DOWN: &str = "INSERT INTO maintenance_tasks (task, schedule, parameters)
    VALUES ('rescue_expired_leases', '*/5 * * * *', '{}') ON CONFLICT (task) DO NOTHING;";

sql_migration!(UP, DOWN);

//! Seed 003's `audit_logs` gains `outcome`: whether the recorded action succeeded, was
//! refused (`denied`), or failed — so a query can ask for the refusals. Existing rows
//! count as successes. `down` drops it.

use sea_orm_migration::prelude::*;

use crate::helpers::sql_migration;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "
ALTER TABLE audit_logs ADD COLUMN outcome text NOT NULL DEFAULT 'success'
    CONSTRAINT check_audit_logs_outcome CHECK (outcome IN ('success', 'denied', 'failure'));
";

const DOWN: &str = "ALTER TABLE audit_logs DROP COLUMN outcome;";

sql_migration!(UP, DOWN);

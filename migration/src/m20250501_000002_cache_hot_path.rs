//! Cache hot path: the hex-key checks of `pdf_cache` and `vision_api_cache` without a
//! regular expression.
//!
//! PostgreSQL evaluates every CHECK constraint of a table for every new row version,
//! whether or not the statement changed the columns it reads. The caches' batched
//! bookkeeping rewrites each hit entry's row once per flush, so the key-format checks
//! (`pdf_hash ~ '^[0-9a-f]{64}$'`, `url_hash ~ '^[0-9a-f]{64}$'`) ran the regular
//! expression engine once per hit: measured about a third of a flush (8,000 rows of
//! `pdf_cache`: ~320 ms → ~210 ms without it). The same rule — exactly 64 characters,
//! each one of `0-9a-f` — is written as `octet_length(k::text) = 64 AND
//! ltrim(k::text, '0123456789abcdef') = ''`, a byte scan (`::text` as the regular
//! expression saw it: `url_hash` is `character(64)`, whose padding `::text` drops).
//! Same names, same rows accepted; `down` restores the regular expressions.

use sea_orm_migration::prelude::*;

use crate::helpers::exec;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (table, constraint, key column).
const CHECKS: [(&str, &str, &str); 2] = [
    ("pdf_cache", "check_pdf_hash_format", "pdf_hash"),
    ("vision_api_cache", "check_cache_url_hash", "url_hash"),
];

/// Re-creates the checks with the byte scan, or with the regular expression.
fn replace_checks(byte_scan: bool) -> String {
    CHECKS
        .iter()
        .map(|(table, name, column)| {
            let rule = if byte_scan {
                format!("octet_length({column}::text) = 64 AND ltrim({column}::text, '0123456789abcdef') = ''")
            } else {
                format!("{column} ~ '^[0-9a-f]{{64}}$'")
            };
            format!(
                "ALTER TABLE {table} DROP CONSTRAINT {name}, ADD CONSTRAINT {name} CHECK ({rule});\n"
            )
        })
        .collect()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec(manager, &replace_checks(true)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec(manager, &replace_checks(false)).await
    }
}

//! Cache hot path: what a flush of hit bookkeeping pays per entry, cut down.
//!
//! 1. **The hex-key checks of `pdf_cache` and `vision_api_cache` without a regular
//!    expression.**
//!    PostgreSQL evaluates every CHECK constraint of a table for every new row version,
//!    whether or not the statement changed the columns it reads. The caches' batched
//!    bookkeeping rewrites each hit entry's row once per flush, so the key-format checks
//!    (`pdf_hash ~ '^[0-9a-f]{64}$'`, `url_hash ~ '^[0-9a-f]{64}$'`) ran the regular
//!    expression engine once per hit: measured about a third of a flush (8,000 rows of
//!    `pdf_cache`: ~320 ms → ~210 ms without it). The same rule — exactly 64 characters,
//!    each one of `0-9a-f` — is written as `octet_length(k::text) = 64 AND
//!    ltrim(k::text, '0123456789abcdef') = ''`, a byte scan (`::text` as the regular
//!    expression saw it: `url_hash` is `character(64)`, whose padding `::text` drops).
//!    Same names, same rows accepted.
//! 2. **`pdf_cache` keeps 30 % of each page free (`fillfactor` 85 → 70).** A flush
//!    rewrites every entry hit since the last one, all in one statement, so a page
//!    with two or three hit entries needs room for two or three new row versions at
//!    once (the old ones cannot be pruned before the statement ends). With rows of
//!    ~750 bytes, 15 % left room for one: about one update in six could not stay on
//!    its page (no HOT update: a new entry in each of the table's four indexes).
//!    Applies to pages written from now on.
//!
//! `down` restores the regular expressions and `fillfactor = 85`.

use sea_orm_migration::prelude::*;

use crate::helpers::exec;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (table, constraint, key column).
const CHECKS: [(&str, &str, &str); 2] = [
    ("pdf_cache", "check_pdf_hash_format", "pdf_hash"),
    ("vision_api_cache", "check_cache_url_hash", "url_hash"),
];

/// Re-creates the two key-format checks with `rule(column)`.
pub(crate) fn replace_checks(rule: impl Fn(&str) -> String) -> String {
    CHECKS
        .iter()
        .map(|(table, name, column)| {
            format!(
                "ALTER TABLE {table} DROP CONSTRAINT {name}, ADD CONSTRAINT {name} CHECK ({});\n",
                rule(column)
            )
        })
        .collect()
}

/// This migration's rule: a character scan of the text.
pub(crate) fn text_scan(column: &str) -> String {
    format!("octet_length({column}::text) = 64 AND ltrim({column}::text, '0123456789abcdef') = ''")
}

/// The seeds' rule: a regular expression.
fn regex(column: &str) -> String {
    format!("{column} ~ '^[0-9a-f]{{64}}$'")
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec(
            manager,
            &(replace_checks(text_scan) + "ALTER TABLE pdf_cache SET (fillfactor = 70);"),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec(
            manager,
            &(replace_checks(regex) + "ALTER TABLE pdf_cache SET (fillfactor = 85);"),
        )
        .await
    }
}

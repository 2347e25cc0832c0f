//! Cache key checks as a byte scan.
//!
//! `m20250501_000002_cache_hot_path` replaced the regular expressions of
//! `check_pdf_hash_format` (`pdf_cache`) and `check_cache_url_hash`
//! (`vision_api_cache`) with `ltrim(k::text, '0123456789abcdef') = ''`. In a UTF-8
//! database `ltrim` on text is multibyte-aware: it compares every character of the
//! key with every character of the set through `memcmp`. PostgreSQL evaluates each
//! CHECK constraint for every new row version, so every bookkept hit pays it; a
//! profile of an 8,000-row flush of `pdf_cache` put a fifth of the UPDATE in that
//! check (~2.3 µs a row, measured over 300,000 rows).
//!
//! The same rule — exactly 64 characters, each one of `0-9a-f` — is now checked on
//! the key's bytes: `ltrim(k::text::bytea, '0123456789abcdef' as bytes) = ''`, a plain
//! byte loop (~1.0 µs a row). `k::text::bytea` reads backslashes as escapes, so a key
//! holding one is refused before the cast (the CASE keeps the order). The constants
//! are written with `decode(…, 'hex')` and `chr(92)`, which PostgreSQL folds once, so
//! the rule does not depend on `standard_conforming_strings`. Same names, same rows
//! accepted, and a rejected row is still a check violation (SQLSTATE 23514).
//!
//! `down` restores the text scan of `m20250501_000002_cache_hot_path`.

use sea_orm_migration::prelude::*;

use crate::helpers::exec;
use crate::m20250501_000002_cache_hot_path::{replace_checks, text_scan};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The rule on `column`'s bytes.
fn byte_scan(column: &str) -> String {
    format!(
        "CASE WHEN octet_length({column}::text) = 64 AND strpos({column}::text, chr(92)) = 0 \
         THEN ltrim({column}::text::bytea, decode('30313233343536373839616263646566', 'hex')) = ''::bytea \
         ELSE false END"
    )
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec(manager, &replace_checks(byte_scan)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec(manager, &replace_checks(text_scan)).await
    }
}

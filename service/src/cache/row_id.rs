//! [`RowId`]: a row's `ctid`, with its sqlx codec for PostgreSQL's `tid` type (which
//! sqlx does not know), so a flush can find a hit entry's row by address.

use sea_orm::sqlx::encode::IsNull;
use sea_orm::sqlx::error::BoxDynError;
use sea_orm::sqlx::postgres::types::Oid;
use sea_orm::sqlx::postgres::{
    PgArgumentBuffer, PgHasArrayType, PgTypeInfo, PgValueFormat, PgValueRef,
};
use sea_orm::sqlx::{self, Postgres};

/// A row's address, its `ctid` (heap block and line pointer), as PostgreSQL's `tid`
/// type. A flush can update a hit entry's row by address — a TID scan, no index
/// descent — with `ctid = …` and a check of its key, and falls back to the key for
/// rows that moved since the read (an update gives a row version a new address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RowId {
    block: u32,
    offset: u16,
}

impl sqlx::Type<Postgres> for RowId {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(27))
    }
}

impl PgHasArrayType for RowId {
    fn array_type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(1010))
    }
}

impl sqlx::Encode<'_, Postgres> for RowId {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        buf.extend_from_slice(&self.block.to_be_bytes());
        buf.extend_from_slice(&self.offset.to_be_bytes());
        Ok(IsNull::No)
    }
}

impl sqlx::Decode<'_, Postgres> for RowId {
    fn decode(value: PgValueRef<'_>) -> Result<Self, BoxDynError> {
        match value.format() {
            PgValueFormat::Binary => {
                let bytes = value.as_bytes()?;
                let bytes: [u8; 6] = bytes
                    .try_into()
                    .map_err(|_| format!("a tid is 6 bytes, got {}", bytes.len()))?;
                Ok(Self {
                    block: u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
                    offset: u16::from_be_bytes([bytes[4], bytes[5]]),
                })
            }
            PgValueFormat::Text => {
                let text = value.as_str()?;
                let (block, offset) = text
                    .strip_prefix('(')
                    .and_then(|t| t.strip_suffix(')'))
                    .and_then(|t| t.split_once(','))
                    .ok_or_else(|| format!("malformed tid {text:?}"))?;
                Ok(Self {
                    block: block.parse()?,
                    offset: offset.parse()?,
                })
            }
        }
    }
}

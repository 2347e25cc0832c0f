//! The entity crate's enums (`AiProvider`, `AiJobStatus`, `ReviewStatus`) in Strata's
//! JSON by their database names (`openai`, `processing`): the generated enums' own
//! serde names are their Rust names (`Openai`). For `#[serde(serialize_with = …)]`.

use sea_orm::ActiveEnum;
use sea_orm::sea_query::Enum;
use serde::Serializer;

/// `value` as its database name.
pub(crate) fn serialize<E, S>(value: &E, s: S) -> Result<S::Ok, S::Error>
where
    E: ActiveEnum<Value = Enum>,
    S: Serializer,
{
    s.serialize_str(&value.to_value().value)
}

/// `value` as its database name, or `null`.
pub(crate) fn serialize_option<E, S>(value: &Option<E>, s: S) -> Result<S::Ok, S::Error>
where
    E: ActiveEnum<Value = Enum>,
    S: Serializer,
{
    match value {
        Some(v) => s.serialize_some(&*v.to_value().value),
        None => s.serialize_none(),
    }
}

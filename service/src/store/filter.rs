//! Search filters — on source, documents, time and metadata — compiled to
//! parameterised SQL: every value is a bound parameter, and the only text pasted into
//! SQL is a metadata key that [`check_key`] accepted.

use chrono::{DateTime, Utc};
use sea_orm::Value as SqlValue;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::StoreError;

/// Whose metadata a predicate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetadataOf {
    /// The chunk's (`document_chunks.metadata`).
    Chunk,
    /// Its document's (`documents.metadata`).
    Document,
}

/// A comparison of one metadata key's value.
///
/// `eq`, `ne`, `in`, `nin` and `contains` compile to JSON containment (`@>`), which the
/// GIN `jsonb_path_ops` indexes serve; `lt`, `lte`, `gt` and `gte` compare numbers with
/// numbers and strings with strings (`metadata -> 'key'`, which an expression B-tree
/// index from [`super::promote_key`] serves); `exists` is true when the key is present.
/// `ne` and `nin` are the negations of `eq` and `in`: a row without the key matches
/// them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetaOp {
    /// Equal to the value (of the same JSON type).
    Eq(Value),
    /// Not equal (or absent).
    Ne(Value),
    /// Less than a number or string.
    Lt(Value),
    /// Less than or equal.
    Lte(Value),
    /// Greater than.
    Gt(Value),
    /// Greater than or equal.
    Gte(Value),
    /// Equal to one of the values.
    In(Vec<Value>),
    /// Equal to none of them (or absent).
    Nin(Vec<Value>),
    /// The key is present (with any value, JSON null included).
    Exists,
    /// An array value holds this element (a scalar), or these elements (an array); an
    /// object value holds these pairs (an object).
    Contains(Value),
}

/// A search filter. Combine with [`Filter::and`], [`Filter::or`] and [`Filter::not`].
///
/// Serialised as JSON for search logs and the command line, e.g.
/// `{"and": [{"source": ["wiki"]}, {"metadata": {"of": "chunk", "key": "lang", "op": {"eq": "en"}}}]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    /// The document's source is one of these.
    Source(Vec<String>),
    /// The chunk belongs to one of these documents.
    Documents(Vec<Uuid>),
    /// The document was created in `[from, until)`; an absent bound is open.
    Created {
        /// The earliest creation time, inclusive.
        from: Option<DateTime<Utc>>,
        /// The latest, exclusive.
        until: Option<DateTime<Utc>>,
    },
    /// A predicate on a metadata key.
    Metadata {
        /// The chunk's metadata or its document's.
        of: MetadataOf,
        /// The key: 1 to 64 ASCII letters, digits, `_`, `-`, `.` or `:`.
        key: String,
        /// The comparison.
        op: MetaOp,
    },
    /// Every filter holds (none: always true).
    And(Vec<Filter>),
    /// At least one holds (none: always false).
    Or(Vec<Filter>),
    /// The filter does not hold.
    Not(Box<Filter>),
}

/// A metadata key, to compare its value: [`Filter::chunk`] or [`Filter::document`].
#[derive(Debug, Clone)]
pub struct KeyFilter {
    of: MetadataOf,
    key: String,
}

macro_rules! key_ops {
    ($($(#[$doc:meta])* $name:ident => $variant:ident;)*) => {
        impl KeyFilter {
            $(
                $(#[$doc])*
                pub fn $name(self, value: impl Into<Value>) -> Filter {
                    self.op(MetaOp::$variant(value.into()))
                }
            )*
        }
    };
}

key_ops! {
    /// The key's value equals `value`.
    eq => Eq;
    /// The key's value does not equal `value`, or the key is absent.
    ne => Ne;
    /// The key's value is less than `value` (a number or string).
    lt => Lt;
    /// Less than or equal.
    lte => Lte;
    /// Greater than.
    gt => Gt;
    /// Greater than or equal.
    gte => Gte;
    /// The key's array (or object) value holds `value`.
    contains => Contains;
}

impl KeyFilter {
    fn op(self, op: MetaOp) -> Filter {
        Filter::Metadata {
            of: self.of,
            key: self.key,
            op,
        }
    }

    /// The key's value is one of `values`.
    pub fn is_in<V: Into<Value>>(self, values: impl IntoIterator<Item = V>) -> Filter {
        self.op(MetaOp::In(values.into_iter().map(Into::into).collect()))
    }

    /// The key's value is none of `values`, or the key is absent.
    pub fn not_in<V: Into<Value>>(self, values: impl IntoIterator<Item = V>) -> Filter {
        self.op(MetaOp::Nin(values.into_iter().map(Into::into).collect()))
    }

    /// The key is present.
    pub fn exists(self) -> Filter {
        self.op(MetaOp::Exists)
    }
}

impl Filter {
    /// A key of the chunk's metadata.
    pub fn chunk(key: impl Into<String>) -> KeyFilter {
        KeyFilter {
            of: MetadataOf::Chunk,
            key: key.into(),
        }
    }

    /// A key of the document's metadata.
    pub fn document(key: impl Into<String>) -> KeyFilter {
        KeyFilter {
            of: MetadataOf::Document,
            key: key.into(),
        }
    }

    /// The document's source is one of `sources`.
    pub fn source<S: Into<String>>(sources: impl IntoIterator<Item = S>) -> Self {
        Self::Source(sources.into_iter().map(Into::into).collect())
    }

    /// All of `filters`.
    pub fn and(filters: impl IntoIterator<Item = Filter>) -> Self {
        Self::And(filters.into_iter().collect())
    }

    /// Any of `filters`.
    pub fn or(filters: impl IntoIterator<Item = Filter>) -> Self {
        Self::Or(filters.into_iter().collect())
    }

    /// Not `self`.
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Self {
        Self::Not(Box::new(self))
    }

    /// Whether the filter confines the search to a few named documents, which an exact
    /// search over their chunks answers faster than the vector index.
    pub(crate) fn names_documents(&self) -> bool {
        match self {
            Self::Documents(_) => true,
            Self::And(all) => all.iter().any(Self::names_documents),
            _ => false,
        }
    }

    /// This filter as SQL over chunk alias `c` (a boolean expression, never NULL), its
    /// parameters numbered from `$first`.
    pub(crate) fn compile(&self, first: usize) -> Result<CompiledFilter, StoreError> {
        let mut out = CompiledFilter {
            sql: String::new(),
            values: Vec::new(),
            first,
        };
        let sql = out.expr(self)?;
        out.sql = sql;
        Ok(out)
    }
}

/// A filter as SQL: a boolean expression over `c` (the chunk), and its parameters.
#[derive(Debug)]
pub(crate) struct CompiledFilter {
    /// The expression.
    pub sql: String,
    /// Its parameters, `$first` onwards.
    pub values: Vec<SqlValue>,
    first: usize,
}

/// The longest metadata key.
const MAX_KEY: usize = 64;

/// Accepts a metadata key that may be pasted into SQL as a literal: 1 to 64 ASCII
/// letters, digits, `_`, `-`, `.` or `:`.
pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            field: "metadata key",
            value: key.to_owned(),
            reason: "keys are 1 to 64 ASCII letters, digits, '_', '-', '.' or ':'",
        })
    }
}

impl CompiledFilter {
    /// Binds `value` and returns its placeholder.
    fn bind(&mut self, value: impl Into<SqlValue>) -> String {
        self.values.push(value.into());
        format!("${}", self.first + self.values.len() - 1)
    }

    fn expr(&mut self, filter: &Filter) -> Result<String, StoreError> {
        Ok(match filter {
            Filter::Source(sources) => {
                let p = self.bind(sources.clone());
                document_exists(&format!("d.source = ANY({p}::text[])"))
            }
            Filter::Documents(ids) => {
                let p = self.bind(ids.clone());
                format!("c.document_id = ANY({p}::uuid[])")
            }
            Filter::Created { from, until } => {
                let mut terms = Vec::new();
                if let Some(from) = from {
                    terms.push(format!("d.created_at >= {}", self.bind(*from)));
                }
                if let Some(until) = until {
                    terms.push(format!("d.created_at < {}", self.bind(*until)));
                }
                if terms.is_empty() {
                    "true".to_owned()
                } else {
                    document_exists(&terms.join(" AND "))
                }
            }
            Filter::Metadata { of, key, op } => {
                check_key(key)?;
                let column = match of {
                    MetadataOf::Chunk => "c.metadata",
                    MetadataOf::Document => "d.metadata",
                };
                let sql = self.metadata(column, key, op)?;
                match of {
                    MetadataOf::Chunk => sql,
                    MetadataOf::Document => document_exists(&sql),
                }
            }
            Filter::And(all) => self.join(all, " AND ", "true")?,
            Filter::Or(any) => self.join(any, " OR ", "false")?,
            Filter::Not(inner) => format!("NOT ({})", self.expr(inner)?),
        })
    }

    fn join(&mut self, filters: &[Filter], op: &str, empty: &str) -> Result<String, StoreError> {
        if filters.is_empty() {
            return Ok(empty.to_owned());
        }
        let parts = filters
            .iter()
            .map(|f| self.expr(f).map(|sql| format!("({sql})")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(parts.join(op))
    }

    /// `column`'s `key` compared by `op`.
    fn metadata(&mut self, column: &str, key: &str, op: &MetaOp) -> Result<String, StoreError> {
        Ok(match op {
            MetaOp::Eq(value) => self.equals(column, key, value),
            MetaOp::Ne(value) => format!("NOT ({})", self.equals(column, key, value)),
            MetaOp::In(values) => self.any_equals(column, key, values),
            MetaOp::Nin(values) => format!("NOT ({})", self.any_equals(column, key, values)),
            MetaOp::Lt(v) => self.compare(column, key, "<", v)?,
            MetaOp::Lte(v) => self.compare(column, key, "<=", v)?,
            MetaOp::Gt(v) => self.compare(column, key, ">", v)?,
            MetaOp::Gte(v) => self.compare(column, key, ">=", v)?,
            MetaOp::Exists => format!("({column} -> '{key}') IS NOT NULL"),
            MetaOp::Contains(value) => {
                let inner = match value {
                    Value::Array(_) | Value::Object(_) => value.clone(),
                    scalar => Value::Array(vec![scalar.clone()]),
                };
                let p = self.bind(single(key, inner));
                format!("{column} @> {p}::jsonb")
            }
        })
    }

    /// Equality by containment (served by the GIN index), exact for scalars; an array
    /// or object is compared whole as well, as containment alone would accept a
    /// superset.
    fn equals(&mut self, column: &str, key: &str, value: &Value) -> String {
        let p = self.bind(single(key, value.clone()));
        match value {
            Value::Array(_) | Value::Object(_) => {
                let whole = self.bind(value.clone());
                format!("({column} @> {p}::jsonb AND {column} -> '{key}' = {whole}::jsonb)")
            }
            _ => format!("{column} @> {p}::jsonb"),
        }
    }

    fn any_equals(&mut self, column: &str, key: &str, values: &[Value]) -> String {
        if values.is_empty() {
            return "false".to_owned();
        }
        let parts: Vec<String> = values.iter().map(|v| self.equals(column, key, v)).collect();
        format!("({})", parts.join(" OR "))
    }

    /// An order comparison of numbers with numbers or strings with strings; a row whose
    /// value is of another type (or absent) does not match.
    fn compare(
        &mut self,
        column: &str,
        key: &str,
        op: &str,
        value: &Value,
    ) -> Result<String, StoreError> {
        let kind = match value {
            Value::Number(_) => "number",
            Value::String(_) => "string",
            other => {
                return Err(StoreError::Invalid {
                    field: "filter value",
                    value: other.to_string(),
                    reason: "lt, lte, gt and gte compare numbers or strings",
                });
            }
        };
        let p = self.bind(value.clone());
        Ok(format!(
            "coalesce(jsonb_typeof({column} -> '{key}') = '{kind}' AND {column} -> '{key}' {op} {p}::jsonb, false)"
        ))
    }
}

/// `{key: value}`.
fn single(key: &str, value: Value) -> Value {
    let mut object = serde_json::Map::new();
    object.insert(key.to_owned(), value);
    Value::Object(object)
}

/// A predicate on the chunk's document (alias `d`), as a correlated `EXISTS`.
fn document_exists(predicate: &str) -> String {
    format!("EXISTS (SELECT 1 FROM documents d WHERE d.id = c.document_id AND {predicate})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_parameters_and_bad_keys_are_refused() {
        let f = Filter::and([
            Filter::chunk("lang").eq("en'; DROP TABLE documents; --"),
            Filter::document("year").gte(2020),
            Filter::source(["wiki"]).not(),
        ]);
        let compiled = f.compile(3).expect("compiles");
        assert!(!compiled.sql.contains("DROP"), "{}", compiled.sql);
        assert_eq!(compiled.values.len(), 3);
        assert!(compiled.sql.contains("$3") && compiled.sql.contains("$5"));
        let bad = Filter::chunk("a'b").eq(1).compile(1);
        assert!(matches!(
            bad,
            Err(StoreError::Invalid {
                field: "metadata key",
                ..
            })
        ));
        let bad = Filter::chunk("n").lt(json!([1])).compile(1);
        assert!(matches!(
            bad,
            Err(StoreError::Invalid {
                field: "filter value",
                ..
            })
        ));
    }

    #[test]
    fn a_filter_round_trips_through_json() {
        let f = Filter::or([
            Filter::chunk("tags").contains("a"),
            Filter::chunk("n").exists(),
        ]);
        let text = serde_json::to_string(&f).expect("serialises");
        assert_eq!(serde_json::from_str::<Filter>(&text).expect("parses"), f);
    }
}

//! Database failures by class: the one conversion from the driver's errors (sqlx's and
//! SeaORM's) that keeps what kind of failure it was, so callers match a variant —
//! a duplicate key, a missing parent row, a refused check, a transaction to retry, a
//! lost connection — instead of reading message text. Every domain error of the
//! service wraps it.

use sea_orm::{DbErr, RuntimeErr, sqlx};

/// An error of the caller's code, boxed: what a cache's compute closure or a queue
/// handler may fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A database failure, classified by its SQLSTATE (or, without one, by what the
/// driver reports). Each variant keeps the server's message; the constraint or column
/// when the server names one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    /// A unique or primary-key constraint refused a duplicate (SQLSTATE 23505).
    #[error("unique violation{}: {message}", on(constraint))]
    UniqueViolation {
        /// The constraint (or unique index), when the server names it.
        constraint: Option<String>,
        /// The server's message.
        message: String,
    },
    /// A foreign key refused a row whose parent does not exist, or a delete of a
    /// parent still referenced (SQLSTATE 23503).
    #[error("foreign-key violation{}: {message}", on(constraint))]
    ForeignKeyViolation {
        /// The constraint, when the server names it.
        constraint: Option<String>,
        /// The server's message.
        message: String,
    },
    /// A CHECK constraint refused a value (SQLSTATE 23514).
    #[error("check violation{}: {message}", on(constraint))]
    CheckViolation {
        /// The constraint, when the server names it.
        constraint: Option<String>,
        /// The server's message.
        message: String,
    },
    /// A NOT NULL column got a NULL (SQLSTATE 23502).
    #[error("not-null violation{}: {message}", on(column))]
    NotNullViolation {
        /// The column, when the server names it.
        column: Option<String>,
        /// The server's message.
        message: String,
    },
    /// The transaction lost to a concurrent one — a serialization failure (40001) or a
    /// deadlock (40P01) — and was rolled back; running it again may succeed.
    #[error("transaction must be retried ({code}): {message}")]
    SerializationFailure {
        /// `40001` or `40P01`.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The connection failed or could not be made: network, TLS, the pool, or the
    /// server ending the session (SQLSTATE class 08, 57P01–57P03). Nothing is known
    /// of a statement in flight.
    #[error("connection: {message}")]
    Connection {
        /// What the driver or server said.
        message: String,
    },
    /// Work that needs a session of its own (LISTEN, a session advisory lock, COPY,
    /// `CREATE INDEX CONCURRENTLY`, migrations) was given only a transaction-mode
    /// pooler: `DIRECT_URL` is missing.
    #[error(
        "{} needs a session connection, but DATABASE_URL goes through a transaction-mode pooler: set DIRECT_URL",
        purpose.component()
    )]
    NeedsSession {
        /// What needed it.
        purpose: crate::db::SessionUse,
    },
    /// Anything else: another SQLSTATE (`code`), or a failure of the client side
    /// (decoding a row, encoding a value) with no code.
    #[error("database{}: {message}", code.as_ref().map(|c| format!(" error {c}")).unwrap_or_default())]
    Other {
        /// The SQLSTATE, when the server answered with one.
        code: Option<String>,
        /// What went wrong.
        message: String,
    },
}

/// A value a function refused before touching the database: which field, the value,
/// and why. The domain errors carry it as their `Invalid` variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} {value:?}: {reason}")]
pub struct InvalidInput {
    /// The field (or argument).
    pub field: &'static str,
    /// Its value, as text.
    pub value: String,
    /// Why it is refused.
    pub reason: &'static str,
}

impl InvalidInput {
    /// `field`'s `value` is refused for `reason`.
    pub fn new(field: &'static str, value: impl ToString, reason: &'static str) -> Self {
        Self {
            field,
            value: value.to_string(),
            reason,
        }
    }
}

/// " on <name>" for a message, or nothing.
fn on(name: &Option<String>) -> String {
    name.as_ref()
        .map(|n| format!(" on {n}"))
        .unwrap_or_default()
}

impl DbError {
    /// A query that always yields one row (an aggregate, a function's single row)
    /// yielded none: [`DbError::Other`] naming `what`.
    pub fn no_row(what: &str) -> Self {
        Self::Other {
            code: None,
            message: format!("{what} returned no row"),
        }
    }

    /// The SQLSTATE, when the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::UniqueViolation { .. } => Some("23505"),
            Self::ForeignKeyViolation { .. } => Some("23503"),
            Self::CheckViolation { .. } => Some("23514"),
            Self::NotNullViolation { .. } => Some("23502"),
            Self::SerializationFailure { code, .. } => Some(code),
            Self::Other { code, .. } => code.as_deref(),
            Self::Connection { .. } | Self::NeedsSession { .. } => None,
        }
    }

    /// Whether doing the same again may succeed: a lost connection, or a transaction
    /// that lost to a concurrent one. A constraint violation or another refusal by the
    /// server will be refused again.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Connection { .. } | Self::SerializationFailure { .. }
        )
    }
}

impl From<&sqlx::Error> for DbError {
    fn from(e: &sqlx::Error) -> Self {
        match e {
            sqlx::Error::Database(db) => {
                let message = db.message().to_owned();
                let constraint = db.constraint().map(str::to_owned);
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                match code.as_str() {
                    "23505" => Self::UniqueViolation {
                        constraint,
                        message,
                    },
                    "23503" => Self::ForeignKeyViolation {
                        constraint,
                        message,
                    },
                    "23514" => Self::CheckViolation {
                        constraint,
                        message,
                    },
                    "23502" => Self::NotNullViolation {
                        column: db
                            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                            .and_then(|pg| pg.column())
                            .map(str::to_owned),
                        message,
                    },
                    "40001" | "40P01" => Self::SerializationFailure { code, message },
                    c if c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03") => {
                        Self::Connection {
                            message: format!("{message} ({c})"),
                        }
                    }
                    "" => Self::Other {
                        code: None,
                        message,
                    },
                    _ => Self::Other {
                        code: Some(code),
                        message,
                    },
                }
            }
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Self::Connection {
                message: e.to_string(),
            },
            other => Self::Other {
                code: None,
                message: other.to_string(),
            },
        }
    }
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        Self::from(&e)
    }
}

impl From<DbErr> for DbError {
    fn from(e: DbErr) -> Self {
        match &e {
            DbErr::Conn(RuntimeErr::SqlxError(inner))
            | DbErr::Exec(RuntimeErr::SqlxError(inner))
            | DbErr::Query(RuntimeErr::SqlxError(inner)) => Self::from(&**inner),
            DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => Self::Connection {
                message: e.to_string(),
            },
            _ => Self::Other {
                code: None,
                message: e.to_string(),
            },
        }
    }
}

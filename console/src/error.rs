//! What a page answers when it cannot answer: each failure as an HTTP status and a
//! sentence, a statement stopped by the timeout said as such.

use std::error::Error as StdError;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use service::error::DbError;

/// PostgreSQL's `query_canceled`: what `statement_timeout` raises.
const QUERY_CANCELED: &str = "57014";

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// A statement ran past the console's `statement_timeout` and was stopped.
    #[error("a query ran past the console's statement timeout and was stopped")]
    Timeout,
    /// The database failed otherwise.
    #[error("database: {0}")]
    Database(String),
    /// Not found (the sentence says what).
    #[error("{0}")]
    NotFound(String),
    /// The request asked for something invalid (the sentence says what).
    #[error("{0}")]
    BadRequest(String),
    /// The action conflicts with one in progress (the sentence says which).
    #[error("{0}")]
    Conflict(String),
    /// Signed in, but without the permission this route needs.
    #[error("{0}")]
    Forbidden(String),
    /// Not signed in, or the token is refused.
    #[error("{0}")]
    Unauthorized(String),
    /// A service the console calls (the embedder) failed.
    #[error("{0}")]
    Upstream(String),
    /// The console itself failed (a template, the random generator).
    #[error("{0}")]
    Internal(String),
}

impl PageError {
    /// The HTTP status of this failure.
    pub fn status(&self) -> StatusCode {
        match self {
            PageError::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            PageError::Database(_) | PageError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::Upstream(_) => StatusCode::BAD_GATEWAY,
            PageError::Conflict(_) => StatusCode::CONFLICT,
            PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PageError::Forbidden(_) => StatusCode::FORBIDDEN,
            PageError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        }
    }

    /// A domain error as a page's failure: a database error found anywhere in its
    /// chain keeps its class (a timeout is [`PageError::Timeout`]); an error without
    /// one is the caller's input ([`PageError::BadRequest`]).
    pub fn classify(e: &(dyn StdError + 'static)) -> Self {
        let mut next: Option<&(dyn StdError + 'static)> = Some(e);
        while let Some(err) = next {
            if let Some(db) = err.downcast_ref::<DbError>() {
                return if db.code() == Some(QUERY_CANCELED) {
                    PageError::Timeout
                } else {
                    PageError::Database(db.to_string())
                };
            }
            next = err.source();
        }
        PageError::BadRequest(e.to_string())
    }
}

impl From<sea_orm::DbErr> for PageError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::classify(&DbError::from(e))
    }
}

/// `From` for each domain's error, through [`PageError::classify`].
macro_rules! classified {
    ($($t:ty),* $(,)?) => {
        $(impl From<$t> for PageError {
            fn from(e: $t) -> Self {
                Self::classify(&e)
            }
        })*
    };
}

classified!(
    DbError,
    service::queue::QueueError,
    service::cache::CacheError,
    service::audit::AuditError,
    service::review::ReviewError,
    service::maintenance::MaintenanceError,
    service::store::StoreError,
);

impl From<service::store::EmbedError> for PageError {
    fn from(e: service::store::EmbedError) -> Self {
        match Self::classify(&e) {
            PageError::BadRequest(text) => PageError::Upstream(format!("the embedder: {text}")),
            other => other,
        }
    }
}

impl From<service::accounts::AccountError> for PageError {
    fn from(e: service::accounts::AccountError) -> Self {
        match e {
            service::accounts::AccountError::TokenRefused(reason) => {
                PageError::Unauthorized(reason.to_string())
            }
            service::accounts::AccountError::UnknownUser(id) => {
                PageError::NotFound(format!("no user {id}"))
            }
            e => Self::classify(&e),
        }
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> Self {
        PageError::Internal(format!("template: {e}"))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.status();
        let advice = match &self {
            PageError::Timeout => {
                "The database stopped the query at the console's statement timeout, so this \
                 page did not load it further. Narrow the filter, or try again later."
            }
            PageError::Unauthorized(_) => "Sign in with a token from `strata users token create`.",
            _ => "",
        };
        let body = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{code} · Strata</title>\
             <link rel=\"stylesheet\" href=\"/assets/console.css\"></head><body><main>\
             <h1>{code}</h1><p class=\"error\" id=\"error\">{message}</p><p>{advice}</p>\
             <p><a href=\"/\">Overview</a></p></main></body></html>",
            code = status,
            message = crate::format::escape(&self.to_string()),
            advice = crate::format::escape(advice),
        );
        (status, Html(body)).into_response()
    }
}

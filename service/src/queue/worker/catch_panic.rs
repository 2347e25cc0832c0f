//! A handler's panic as a job failure.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde_json::Value;

use super::HandlerFuture;

/// How a run ended when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RunError {
    /// The handler returned an error (or ran out of time).
    Failed(String),
    /// The handler panicked; the message is the panic's.
    Panicked(String),
}

impl RunError {
    /// The error recorded on the job.
    pub(super) fn into_message(self) -> String {
        match self {
            RunError::Failed(message) => message,
            RunError::Panicked(message) => format!("handler panicked: {message}"),
        }
    }
}

/// A handler's future whose panic becomes [`RunError::Panicked`] with the panic's
/// message.
pub(super) struct CatchPanic(pub(super) HandlerFuture);

impl Future for CatchPanic {
    type Output = Result<Value, RunError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let polled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.0.as_mut().poll(cx)));
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(result)) => {
                Poll::Ready(result.map_err(|e| RunError::Failed(e.to_string())))
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-text panic payload".into());
                Poll::Ready(Err(RunError::Panicked(message)))
            }
        }
    }
}

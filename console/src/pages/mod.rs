//! The pages, one file each, and what they share: the chrome around every page
//! (navigation, who is signed in, the read-only badge, the message of the action
//! just done) and the queue names of a URL.

use askama::Template;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use service::queue::{self, QueueTable};

use crate::PageError;
use crate::auth::Viewer;

pub(crate) mod audit;
pub(crate) mod caches;
pub(crate) mod doctor;
pub(crate) mod documents;
pub(crate) mod jobs;
pub(crate) mod maintenance;
pub(crate) mod overview;
pub(crate) mod reviews;
pub(crate) mod users;

/// One link of the navigation.
pub(crate) struct NavItem {
    pub(crate) href: &'static str,
    pub(crate) name: &'static str,
    pub(crate) here: bool,
}

/// The pages in the navigation, in order.
const NAV: [(&str, &str); 9] = [
    ("/", "Overview"),
    ("/jobs", "Jobs"),
    ("/caches", "Caches"),
    ("/documents", "Documents"),
    ("/reviews", "Reviews"),
    ("/maintenance", "Maintenance"),
    ("/audit", "Audit"),
    ("/doctor", "Doctor"),
    ("/users", "Users"),
];

/// What every page shows around its content.
pub(crate) struct Chrome {
    pub(crate) viewer: Viewer,
    pub(crate) here: &'static str,
    pub(crate) read_only: bool,
    pub(crate) flash: Option<String>,
}

impl Chrome {
    /// The chrome of page `here` (a name of the navigation) for `viewer`.
    pub(crate) fn new(state: &crate::AppState, viewer: Viewer, here: &'static str) -> Self {
        Self {
            viewer,
            here,
            read_only: state.config().read_only,
            flash: None,
        }
    }

    /// With the message of `done` (an action's outcome, from the URL).
    pub(crate) fn with_flash(mut self, done: &Done) -> Self {
        self.flash = done.message();
        self
    }

    /// The navigation, with the current page marked.
    pub(crate) fn nav(&self) -> Vec<NavItem> {
        NAV.iter()
            .map(|&(href, name)| NavItem {
                href,
                name,
                here: name == self.here,
            })
            .collect()
    }

    /// Whether the viewer may do what needs permission `name` and the console is
    /// not read-only: whether to show the button.
    pub(crate) fn may(&self, name: &str) -> bool {
        !self.read_only && self.viewer.can(name)
    }
}

/// What an action did, as its redirect's query says it: a code of this console and
/// a count, never free text (a link cannot make the console say something else).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Done {
    pub(crate) done: Option<String>,
    pub(crate) n: Option<u64>,
}

impl Done {
    /// The sentence for the code, if it is one of the console's.
    pub(crate) fn message(&self) -> Option<String> {
        let n = self.n.unwrap_or(0);
        let text = match self.done.as_deref()? {
            "retried" => "Job sent back to pending.".to_owned(),
            "cancelled" => "Job cancelled.".to_owned(),
            "deleted" => "Job deleted.".to_owned(),
            "bulk_retry" => format!("Retried {n} job(s)."),
            "bulk_cancel" => format!("Cancelled {n} job(s)."),
            "bulk_delete" => format!("Deleted {n} job(s)."),
            "purged" => format!("Purged {n} cache entr(ies)."),
            "reviewed" => "Decision recorded.".to_owned(),
            "started" => "Started; its run appears below when it ends.".to_owned(),
            "reindex" => "Index build started; progress shows below.".to_owned(),
            "enabled" => "Task enabled.".to_owned(),
            "disabled" => "Task disabled.".to_owned(),
            "role" => "Role changed.".to_owned(),
            _ => return None,
        };
        Some(text)
    }
}

/// A template as a response (a template error as a page error).
pub(crate) fn render(page: impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => PageError::from(e).into_response(),
    }
}

/// The queue a URL names: `jobs` or `ai` (`ai_annotation_jobs`).
pub(crate) fn queue_table(name: &str) -> Result<QueueTable, PageError> {
    match name {
        "jobs" => Ok(queue::JOBS),
        "ai" | "ai_annotation_jobs" => Ok(queue::AI_ANNOTATION_JOBS),
        other => Err(PageError::NotFound(format!(
            "no queue {other:?}: jobs or ai"
        ))),
    }
}

/// The URL name of a queue.
pub(crate) fn queue_name(table: QueueTable) -> &'static str {
    if table == queue::JOBS { "jobs" } else { "ai" }
}

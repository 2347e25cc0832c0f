//! The console's static files, compiled into the binary: htmx (vendored from the
//! npm package `htmx.org` 2.0.11, Zero-Clause BSD — `assets/htmx.LICENSE`), the
//! refresh helper and the style sheet.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// htmx 2.0.11, minified, as its npm package ships it.
const HTMX: &str = include_str!("../assets/htmx.min.js");
/// The 5-second refresh, paused while the tab is hidden, and confirmations.
const CONSOLE_JS: &str = include_str!("../assets/console.js");
/// The style sheet.
const CONSOLE_CSS: &str = include_str!("../assets/console.css");

/// `GET /assets/{file}`: one of the three files, cached by the browser for an hour.
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "htmx.min.js" => (HTMX, "text/javascript; charset=utf-8"),
        "console.js" => (CONSOLE_JS, "text/javascript; charset=utf-8"),
        "console.css" => (CONSOLE_CSS, "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        body,
    )
        .into_response()
}

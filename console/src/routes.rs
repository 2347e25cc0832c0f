//! The one table of route to permission, the router built from it, and the layers
//! every route passes: security headers, read-only, then sign-in, permission and
//! CSRF ([`crate::auth::authorize`]). A route not in the table is not served.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use service::accounts::Permission;

use crate::pages::{audit, caches, documents, jobs, maintenance, overview, reviews, users};
use crate::{AppState, PageError, assets, auth};

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: sign-in and the static files.
    Public,
    /// Anyone signed in (signing out).
    SignedIn,
    /// Whoever seed 004's `has_permission` grants this permission.
    Needs(Permission),
}

/// One route: its method, its path (axum's syntax) and who may use it.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The path pattern, as axum matches it.
    pub path: &'static str,
    /// Who may use it.
    pub access: Access,
}

const fn route(method: &'static str, path: &'static str, access: Access) -> Route {
    Route {
        method,
        path,
        access,
    }
}

use Access::{Needs, Public, SignedIn};
use Permission::{
    AnnotationsReview, CacheManage, JobsManage, SystemMaintain, UsersChangeRole, UsersRead,
};

/// Every route of the console and what it needs: reading needs `users.read`
/// (moderators and admins); review decisions `annotations.review`; job changes
/// `jobs.manage`; purges `cache.manage`; maintenance and reindex `system.maintain`;
/// role changes `users.change_role`.
pub const ROUTES: &[Route] = &[
    route("GET", "/login", Public),
    route("POST", "/login", Public),
    route("GET", "/assets/{file}", Public),
    route("POST", "/logout", SignedIn),
    route("GET", "/", Needs(UsersRead)),
    route("GET", "/overview/live", Needs(UsersRead)),
    route("GET", "/jobs", Needs(UsersRead)),
    route("GET", "/jobs/{queue}/{id}", Needs(UsersRead)),
    route("POST", "/jobs/{queue}/{id}/{action}", Needs(JobsManage)),
    route("POST", "/jobs/bulk", Needs(JobsManage)),
    route("GET", "/caches", Needs(UsersRead)),
    route("POST", "/caches/{kind}/purge", Needs(CacheManage)),
    route("GET", "/documents", Needs(UsersRead)),
    route("GET", "/documents/search", Needs(UsersRead)),
    route("POST", "/documents/reindex", Needs(SystemMaintain)),
    route("GET", "/reviews", Needs(UsersRead)),
    route("POST", "/reviews/{id}/approve", Needs(AnnotationsReview)),
    route("POST", "/reviews/{id}/reject", Needs(AnnotationsReview)),
    route("POST", "/reviews/{id}/correct", Needs(AnnotationsReview)),
    route("GET", "/maintenance", Needs(UsersRead)),
    route("POST", "/maintenance/{task}/run", Needs(SystemMaintain)),
    route("POST", "/maintenance/{task}/enabled", Needs(SystemMaintain)),
    route("GET", "/audit", Needs(UsersRead)),
    route("GET", "/doctor", Needs(UsersRead)),
    route("GET", "/users", Needs(UsersRead)),
    route("POST", "/users/{id}/role", Needs(UsersChangeRole)),
];

/// The permissions [`ROUTES`] name, for one query of what a viewer has.
pub(crate) const CONSOLE_PERMISSIONS: [Permission; 6] = [
    UsersRead,
    AnnotationsReview,
    JobsManage,
    CacheManage,
    SystemMaintain,
    UsersChangeRole,
];

/// Who may use `method` `path` (a matched pattern); `None` when the table does not
/// name it, which is refused.
pub fn access(method: &Method, path: &str) -> Option<Access> {
    ROUTES
        .iter()
        .find(|r| r.method == method.as_str() && r.path == path)
        .map(|r| r.access)
}

/// The handler of `route`.
fn handler(route: &Route) -> MethodRouter<AppState> {
    match (route.method, route.path) {
        ("GET", "/login") => get(auth::login_page),
        ("POST", "/login") => post(auth::login),
        ("GET", "/assets/{file}") => get(assets::asset),
        ("POST", "/logout") => post(auth::logout),
        ("GET", "/") => get(overview::page),
        ("GET", "/overview/live") => get(overview::live),
        ("GET", "/jobs") => get(jobs::list),
        ("GET", "/jobs/{queue}/{id}") => get(jobs::detail),
        ("POST", "/jobs/{queue}/{id}/{action}") => post(jobs::change),
        ("POST", "/jobs/bulk") => post(jobs::bulk),
        ("GET", "/caches") => get(caches::page),
        ("POST", "/caches/{kind}/purge") => post(caches::purge),
        ("GET", "/documents") => get(documents::page),
        ("GET", "/documents/search") => get(documents::search),
        ("POST", "/documents/reindex") => post(documents::reindex),
        ("GET", "/reviews") => get(reviews::page),
        ("POST", "/reviews/{id}/approve") => post(reviews::approve),
        ("POST", "/reviews/{id}/reject") => post(reviews::reject),
        ("POST", "/reviews/{id}/correct") => post(reviews::correct),
        ("GET", "/maintenance") => get(maintenance::page),
        ("POST", "/maintenance/{task}/run") => post(maintenance::run),
        ("POST", "/maintenance/{task}/enabled") => post(maintenance::enabled),
        ("GET", "/audit") => get(audit::page),
        ("GET", "/doctor") => get(crate::pages::doctor::page),
        ("GET", "/users") => get(users::page),
        ("POST", "/users/{id}/role") => post(users::role),
        (method, path) => unreachable!("route {method} {path} is in ROUTES without a handler"),
    }
}

/// The router: every route of [`ROUTES`] with its handler, behind the layers.
pub(crate) fn build(state: AppState) -> Router {
    let mut router = Router::new();
    for r in ROUTES {
        router = router.route(r.path, handler(r));
    }
    router
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), read_only))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// The paths a read-only console still accepts a POST on: signing in and out
/// change no data of the application.
const SESSION_PATHS: [&str; 2] = ["/login", "/logout"];

/// `--read-only`: every request but GET and HEAD is refused with 403 (signing in and
/// out aside), before sign-in or any query.
async fn read_only(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let reads = req.method() == Method::GET || req.method() == Method::HEAD;
    if state.config().read_only && !reads && !SESSION_PATHS.contains(&req.uri().path()) {
        return PageError::Forbidden("this console is read-only (strata serve --read-only)".into())
            .into_response();
    }
    next.run(req).await
}

/// The Content-Security-Policy: scripts and styles from the console only (htmx and
/// its helper are files it serves; no inline script, no eval), images also over
/// HTTPS (annotation images), no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                   img-src 'self' https: data:; frame-ancestors 'none'; form-action 'self'; \
                   base-uri 'none'";

/// Headers on every answer: the policy above, no sniffing, no referrer, pages not
/// cached (the static files say otherwise themselves).
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_one_entry_and_a_handler() {
        for (i, r) in ROUTES.iter().enumerate() {
            let _ = handler(r);
            assert!(
                !ROUTES[..i]
                    .iter()
                    .any(|o| o.method == r.method && o.path == r.path),
                "{} {} twice",
                r.method,
                r.path
            );
            if let Access::Needs(p) = r.access {
                assert!(CONSOLE_PERMISSIONS.contains(&p), "{p:?} not asked for");
            }
        }
    }

    #[test]
    fn every_change_needs_a_permission_beyond_reading() {
        for r in ROUTES.iter().filter(|r| r.method == "POST") {
            match r.access {
                Access::Needs(p) => assert_ne!(p, UsersRead, "{} {}", r.method, r.path),
                Access::Public | Access::SignedIn => {
                    assert!(SESSION_PATHS.contains(&r.path), "{} is open", r.path)
                }
            }
        }
    }
}

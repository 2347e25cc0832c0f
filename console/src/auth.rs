//! Sign-in, sessions and the check every route passes.
//!
//! A token of `strata users token create` signs in: as a form (`POST /login`), which
//! sets a signed, HttpOnly, SameSite=Strict session cookie holding the token's id, a
//! CSRF nonce and the session's end; or on each request as `Authorization: Bearer`,
//! for scripts, which needs no CSRF token. Every request re-reads the token, so a
//! revocation, an expiry or a role change applies at once.

use std::net::{IpAddr, SocketAddr};

use askama::Template;
use axum::Form;
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, SameSite, SignedCookieJar};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use service::accounts::{self, AccountError, Authenticated, Permission, Role};
use service::audit::{self, AuditEvent};
use uuid::Uuid;

use crate::routes::{self, Access, CONSOLE_PERMISSIONS};
use crate::{AppState, PageError};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "strata_session";
/// The header an htmx request or a script sends its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field a form sends its CSRF token in.
pub const CSRF_FIELD: &str = "csrf";
/// The largest form body the CSRF check reads.
const MAX_FORM_BYTES: usize = 1 << 20;

/// Who is asking, as every handler after [`authorize`] sees it.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The user.
    pub user_id: Uuid,
    /// Their email.
    pub email: String,
    /// Their role now.
    pub role: Role,
    /// Which of the console's permissions they have (seed 004's `has_permission`).
    pub granted: Vec<Permission>,
    /// The session's CSRF token for forms; empty for a Bearer request.
    pub csrf: String,
    /// The client's address, when known.
    pub ip: Option<IpAddr>,
    /// The client's user agent, when sent.
    pub user_agent: Option<String>,
}

impl Viewer {
    /// Whether the viewer has permission `name` (`jobs.manage`, …): what a template
    /// asks before showing a button. The route checks again on use.
    pub fn can(&self, name: &str) -> bool {
        self.granted.iter().any(|p| p.as_str() == name)
    }

    /// An audit event of `event_type` done by this viewer, with their address and
    /// user agent.
    pub fn event(&self, event_type: &str) -> AuditEvent {
        let mut event = AuditEvent::new(event_type).actor(self.user_id);
        event.ip_address = self.ip;
        event.user_agent = self.user_agent.clone();
        event
    }
}

/// A session as its cookie holds it: `token-id.nonce.end` (signed).
struct Session {
    token: Uuid,
    nonce: String,
    ends: DateTime<Utc>,
}

impl Session {
    fn parse(value: &str) -> Option<Self> {
        let mut parts = value.splitn(3, '.');
        let token = parts.next()?.parse().ok()?;
        let nonce = parts.next()?.to_owned();
        let ends = DateTime::from_timestamp(parts.next()?.parse().ok()?, 0)?;
        (nonce.len() == 64).then_some(Self { token, nonce, ends })
    }

    fn value(&self) -> String {
        format!("{}.{}.{}", self.token, self.nonce, self.ends.timestamp())
    }
}

/// 32 bytes from the operating system's generator, in hex.
fn nonce() -> Result<String, PageError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        PageError::Internal(format!("the operating system's generator failed: {e}"))
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Equal strings, compared in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The sign-in page.
#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    next: String,
    message: String,
}

/// Where to go after signing in: a path of this console, else the overview.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n
                    .chars()
                    .any(|c| c == '\\' || c.is_whitespace() || c.is_control()) =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// The sign-in page with `status` and `message`.
fn login_response(status: StatusCode, next: &str, message: &str) -> Response {
    let page = LoginPage {
        next: safe_next(Some(next)),
        message: message.to_owned(),
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => PageError::from(e).into_response(),
    }
}

/// `?next=` of the sign-in page.
#[derive(Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

/// `GET /login`.
pub(crate) async fn login_page(Query(q): Query<NextQuery>) -> Response {
    login_response(StatusCode::OK, &safe_next(q.next.as_deref()), "")
}

/// The sign-in form.
#[derive(Deserialize)]
pub(crate) struct LoginForm {
    token: String,
    next: Option<String>,
}

/// `POST /login`: checks the token, records `console.signed_in`, and sets the
/// session cookie (ending at the token's expiry or after the session lifetime,
/// whichever comes first). A refused token answers 401 with the reason.
pub(crate) async fn login(
    State(state): State<AppState>,
    jar: SignedCookieJar,
    headers: HeaderMap,
    ClientAddr(ip): ClientAddr,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let result = async {
        let txn = state.write().await?;
        let who = accounts::authenticate(&txn, form.token.trim()).await?;
        let mut event = AuditEvent::new("console.signed_in")
            .actor(who.user_id)
            .resource("access_tokens", who.token_id)
            .action("sign_in");
        event.ip_address = ip;
        event.user_agent = user_agent(&headers);
        audit::record(&txn, &event).await?;
        txn.commit().await?;
        Ok::<Authenticated, PageError>(who)
    }
    .await;
    let who = match result {
        Ok(who) => who,
        Err(PageError::Unauthorized(reason)) => {
            return login_response(StatusCode::UNAUTHORIZED, &next, &reason);
        }
        Err(e) => return e.into_response(),
    };
    let lifetime = chrono::Duration::from_std(state.config().session_lifetime)
        .unwrap_or(chrono::Duration::hours(12));
    let nonce = match nonce() {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    let session = Session {
        token: who.token_id,
        nonce,
        ends: (Utc::now() + lifetime).min(who.expires_at),
    };
    let cookie = Cookie::build((SESSION_COOKIE, session.value()))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.config().secure_cookie)
        .path("/");
    (jar.add(cookie), Redirect::to(&next)).into_response()
}

/// The client's address, when the server knows it (`ConnectInfo`).
pub(crate) struct ClientAddr(pub(crate) Option<IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// `POST /logout`: drops the session cookie.
pub(crate) async fn logout(jar: SignedCookieJar) -> Response {
    let gone = Cookie::build((SESSION_COOKIE, "")).path("/");
    (jar.remove(gone), Redirect::to("/login")).into_response()
}

fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(500).collect())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Every route's check, in one layer: the route's entry in [`routes::ROUTES`] (a
/// route without one is refused), then — unless public — the caller (Bearer token,
/// else session cookie; neither or a refused token is 401), the permission (seed
/// 004's `has_permission`; without it 403), and for a session's POST its CSRF token
/// (missing or wrong: 403). Round trips for a signed-in request: begin and settings,
/// the token with its user, the permissions, commit (and the token's last use, at most
/// once a minute).
pub(crate) async fn authorize(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match admit(&state, req).await {
        Ok(req) => next.run(req).await,
        Err(res) => res,
    }
}

async fn admit(state: &AppState, mut req: Request) -> Result<Request, Response> {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let Some(access) = path
        .as_deref()
        .and_then(|p| routes::access(req.method(), p))
    else {
        return Err(
            PageError::Forbidden("this route is not in the console's route table".into())
                .into_response(),
        );
    };
    if access == Access::Public {
        return Ok(req);
    }
    // Where to come back after signing in: this page, when it is one (a GET that is
    // not an htmx fragment); else the overview.
    let here = if req.method() == Method::GET && !req.headers().contains_key("hx-request") {
        req.uri()
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned())
    } else {
        "/".to_owned()
    };
    let jar = SignedCookieJar::from_headers(req.headers(), state.0.key.clone());
    let session = jar
        .get(SESSION_COOKIE)
        .and_then(|c| Session::parse(c.value()));
    let secret = bearer(req.headers()).map(str::to_owned);
    if secret.is_none() && session.is_none() {
        return Err(refused(&req, &here, "sign in to use the console"));
    }
    if secret.is_none()
        && let Some(s) = &session
        && s.ends <= Utc::now()
    {
        return Err(refused(&req, &here, "the session has ended: sign in again"));
    }
    let checked = async {
        let txn = state.write().await?;
        let who = match &secret {
            Some(secret) => accounts::authenticate(&txn, secret).await,
            None => {
                let token = session.as_ref().map_or(Uuid::nil(), |s| s.token);
                accounts::authenticate_id(&txn, token).await
            }
        }
        .map_err(|e| match e {
            // A token whose user is gone signs nobody in.
            AccountError::UnknownUser(_) => {
                PageError::Unauthorized("the token's user no longer exists".into())
            }
            e => PageError::from(e),
        })?;
        let granted = accounts::permissions_of(&txn, who.user_id, &CONSOLE_PERMISSIONS).await?;
        txn.commit().await?;
        Ok::<_, PageError>((who, granted))
    }
    .await;
    let (who, granted) = match checked {
        Ok(ok) => ok,
        Err(PageError::Unauthorized(reason)) => return Err(refused(&req, &here, &reason)),
        Err(e) => return Err(e.into_response()),
    };
    if let Access::Needs(permission) = access
        && !granted.contains(&permission)
    {
        return Err(PageError::Forbidden(format!(
            "{} ({}) does not have {}, which this needs",
            who.email,
            who.role,
            permission.as_str()
        ))
        .into_response());
    }
    let csrf = match (&secret, &session) {
        (None, Some(s)) => s.nonce.clone(),
        _ => String::new(),
    };
    if req.method() != Method::GET && req.method() != Method::HEAD && secret.is_none() {
        req = check_csrf(req, &csrf).await?;
    }
    let viewer = Viewer {
        user_id: who.user_id,
        email: who.email,
        role: who.role,
        granted,
        csrf,
        ip: req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip()),
        user_agent: user_agent(req.headers()),
    };
    req.extensions_mut().insert(viewer);
    Ok(req)
}

/// 401: the sign-in page (and, for htmx, a redirect to it); a refused session
/// cookie is dropped.
fn refused(req: &Request, here: &str, reason: &str) -> Response {
    let mut res = login_response(StatusCode::UNAUTHORIZED, here, reason);
    if req.headers().contains_key("hx-request")
        && let Ok(v) = format!("/login?next={}", urlencode(here)).parse()
    {
        res.headers_mut().insert("hx-redirect", v);
    }
    if let Ok(v) =
        format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict").parse()
    {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A session's change must carry its CSRF token: in the `X-CSRF-Token` header, or
/// as the `csrf` field of a urlencoded form (read here, then handed on). Missing or
/// wrong: 403.
async fn check_csrf(req: Request, expected: &str) -> Result<Request, Response> {
    let forbidden = |why: &str| PageError::Forbidden(why.to_owned()).into_response();
    if let Some(sent) = req.headers().get(CSRF_HEADER) {
        return match sent.to_str() {
            Ok(sent) if !expected.is_empty() && same(sent, expected) => Ok(req),
            _ => Err(forbidden("the CSRF token is wrong: reload the page")),
        };
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| forbidden("the form is too large"))?;
    let sent = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.into_owned());
    match sent {
        Some(sent) if !expected.is_empty() && same(&sent, expected) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        Some(_) => Err(forbidden("the CSRF token is wrong: reload the page")),
        None => Err(forbidden("the form carries no CSRF token")),
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn after_sign_in_the_console_sends_only_to_its_own_paths() {
        assert_eq!(
            safe_next(Some("/jobs?status=failed")),
            "/jobs?status=failed"
        );
        for away in [
            "//evil.example/",
            "/\t/evil.example",
            "/\\evil.example",
            "https://evil.example/",
            "/\n/evil",
            "",
        ] {
            assert_eq!(safe_next(Some(away)), "/", "{away:?}");
        }
        assert_eq!(safe_next(None), "/");
    }
}

//! The console is closed by default: no page without sign-in; a token signs in as a
//! strict, HttpOnly session cookie or as a Bearer header; expired and revoked tokens
//! get 401; every route is checked against the route table (a role × route matrix:
//! each role gets exactly its actions, a plain user none); a session's POST without
//! its CSRF token or with a wrong one gets 403; `--read-only` answers 403 to every
//! POST.

mod support;

use axum::http::{Method, StatusCode, header};
use chrono::TimeDelta;
use console::routes::{Access, ROUTES};
use service::accounts::{self, Permission, Role};
use support::{Auth, Console};

/// `path` with its parameters filled with values that exist nowhere (a handler that
/// is reached answers 404 or 400, never 403).
fn concrete(path: &str) -> String {
    path.replace("{queue}", "jobs")
        .replace("{id}", "00000000-0000-7000-8000-000000000000")
        .replace("{kind}", "pdf")
        .replace("{action}", "retry")
        .replace("{task}", "no_such_task")
        .replace("{file}", "console.css")
}

/// A form a route can take without changing anything that exists.
fn harmless_form(path: &str) -> Vec<(&'static str, &'static str)> {
    match path {
        "/jobs/bulk" => vec![
            ("action", "retry"),
            ("status", "failed"),
            ("job_type", "nothing"),
        ],
        "/caches/{kind}/purge" => vec![("what", "all")],
        "/maintenance/{task}/enabled" => vec![("enabled", "true")],
        "/users/{id}/role" => vec![("role", "user")],
        _ => vec![],
    }
}

/// What seed 004 grants each role, for the routes' permissions.
fn granted(role: Role, permission: Permission) -> bool {
    match permission {
        Permission::UsersRead | Permission::AnnotationsReview => role != Role::User,
        _ => role == Role::Admin,
    }
}

#[tokio::test]
async fn no_page_is_served_without_sign_in() {
    let c = Console::new().await;
    for r in ROUTES.iter().filter(|r| r.access != Access::Public) {
        let uri = concrete(r.path);
        let method: Method = r.method.parse().expect("method");
        let reply = Console::send_to(&c.app, method, &uri, Auth::None, &[]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{} {uri}", r.method);
        assert_eq!(
            reply.attrs("form#login", "action"),
            ["/login"],
            "{uri}: the sign-in form"
        );
    }
    // A bad bearer token, or a forged cookie, is no better.
    let bad = c.get("/", Auth::Bearer("strata_0000")).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.text("#error").contains("unknown token"), "{}", bad.body);
    let forged = support::Session {
        cookie: "strata_session=00000000-0000-7000-8000-000000000000.aa.9999999999".into(),
        csrf: String::new(),
    };
    assert_eq!(
        c.get("/", Auth::Session(&forged)).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The public routes are the sign-in page and the static files.
    assert_eq!(c.get("/login", Auth::None).await.status, StatusCode::OK);
    let js = c.get("/assets/htmx.min.js", Auth::None).await;
    assert_eq!(js.status, StatusCode::OK);
    assert!(js.body.contains("htmx"), "htmx is served from the binary");
}

#[tokio::test]
async fn a_token_signs_in_as_a_strict_http_only_cookie_and_pages_carry_csrf() {
    let c = Console::new().await;
    let reply = c
        .post(
            "/login",
            Auth::None,
            &[("token", &c.moderator_token), ("next", "/jobs")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.location(), "/jobs");
    let cookie = reply.headers[header::SET_COOKIE].to_str().expect("ascii");
    assert!(cookie.starts_with("strata_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(
        !cookie.contains(&c.moderator_token[7..]),
        "the secret is not in the cookie"
    );
    assert_eq!(c.audits("console.signed_in").await, 1);

    let session = c.sign_in(Role::Moderator).await;
    assert_eq!(
        session.csrf.len(),
        64,
        "the page's forms carry the session's CSRF token"
    );
    let page = c.get("/", Auth::Session(&session)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.text("#viewer"), "mod@example.org");
    assert!(
        page.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("ascii")
            .contains("script-src 'self'")
    );
    // An open redirect is refused: `next` stays on the console.
    let away = c
        .post(
            "/login",
            Auth::None,
            &[("token", &c.moderator_token), ("next", "//evil.example/")],
        )
        .await;
    assert_eq!(away.location(), "/");
    // A wrong token at the form: 401 with the reason, no cookie.
    let wrong = c
        .post("/login", Auth::None, &[("token", "strata_nope")])
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.headers.get(header::SET_COOKIE).is_none());
}

#[tokio::test]
async fn expired_and_revoked_tokens_get_401_and_sessions_end_with_them() {
    let c = Console::new().await;
    let session = c.sign_in(Role::Admin).await;
    assert_eq!(
        c.get("/", Auth::Session(&session)).await.status,
        StatusCode::OK
    );
    // Revoking the admin's token ends the session made with it and the bearer use.
    let token = accounts::list_tokens(&c.t.db, c.admin)
        .await
        .expect("tokens")[0]
        .id;
    accounts::revoke_token(&c.t.db, token, Some(c.admin))
        .await
        .expect("revoke");
    let after = c.get("/", Auth::Session(&session)).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert!(after.text("#error").contains("revoked"), "{}", after.body);
    assert_eq!(
        c.get("/", Auth::Bearer(&c.admin_token)).await.status,
        StatusCode::UNAUTHORIZED
    );
    // An expired token: 401, with the reason.
    let short = accounts::create_token(&c.t.db, c.moderator, None, TimeDelta::hours(1), None)
        .await
        .expect("token");
    c.t.sql(&format!(
        "UPDATE access_tokens SET created_at = now() - interval '2 hours',
                                  expires_at = now() - interval '1 second' WHERE id = '{}'",
        short.token.id
    ))
    .await;
    let expired = c.get("/jobs", Auth::Bearer(&short.secret)).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    assert!(
        expired.text("#error").contains("expired"),
        "{}",
        expired.body
    );
}

#[tokio::test]
async fn each_role_gets_exactly_its_routes() {
    let c = Console::new().await;
    for role in [Role::User, Role::Moderator, Role::Admin] {
        for r in ROUTES
            .iter()
            .filter(|r| matches!(r.access, Access::Needs(_)))
        {
            let Access::Needs(permission) = r.access else {
                continue;
            };
            let uri = concrete(r.path);
            let method: Method = r.method.parse().expect("method");
            let form = harmless_form(r.path);
            let reply =
                Console::send_to(&c.app, method, &uri, Auth::Bearer(c.token(role)), &form).await;
            if granted(role, permission) {
                assert_ne!(
                    reply.status,
                    StatusCode::FORBIDDEN,
                    "{role} {} {uri}: {}",
                    r.method,
                    reply.body
                );
                assert_ne!(reply.status, StatusCode::UNAUTHORIZED, "{role} {uri}");
                assert!(
                    !reply.status.is_server_error(),
                    "{role} {uri}: {}",
                    reply.body
                );
            } else {
                assert_eq!(
                    reply.status,
                    StatusCode::FORBIDDEN,
                    "{role} {} {uri} needs {}",
                    r.method,
                    permission.as_str()
                );
            }
        }
    }
    // The refusal names what is missing.
    let refused = c.get("/", Auth::Bearer(&c.plain_token)).await;
    assert!(
        refused.text("#error").contains("users.read"),
        "{}",
        refused.body
    );
    // A moderator sees no button it may not press.
    let jobs = c.get("/jobs", Auth::Bearer(&c.moderator_token)).await;
    assert!(
        jobs.texts("#bulk").is_empty(),
        "no bulk actions for a moderator"
    );
    let admin_jobs = c.get("/jobs", Auth::Bearer(&c.admin_token)).await;
    assert_eq!(admin_jobs.attrs("#bulk button", "id").len(), 3);
}

#[tokio::test]
async fn a_sessions_post_needs_its_csrf_token_and_a_bearer_request_none() {
    let c = Console::new().await;
    c.t.sql("INSERT INTO jobs (job_type, status, attempts, last_error) VALUES ('mail', 'failed', 3, 'boom')")
        .await;
    let id = c.t.scalar("SELECT id::text FROM jobs").await;
    let uri = format!("/jobs/jobs/{id}/retry");
    let session = c.sign_in(Role::Admin).await;
    let stripped = support::Session {
        csrf: String::new(),
        ..session.clone()
    };
    // No token (an empty field), and a wrong one: 403, nothing changed.
    let none = Console::send_to(
        &c.app,
        Method::POST,
        &uri,
        Auth::Session(&stripped),
        &[("x", "1")],
    )
    .await;
    assert_eq!(none.status, StatusCode::FORBIDDEN, "{}", none.body);
    let wrong = c
        .post(&uri, Auth::Session(&session), &[("csrf", &"0".repeat(64))])
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(
        c.t.scalar(&format!("SELECT status FROM jobs WHERE id = '{id}'"))
            .await,
        "failed"
    );
    assert_eq!(c.audits("job.retried").await, 0, "nothing written");
    // With it: done.
    let right = c.post(&uri, Auth::Session(&session), &[]).await;
    assert_eq!(right.status, StatusCode::SEE_OTHER, "{}", right.body);
    assert_eq!(
        c.t.scalar(&format!("SELECT status FROM jobs WHERE id = '{id}'"))
            .await,
        "pending"
    );
    // A script with a Bearer token needs none.
    c.t.sql(&format!(
        "UPDATE jobs SET status = 'failed' WHERE id = '{id}'"
    ))
    .await;
    let bearer = c.post(&uri, Auth::Bearer(&c.admin_token), &[]).await;
    assert_eq!(bearer.status, StatusCode::SEE_OTHER, "{}", bearer.body);
    assert_eq!(c.audits("job.retried").await, 2);
}

#[tokio::test]
async fn read_only_answers_403_to_every_post() {
    let c = Console::new().await;
    let read_only = Console::router(&c.t, |config| config.read_only = true);
    c.t.sql("INSERT INTO jobs (job_type, status, attempts) VALUES ('mail', 'failed', 3)")
        .await;
    for r in ROUTES.iter().filter(|r| r.method == "POST") {
        let uri = concrete(r.path);
        let reply = Console::send_to(
            &read_only,
            Method::POST,
            &uri,
            Auth::Bearer(&c.admin_token),
            &harmless_form(r.path),
        )
        .await;
        if r.path == "/login" || r.path == "/logout" {
            assert_ne!(
                reply.status,
                StatusCode::FORBIDDEN,
                "{uri}: signing in and out"
            );
        } else {
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{uri}");
            assert!(reply.body.contains("read-only"), "{uri}: {}", reply.body);
        }
    }
    // Reading still works, and the page shows no action.
    let page = Console::send_to(
        &read_only,
        Method::GET,
        "/jobs?status=failed",
        Auth::Bearer(&c.admin_token),
        &[],
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.texts("#bulk").is_empty());
    assert_eq!(page.texts(".readonly"), ["read-only"]);
    assert_eq!(c.t.scalar("SELECT status FROM jobs").await, "failed");
}

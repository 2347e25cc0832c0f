//! A console over a test database, with one signed-in token per role, and requests
//! sent through tower's `oneshot` (no socket).

#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use chrono::TimeDelta;
use console::ConsoleConfig;
use http_body_util::BodyExt;
use scraper::{Html, Selector};
use service::accounts::{self, NewUser, Role};
use service::doctor::Expectations;
use tests::TestDb;
use tower::ServiceExt;
use uuid::Uuid;

/// A console, its database, and a user and token of each role.
pub struct Console {
    pub t: TestDb,
    pub app: Router,
    pub admin: Uuid,
    pub moderator: Uuid,
    pub plain: Uuid,
    pub admin_token: String,
    pub moderator_token: String,
    pub plain_token: String,
}

/// How a request signs in.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    /// Not at all.
    None,
    /// `Authorization: Bearer`.
    Bearer(&'a str),
    /// A session cookie (and its CSRF token for forms).
    Session(&'a Session),
}

/// A signed-in browser session.
#[derive(Debug, Clone)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

/// An answer.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The text of every element `selector` matches, trimmed.
    pub fn texts(&self, selector: &str) -> Vec<String> {
        let html = Html::parse_document(&self.body);
        let sel = Selector::parse(selector).expect("selector");
        html.select(&sel)
            .map(|e| e.text().collect::<String>().trim().to_owned())
            .collect()
    }

    /// The text of the one element `selector` matches.
    pub fn text(&self, selector: &str) -> String {
        let all = self.texts(selector);
        assert_eq!(all.len(), 1, "{selector}: {all:?} in {}", self.body);
        all.into_iter().next().unwrap_or_default()
    }

    /// Attribute `attr` of every element `selector` matches.
    pub fn attrs(&self, selector: &str, attr: &str) -> Vec<String> {
        let html = Html::parse_document(&self.body);
        let sel = Selector::parse(selector).expect("selector");
        html.select(&sel)
            .filter_map(|e| e.value().attr(attr).map(str::to_owned))
            .collect()
    }

    /// Where a redirect points.
    pub fn location(&self) -> String {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

impl Console {
    /// A console with the defaults.
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    /// A console configured by `configure`.
    pub async fn with(configure: impl FnOnce(&mut ConsoleConfig)) -> Self {
        let t = TestDb::new().await;
        let mut ids = Vec::new();
        let mut tokens = Vec::new();
        for (email, role) in [
            ("admin@example.org", Role::Admin),
            ("mod@example.org", Role::Moderator),
            ("user@example.org", Role::User),
        ] {
            let id = accounts::create_user(&t.db, NewUser::new(email, "!").with_role(role))
                .await
                .expect("user")
                .id;
            let token = accounts::create_token(&t.db, id, Some("test"), TimeDelta::hours(1), None)
                .await
                .expect("token");
            ids.push(id);
            tokens.push(token.secret);
        }
        let app = Self::router(&t, configure);
        Self {
            app,
            admin: ids[0],
            moderator: ids[1],
            plain: ids[2],
            admin_token: tokens[0].clone(),
            moderator_token: tokens[1].clone(),
            plain_token: tokens[2].clone(),
            t,
        }
    }

    /// Another console over the same database.
    pub fn router(t: &TestDb, configure: impl FnOnce(&mut ConsoleConfig)) -> Router {
        let mut config = ConsoleConfig::new(Expectations::new(migration::names()));
        config.session_key = Some(vec![7; 64]);
        // A generous timeout: many test databases are made and filled at once on a
        // small machine. The plan guard and the timeout test set their own.
        config.statement_timeout = std::time::Duration::from_secs(10);
        configure(&mut config);
        console::router(t.db.clone().into(), config).expect("router")
    }

    /// The token of `role`.
    pub fn token(&self, role: Role) -> &str {
        match role {
            Role::Admin => &self.admin_token,
            Role::Moderator => &self.moderator_token,
            Role::User => &self.plain_token,
        }
    }

    /// Sends `method uri` signed in as `auth`, with `form` as a urlencoded body (a
    /// session's CSRF token added unless `form` has one), through `app`.
    pub async fn send_to(
        app: &Router,
        method: Method,
        uri: &str,
        auth: Auth<'_>,
        form: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder().method(method.clone()).uri(uri);
        match auth {
            Auth::None => {}
            Auth::Bearer(token) => {
                req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
            }
            Auth::Session(s) => req = req.header(header::COOKIE, s.cookie.as_str()),
        }
        let body = if method == Method::POST {
            req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            let mut f = form_urlencoded::Serializer::new(String::new());
            for (k, v) in form {
                f.append_pair(k, v);
            }
            if let Auth::Session(s) = auth
                && !form.iter().any(|(k, _)| *k == "csrf")
            {
                f.append_pair("csrf", &s.csrf);
            }
            Body::from(f.finish())
        } else {
            Body::empty()
        };
        let res = app
            .clone()
            .oneshot(req.body(body).expect("request"))
            .await
            .expect("infallible");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.expect("body").to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// `GET uri`.
    pub async fn get(&self, uri: &str, auth: Auth<'_>) -> Reply {
        Self::send_to(&self.app, Method::GET, uri, auth, &[]).await
    }

    /// `POST uri` with `form`.
    pub async fn post(&self, uri: &str, auth: Auth<'_>, form: &[(&str, &str)]) -> Reply {
        Self::send_to(&self.app, Method::POST, uri, auth, form).await
    }

    /// Signs in with `token` through the form; the session's cookie and the CSRF
    /// token its pages carry.
    pub async fn sign_in_with(app: &Router, token: &str) -> Session {
        let reply =
            Self::send_to(app, Method::POST, "/login", Auth::None, &[("token", token)]).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
        let set = reply
            .headers
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .expect("a session cookie")
            .to_owned();
        let cookie = set.split(';').next().expect("name=value").to_owned();
        let probe = Session {
            cookie: cookie.clone(),
            csrf: String::new(),
        };
        let page = Self::send_to(app, Method::GET, "/users", Auth::Session(&probe), &[]).await;
        let csrf = page
            .attrs("input[name=csrf]", "value")
            .into_iter()
            .next()
            .unwrap_or_default();
        Session { cookie, csrf }
    }

    /// Signs in as `role`.
    pub async fn sign_in(&self, role: Role) -> Session {
        Self::sign_in_with(&self.app, self.token(role)).await
    }

    /// How many audit rows of `event_type` there are.
    pub async fn audits(&self, event_type: &str) -> i64 {
        self.t
            .scalar(&format!(
                "SELECT count(*) FROM audit_logs WHERE event_type = '{event_type}'"
            ))
            .await
            .parse()
            .expect("count")
    }
}

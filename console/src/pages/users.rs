//! Users and their roles; an admin changes a role (seed 004's `change_user_role`,
//! which writes its own audit row in the same statement).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use service::accounts::{self, Role};
use service::page::Page;
use uuid::Uuid;

use super::{Chrome, Done, render};
use crate::auth::Viewer;
use crate::format::time_fixed;
use crate::{AppState, PageError};

/// Users a page shows.
const PAGE_SIZE: u64 = 200;

/// One user's line.
pub(crate) struct UserRow {
    id: Uuid,
    email: String,
    name: String,
    role: String,
    created: String,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    chrome: Chrome,
    users: Vec<UserRow>,
    roles: Vec<&'static str>,
}

/// `GET /users`.
pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Query(done): Query<Done>,
) -> Result<Response, PageError> {
    let txn = state.read().await?;
    let page = Page::first(PAGE_SIZE).map_err(|e| PageError::Internal(e.to_string()))?;
    let users = accounts::list_users(&txn, None, page).await?;
    txn.commit().await?;
    Ok(render(UsersPage {
        chrome: Chrome::new(&state, viewer, "Users").with_flash(&done),
        users: users
            .into_iter()
            .map(|u| UserRow {
                id: u.id,
                email: u.email,
                name: u.display_name.unwrap_or_default(),
                role: u.role.to_string(),
                created: time_fixed(u.created_at),
            })
            .collect(),
        roles: Role::ALL.iter().map(|r| r.as_str()).collect(),
    }))
}

/// The role form.
#[derive(Deserialize)]
pub(crate) struct RoleForm {
    role: String,
}

/// `POST /users/{id}/role`: the role change (and its audit row) in one transaction;
/// the last admin cannot be demoted (the seed's rule, a 400 here).
pub(crate) async fn role(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<Uuid>,
    Form(form): Form<RoleForm>,
) -> Result<Response, PageError> {
    let role: Role = form
        .role
        .parse()
        .map_err(|e: accounts::UnknownRole| PageError::BadRequest(e.to_string()))?;
    let txn = state.write().await?;
    accounts::change_user_role(&txn, id, role, viewer.user_id).await?;
    txn.commit().await?;
    Ok(Redirect::to("/users?done=role").into_response())
}

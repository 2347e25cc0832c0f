//! Role changes and permission checks through seed 004's SQL functions, so an app and
//! a psql session obey the same rules.

use chrono::{DateTime, FixedOffset};
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};
use serde::Serialize;
use uuid::Uuid;

use super::{AccountError, Permission, Role, UnknownRole};
use crate::error::DbError;

/// A role change that happened (or found the role already set: `old == new`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleChange {
    /// The user whose role it is.
    pub user: Uuid,
    /// The role before.
    pub old: Role,
    /// The role now.
    pub new: Role,
}

#[derive(FromQueryResult)]
struct OldRole {
    old_role: Role,
}

/// Calls seed 004's `change_user_role`, which locks the admins' rows, checks, updates
/// and writes the `audit_logs` row in one statement.
const CHANGE_USER_ROLE_SQL: &str = "SELECT change_user_role($1, $2, $3) AS old_role";

/// Sets `target`'s role to `new_role` on behalf of `changed_by`, through the SQL
/// function `change_user_role`: only an admin may, a role name other than user,
/// moderator or admin is refused, and the last admin cannot be demoted (the function
/// locks every admin row, so two concurrent demotions cannot both pass). Its
/// SQLSTATEs become [`AccountError::UnknownRole`] (22023), [`AccountError::NotAdmin`]
/// (42501), [`AccountError::UnknownUser`] (P0002) and [`AccountError::LastAdmin`]
/// (P0001). A change writes its audit row (`user.role_changed`) in the same
/// statement, so in the caller's transaction. One round trip; row locks on the admins
/// and the target until the transaction ends.
pub async fn change_user_role<C: ConnectionTrait>(
    db: &C,
    target: Uuid,
    new_role: Role,
    changed_by: Uuid,
) -> Result<RoleChange, AccountError> {
    let name = new_role.as_str();
    let row = OldRole::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        CHANGE_USER_ROLE_SQL,
        [target.into(), name.into(), changed_by.into()],
    ))
    .one(db)
    .await
    .map_err(|e| match DbError::from(e) {
        e if e.code() == Some("22023") => AccountError::UnknownRole(UnknownRole(name.to_owned())),
        e if e.code() == Some("42501") => AccountError::NotAdmin(changed_by),
        e if e.code() == Some("P0002") => AccountError::UnknownUser(target),
        e if e.code() == Some("P0001") => AccountError::LastAdmin(target),
        e => AccountError::Database(e),
    })?
    .ok_or_else(|| DbError::no_row("change_user_role"))?;
    Ok(RoleChange {
        user: target,
        old: row.old_role,
        new: new_role,
    })
}

#[derive(FromQueryResult)]
struct Allowed {
    allowed: bool,
}

/// Asks seed 004's `has_permission`.
const HAS_PERMISSION_SQL: &str = "SELECT has_permission($1, $2) AS allowed";

/// Whether `user` has `permission` — a permission of the matrix
/// ([`Permission::AnnotationsReview`], …) or [`Permission::AtLeast`] a role. An
/// unknown user is `false`. One round trip.
pub async fn has_permission<C: ConnectionTrait>(
    db: &C,
    user: Uuid,
    permission: Permission,
) -> Result<bool, DbError> {
    let row = Allowed::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        HAS_PERMISSION_SQL,
        [user.into(), permission.as_str().into()],
    ))
    .one(db)
    .await?
    .ok_or_else(|| DbError::no_row("has_permission"))?;
    Ok(row.allowed)
}

/// Asks seed 004's `has_permission` for each permission of `$2`: the ones granted.
const PERMISSIONS_OF_SQL: &str =
    "SELECT p AS permission FROM unnest($2::text[]) AS p WHERE has_permission($1, p)";

#[derive(FromQueryResult)]
struct Granted {
    permission: String,
}

/// Which of `among` `user` has, each decided by seed 004's `has_permission`, in
/// `among`'s order; none for an unknown user. One round trip, however many are
/// asked (a console checks a route's permission and learns which buttons to show).
pub async fn permissions_of<C: ConnectionTrait>(
    db: &C,
    user: Uuid,
    among: &[Permission],
) -> Result<Vec<Permission>, DbError> {
    let names: Vec<String> = among.iter().map(|p| p.as_str().to_owned()).collect();
    let granted = Granted::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        PERMISSIONS_OF_SQL,
        [user.into(), names.into()],
    ))
    .all(db)
    .await?;
    Ok(among
        .iter()
        .copied()
        .filter(|p| granted.iter().any(|g| g.permission == p.as_str()))
        .collect())
}

/// One role's line of `user_roles_summary`.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult, Serialize)]
pub struct RoleSummary {
    /// The role.
    pub role: Role,
    /// How many users have it.
    pub user_count: i64,
    /// When the first of them was created.
    pub first_created_at: DateTime<FixedOffset>,
    /// When the last of them was created.
    pub last_created_at: DateTime<FixedOffset>,
}

/// Reads seed 004's `user_roles_summary` view, which has no entity.
const USER_ROLES_SUMMARY_SQL: &str = "SELECT role, user_count, first_created_at, last_created_at
     FROM user_roles_summary ORDER BY role";

/// Each role that has users: how many, and when the first and last were created.
/// One round trip (a scan of `users`).
pub async fn user_roles_summary<C: ConnectionTrait>(
    db: &C,
) -> Result<Vec<RoleSummary>, AccountError> {
    Ok(RoleSummary::find_by_statement(Statement::from_string(
        DbBackend::Postgres,
        USER_ROLES_SUMMARY_SQL,
    ))
    .all(db)
    .await?)
}

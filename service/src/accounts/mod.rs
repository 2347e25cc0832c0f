//! Seed 004's accounts and roles (`001`, `008`): users with a normalised, validated
//! email; roles changed only through `change_user_role` (admins only, never the last
//! admin, audited in the same statement); permissions from `has_permission` over the
//! `role_permissions()` matrix.
//!
//! The files: `role` (the [`Role`] enum), `permission` (the [`Permission`] enum),
//! `users` (create, get, list), `permissions` (role changes, permission checks, the
//! roles summary), `tokens` (access tokens: made, checked, revoked).

use uuid::Uuid;

use crate::error::{DbError, InvalidInput};
use crate::page::InvalidPage;

mod permission;
mod permissions;
mod role;
mod tokens;
mod users;

pub use permission::{Permission, UnknownPermission};
pub use permissions::{
    RoleChange, RoleSummary, change_user_role, has_permission, permissions_of, user_roles_summary,
};
pub use role::{Role, UnknownRole};
pub use tokens::{
    AccessToken, Authenticated, MAX_LIFETIME, NewToken, TOKEN_PREFIX, TokenRefusal, authenticate,
    authenticate_id, create_token, list_tokens, revoke_token,
};
pub use users::{
    NewUser, User, create_user, get_user, get_user_by_email, list_users, normalize_email,
};

/// What can go wrong with accounts. Nothing was written when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The email is not an address (after trimming and lowercasing).
    #[error("invalid email {email:?}: {reason}")]
    InvalidEmail {
        /// The email as given.
        email: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A value refused before anything was written.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// A user with this (normalised) email exists.
    #[error("a user with email {0:?} exists")]
    DuplicateEmail(String),
    /// The role is none of user, moderator, admin.
    #[error(transparent)]
    UnknownRole(#[from] UnknownRole),
    /// No user has this id.
    #[error("no user {0}")]
    UnknownUser(Uuid),
    /// The acting user may not do this: only admins change roles.
    #[error("user {0} may not change roles: only admins may")]
    NotAdmin(Uuid),
    /// The change would leave no admin.
    #[error("cannot demote user {0}: they are the last admin")]
    LastAdmin(Uuid),
    /// A page size out of range.
    #[error(transparent)]
    Page(#[from] InvalidPage),
    /// An access token that does not sign anyone in: unknown, expired or revoked.
    #[error("{0}")]
    TokenRefused(TokenRefusal),
    /// The database failed; the variant says how.
    #[error("database: {0}")]
    Database(#[from] DbError),
}

impl From<sea_orm::DbErr> for AccountError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Database(e.into())
    }
}

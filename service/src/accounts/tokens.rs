//! Access tokens: a user's bearer secret for the web console's sign-in and for
//! scripts. The secret is shown once, when it is made; the database keeps only its
//! SHA-256, an expiry, a revocation and when it was last used.

use chrono::{DateTime, TimeDelta, Utc};
use entity::{access_tokens, users};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, TransactionSession, TransactionTrait,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{AccountError, Role, User, get_user};
use crate::audit::{self, AuditEvent};
use crate::error::{DbError, InvalidInput};

/// What every token starts with, so a leaked one is recognisable (secret scanners).
pub const TOKEN_PREFIX: &str = "strata_";

/// The longest lifetime a token may be given: one year.
pub const MAX_LIFETIME: TimeDelta = TimeDelta::days(366);

/// Last use is written at most this often per token: a request does not write a row
/// each time.
const LAST_USED_EVERY: TimeDelta = TimeDelta::minutes(1);

/// A token as the database keeps it (never the secret, never its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessToken {
    /// Its id (what revocation names).
    pub id: Uuid,
    /// Whose it is.
    pub user_id: Uuid,
    /// What it is for, as its creator named it.
    pub name: Option<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it was last used (to the minute), if ever.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<access_tokens::Model> for AccessToken {
    fn from(m: access_tokens::Model) -> Self {
        Self {
            id: m.id,
            user_id: m.user_id,
            name: m.name,
            created_at: m.created_at.with_timezone(&Utc),
            expires_at: m.expires_at.with_timezone(&Utc),
            revoked_at: m.revoked_at.map(|t| t.with_timezone(&Utc)),
            last_used_at: m.last_used_at.map(|t| t.with_timezone(&Utc)),
        }
    }
}

/// A token just made: the secret, to show once, and the stored row.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// The secret (`strata_` and 64 hexadecimal digits). Not stored anywhere.
    pub secret: String,
    /// The stored token.
    pub token: AccessToken,
}

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Authenticated {
    /// The token's id.
    pub token_id: Uuid,
    /// Its user.
    pub user_id: Uuid,
    /// The user's email.
    pub email: String,
    /// The user's role now (a role change applies to tokens already made).
    pub role: Role,
    /// When the token stops working.
    pub expires_at: DateTime<Utc>,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenRefusal {
    /// Not a token of this database (or not a token at all).
    Unknown,
    /// Past its expiry.
    Expired,
    /// Revoked.
    Revoked,
}

impl std::fmt::Display for TokenRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenRefusal::Unknown => "unknown token",
            TokenRefusal::Expired => "expired token",
            TokenRefusal::Revoked => "revoked token",
        })
    }
}

/// The SHA-256 of `secret`, as the database keeps it (hex).
fn hash(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 bytes from the operating system's generator, as `strata_` and hex.
fn new_secret() -> Result<String, AccountError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| DbError::Other {
        code: None,
        message: format!("the operating system's random generator failed: {e}"),
    })?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{TOKEN_PREFIX}{hex}"))
}

/// Makes a token for `user` that lives `lifetime` (more than zero, at most
/// [`MAX_LIFETIME`]), named `name` (1 to 200 characters, optional), and records
/// `token.created` (actor `by`, the user by default) in the same transaction. The
/// secret is in the answer only. Round trips: begin, the user, the insert, the audit
/// row, commit. An unknown user is [`AccountError::UnknownUser`]; nothing is written
/// on any error.
pub async fn create_token<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    user: Uuid,
    name: Option<&str>,
    lifetime: TimeDelta,
    by: Option<Uuid>,
) -> Result<NewToken, AccountError> {
    if lifetime <= TimeDelta::zero() || lifetime > MAX_LIFETIME {
        return Err(InvalidInput::new(
            "lifetime",
            format!("{} s", lifetime.num_seconds()),
            "a token lives more than zero and at most 366 days",
        )
        .into());
    }
    let name = name.map(str::trim);
    if let Some(n) = name
        && (n.is_empty() || n.chars().count() > 200)
    {
        return Err(InvalidInput::new("name", n, "1 to 200 characters").into());
    }
    let secret = new_secret()?;
    let txn = db.begin().await?;
    get_user(&txn, user)
        .await?
        .ok_or(AccountError::UnknownUser(user))?;
    let now = Utc::now();
    let row = access_tokens::ActiveModel {
        id: Set(Uuid::new_v4()),
        user_id: Set(user),
        token_hash: Set(hash(&secret)),
        name: Set(name.map(str::to_owned)),
        created_at: Set(now.into()),
        expires_at: Set((now + lifetime).into()),
        revoked_at: Set(None),
        last_used_at: Set(None),
    }
    .insert(&txn)
    .await?;
    audit::record(
        &txn,
        &AuditEvent::new("token.created")
            .actor(by.unwrap_or(user))
            .resource("access_token", row.id)
            .action("create")
            .details(serde_json::json!({
                "user_id": user,
                "name": row.name,
                "expires_at": row.expires_at,
            })),
    )
    .await
    .map_err(audit_error)?;
    txn.commit().await?;
    Ok(NewToken {
        secret,
        token: row.into(),
    })
}

/// Who `secret` speaks for, or why it is refused ([`AccountError::TokenRefused`]).
/// One round trip (the token by its hash, joined with its user); a valid token's
/// last use is written at most once a minute (one more).
pub async fn authenticate<C: ConnectionTrait>(
    db: &C,
    secret: &str,
) -> Result<Authenticated, AccountError> {
    let refused = |reason| AccountError::TokenRefused(reason);
    if !secret.starts_with(TOKEN_PREFIX) {
        return Err(refused(TokenRefusal::Unknown));
    }
    let found = access_tokens::Entity::find()
        .filter(access_tokens::Column::TokenHash.eq(hash(secret)))
        .find_also_related(users::Entity)
        .one(db)
        .await?;
    admit(db, found).await
}

/// Who token `id` speaks for, or why it is refused ([`AccountError::TokenRefused`]):
/// for a session that signed in with the token and keeps only its id (the console's
/// signed cookie), so an expiry, a revocation or a role change applies at the next
/// request. Round trips as [`authenticate`].
pub async fn authenticate_id<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
) -> Result<Authenticated, AccountError> {
    let found = access_tokens::Entity::find_by_id(id)
        .find_also_related(users::Entity)
        .one(db)
        .await?;
    admit(db, found).await
}

/// Checks a token found (or not) with its user: revoked, expired, the user gone;
/// writes its last use at most once a minute.
async fn admit<C: ConnectionTrait>(
    db: &C,
    found: Option<(access_tokens::Model, Option<users::Model>)>,
) -> Result<Authenticated, AccountError> {
    let refused = |reason| AccountError::TokenRefused(reason);
    let Some((token, user)) = found else {
        return Err(refused(TokenRefusal::Unknown));
    };
    let now = Utc::now();
    if token.revoked_at.is_some() {
        return Err(refused(TokenRefusal::Revoked));
    }
    if token.expires_at.with_timezone(&Utc) <= now {
        return Err(refused(TokenRefusal::Expired));
    }
    let user = User::try_from(user.ok_or(AccountError::UnknownUser(token.user_id))?)?;
    let stale = token
        .last_used_at
        .is_none_or(|t| now - t.with_timezone(&Utc) >= LAST_USED_EVERY);
    if stale {
        access_tokens::Entity::update_many()
            .col_expr(
                access_tokens::Column::LastUsedAt,
                sea_orm::sea_query::Expr::value(sea_orm::prelude::DateTimeWithTimeZone::from(now)),
            )
            .filter(access_tokens::Column::Id.eq(token.id))
            .exec(db)
            .await?;
    }
    Ok(authenticated(&token, &user))
}

fn authenticated(token: &access_tokens::Model, user: &User) -> Authenticated {
    Authenticated {
        token_id: token.id,
        user_id: user.id,
        email: user.email.clone(),
        role: user.role,
        expires_at: token.expires_at.with_timezone(&Utc),
    }
}

/// Revokes token `id` (from now on it is refused) and records `token.revoked` (actor
/// `by`) in the same transaction; whether it was live. Revoking a revoked or unknown
/// token changes nothing and records nothing. Round trips: begin, the update, the
/// audit row when one changed, commit.
pub async fn revoke_token<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    id: Uuid,
    by: Option<Uuid>,
) -> Result<bool, AccountError> {
    let txn = db.begin().await?;
    let done = access_tokens::Entity::update_many()
        .col_expr(
            access_tokens::Column::RevokedAt,
            sea_orm::sea_query::Expr::current_timestamp(),
        )
        .filter(access_tokens::Column::Id.eq(id))
        .filter(access_tokens::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    if done.rows_affected > 0 {
        let mut event = AuditEvent::new("token.revoked")
            .resource("access_token", id)
            .action("revoke");
        if let Some(by) = by {
            event = event.actor(by);
        }
        audit::record(&txn, &event).await.map_err(audit_error)?;
    }
    txn.commit().await?;
    Ok(done.rows_affected > 0)
}

/// The tokens of `user`, newest first, revoked and expired ones included. One round
/// trip.
pub async fn list_tokens<C: ConnectionTrait>(
    db: &C,
    user: Uuid,
) -> Result<Vec<AccessToken>, AccountError> {
    Ok(access_tokens::Entity::find()
        .filter(access_tokens::Column::UserId.eq(user))
        .order_by_desc(access_tokens::Column::CreatedAt)
        .all(db)
        .await?
        .into_iter()
        .map(AccessToken::from)
        .collect())
}

/// An audit failure inside an account change: its database error as the account's.
fn audit_error(e: audit::AuditError) -> AccountError {
    match e {
        audit::AuditError::Invalid(i) => AccountError::Invalid(i),
        audit::AuditError::Page(p) => AccountError::Page(p),
        audit::AuditError::Database(d) => AccountError::Database(d),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_are_prefixed_random_and_hash_to_64_hex_digits() {
        let a = super::new_secret().expect("secret");
        let b = super::new_secret().expect("secret");
        assert!(a.starts_with(super::TOKEN_PREFIX) && a.len() == 7 + 64);
        assert_ne!(a, b);
        let h = super::hash(&a);
        assert_eq!(h.len(), 64);
        assert!(
            h.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
}

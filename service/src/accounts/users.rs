//! Users: created with a normalised, validated email, read by id or email, listed by
//! role a page at a time.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use uuid::Uuid;

use entity::users;

use super::{AccountError, Role};
use crate::error::{DbError, InvalidInput};
use crate::page::Page;

/// A user to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// The email; stored trimmed and lowercased ([`normalize_email`]).
    pub email: String,
    /// The application's password hash (argon2, bcrypt…), stored as given; not empty.
    pub password_hash: String,
    /// A name to show, at most 200 characters.
    pub display_name: Option<String>,
    /// The role.
    pub role: Role,
}

impl NewUser {
    /// A plain user.
    pub fn new(email: impl Into<String>, password_hash: impl Into<String>) -> Self {
        Self {
            email: email.into(),
            password_hash: password_hash.into(),
            display_name: None,
            role: Role::User,
        }
    }

    /// The same user with `role`.
    pub fn with_role(mut self, role: Role) -> Self {
        self.role = role;
        self
    }
}

/// The email trimmed and lowercased, if it is an address: one `@`, a local part of 1
/// to 64 characters without spaces, a domain of dot-separated labels (letters, digits,
/// inner hyphens; at least two labels), at most 254 characters in all.
pub fn normalize_email(email: &str) -> Result<String, AccountError> {
    let bad = |reason| AccountError::InvalidEmail {
        email: email.to_owned(),
        reason,
    };
    let normal = email.trim().to_lowercase();
    if normal.chars().count() > 254 {
        return Err(bad("longer than 254 characters"));
    }
    let (local, domain) = normal.split_once('@').ok_or_else(|| bad("no @"))?;
    if domain.contains('@') {
        return Err(bad("more than one @"));
    }
    if local.is_empty() || local.chars().count() > 64 {
        return Err(bad("the part before @ must be 1 to 64 characters"));
    }
    if local.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("spaces before @"));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(bad("the domain needs a dot"));
    }
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    if !labels.iter().all(label_ok) {
        return Err(bad(
            "the domain's labels are letters, digits and inner hyphens",
        ));
    }
    Ok(normal)
}

/// A user, as the service hands one out: `users`' row with its role typed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    /// Its id.
    pub id: Uuid,
    /// Its email, normalised.
    pub email: String,
    /// The application's password hash.
    #[serde(skip_serializing)]
    pub password_hash: String,
    /// A name to show.
    pub display_name: Option<String>,
    /// Its role.
    pub role: Role,
    /// When it was created.
    pub created_at: chrono::DateTime<chrono::FixedOffset>,
    /// When it last changed.
    pub updated_at: chrono::DateTime<chrono::FixedOffset>,
}

impl TryFrom<users::Model> for User {
    type Error = AccountError;

    /// The row's role is checked by the table (`check_user_role`); one it does not
    /// know is [`AccountError::UnknownRole`].
    fn try_from(m: users::Model) -> Result<Self, Self::Error> {
        Ok(Self {
            role: m.role.parse()?,
            id: m.id,
            email: m.email,
            password_hash: m.password_hash,
            display_name: m.display_name,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

/// Creates a user; [`AccountError::DuplicateEmail`] when the normalised email is
/// taken (the unique index decides, so two concurrent creations cannot both win).
/// One round trip (an INSERT … RETURNING through the entity), on any connection.
pub async fn create_user<C: ConnectionTrait>(db: &C, user: NewUser) -> Result<User, AccountError> {
    let email = normalize_email(&user.email)?;
    if user.password_hash.trim().is_empty() {
        return Err(AccountError::Invalid(InvalidInput::new(
            "password_hash",
            String::new(),
            "a user needs a password hash",
        )));
    }
    let display_name = user.display_name.map(|n| n.trim().to_owned());
    if let Some(name) = &display_name
        && name.chars().count() > 200
    {
        return Err(AccountError::Invalid(InvalidInput::new(
            "display_name",
            name.clone(),
            "display names are at most 200 characters",
        )));
    }
    let row = users::ActiveModel {
        id: Set(Uuid::now_v7()),
        email: Set(email.clone()),
        password_hash: Set(user.password_hash),
        display_name: Set(display_name.filter(|n| !n.is_empty())),
        role: Set(user.role.as_str().to_owned()),
        ..Default::default()
    };
    match row.insert(db).await {
        Ok(model) => User::try_from(model),
        Err(e) => match DbError::from(e) {
            DbError::UniqueViolation { .. } => Err(AccountError::DuplicateEmail(email)),
            other => Err(other.into()),
        },
    }
}

/// The user with id `id`, if any. One round trip.
pub async fn get_user<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<Option<User>, AccountError> {
    users::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(User::try_from)
        .transpose()
}

/// The user with this email (normalised first), if any; an unusable email is
/// [`AccountError::InvalidEmail`]. One round trip, on the unique email index.
pub async fn get_user_by_email<C: ConnectionTrait>(
    db: &C,
    email: &str,
) -> Result<Option<User>, AccountError> {
    let email = normalize_email(email)?;
    users::Entity::find()
        .filter(users::Column::Email.eq(email))
        .one(db)
        .await?
        .map(User::try_from)
        .transpose()
}

/// A page of users, oldest first, all of them or those with `role`. One round trip
/// (on `idx_users_role` when a role is given).
pub async fn list_users<C: ConnectionTrait>(
    db: &C,
    role: Option<Role>,
    page: Page,
) -> Result<Vec<User>, AccountError> {
    let mut query = users::Entity::find();
    if let Some(role) = role {
        query = query.filter(users::Column::Role.eq(role.as_str()));
    }
    query
        .order_by_asc(users::Column::CreatedAt)
        .order_by_asc(users::Column::Id)
        .limit(page.limit())
        .offset(page.offset())
        .all(db)
        .await?
        .into_iter()
        .map(User::try_from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_lowercased_and_checked() {
        assert_eq!(
            normalize_email("  Ada.Lovelace@Example.ORG ").expect("valid"),
            "ada.lovelace@example.org"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.org",
            "ada@@example.org",
            "a da@example.org",
            "ada@localhost",
            "ada@-example.org",
            "ada@exa_mple.org",
            "ada@example..org",
        ] {
            assert!(
                matches!(normalize_email(bad), Err(AccountError::InvalidEmail { .. })),
                "{bad:?} accepted"
            );
        }
    }
}

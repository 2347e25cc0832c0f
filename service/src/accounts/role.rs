//! The three roles of seed 004's `users.role`, each holding the one below's permissions.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A user's role: admin ⊇ moderator ⊇ user in `role_permissions()`.
///
/// Read from a query as a value of its own (`users.role` is text with a check):
/// a name the check would refuse is a decoding error.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    sea_orm::DeriveValueType,
)]
#[serde(rename_all = "lowercase")]
#[sea_orm(value_type = "String")]
pub enum Role {
    /// Reads and uploads images, creates annotations, uses exercises.
    User,
    /// Also reviews, updates and deletes annotations, requests AI annotation, reads users.
    Moderator,
    /// Also manages users and roles, caches, jobs and maintenance.
    Admin,
}

/// A role name that is none of `user`, `moderator`, `admin`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?} (user, moderator or admin)")]
pub struct UnknownRole(pub String);

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::User, Role::Moderator, Role::Admin];

    /// The role as `users.role` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Moderator => "moderator",
            Role::Admin => "admin",
        }
    }
}

impl AsRef<str> for Role {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownRole;

    /// Parses a role name, trimmed, any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "user" => Ok(Role::User),
            "moderator" => Ok(Role::Moderator),
            "admin" => Ok(Role::Admin),
            _ => Err(UnknownRole(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_round_trip_and_order_by_power() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert_eq!(" Admin ".parse::<Role>(), Ok(Role::Admin));
        assert_eq!("root".parse::<Role>(), Err(UnknownRole("root".into())));
        assert!(Role::User < Role::Moderator && Role::Moderator < Role::Admin);
    }
}

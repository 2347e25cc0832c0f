//! The three roles of seed 004's `users.role`, each holding the one below's permissions.

use crate::text_enum::text_enum;

text_enum! {
    /// A user's role: admin ⊇ moderator ⊇ user in `role_permissions()`.
    ///
    /// Read from a query as a value of its own (`users.role` is text with a check):
    /// a name the check would refuse is a decoding error.
    pub enum Role / UnknownRole {
        /// Reads and uploads images, creates annotations, uses exercises.
        User => "user",
        /// Also reviews, updates and deletes annotations, requests AI annotation, reads users.
        Moderator => "moderator",
        /// Also manages users and roles, caches, jobs and maintenance.
        Admin => "admin",
    }
}

/// A role name that is none of `user`, `moderator`, `admin`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?} (user, moderator or admin)")]
pub struct UnknownRole(pub String);

impl AsRef<str> for Role {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_round_trip_and_order_by_power() {
        for &role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert_eq!(" Admin ".parse::<Role>(), Ok(Role::Admin));
        assert_eq!("root".parse::<Role>(), Err(UnknownRole("root".into())));
        assert!(Role::User < Role::Moderator && Role::Moderator < Role::Admin);
    }
}

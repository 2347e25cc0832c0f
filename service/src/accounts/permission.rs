//! The permissions of seed 004's matrix (`role_permissions()`), as a type: what
//! [`super::has_permission`] asks about.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Role;

/// A permission of the matrix, or a role meaning "at least this role" (the SQL
/// function `has_permission` takes either).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Permission {
    /// `images.read` (user).
    ImagesRead,
    /// `images.upload` (user).
    ImagesUpload,
    /// `annotations.read` (user).
    AnnotationsRead,
    /// `annotations.create` (user).
    AnnotationsCreate,
    /// `exercises.use` (user).
    ExercisesUse,
    /// `annotations.review` (moderator).
    AnnotationsReview,
    /// `annotations.update` (moderator).
    AnnotationsUpdate,
    /// `annotations.delete` (moderator).
    AnnotationsDelete,
    /// `ai.annotate` (moderator).
    AiAnnotate,
    /// `users.read` (moderator).
    UsersRead,
    /// `users.manage` (admin).
    UsersManage,
    /// `users.change_role` (admin).
    UsersChangeRole,
    /// `cache.manage` (admin).
    CacheManage,
    /// `jobs.manage` (admin).
    JobsManage,
    /// `system.maintain` (admin).
    SystemMaintain,
    /// The role or a higher one (`user`, `moderator`, `admin`).
    AtLeast(Role),
}

/// A permission name that is neither one of the matrix nor a role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown permission {0:?} (a permission of role_permissions(), or a role name)")]
pub struct UnknownPermission(pub String);

impl Permission {
    /// Every permission of the matrix (the roles aside), in the matrix's order.
    pub const ALL: [Permission; 15] = [
        Permission::ImagesRead,
        Permission::ImagesUpload,
        Permission::AnnotationsRead,
        Permission::AnnotationsCreate,
        Permission::ExercisesUse,
        Permission::AnnotationsReview,
        Permission::AnnotationsUpdate,
        Permission::AnnotationsDelete,
        Permission::AiAnnotate,
        Permission::UsersRead,
        Permission::UsersManage,
        Permission::UsersChangeRole,
        Permission::CacheManage,
        Permission::JobsManage,
        Permission::SystemMaintain,
    ];

    /// The name `has_permission` and `role_permissions()` use.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ImagesRead => "images.read",
            Permission::ImagesUpload => "images.upload",
            Permission::AnnotationsRead => "annotations.read",
            Permission::AnnotationsCreate => "annotations.create",
            Permission::ExercisesUse => "exercises.use",
            Permission::AnnotationsReview => "annotations.review",
            Permission::AnnotationsUpdate => "annotations.update",
            Permission::AnnotationsDelete => "annotations.delete",
            Permission::AiAnnotate => "ai.annotate",
            Permission::UsersRead => "users.read",
            Permission::UsersManage => "users.manage",
            Permission::UsersChangeRole => "users.change_role",
            Permission::CacheManage => "cache.manage",
            Permission::JobsManage => "jobs.manage",
            Permission::SystemMaintain => "system.maintain",
            Permission::AtLeast(role) => role.as_str(),
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Permission {
    type Err = UnknownPermission;

    /// A permission's name, or a role's (trimmed, any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim().to_ascii_lowercase();
        if let Some(p) = Permission::ALL.into_iter().find(|p| p.as_str() == name) {
            return Ok(p);
        }
        name.parse::<Role>()
            .map(Permission::AtLeast)
            .map_err(|_| UnknownPermission(s.to_owned()))
    }
}

impl From<Permission> for String {
    fn from(p: Permission) -> Self {
        p.as_str().to_owned()
    }
}

impl TryFrom<String> for Permission {
    type Error = UnknownPermission;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Role> for Permission {
    fn from(role: Role) -> Self {
        Permission::AtLeast(role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_roles_mean_at_least() {
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>(), Ok(p));
        }
        assert_eq!(
            " Moderator ".parse::<Permission>(),
            Ok(Permission::AtLeast(Role::Moderator))
        );
        assert_eq!(
            "root.all".parse::<Permission>(),
            Err(UnknownPermission("root.all".into()))
        );
        assert_eq!(
            serde_json::to_string(&Permission::UsersChangeRole).expect("json"),
            "\"users.change_role\""
        );
    }
}

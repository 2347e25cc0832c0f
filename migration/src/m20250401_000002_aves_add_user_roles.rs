//! Seed 004, `008_add_user_roles.sql`: roles and permissions.
//!
//! - `users.role text NOT NULL DEFAULT 'user'`, checked by `check_user_role`
//!   (`user`, `moderator`, `admin`), indexed by `idx_users_role`.
//! - `has_permission(p_user_id uuid, p_permission text) RETURNS boolean`: false for an
//!   unknown user or permission. The matrix, where admin ⊇ moderator ⊇ user:
//!
//!   | permission | user | moderator | admin |
//!   | --- | --- | --- | --- |
//!   | `images.read`, `images.upload`, `annotations.read`, `annotations.create`, `exercises.use` | ✓ | ✓ | ✓ |
//!   | `annotations.review`, `annotations.update`, `annotations.delete`, `ai.annotate`, `users.read` | | ✓ | ✓ |
//!   | `users.manage`, `users.change_role`, `cache.manage`, `jobs.manage`, `system.maintain` | | | ✓ |
//!
//!   The matrix itself is `role_permissions()` (a set-returning SQL function), so the
//!   service and the documentation read the same table.
//! - `change_user_role(p_target uuid, p_new_role text, p_changed_by uuid) RETURNS
//!   text` (the previous role): only an admin may change roles (SQLSTATE 42501), an
//!   unknown role is refused (22023), so is an unknown user (P0002), and demoting the
//!   last admin (P0001, "last admin"). It locks the admins' rows first, so two
//!   concurrent demotions cannot both pass the last-admin check, and writes an
//!   `audit_logs` row (`event_type = 'user.role_changed'`, the old and new roles in
//!   `details`). Setting the role a user already has changes nothing and writes no row.
//! - `user_roles_summary`: per role, `user_count`, `first_created_at`,
//!   `last_created_at`.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::helpers::{exec, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The permission matrix's rows, (permission, the lowest role level that has it):
/// 1 user, 2 moderator, 3 admin.
pub(crate) const PERMISSION_LEVELS: &str = "
        ('images.read', 1), ('images.upload', 1), ('annotations.read', 1),
        ('annotations.create', 1), ('exercises.use', 1),
        ('annotations.review', 2), ('annotations.update', 2), ('annotations.delete', 2),
        ('ai.annotate', 2), ('users.read', 2),
        ('users.manage', 3), ('users.change_role', 3), ('cache.manage', 3),
        ('jobs.manage', 3), ('system.maintain', 3)";

/// `role_permissions()` over the rows `levels` (see [`PERMISSION_LEVELS`]).
pub(crate) fn role_permissions_function(levels: &str) -> String {
    format!(
        r#"CREATE OR REPLACE FUNCTION role_permissions()
RETURNS TABLE (role text, permission text) LANGUAGE sql IMMUTABLE AS $fn$
    SELECT r.role, p.permission
    FROM (VALUES{levels}
    ) AS p(permission, level)
    JOIN (VALUES ('user', 1), ('moderator', 2), ('admin', 3)) AS r(role, level)
      ON p.level <= r.level;
$fn$;

"#
    )
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("users")
                    .add_column(text("role").default("user"))
                    .to_owned(),
            )
            .await?;
        exec(
            manager,
            "ALTER TABLE users ADD CONSTRAINT check_user_role CHECK (role IN ('user', 'moderator', 'admin'));",
        )
        .await?;
        manager
            .create_index(index("idx_users_role", "users").col("role").take())
            .await?;
        exec(manager, &role_permissions_function(PERMISSION_LEVELS)).await?;
        exec(
            manager,
            r#"
CREATE OR REPLACE FUNCTION has_permission(p_user_id uuid, p_permission text)
RETURNS boolean LANGUAGE sql STABLE AS $fn$
    SELECT EXISTS (
        SELECT 1 FROM users u
        JOIN role_permissions() rp ON rp.role = u.role
        WHERE u.id = p_user_id AND rp.permission = p_permission
    );
$fn$;

CREATE OR REPLACE FUNCTION change_user_role(p_target uuid, p_new_role text, p_changed_by uuid)
RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
    changer_role text;
    old_role text;
    admins integer;
BEGIN
    IF p_new_role IS NULL OR p_new_role NOT IN ('user', 'moderator', 'admin') THEN
        RAISE EXCEPTION 'unknown role %', coalesce(quote_literal(p_new_role), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'roles are user, moderator and admin';
    END IF;
    -- Lock every admin row: concurrent role changes queue here, so the last-admin
    -- check below sees the committed state.
    PERFORM 1 FROM users WHERE role = 'admin' ORDER BY id FOR UPDATE;
    SELECT role INTO changer_role FROM users WHERE id = p_changed_by;
    IF changer_role IS DISTINCT FROM 'admin' THEN
        RAISE EXCEPTION 'user % may not change roles: only admins may', p_changed_by
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT role INTO old_role FROM users WHERE id = p_target FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no user %', p_target USING ERRCODE = 'no_data_found';
    END IF;
    IF old_role = p_new_role THEN
        RETURN old_role;
    END IF;
    IF old_role = 'admin' THEN
        SELECT count(*) INTO admins FROM users WHERE role = 'admin';
        IF admins <= 1 THEN
            RAISE EXCEPTION 'cannot demote user %: they are the last admin', p_target
                USING ERRCODE = 'raise_exception';
        END IF;
    END IF;
    UPDATE users SET role = p_new_role WHERE id = p_target;
    INSERT INTO audit_logs (event_type, user_id, resource, resource_id, action, details)
    VALUES ('user.role_changed', p_changed_by, 'users', p_target::text, 'change_role',
            jsonb_build_object('old_role', old_role, 'new_role', p_new_role));
    RETURN old_role;
END;
$fn$;

CREATE VIEW user_roles_summary AS
SELECT role,
       count(*) AS user_count,
       min(created_at) AS first_created_at,
       max(created_at) AS last_created_at
FROM users
GROUP BY role;
"#,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec(
            manager,
            "DROP VIEW user_roles_summary;
             DROP FUNCTION change_user_role(uuid, text, uuid);
             DROP FUNCTION has_permission(uuid, text);
             DROP FUNCTION role_permissions();",
        )
        .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("idx_users_role")
                    .table("users")
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(Table::alter().table("users").drop_column("role").to_owned())
            .await
    }
}

//! `strata users create|role|list`.

use service::accounts::{self, NewUser};
use service::db::Topology;

use super::Output;
use super::output::or_dash;
use crate::cli::UsersCommand;

/// Runs `strata users …`.
pub async fn run(db: &Topology, command: UsersCommand, out: &mut Output<'_>) -> anyhow::Result<()> {
    match command {
        UsersCommand::Create {
            email,
            role,
            password_hash,
            display_name,
        } => {
            let mut user = NewUser::new(email, password_hash).with_role(role);
            user.display_name = display_name;
            let created = accounts::create_user(db, user).await?;
            let message = format!(
                "created {} ({}) as {}",
                created.email, created.id, created.role
            );
            out.done(&created, &message)
        }
        UsersCommand::Role { email, role, by } => {
            let target = super::user_id(db, &email).await?;
            let admin = super::user_id(db, &by).await?;
            let change = accounts::change_user_role(db, target, role, admin).await?;
            let message = if change.old == change.new {
                format!("{email} is already {}", change.new)
            } else {
                format!("{email}: {} -> {}", change.old, change.new)
            };
            let value = serde_json::json!({
                "user": change.user, "old": change.old, "new": change.new,
            });
            out.done(&value, &message)
        }
        UsersCommand::List { role, page } => {
            let users = accounts::list_users(&db.reader().await, role, super::page(page)?).await?;
            let rows = users
                .iter()
                .map(|u| {
                    vec![
                        u.email.clone(),
                        u.role.to_string(),
                        or_dash(u.display_name.clone()),
                        u.created_at.format("%F %T").to_string(),
                        u.id.to_string(),
                    ]
                })
                .collect();
            // The password hash stays out of every listing.
            let shown: Vec<serde_json::Value> = users
                .iter()
                .map(|u| {
                    serde_json::json!({
                        "id": u.id, "email": u.email, "role": u.role,
                        "display_name": u.display_name, "created_at": u.created_at,
                    })
                })
                .collect();
            out.show(&shown, &["email", "role", "name", "created", "id"], rows)
        }
    }
}

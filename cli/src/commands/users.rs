//! `strata users create|role|list|token`.

use service::accounts::{self, NewUser};
use service::db::Topology;

use super::Output;
use super::output::or_dash;
use crate::cli::{TokenCommand, UsersCommand};

/// Runs `strata users …`.
pub async fn run(db: &Topology, command: UsersCommand, out: &mut Output<'_>) -> anyhow::Result<()> {
    match command {
        UsersCommand::Token(command) => token(db, command, out).await,
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

/// Runs `strata users token …`. `create` writes the secret alone on standard output
/// (with `--json`, an object holding it and the token), and what it made on standard
/// error.
async fn token(db: &Topology, command: TokenCommand, out: &mut Output<'_>) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            email,
            expires,
            name,
            by,
        } => {
            let user = super::user_id(db, &email).await?;
            let by = match by {
                Some(by) => Some(super::user_id(db, &by).await?),
                None => None,
            };
            let lifetime = chrono::TimeDelta::from_std(expires)
                .map_err(|_| anyhow::anyhow!("--expires {expires:?} is too long"))?;
            let made = accounts::create_token(db, user, name.as_deref(), lifetime, by).await?;
            eprintln!(
                "token {} for {email}, expires {}; the secret below is shown once",
                made.token.id,
                made.token.expires_at.format("%Y-%m-%d %H:%M UTC")
            );
            let value = serde_json::json!({"secret": made.secret, "token": made.token});
            out.done(&value, &made.secret)
        }
        TokenCommand::Revoke { id, by } => {
            let by = match by {
                Some(by) => Some(super::user_id(db, &by).await?),
                None => None,
            };
            let revoked = accounts::revoke_token(db, id, by).await?;
            let message = if revoked {
                format!("revoked token {id}")
            } else {
                format!("token {id} was not live (unknown or already revoked)")
            };
            out.done(&serde_json::json!({"id": id, "revoked": revoked}), &message)
        }
        TokenCommand::List { email } => {
            let user = super::user_id(db, &email).await?;
            let tokens = accounts::list_tokens(&db.reader().await, user).await?;
            let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M").to_string();
            let rows = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.id.to_string(),
                        or_dash(t.name.clone()),
                        fmt(t.created_at),
                        fmt(t.expires_at),
                        or_dash(t.revoked_at.map(fmt)),
                        or_dash(t.last_used_at.map(fmt)),
                    ]
                })
                .collect();
            out.show(
                &tokens,
                &["id", "name", "created", "expires", "revoked", "last used"],
                rows,
            )
        }
    }
}

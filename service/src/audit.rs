//! Seed 003's audit log: who did what to which resource, with what outcome, from where;
//! recorded in the caller's transaction (so an action and its audit row commit
//! together), queried a page at a time, and trimmed by age.

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use entity::audit_logs;

use crate::error::{DbError, InvalidInput};
use crate::page::{InvalidPage, Page};

/// How the recorded action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It was done.
    Success,
    /// It was refused (permissions, rules).
    Denied,
    /// It was tried and failed.
    Failure,
}

impl Outcome {
    /// The outcome as `audit_logs.outcome` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failure => "failure",
        }
    }
}

/// What can go wrong with the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A value refused before anything was written.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// A page size out of range.
    #[error(transparent)]
    Page(#[from] InvalidPage),
    /// The database failed; the variant says how.
    #[error("database: {0}")]
    Database(#[from] DbError),
}

impl From<sea_orm::DbErr> for AuditError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Database(e.into())
    }
}

/// An event to record. Build it with [`AuditEvent::new`] and the setters.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// What happened, as `domain.verb` (`user.role_changed`, `annotation.reviewed`):
    /// 1 to 100 of `a-z 0-9 _ . : -`.
    pub event_type: String,
    /// Who did it, when a user did.
    pub actor: Option<Uuid>,
    /// The kind of thing it was done to (`users`, `annotations`, a table's name).
    pub resource: Option<String>,
    /// Which one.
    pub resource_id: Option<String>,
    /// The action (`approve`, `purge`, `run`).
    pub action: Option<String>,
    /// Anything else, as a JSON object.
    pub details: Value,
    /// How it ended.
    pub outcome: Outcome,
    /// The client's address, when known.
    pub ip_address: Option<IpAddr>,
    /// The client's user agent, when known.
    pub user_agent: Option<String>,
}

impl AuditEvent {
    /// A successful event of `event_type`, with nothing else known yet.
    pub fn new(event_type: impl Into<String>) -> Self {
        Self {
            event_type: event_type.into(),
            actor: None,
            resource: None,
            resource_id: None,
            action: None,
            details: Value::Object(Default::default()),
            outcome: Outcome::Success,
            ip_address: None,
            user_agent: None,
        }
    }

    /// Done by `user`.
    pub fn actor(mut self, user: Uuid) -> Self {
        self.actor = Some(user);
        self
    }

    /// Done to `resource` `id`.
    pub fn resource(mut self, resource: impl Into<String>, id: impl ToString) -> Self {
        self.resource = Some(resource.into());
        self.resource_id = Some(id.to_string());
        self
    }

    /// The action.
    pub fn action(mut self, action: impl Into<String>) -> Self {
        self.action = Some(action.into());
        self
    }

    /// The details (a JSON object).
    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// How it ended.
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// From this client.
    pub fn client(mut self, ip_address: Option<IpAddr>, user_agent: Option<String>) -> Self {
        self.ip_address = ip_address;
        self.user_agent = user_agent;
        self
    }

    fn check(&self) -> Result<(), AuditError> {
        let t = &self.event_type;
        if t.is_empty()
            || t.len() > 100
            || !t
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.:-".contains(c))
        {
            return Err(AuditError::Invalid(InvalidInput::new(
                "event_type",
                t.clone(),
                "event types are 1 to 100 of a-z 0-9 _ . : -",
            )));
        }
        if !self.details.is_object() {
            return Err(AuditError::Invalid(InvalidInput::new(
                "details",
                self.details.to_string(),
                "details are a JSON object",
            )));
        }
        if let Some(agent) = &self.user_agent
            && agent.chars().count() > 1000
        {
            return Err(AuditError::Invalid(InvalidInput::new(
                "user_agent",
                agent.chars().take(40).collect::<String>(),
                "user agents are at most 1000 characters",
            )));
        }
        Ok(())
    }
}

/// Records `event`, on any connection (inside the caller's transaction, with the
/// action it records). One round trip (an INSERT … RETURNING through the entity).
pub async fn record<C: ConnectionTrait>(
    db: &C,
    event: &AuditEvent,
) -> Result<audit_logs::Model, AuditError> {
    event.check()?;
    let row = audit_logs::ActiveModel {
        id: Set(Uuid::now_v7()),
        event_type: Set(event.event_type.clone()),
        user_id: Set(event.actor),
        resource: Set(event.resource.clone()),
        resource_id: Set(event.resource_id.clone()),
        action: Set(event.action.clone()),
        details: Set(event.details.clone()),
        outcome: Set(event.outcome.as_str().to_owned()),
        ip_address: Set(event.ip_address.map(|ip| ip.to_string())),
        user_agent: Set(event.user_agent.clone()),
        ..Default::default()
    };
    Ok(row.insert(db).await?)
}

/// Which events [`query`] returns: every field set narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Done by this user.
    pub actor: Option<Uuid>,
    /// Of this type.
    pub event_type: Option<String>,
    /// To this kind of resource.
    pub resource: Option<String>,
    /// To this one (with `resource`, or alone).
    pub resource_id: Option<String>,
    /// With this outcome.
    pub outcome: Option<Outcome>,
    /// At or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Before this time.
    pub until: Option<DateTime<Utc>>,
}

/// A page of the events `filter` selects, newest first. One round trip (actor, type,
/// resource and time have `idx_audit_logs_*` indexes; outcome and resource id narrow
/// what those find).
pub async fn query<C: ConnectionTrait>(
    db: &C,
    filter: &AuditQuery,
    page: Page,
) -> Result<Vec<audit_logs::Model>, AuditError> {
    use audit_logs::Column;
    let mut cond = Condition::all();
    if let Some(actor) = filter.actor {
        cond = cond.add(Column::UserId.eq(actor));
    }
    if let Some(t) = &filter.event_type {
        cond = cond.add(Column::EventType.eq(t.as_str()));
    }
    if let Some(r) = &filter.resource {
        cond = cond.add(Column::Resource.eq(r.as_str()));
    }
    if let Some(id) = &filter.resource_id {
        cond = cond.add(Column::ResourceId.eq(id.as_str()));
    }
    if let Some(outcome) = filter.outcome {
        cond = cond.add(Column::Outcome.eq(outcome.as_str()));
    }
    if let Some(since) = filter.since {
        cond = cond.add(Column::CreatedAt.gte(since));
    }
    if let Some(until) = filter.until {
        cond = cond.add(Column::CreatedAt.lt(until));
    }
    Ok(audit_logs::Entity::find()
        .filter(cond)
        .order_by_desc(Column::CreatedAt)
        .order_by_desc(Column::Id)
        .limit(page.limit())
        .offset(page.offset())
        .all(db)
        .await?)
}

/// Deletes the events older than `days` days (at least 1) and says how many went —
/// seed 003's `cleanup_old_logs(days)`. One round trip (a DELETE on
/// `idx_audit_logs_created_at`).
pub async fn cleanup_old_logs<C: ConnectionTrait>(db: &C, days: u32) -> Result<u64, AuditError> {
    if days == 0 {
        return Err(AuditError::Invalid(InvalidInput::new(
            "days",
            days.to_string(),
            "keep at least one day",
        )));
    }
    let cutoff = Utc::now() - Duration::days(i64::from(days));
    let done = audit_logs::Entity::delete_many()
        .filter(audit_logs::Column::CreatedAt.lt(cutoff))
        .exec(db)
        .await?;
    Ok(done.rows_affected)
}

//! The schedule in `maintenance_tasks`: five-field cron expressions (parsed by croner),
//! read and changed through the entity.

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use entity::maintenance_tasks;
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, QueryOrder, Set};
use serde_json::Value;

use super::{MaintenanceError, Task};
use crate::error::InvalidInput;

/// A five-field cron expression (minute, hour, day of month, month, day of week), as
/// croner reads it (POSIX / Vixie cron, with `L`, `#`, `W` and names), in UTC.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    text: String,
    cron: Cron,
}

impl Schedule {
    /// Parses `text`; anything but five valid fields is [`MaintenanceError::Invalid`].
    pub fn parse(text: &str) -> Result<Self, MaintenanceError> {
        let text = text.trim();
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .build()
            .parse(text)
            .map_err(|_| InvalidInput::new("schedule", text, "a five-field cron expression"))?;
        Ok(Self {
            text: text.to_owned(),
            cron,
        })
    }

    /// The first time after `after` that the schedule fires.
    pub fn next_after(&self, after: DateTime<Utc>) -> Result<DateTime<Utc>, MaintenanceError> {
        self.cron
            .find_next_occurrence(&after, false)
            .map_err(|_| InvalidInput::new("schedule", &self.text, "never fires again").into())
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Every task's schedule row, by name. One round trip through the entity.
pub async fn list<C: ConnectionTrait>(
    db: &C,
) -> Result<Vec<maintenance_tasks::Model>, MaintenanceError> {
    Ok(maintenance_tasks::Entity::find()
        .order_by_asc(maintenance_tasks::Column::Task)
        .all(db)
        .await?)
}

/// Changes `task`'s schedule to `cron` (checked first) and sets its next run from now
/// by it. Two round trips through the entity (read, update).
pub async fn set_schedule<C: ConnectionTrait>(
    db: &C,
    task: Task,
    cron: &str,
) -> Result<maintenance_tasks::Model, MaintenanceError> {
    let schedule = Schedule::parse(cron)?;
    let next = schedule.next_after(Utc::now())?;
    let mut row: maintenance_tasks::ActiveModel = find(db, task).await?.into();
    row.schedule = Set(schedule.as_str().to_owned());
    row.next_run_at = Set(next.into());
    row.updated_at = Set(Utc::now().into());
    Ok(row.update(db).await?)
}

/// Enables or disables `task`. Two round trips through the entity.
pub async fn set_enabled<C: ConnectionTrait>(
    db: &C,
    task: Task,
    enabled: bool,
) -> Result<maintenance_tasks::Model, MaintenanceError> {
    let mut row: maintenance_tasks::ActiveModel = find(db, task).await?.into();
    row.enabled = Set(enabled);
    row.updated_at = Set(Utc::now().into());
    Ok(row.update(db).await?)
}

/// Replaces `task`'s parameters (a JSON object). Two round trips through the entity.
pub async fn set_parameters<C: ConnectionTrait>(
    db: &C,
    task: Task,
    parameters: Value,
) -> Result<maintenance_tasks::Model, MaintenanceError> {
    if !parameters.is_object() {
        return Err(InvalidInput::new("parameters", &parameters, "a JSON object").into());
    }
    let mut row: maintenance_tasks::ActiveModel = find(db, task).await?.into();
    row.parameters = Set(parameters);
    row.updated_at = Set(Utc::now().into());
    Ok(row.update(db).await?)
}

/// `task`'s row; [`MaintenanceError::UnknownTask`] when the schedule lacks it.
pub(crate) async fn find<C: ConnectionTrait>(
    db: &C,
    task: Task,
) -> Result<maintenance_tasks::Model, MaintenanceError> {
    maintenance_tasks::Entity::find_by_id(task.name().to_owned())
        .one(db)
        .await?
        .ok_or_else(|| MaintenanceError::UnknownTask(task.name().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn schedules_are_five_cron_fields() {
        let hourly = Schedule::parse("0 * * * *").expect("hourly");
        let at = Utc
            .with_ymd_and_hms(2026, 12, 2, 10, 41, 0)
            .single()
            .expect("time");
        assert_eq!(
            hourly.next_after(at).expect("next"),
            Utc.with_ymd_and_hms(2026, 12, 2, 11, 0, 0)
                .single()
                .expect("time")
        );
        let monthly = Schedule::parse("0 4 1 * *").expect("monthly");
        assert_eq!(
            monthly.next_after(at).expect("next"),
            Utc.with_ymd_and_hms(2027, 1, 1, 4, 0, 0)
                .single()
                .expect("time")
        );
        for bad in ["", "* * * *", "0 0 * * * *", "61 * * * *", "every hour"] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}

//! The bulk insert of a job table, on any SeaORM connection — so an enqueue joins the
//! caller's transaction: its jobs exist (and wake workers, by `NOTIFY` at commit)
//! only if the transaction commits.

use std::collections::{HashMap, HashSet};

use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};
use uuid::Uuid;

use super::{QueueError, QueueTable};

/// The bulk insert of a job table, built column by column: a column whose value is
/// the same for the whole batch is one parameter, a column that varies is an array
/// unnested with the others, and a column that is NULL for every row is left to its
/// default. Fewer arrays are less to encode, send and unnest (20,000 rows: seven
/// arrays ~300 ms, two ~200 ms).
#[derive(Default)]
pub(crate) struct BatchInsert {
    columns: Vec<&'static str>,
    values: Vec<String>,
    arrays: Vec<String>,
    aliases: Vec<String>,
    params: Vec<Value>,
}

impl BatchInsert {
    /// Binds `value`; its placeholder number.
    fn bind(&mut self, value: Value) -> usize {
        self.params.push(value);
        self.params.len()
    }

    /// An array parameter unnested as column alias `alias`.
    fn unnest<T>(&mut self, alias: String, sql_type: &str, values: Vec<T>)
    where
        Value: From<Vec<T>>,
    {
        let n = self.bind(Value::from(values));
        self.arrays.push(format!("${n}::{sql_type}[]"));
        self.aliases.push(alias);
    }

    /// `column` takes `values[i]` for row i (`sql_type` is the element's SQL type;
    /// the array is cast to `sql_type[]`).
    pub(crate) fn per_row<T>(&mut self, column: &'static str, sql_type: &str, values: Vec<T>)
    where
        Value: From<Vec<T>>,
    {
        self.unnest(column.to_owned(), sql_type, values);
        self.columns.push(column);
        self.values.push(format!("i.{column}"));
    }

    /// A `jsonb` column from each row's JSON text (as `check_job` made it): sent as
    /// `text[]` and parsed once by the server — measured faster than a `jsonb[]`
    /// parameter, and the payload is serialised once.
    pub(crate) fn json_per_row(&mut self, column: &'static str, texts: Vec<String>) {
        self.per_row(column, "text", texts);
        if let Some(value) = self.values.last_mut() {
            value.push_str("::jsonb");
        }
    }

    /// Like [`Self::per_row`], but one parameter when every value is the same.
    pub(crate) fn shared_or_per_row<T>(
        &mut self,
        column: &'static str,
        sql_type: &str,
        mut values: Vec<T>,
    ) where
        T: PartialEq + Into<Value>,
        Value: From<Vec<T>>,
    {
        if values.is_empty() || values.windows(2).any(|w| w[0] != w[1]) {
            return self.per_row(column, sql_type, values);
        }
        let Some(value) = values.pop() else {
            return;
        };
        let n = self.bind(value.into());
        self.columns.push(column);
        self.values.push(format!("${n}::{sql_type}"));
    }

    /// Like [`Self::shared_or_per_row`] for a column whose `None` means `default`
    /// (an SQL expression, the column's own default): left out when every value is
    /// `None`. SeaORM binds arrays without NULL elements, so when only some are
    /// `None` they travel as `placeholder` with a `bool[]` saying which rows take
    /// `default` instead.
    pub(crate) fn optional<T>(
        &mut self,
        column: &'static str,
        sql_type: &str,
        default: &str,
        values: Vec<Option<T>>,
        placeholder: T,
    ) where
        T: PartialEq + Clone + Into<Value>,
        Value: From<Vec<T>>,
    {
        if values.iter().all(Option::is_none) {
            return;
        }
        if values.iter().all(Option::is_some) {
            return self.shared_or_per_row(
                column,
                sql_type,
                values.into_iter().flatten().collect(),
            );
        }
        let missing: Vec<bool> = values.iter().map(Option::is_none).collect();
        let filled: Vec<T> = values
            .into_iter()
            .map(|v| v.unwrap_or_else(|| placeholder.clone()))
            .collect();
        self.per_row(column, sql_type, filled);
        let mask = format!("{column}_missing");
        self.unnest::<bool>(mask.clone(), "bool", missing);
        if let Some(value) = self.values.last_mut() {
            *value = format!("CASE WHEN i.{mask} THEN {default} ELSE {value} END");
        }
    }

    /// Adds the columns every job table has — a time-ordered id (UUIDv7: inserts land
    /// together in the primary key) and (priority, max attempts, dedup key) per job —
    /// runs the insert on `db` (a transaction joins it) and returns each job's id: its
    /// own, or the live job that already had its dedup key. No jobs, no round trip.
    pub(crate) async fn insert_jobs<C: ConnectionTrait>(
        mut self,
        db: &C,
        table: QueueTable,
        queue_fields: Vec<(i32, i32, Option<String>)>,
    ) -> Result<Vec<Uuid>, QueueError> {
        if queue_fields.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = queue_fields.iter().map(|_| Uuid::now_v7()).collect();
        let priorities = queue_fields.iter().map(|f| f.0).collect();
        let max_attempts = queue_fields.iter().map(|f| f.1).collect();
        let keys: Vec<Option<String>> = queue_fields.into_iter().map(|f| f.2).collect();
        self.per_row("id", "uuid", ids.clone());
        self.shared_or_per_row("priority", "int4", priorities);
        self.shared_or_per_row("max_attempts", "int4", max_attempts);
        self.optional("dedup_key", "text", "NULL", keys.clone(), String::new());
        if keys.iter().all(Option::is_none) {
            self.run_plain(db, table).await?;
            return Ok(ids);
        }
        self.run_with_dedup(db, table, &keys, ids).await
    }

    /// The `FROM` item that unnests the per-row arrays.
    fn input(&self) -> String {
        format!(
            "unnest({}) AS i({})",
            self.arrays.join(", "),
            self.aliases.join(", ")
        )
    }

    /// A plain `INSERT … SELECT FROM unnest` that returns nothing. One round trip.
    async fn run_plain<C: ConnectionTrait>(
        self,
        db: &C,
        table: QueueTable,
    ) -> Result<(), QueueError> {
        let sql = format!(
            "INSERT INTO {t} ({columns}) SELECT {values} FROM {input}",
            t = table.table,
            columns = self.columns.join(", "),
            values = self.values.join(", "),
            input = self.input(),
        );
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            self.params,
        ))
        .await?;
        Ok(())
    }

    /// The insert with dedup keys: live keys are skipped (`ON CONFLICT … DO
    /// NOTHING`), and the statement returns the rows it inserted beside the live jobs
    /// that held the batch's keys before it (its snapshot), each as (id, key). No
    /// join of the batch with its own results: a prepared statement's generic plan
    /// would estimate the arrays at ten rows and might loop over them quadratically;
    /// the keys are looked up by `= ANY` through the unique index instead, and the
    /// pairing is done here. One round trip, plus one per key that another
    /// transaction inserted after the snapshot (rare).
    async fn run_with_dedup<C: ConnectionTrait>(
        mut self,
        db: &C,
        table: QueueTable,
        keys: &[Option<String>],
        ids: Vec<Uuid>,
    ) -> Result<Vec<Uuid>, QueueError> {
        let live = format!("status IN ('pending', '{}')", table.running);
        let distinct: Vec<String> = keys
            .iter()
            .flatten()
            .collect::<HashSet<_>>()
            .into_iter()
            .cloned()
            .collect();
        let n = self.bind(Value::from(distinct));
        let sql = format!(
            "WITH inserted AS (
                 INSERT INTO {t} ({columns}) SELECT {values} FROM {input}
                 ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL AND {live} DO NOTHING
                 RETURNING id, dedup_key
             )
             SELECT id, dedup_key, true AS inserted FROM inserted
             UNION ALL
             SELECT id, dedup_key, false FROM {t} WHERE dedup_key = ANY(${n}::text[]) AND {live}",
            t = table.table,
            columns = self.columns.join(", "),
            values = self.values.join(", "),
            input = self.input(),
        );
        let rows = db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                self.params,
            ))
            .await?;
        let mut inserted = HashSet::new();
        let mut holder: HashMap<String, Uuid> = HashMap::new();
        for row in rows {
            let id: Uuid = row.try_get("", "id")?;
            let key: Option<String> = row.try_get("", "dedup_key")?;
            if row.try_get::<bool>("", "inserted")? {
                inserted.insert(id);
            }
            if let Some(key) = key {
                holder.insert(key, id);
            }
        }
        let mut out = Vec::with_capacity(ids.len());
        for (id, key) in ids.into_iter().zip(keys) {
            let resolved = match key {
                _ if inserted.contains(&id) => id,
                None => id,
                Some(key) => match holder.get(key) {
                    Some(holder) => *holder,
                    None => {
                        let found = live_job_with_key(db, table, key).await?;
                        holder.insert(key.clone(), found);
                        found
                    }
                },
            };
            out.push(resolved);
        }
        Ok(out)
    }
}

/// The live job holding `key`, inserted by a transaction that committed after the
/// insert's snapshot. One round trip.
async fn live_job_with_key<C: ConnectionTrait>(
    db: &C,
    table: QueueTable,
    key: &str,
) -> Result<Uuid, QueueError> {
    let sql = format!(
        "SELECT id FROM {t} WHERE dedup_key = $1 AND status IN ('pending', '{running}')",
        t = table.table,
        running = table.running,
    );
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            [key.into()],
        ))
        .await?
        .ok_or_else(|| {
            QueueError::Database(crate::error::DbError::Other {
                code: None,
                message: format!("dedup key {key:?} conflicted, but no live job holds it"),
            })
        })?;
    Ok(row.try_get("", "id")?)
}

//! Small builders shared by the migrations: the columns and statements that recur.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{timestamp_with_time_zone_default_now, uuid};

/// Runs `sql` (one or more statements; `$$` bodies allowed) on the migration's
/// connection, inside the migration's transaction.
pub async fn exec(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    manager
        .get_connection()
        .execute_unprepared(sql)
        .await
        .map(|_| ())
}

/// `id uuid PRIMARY KEY DEFAULT gen_random_uuid()`.
pub fn id() -> ColumnDef {
    uuid("id")
        .primary_key()
        .default(Expr::cust("gen_random_uuid()"))
        .take()
}

/// `<name> timestamptz NOT NULL DEFAULT now()`.
pub fn now_column(name: &'static str) -> ColumnDef {
    timestamp_with_time_zone_default_now(name)
}

/// `'{}'::jsonb`, the default of the JSON object columns.
pub fn empty_object() -> Expr {
    Expr::cust("'{}'::jsonb")
}

/// A B-tree index `name` on `table`, columns added by the caller.
pub fn index(name: &'static str, table: &'static str) -> IndexCreateStatement {
    Index::create().name(name).table(table).take()
}

/// Creates every index of `indexes`, in order.
pub async fn create_indexes(
    manager: &SchemaManager<'_>,
    indexes: Vec<IndexCreateStatement>,
) -> Result<(), DbErr> {
    for index in indexes {
        manager.create_index(index).await?;
    }
    Ok(())
}

/// A foreign key `name` from `table.column` to `target(id)`.
pub fn foreign_key(
    name: &'static str,
    table: &'static str,
    column: &'static str,
    target: &'static str,
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(table, column)
        .to(target, "id")
        .on_delete(on_delete)
        .take()
}

/// The trigger that keeps `table.updated_at` current with the shared
/// `update_updated_at_column()` (created by the foundation migration).
pub fn updated_at_trigger(table: &str) -> String {
    format!(
        "CREATE TRIGGER update_{table}_updated_at BEFORE UPDATE ON {table} \
         FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();"
    )
}

/// Drops the tables, in order (callers list dependants first).
pub async fn drop_tables(
    manager: &SchemaManager<'_>,
    tables: &[&'static str],
) -> Result<(), DbErr> {
    for table in tables {
        manager
            .drop_table(Table::drop().table(*table).to_owned())
            .await?;
    }
    Ok(())
}

/// The indexes the queue engine needs on a job table, named `names` (claim, lease,
/// dedup): the claim order `(priority DESC, run_at)` over pending jobs only, so
/// claiming stays an index scan however many finished rows there are; the lease
/// expiry of running jobs (`running` is the table's word for it); and the dedup key,
/// unique among live jobs.
pub fn queue_indexes(
    table: &'static str,
    names: [&'static str; 3],
    running: &str,
) -> Vec<IndexCreateStatement> {
    let [claim, lease, dedup] = names;
    vec![
        index(claim, table)
            .col(("priority", IndexOrder::Desc))
            .col("run_at")
            .and_where(Expr::cust("status = 'pending'"))
            .take(),
        index(lease, table)
            .col("locked_until")
            .and_where(Expr::cust(format!("status = '{running}'")))
            .take(),
        index(dedup, table)
            .unique()
            .col("dedup_key")
            .and_where(Expr::cust(format!(
                "dedup_key IS NOT NULL AND status IN ('pending', '{running}')"
            )))
            .take(),
    ]
}

/// Implements `MigrationTrait` for the file's `Migration` with `up` and `down` as SQL
/// texts, each run as one batch of statements by [`exec`].
macro_rules! sql_migration {
    ($up:expr, $down:expr) => {
        #[async_trait::async_trait]
        impl MigrationTrait for Migration {
            async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                $crate::helpers::exec(manager, $up).await
            }

            async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                $crate::helpers::exec(manager, $down).await
            }
        }
    };
}
pub(crate) use sql_migration;

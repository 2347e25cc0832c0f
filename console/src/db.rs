//! Every query the console sends runs in a transaction of its own under `SET LOCAL
//! statement_timeout` (the configured limit, 2 s by default): a page that would
//! load the database is stopped by the server and says so. Plans are custom (made
//! with the filter's values) and take an index wherever one can answer — for a
//! filter no index narrows, the primary key, newest first, up to the page or the
//! count cap — so a refresh never reads a queue whole.

use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};

use crate::{AppState, PageError};

impl AppState {
    /// A read transaction: on a replica when one is fresh enough (read-only there),
    /// else on the primary, with the statement timeout set. Round trips: begin, the
    /// `SET LOCAL`s (one message), and commit or drop at the end.
    pub(crate) async fn read(&self) -> Result<DatabaseTransaction, PageError> {
        let reader = self.db().reader().await;
        let txn = reader.begin().await?;
        txn.execute_unprepared(&self.0.timeout_sql).await?;
        Ok(txn)
    }

    /// A transaction on the primary, for sign-in checks and actions (each action's
    /// audit row commits with it), with the statement timeout set. Round trips:
    /// begin, the `SET LOCAL` (and commit).
    pub(crate) async fn write(&self) -> Result<DatabaseTransaction, PageError> {
        let txn = self.db().begin().await?;
        txn.execute_unprepared(&self.0.timeout_sql).await?;
        Ok(txn)
    }
}

//! Search logs (seed 003's `search_logs`), buffered in memory and written in batches by
//! a task of their own, so a search pays a channel send, not a round trip.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::StoreError;

/// What kind of search a log entry records (`search_logs.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchKind {
    /// Nearest chunks by vector, filtered or not.
    Vector,
    /// Full text and vector, fused.
    Hybrid,
    /// Nearest chunks re-ranked for diversity.
    Mmr,
}

/// One search, as `search_logs` records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchLogEntry {
    /// The search's kind.
    pub kind: SearchKind,
    /// Its text, when it had one (the seed's column is not null: empty otherwise).
    pub query: String,
    /// `k`.
    pub top_k: i32,
    /// The filter (as JSON), `{}` without one.
    pub filters: Value,
    /// Rows returned.
    pub results_count: i32,
    /// Time from the call to its answer, in milliseconds.
    pub latency_ms: f64,
    /// The best hit's similarity.
    pub best_similarity: Option<f64>,
    /// The chunks returned, in order.
    pub result_ids: Vec<Uuid>,
    /// The knobs used and how the search was served.
    pub knobs: Value,
    /// Who searched, when known.
    pub user_id: Option<Uuid>,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// How the log buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchLogConfig {
    /// How often the buffer is written. Default 1 s.
    pub flush_every: Duration,
    /// Entries that trigger a write before the interval. Default 1,000.
    pub max_batch: usize,
    /// Entries kept while the database cannot be written; beyond this the oldest are
    /// dropped (and counted). Default 100,000.
    pub max_buffered: usize,
}

impl Default for SearchLogConfig {
    fn default() -> Self {
        Self {
            flush_every: Duration::from_secs(1),
            max_batch: 1000,
            max_buffered: 100_000,
        }
    }
}

/// Writes a batch of entries (a JSON array) in one statement: an INSERT … SELECT from
/// `jsonb_to_recordset`, which SeaORM's builder cannot say.
const INSERT_SQL: &str = "INSERT INTO search_logs
         (id, query, results_count, top_k, latency_ms, filters, kind, best_similarity,
          result_ids, knobs, user_id, created_at)
     SELECT coalesce(r.id, gen_random_uuid()), r.query, r.results_count, r.top_k, r.latency_ms,
            r.filters, r.kind, r.best_similarity, r.result_ids, r.knobs, r.user_id, r.created_at
     FROM jsonb_to_recordset($1::jsonb) AS r(
         id uuid, query text, results_count int, top_k int, latency_ms float8, filters jsonb,
         kind text, best_similarity float8, result_ids uuid[], knobs jsonb, user_id uuid,
         created_at timestamptz)";

enum Command {
    Entry(Box<SearchLogEntry>),
    Flush(oneshot::Sender<Result<u64, StoreError>>),
    Stop(oneshot::Sender<Result<u64, StoreError>>),
}

struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    /// The runtime writes the buffer on its timer: the writer's own timer is off.
    handed_over: std::sync::atomic::AtomicBool,
}

/// The search log: [`SearchLog::record`] queues an entry; a task of its own writes the
/// queue every `flush_every` or `max_batch` entries, one statement per batch, on the
/// pool it was given. [`SearchLog::shutdown`] writes what is queued and stops: a
/// graceful shutdown loses none. Clones share the queue.
#[derive(Clone)]
pub struct SearchLog {
    sender: mpsc::UnboundedSender<Command>,
    counters: Arc<Counters>,
    flush_every: Duration,
}

impl SearchLog {
    /// Starts the log's writer task on `db` (a pool: the task holds one of its
    /// connections only while it writes).
    pub fn start(db: impl Into<crate::db::Topology>, config: SearchLogConfig) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters {
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            handed_over: std::sync::atomic::AtomicBool::new(false),
        });
        tokio::spawn(writer(db.into(), config, receiver, counters.clone()));
        Self {
            sender,
            counters,
            flush_every: config.flush_every,
        }
    }

    /// Queues `entry`: a channel send, no I/O. After [`SearchLog::shutdown`] it is
    /// dropped and counted.
    pub fn record(&self, entry: SearchLogEntry) {
        if self.sender.send(Command::Entry(Box::new(entry))).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes what is queued now; returns the rows written by this flush.
    pub async fn flush(&self) -> Result<u64, StoreError> {
        self.ask(Command::Flush).await
    }

    /// Writes what is queued and stops the writer; later entries are dropped. Returns
    /// the rows written by this last flush.
    pub async fn shutdown(&self) -> Result<u64, StoreError> {
        self.ask(Command::Stop).await
    }

    /// Entries written so far.
    pub fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }

    /// Entries dropped: recorded after shutdown, or beyond `max_buffered` while the
    /// database could not be written.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    async fn ask(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<u64, StoreError>>) -> Command,
    ) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        if self.sender.send(command(reply)).is_err() {
            return Ok(0);
        }
        answer.await.unwrap_or(Ok(0))
    }
}

/// The search log under a runtime: its timed writes become the runtime's flushes (a
/// full batch is still written at once by its own task).
impl crate::runtime::Flush for SearchLog {
    fn flush_name(&self) -> String {
        "search_logs".to_owned()
    }

    fn flush_interval(&self) -> Duration {
        self.flush_every
    }

    fn write_buffered(&self) -> crate::runtime::BoxFuture<'_, Result<(), crate::error::BoxError>> {
        Box::pin(async move {
            self.flush().await?;
            Ok(())
        })
    }

    fn hand_over_flushing(&self) {
        self.counters.handed_over.store(true, Ordering::Relaxed);
    }
}

async fn writer(
    db: crate::db::Topology,
    config: SearchLogConfig,
    mut receiver: mpsc::UnboundedReceiver<Command>,
    counters: Arc<Counters>,
) {
    let mut buffer: Vec<SearchLogEntry> = Vec::new();
    let mut tick = tokio::time::interval(config.flush_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            command = receiver.recv() => match command {
                Some(Command::Entry(entry)) => {
                    buffer.push(*entry);
                    if buffer.len() >= config.max_batch {
                        let _ = write(&db, &mut buffer, &config, &counters).await;
                    }
                }
                Some(Command::Flush(reply)) => {
                    drain(&mut receiver, &mut buffer);
                    let _ = reply.send(write(&db, &mut buffer, &config, &counters).await);
                }
                Some(Command::Stop(reply)) => {
                    receiver.close();
                    drain(&mut receiver, &mut buffer);
                    let _ = reply.send(write(&db, &mut buffer, &config, &counters).await);
                    return;
                }
                None => {
                    let _ = write(&db, &mut buffer, &config, &counters).await;
                    return;
                }
            },
            _ = tick.tick() => {
                if !counters.handed_over.load(Ordering::Relaxed) {
                    let _ = write(&db, &mut buffer, &config, &counters).await;
                }
            }
        }
    }
}

/// Moves the entries already queued into the buffer.
fn drain(receiver: &mut mpsc::UnboundedReceiver<Command>, buffer: &mut Vec<SearchLogEntry>) {
    while let Ok(command) = receiver.try_recv() {
        match command {
            Command::Entry(entry) => buffer.push(*entry),
            Command::Flush(reply) | Command::Stop(reply) => {
                let _ = reply.send(Ok(0));
            }
        }
    }
}

/// Writes the buffer in one statement; on failure keeps it (up to `max_buffered`).
async fn write(
    db: &crate::db::Topology,
    buffer: &mut Vec<SearchLogEntry>,
    config: &SearchLogConfig,
    counters: &Counters,
) -> Result<u64, StoreError> {
    if buffer.is_empty() {
        return Ok(0);
    }
    let rows = serde_json::to_value(&*buffer).map_err(|e| StoreError::Invalid {
        field: "search log entry",
        value: e.to_string(),
        reason: "entries serialise to JSON",
    })?;
    match db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            INSERT_SQL,
            [rows.into()],
        ))
        .await
    {
        Ok(done) => {
            buffer.clear();
            counters
                .written
                .fetch_add(done.rows_affected(), Ordering::Relaxed);
            Ok(done.rows_affected())
        }
        Err(e) => {
            tracing::warn!(error = %e, entries = buffer.len(), "search log write failed; kept for the next flush");
            if buffer.len() > config.max_buffered {
                let excess = buffer.len() - config.max_buffered;
                buffer.drain(..excess);
                counters.dropped.fetch_add(excess as u64, Ordering::Relaxed);
            }
            Err(e.into())
        }
    }
}

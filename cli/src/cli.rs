//! The `strata` command line's clap types: one global `--database-url` and `--json`,
//! and a subcommand per family.

use clap::{Args, Parser, Subcommand};
use service::accounts::Role;
use uuid::Uuid;

/// Strata: PostgreSQL + pgvector data layer for AI-heavy applications.
#[derive(Parser)]
#[command(name = "strata", version)]
pub struct Cli {
    /// Database URL; when absent, the embedded default cluster under target/.
    #[arg(short = 'u', long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// A session connection to the primary, when `--database-url` is a
    /// transaction-mode pooler (PgBouncer, Supavisor): LISTEN, session advisory
    /// locks, COPY, CREATE INDEX CONCURRENTLY and migrations use it.
    #[arg(long, env = "DIRECT_URL", global = true)]
    pub direct_url: Option<String>,
    /// Streaming replicas of the primary, separated by commas: listings, statistics
    /// and searches read from one that has caught up (lagging less than 5 s), else
    /// from the primary.
    #[arg(long, env = "REPLICA_URLS", global = true)]
    pub replica_urls: Option<String>,
    /// Print the result as JSON (the same structure the tables show).
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The command families.
#[derive(Subcommand)]
pub enum Command {
    /// Apply, inspect or roll back migrations (sea-orm-migration's subcommands).
    Migrate(migration::command::Cli),
    /// Check the database: required objects, indexes, vacuum, sessions, queues,
    /// caches, maintenance (ok / warn / fail; exit status 1 on any fail).
    Doctor(DoctorArgs),
    /// The web console: queues, caches, documents, reviews, maintenance, audit and the
    /// doctor in a browser, closed without a token (`strata users token create`).
    Serve(ServeArgs),
    /// Run the maintenance that is due (once, or `--every` interval until Ctrl-C),
    /// run one task now, or list the schedule.
    Maintain(MaintainArgs),
    /// Create users, change their roles, list them.
    #[command(subcommand)]
    Users(UsersCommand),
    /// The AI annotations waiting for review, decisions, statistics.
    #[command(subcommand)]
    Review(ReviewCommand),
    /// Query the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The four caches: statistics, clean-up, LRU eviction, purges.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Both job queues: list, show, enqueue, statistics, retry, cancel.
    Jobs(JobsArgs),
    /// Run the built-in job handlers and the maintenance schedule until Ctrl-C.
    Worker(WorkerArgs),
    /// The vector document store: ingest JSONL, search, reindex, index health.
    #[command(subcommand)]
    Docs(DocsCommand),
    /// The embedded development cluster under target/: start, stop, status, URL.
    #[command(subcommand)]
    Db(DbCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Which cache (`pdf`, `ai`, `vision`, `exercise`).
pub type CacheKindArg = service::cache::CacheKind;

/// `strata cache`.
#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// Entries, size, hits, hit rate and expired entries of each cache.
    Stats,
    /// The seeds' clean-ups: the 90-day PDF and 30-day AI-response retention, expired
    /// vision and exercise entries.
    Cleanup {
        /// Only this cache (default: all four).
        #[arg(long, value_parser = parse_kind)]
        kind: Option<CacheKindArg>,
        /// Count what would go, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Keep the N most recently used vision-cache entries, delete the rest.
    Evict {
        /// Entries to keep.
        #[arg(long)]
        max: i32,
        /// The cache (only `vision` has LRU eviction).
        #[arg(long, value_parser = parse_kind, default_value = "vision")]
        kind: CacheKindArg,
        /// Count what would go, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Who asks (an email), for the audit log.
        #[arg(long)]
        by: Option<String>,
    },
    /// Delete a cache's expired entries, or all of them (audited).
    Purge {
        /// The cache.
        #[arg(long, value_parser = parse_kind)]
        kind: CacheKindArg,
        /// Only entries past their expiry (vision, exercise).
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        expired: bool,
        /// Every entry.
        #[arg(long)]
        all: bool,
        /// Count what would go, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Who asks (an email), for the audit log.
        #[arg(long)]
        by: Option<String>,
    },
}

/// `pdf`, `ai`, `vision` or `exercise`.
fn parse_kind(text: &str) -> anyhow::Result<CacheKindArg> {
    Ok(text.parse::<CacheKindArg>()?)
}

/// `strata jobs`.
#[derive(Args, Debug)]
pub struct JobsArgs {
    /// The queue: `jobs` (seed 003) or `ai` (seed 004's `ai_annotation_jobs`).
    #[arg(long, value_enum, default_value = "jobs", global = true)]
    pub queue: QueueArg,
    /// What to do.
    #[command(subcommand)]
    pub command: JobsCommand,
}

/// The two queues.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueArg {
    /// `jobs`.
    Jobs,
    /// `ai_annotation_jobs`.
    Ai,
}

/// Which jobs.
#[derive(Args, Debug, Clone)]
pub struct JobFilterArgs {
    /// Only this status (`pending`, `running`/`processing`, `completed`, `failed`,
    /// `cancelled`).
    #[arg(long)]
    pub status: Option<service::queue::JobStatus>,
    /// Only this job type (the provider, for `--queue ai`).
    #[arg(long = "type")]
    pub job_type: Option<String>,
}

/// `strata jobs …`.
#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// Jobs, newest first (by id: UUIDv7, creation order).
    List {
        #[command(flatten)]
        filter: JobFilterArgs,
        /// Rows to show (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u64,
        /// The page after this job id (the last id of the previous page).
        #[arg(long)]
        before: Option<Uuid>,
    },
    /// One job with its payload and result.
    Show {
        /// The job's id.
        id: Uuid,
    },
    /// Enqueue a job (`--queue ai`: TYPE is the provider, PAYLOAD `{"image_id": …}`).
    Enqueue {
        /// The job type (`maintenance` has a built-in handler in `strata worker`).
        job_type: String,
        /// The JSON payload.
        #[arg(default_value = "{}")]
        payload: String,
        /// Higher runs first (0 to 32767).
        #[arg(long, default_value_t = 0)]
        priority: i32,
        /// Run no sooner than this from now (`30s`, `5m`).
        #[arg(long, value_parser = humantime::parse_duration)]
        delay: Option<std::time::Duration>,
        /// Attempts before it stays failed.
        #[arg(long)]
        max_attempts: Option<i32>,
        /// While a job with this key is pending or running, return it instead.
        #[arg(long)]
        dedup_key: Option<String>,
    },
    /// Jobs by status and type, and the oldest runnable job's wait.
    Stats,
    /// Send failed jobs back to pending: one by id, or every one matching the filter.
    Retry(BulkArgs),
    /// Cancel pending or running jobs: one by id, or every one matching the filter.
    Cancel(BulkArgs),
}

/// A change of one job, or of every job matching a filter.
#[derive(Args, Debug)]
pub struct BulkArgs {
    /// The job; without it, every job matching the filter.
    #[arg(conflicts_with_all = ["status", "job_type"])]
    pub id: Option<Uuid>,
    #[command(flatten)]
    pub filter: JobFilterArgs,
    /// Go on with a change of more than one job (without it, the count is shown and
    /// nothing changes).
    #[arg(long)]
    pub yes: bool,
}

/// `strata worker`.
#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// Jobs run at once per queue.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Run the maintenance that is due at this interval (`0s`: never).
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub maintain_every: std::time::Duration,
    /// How long Ctrl-C waits for running jobs before giving them back.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: std::time::Duration,
}

/// Where embeddings come from.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbedArg {
    /// all-MiniLM-L6-v2 in-process (`scripts/setup-model.sh` fetches it).
    Local,
    /// An OpenAI-compatible endpoint (`STRATA_EMBED_URL`, `STRATA_EMBED_MODEL`,
    /// `STRATA_EMBED_DIMENSION`, `STRATA_EMBED_API_KEY`).
    Http,
}

/// `strata docs`.
#[derive(Subcommand, Debug)]
pub enum DocsCommand {
    /// Ingest a JSONL file: one document per line, `{"source", "key", "title",
    /// "content", "metadata", "chunks": [{"content", "metadata", "embedding"}]}`.
    /// All or nothing: a bad line is reported by number and nothing is written.
    Ingest {
        /// The file (`-` for stdin).
        file: std::path::PathBuf,
        /// Embed chunks without an `embedding` with this embedder.
        #[arg(long, value_enum)]
        embed: Option<EmbedArg>,
        /// The model of the embeddings in the file (without `--embed`).
        #[arg(long)]
        model: Option<String>,
    },
    /// Search: `--text` (hybrid full-text and vector), `--embedding` (a JSON array) or
    /// `--like DOC_ID:CHUNK` (a stored chunk's vector).
    Search {
        /// The words to search for (hybrid search; embedded with `--embed`).
        #[arg(long, group = "query")]
        text: Option<String>,
        /// A query vector as a JSON array.
        #[arg(long, group = "query")]
        embedding: Option<String>,
        /// Chunks like this stored one: `DOCUMENT_ID:CHUNK_INDEX`.
        #[arg(long, group = "query")]
        like: Option<String>,
        /// How many results.
        #[arg(short, long, default_value_t = 5)]
        k: usize,
        /// Only documents from this source.
        #[arg(long)]
        source: Option<String>,
        /// The embedder for `--text`.
        #[arg(long, value_enum, default_value = "local")]
        embed: EmbedArg,
        /// Which chunks `--text` matches by full text: `all` its words, or `any`.
        #[arg(long, default_value = "all")]
        text_match: service::store::TextMatch,
    },
    /// Rebuild the vector index concurrently (searches go on), with progress.
    Reindex {
        /// `auto` (hnsw when its graph fits `--memory`, else ivfflat; the reason is
        /// recorded), `ivfflat` (lists fitted to the rows) or `hnsw`.
        #[arg(long, default_value = "auto")]
        method: String,
        /// IVFFlat lists (default: rows / 1000, at least 1).
        #[arg(long)]
        lists: Option<u32>,
        /// HNSW neighbours per node.
        #[arg(long, default_value_t = 16)]
        m: u32,
        /// HNSW build candidate list.
        #[arg(long, default_value_t = 64)]
        ef_construction: u32,
        /// `maintenance_work_mem` for the build.
        #[arg(long, default_value = "256MB")]
        memory: String,
    },
    /// The vector index: kind, parameters, rows at build and now, a recommendation.
    Health,
}

/// `strata db`.
#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Start the embedded cluster (or find it running) and print its URL.
    Start,
    /// Stop the embedded cluster.
    Stop,
    /// Whether the embedded cluster runs, where, and its URL.
    Status,
    /// Print the URL `strata` uses (`--database-url`, `DATABASE_URL`, or the embedded
    /// cluster's, started on demand).
    Url,
}

/// `strata doctor`.
#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Each check's statement timeout (`5s`, `500ms`).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
}

/// `strata serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Refuse every change (every POST but signing in and out answers 403).
    #[arg(long)]
    pub read_only: bool,
    /// The statement timeout of every query the console sends (`2s`, `500ms`).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub statement_timeout: std::time::Duration,
    /// The search box's embedder (none: the box says it has none).
    #[arg(long, value_enum)]
    pub embed: Option<EmbedArg>,
    /// The key that signs session cookies, 32 bytes or more (default: drawn at
    /// start, so sessions end with the process).
    #[arg(long, env = "STRATA_SESSION_KEY", hide_env_values = true)]
    pub session_key: Option<String>,
    /// Mark the session cookie Secure (the console is served behind HTTPS).
    #[arg(long)]
    pub secure_cookie: bool,
}

/// `strata maintain`.
#[derive(Args, Debug)]
pub struct MaintainArgs {
    /// Run what is due again at this interval (`30s`, `1m`, `1h`) until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub every: Option<std::time::Duration>,
    /// `run TASK` or `list`; without one, run what is due.
    #[command(subcommand)]
    pub command: Option<MaintainCommand>,
}

/// `strata maintain run|list`.
#[derive(Subcommand, Debug)]
pub enum MaintainCommand {
    /// Run one task now, whatever its schedule.
    Run {
        /// The task (`strata maintain list` names them).
        task: String,
    },
    /// The schedule: each task's cron expression, last and next run.
    List,
}

/// A page of a listing.
#[derive(Args, Debug, Clone, Copy)]
pub struct PageArgs {
    /// Rows to show (1 to 1000).
    #[arg(long, default_value_t = 50)]
    pub limit: u64,
    /// Rows to skip.
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
}

/// `strata users`.
#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Create a user.
    Create {
        /// The email (stored trimmed and lowercased).
        email: String,
        /// `user`, `moderator` or `admin`.
        #[arg(long, default_value = "user")]
        role: Role,
        /// The application's password hash; `!` (the default) allows no password login.
        #[arg(long, default_value = "!")]
        password_hash: String,
        /// A name to show.
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Change a user's role, as an admin (through `change_user_role`).
    Role {
        /// The user's email.
        email: String,
        /// The new role: `user`, `moderator` or `admin`.
        role: Role,
        /// The acting admin's email.
        #[arg(long)]
        by: String,
    },
    /// List users, oldest first.
    List {
        /// Only this role.
        #[arg(long)]
        role: Option<Role>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Access tokens: sign-in to the web console, `Authorization: Bearer` for scripts.
    #[command(subcommand)]
    Token(TokenCommand),
}

/// `strata users token`.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Make a token for a user and print its secret, once, alone on standard output
    /// (only its SHA-256 is stored).
    Create {
        /// The user's email.
        email: String,
        /// How long it works (`30d`, `12h`; at most 366 days).
        #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
        expires: std::time::Duration,
        /// What it is for.
        #[arg(long)]
        name: Option<String>,
        /// The acting user's email (default: the token's user).
        #[arg(long)]
        by: Option<String>,
    },
    /// Revoke a token by its id: from now on it is refused.
    Revoke {
        /// The token's id (`strata users token list EMAIL`).
        id: Uuid,
        /// The acting user's email.
        #[arg(long)]
        by: Option<String>,
    },
    /// A user's tokens, newest first (never their secrets).
    List {
        /// The user's email.
        email: String,
    },
}

/// `strata review`.
#[derive(Subcommand, Debug)]
pub enum ReviewCommand {
    /// AI annotations waiting for review, least confident first.
    List {
        /// Only this provider (`openai`, `google`, `anthropic`).
        #[arg(long)]
        provider: Option<String>,
        /// Only confidences of at least this.
        #[arg(long)]
        min_confidence: Option<f64>,
        /// Only confidences of at most this.
        #[arg(long)]
        max_confidence: Option<f64>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Approve an annotation.
    Approve {
        /// The annotation's id.
        id: Uuid,
        /// The reviewer's email (a moderator or admin).
        #[arg(long)]
        by: String,
    },
    /// Reject an annotation.
    Reject {
        /// The annotation's id.
        id: Uuid,
        /// The reviewer's email (a moderator or admin).
        #[arg(long)]
        by: String,
    },
    /// Each reviewer's decisions, and the AI jobs by provider and status.
    Stats,
}

/// `strata audit`.
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Audit events, newest first.
    List {
        /// Done by this user (email).
        #[arg(long)]
        actor: Option<String>,
        /// Of this type (`user.role_changed`, `annotation.reviewed`, …).
        #[arg(long = "type")]
        event_type: Option<String>,
        /// To this kind of resource (`users`, `annotations`, …).
        #[arg(long)]
        resource: Option<String>,
        /// At or after this time (RFC 3339).
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        #[command(flatten)]
        page: PageArgs,
    },
}

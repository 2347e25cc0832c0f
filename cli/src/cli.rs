//! The `strata` command line's clap types: one global `--database-url` and `--json`,
//! and a subcommand per family.

use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

/// Strata: PostgreSQL + pgvector data layer for AI-heavy applications.
#[derive(Parser)]
#[command(name = "strata", version)]
pub struct Cli {
    /// Database URL; when absent, the embedded default cluster under target/.
    #[arg(short = 'u', long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
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
    /// Show the server, pgvector, the migrations and every object of the schema.
    Doctor,
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
        role: String,
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
        /// The new role.
        role: String,
        /// The acting admin's email.
        #[arg(long)]
        by: String,
    },
    /// List users, oldest first.
    List {
        /// Only this role.
        #[arg(long)]
        role: Option<String>,
        #[command(flatten)]
        page: PageArgs,
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

//! The migration command line: `cargo run -p migration -- [-u URL] [up|down|status|…]`
//! and `strata migrate …`.
//!
//! sea-orm-migration's own CLI (same subcommands and flags), with two additions:
//! without `DATABASE_URL`/`-u` it uses the embedded default cluster
//! ([`migration::embedded`]), and every database command runs under the migration
//! advisory lock, so concurrent runs are safe.

use std::process::ExitCode;

use crate::MigrationLock;
use crate::Migrator;
use clap::Parser;
use devdb::embedded;
use sea_orm_cli::MigrateSubcommands;
use sea_orm_migration::sea_orm::{ConnectOptions, Database};

/// The arguments: sea-orm-migration's, with the URL optional.
#[derive(Parser)]
#[command(version, about = "Apply, inspect or roll back Strata's migrations")]
pub struct Cli {
    /// Show debug messages.
    #[arg(short = 'v', long, global = true)]
    verbose: bool,

    /// Database schema (PostgreSQL search_path).
    #[arg(
        global = true,
        short = 's',
        long,
        env = "DATABASE_SCHEMA",
        default_value = "public"
    )]
    database_schema: String,

    /// Database URL; when absent, the embedded default cluster under target/.
    #[arg(global = true, short = 'u', long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    #[command(subcommand)]
    command: Option<MigrateSubcommands>,
}

/// Parses the process arguments and runs the command; the process exit code.
pub fn main() -> ExitCode {
    run_cli(Cli::parse())
}

/// Runs a parsed command: non-database commands (`init`, `generate`) directly, the
/// others on `-u`/`DATABASE_URL` or the embedded default, under the migration lock.
/// Errors are printed to stderr and give exit code 1.
pub fn run_cli(cli: Cli) -> ExitCode {
    match cli.command {
        Some(MigrateSubcommands::Init) => {
            return report(sea_orm_cli::run_migrate_init("./").map_err(|e| e.to_string()));
        }
        Some(MigrateSubcommands::Generate {
            ref migration_name,
            local_time,
            ..
        }) => {
            return report(
                sea_orm_cli::run_migrate_generate("./", migration_name, !local_time)
                    .map_err(|e| e.to_string()),
            );
        }
        _ => {}
    }
    if let Err(e) = crate::check_environment() {
        return report(Err(e.to_string()));
    }
    let url = match cli.database_url.clone().filter(|u| !u.trim().is_empty()) {
        Some(url) => url,
        None => match embedded::ensure() {
            Ok(cluster) => cluster.url(),
            Err(e) => return report(Err(e.to_string())),
        },
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return report(Err(format!("cannot start the async runtime: {e}"))),
    };
    report(runtime.block_on(run(cli, url)))
}

async fn run(cli: Cli, url: String) -> Result<(), String> {
    let lock = MigrationLock::acquire(&url)
        .await
        .map_err(|e| format!("cannot take the migration lock on {url}: {e}"))?;
    let opt = ConnectOptions::new(url.clone())
        .set_schema_search_path(cli.database_schema)
        .sqlx_logging(cli.verbose)
        .to_owned();
    let db = Database::connect(opt)
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let result = sea_orm_migration::cli::run_migrate(Migrator, &db, cli.command, cli.verbose)
        .await
        .map_err(|e| e.to_string());
    let _ = db.close().await;
    lock.release().await.map_err(|e| e.to_string())?;
    result
}

fn report(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("migration: {e}");
            ExitCode::FAILURE
        }
    }
}

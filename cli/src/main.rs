//! `strata`: the project's command line.
//!
//! - `strata migrate [up|down|status|…]`: the migration CLI (same as
//!   `cargo run -p migration -- …`), under the migration lock.
//! - `strata doctor`: where the database is and what it holds.
//!
//! Without `--database-url`/`DATABASE_URL`, every command uses the embedded default
//! cluster under `target/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Strata: PostgreSQL + pgvector data layer for AI-heavy applications"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply, inspect or roll back migrations (sea-orm-migration's subcommands).
    Migrate(migration::command::Cli),
    /// Show the server, pgvector, the migrations and every object of the schema.
    Doctor {
        /// Database URL; when absent, the embedded default cluster under target/.
        #[arg(short = 'u', long, env = "DATABASE_URL")]
        database_url: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Migrate(args) => migration::command::run_cli(args),
        Command::Doctor { database_url } => report(doctor(database_url.as_deref())),
    }
}

fn doctor(url: Option<&str>) -> Result<(), String> {
    let url = service::db::resolve_url(url).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let db = service::db::connect(Some(&url), 1)
            .await
            .map_err(|e| e.to_string())?;
        let inv = service::db::inventory(&db, &migration::names())
            .await
            .map_err(|e| e.to_string())?;
        let _ = db.close().await;
        println!("database:    {}", service::db::redact(&url));
        println!("server:      PostgreSQL {}", inv.server_version);
        println!(
            "pgvector:    {}",
            inv.pgvector_version
                .as_deref()
                .unwrap_or("not installed in this database")
        );
        println!(
            "migrations:  {} applied, {} pending",
            inv.applied.len(),
            inv.pending.len()
        );
        for name in &inv.pending {
            println!("  pending:   {name}");
        }
        let list = |label: &str, items: &[String]| {
            println!("{label:<13}{}", items.len());
            for item in items {
                println!("  {item}");
            }
        };
        list("tables:", &inv.tables);
        list("views:", &inv.views);
        list("matviews:", &inv.materialized_views);
        list("functions:", &inv.functions);
        list("enums:", &inv.enums);
        println!("indexes:     {}", inv.indexes);
        println!("triggers:    {}", inv.triggers);
        println!("policies:    {}", inv.policies);
        Ok(())
    })
}

fn report(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e}");
            ExitCode::FAILURE
        }
    }
}

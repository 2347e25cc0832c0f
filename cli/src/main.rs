//! `strata`: operate the Strata data layer from a terminal.
//!
//! - `strata migrate [up|down|status|fresh]`: the migration CLI (same as
//!   `cargo run -p migration -- …`), under the migration lock; `strata db
//!   start|stop|status|url`: the embedded development cluster.
//! - `strata doctor`: PgHero's checks and this schema's own, ok / warn / fail, exit
//!   status 1 on a fail.
//! - `strata cache stats|cleanup|evict|purge`, `strata jobs
//!   list|show|enqueue|stats|retry|cancel` (both queues), `strata worker` (the built-in
//!   handlers and the maintenance schedule until Ctrl-C).
//! - `strata docs ingest|search|reindex|health`: the vector document store.
//! - `strata maintain [--every 1m] [run TASK | list]`: the maintenance schedule.
//! - `strata serve [--listen 127.0.0.1:8080] [--read-only]`: the web console.
//! - `strata users create|role|list`, `strata review list|approve|reject|stats`,
//!   `strata audit list`, `strata completions SHELL`.
//!
//! Global `--database-url` (env `DATABASE_URL`; without it, the embedded default
//! cluster under `target/`), `--direct-url` (`DIRECT_URL`: a session, when the first
//! is a transaction-mode pooler; migrations use it), `--replica-urls`
//! (`REPLICA_URLS`: reads of listings, statistics and searches) and `--json` on every
//! reporting command. Errors are one
//! line on stderr and exit status 1. The clap types are in `cli`, one file per
//! command family in `commands/`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

mod cli;
mod commands;

use cli::{Cli, Command};
use commands::Output;

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    // An empty variable counts as unset, as `DatabaseUrls::from_env` has it.
    cli.direct_url = cli.direct_url.filter(|u| !u.trim().is_empty());
    if let Command::Migrate(mut args) = cli.command {
        // Migrations and their lock need a session: the direct URL when there is one,
        // else the one global --database-url, whichever side of `migrate` it was given on.
        if let Some(direct) = cli.direct_url {
            args.database_url = Some(direct);
        } else if args.database_url.is_none() {
            args.database_url = cli.database_url;
        }
        return migration::command::run_cli(args);
    }
    if let Command::Completions { shell } = cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut command, "strata", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    let result = run(cli, &mut lock);
    let _ = lock.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// `e` and its causes on one line, joined by ": " as `{e:#}` joins them, leaving out
/// a cause whose text the line already holds: the service's errors print their
/// source in their own message too (`database: {0}`, `cannot connect to {url}:
/// {source}`), and `{e:#}` alone would print it twice.
fn one_line(e: &anyhow::Error) -> String {
    let mut causes = e.chain().map(ToString::to_string);
    let mut line = causes.next().unwrap_or_default();
    for text in causes {
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

/// Runs a command other than `migrate`, writing to `out`, on one runtime.
fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let url = cli.database_url.as_deref();
    let direct_url = cli.direct_url.as_deref();
    let replica_urls = cli.replica_urls.as_deref();
    let mut out = Output::new(out, cli.json);
    runtime.block_on(async {
        match cli.command {
            Command::Doctor(args) => {
                let urls = commands::urls(url, direct_url, replica_urls)?;
                return commands::doctor::run(&urls, args.timeout, &mut out).await;
            }
            Command::Db(c) => return commands::db::run(c, url, &mut out).await,
            Command::Serve(args) => {
                let urls = commands::urls(url, direct_url, replica_urls)?;
                return commands::serve::run(&urls, args, &mut out).await;
            }
            _ => {}
        }
        // The worker's handlers (up to its concurrency on each queue), heartbeats and
        // schedule share its pool; every other command needs a few connections.
        let pool_size = match &cli.command {
            Command::Worker(args) => {
                u32::try_from(2 * args.concurrency + commands::POOL_SIZE as usize)
                    .with_context(|| format!("--concurrency {} is too large", args.concurrency))?
            }
            _ => commands::POOL_SIZE,
        };
        let db =
            commands::connect(&commands::urls(url, direct_url, replica_urls)?, pool_size).await?;
        let result = match cli.command {
            Command::Maintain(args) => commands::maintain::run(&db, args, &mut out).await,
            Command::Users(c) => commands::users::run(&db, c, &mut out).await,
            Command::Review(c) => commands::review::run(&db, c, &mut out).await,
            Command::Audit(c) => commands::audit::run(&db, c, &mut out).await,
            Command::Cache(c) => commands::cache::run(&db, c, &mut out).await,
            Command::Jobs(args) => commands::jobs::run(&db, args, &mut out).await,
            Command::Worker(args) => commands::worker::run(&db, args, &mut out).await,
            Command::Docs(c) => commands::docs::run(&db, c, &mut out).await,
            Command::Migrate(_)
            | Command::Doctor(_)
            | Command::Db(_)
            | Command::Serve(_)
            | Command::Completions { .. } => Ok(()),
        };
        db.close().await;
        result
    })
}

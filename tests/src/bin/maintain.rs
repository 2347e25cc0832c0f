//! `strata-test-maintain URL RUNNER`: one maintenance runner process for the tests —
//! runs what is due once, then prints each run as `task status` lines.

use std::process::ExitCode;

use service::maintenance::{self, RunOutcome};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, runner] = args.as_slice() else {
        eprintln!("usage: strata-test-maintain URL RUNNER");
        return ExitCode::FAILURE;
    };
    let db = match service::db::connect(url, 2).await {
        Ok(db) => db,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match maintenance::run_due(&db, runner).await {
        Ok(runs) => {
            for run in runs {
                let status = match run.outcome {
                    RunOutcome::Success(_) => "success",
                    RunOutcome::Failure { .. } => "failure",
                };
                println!("{} {status}", run.task);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

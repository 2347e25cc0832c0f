//! `strata-test-embedded DIR`: starts or reuses the embedded cluster in DIR and prints
//! `<port> <started|reused> <url>`; the tests run it in several processes at once.

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: strata-test-embedded DIR");
        return ExitCode::FAILURE;
    };
    match devdb::embedded::start_or_reuse(std::path::Path::new(&dir)) {
        Ok(c) => {
            println!(
                "{} {} {}",
                c.port,
                if c.started { "started" } else { "reused" },
                c.url()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

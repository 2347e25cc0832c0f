//! `strata db start|stop|status|url`: the embedded development cluster under
//! `target/strata-pg` (or `STRATA_PG_DIR`).

use serde::Serialize;

use super::Output;
use crate::cli::DbCommand;

/// The cluster's state.
#[derive(Serialize)]
struct State {
    running: bool,
    dir: String,
    url: Option<String>,
}

/// Runs `strata db …`; `url` is `--database-url` / `DATABASE_URL` (for `db url`).
pub async fn run(
    command: DbCommand,
    url: Option<&str>,
    out: &mut Output<'_>,
) -> anyhow::Result<()> {
    let dir = devdb::embedded::default_dir();
    match command {
        DbCommand::Start => {
            let cluster = devdb::embedded::start_or_reuse(&dir)?;
            let state = State {
                running: true,
                dir: cluster.dir.display().to_string(),
                url: Some(cluster.url()),
            };
            let verb = if cluster.started {
                "started"
            } else {
                "already running"
            };
            out.done(&state, &format!("{verb}: {}", cluster.url()))
        }
        DbCommand::Stop => match devdb::embedded::running(&dir)? {
            Some(cluster) => {
                cluster.stop()?;
                let state = State {
                    running: false,
                    dir: cluster.dir.display().to_string(),
                    url: None,
                };
                out.done(
                    &state,
                    &format!("stopped the cluster in {}", cluster.dir.display()),
                )
            }
            None => {
                let state = State {
                    running: false,
                    dir: dir.display().to_string(),
                    url: None,
                };
                out.done(&state, &format!("not running ({})", dir.display()))
            }
        },
        DbCommand::Status => {
            let cluster = devdb::embedded::running(&dir)?;
            let state = State {
                running: cluster.is_some(),
                dir: cluster
                    .as_ref()
                    .map_or(dir.display().to_string(), |c| c.dir.display().to_string()),
                url: cluster.as_ref().map(|c| c.url()),
            };
            let message = match &state.url {
                Some(url) => format!("running in {}: {url}", state.dir),
                None => format!("not running ({})", state.dir),
            };
            out.done(&state, &message)
        }
        DbCommand::Url => {
            let url = devdb::embedded::resolve_url(url)?;
            #[derive(Serialize)]
            struct Url {
                url: String,
            }
            out.done(&Url { url: url.clone() }, &url)
        }
    }
}

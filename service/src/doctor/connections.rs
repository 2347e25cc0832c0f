//! How the deployment connects: whether `DATABASE_URL` is a transaction-mode pooler,
//! whether the work that needs a session has one (`DIRECT_URL`), and how the read
//! replicas (`REPLICA_URLS`) are doing.

use super::Check;
use crate::db::{DatabaseUrls, SessionUse, Topology, multiplexed, redact};

/// The connection checks, by probing the URLs themselves ([`multiplexed`]: two
/// connections and one round trip each per URL probed):
/// - `pooler`: whether `DATABASE_URL` multiplexes client connections onto shared
///   server sessions (a transaction-mode pooler), which is fine;
/// - `session connection`: whether what needs a session ([`SessionUse`]) has one: a
///   `fail` naming each component when `DATABASE_URL` is such a pooler and
///   `DIRECT_URL` is missing, or when `DIRECT_URL` is a pooler too.
pub async fn connection_checks(urls: &DatabaseUrls) -> Vec<Check> {
    const POOLER: &str = "pooler";
    const SESSION: &str = "session connection";
    let needs: Vec<String> = SessionUse::ALL
        .iter()
        .map(|u| u.component().to_owned())
        .collect();
    let pooled = match multiplexed(&urls.database_url).await {
        Ok(pooled) => pooled,
        Err(e) => {
            return vec![Check::fail(
                POOLER,
                format!("could not probe DATABASE_URL: {e}"),
            )];
        }
    };
    let pooler = if pooled {
        Check::ok(
            POOLER,
            "DATABASE_URL goes through a transaction-mode pooler: two client connections were \
             served by one backend (statements run without named prepared statements, each in \
             a transaction)",
        )
    } else if urls.has_distinct_direct() {
        Check::ok(
            POOLER,
            "DATABASE_URL is taken to be a transaction-mode pooler because DIRECT_URL differs \
             (the probe did not see one backend serve two clients)",
        )
    } else {
        Check::ok(
            POOLER,
            "DATABASE_URL gives each client a session of its own",
        )
    };
    let session = if !urls.has_distinct_direct() {
        if pooled {
            Check::fail(
                SESSION,
                format!(
                    "DATABASE_URL goes through a transaction-mode pooler and DIRECT_URL is not \
                     set: {} need a session connection (set DIRECT_URL)",
                    needs.len()
                ),
            )
            .with_details(needs)
        } else {
            Check::ok(
                SESSION,
                "DATABASE_URL gives sessions for LISTEN, locks, COPY and migrations",
            )
        }
    } else {
        let direct = urls.session_url();
        match multiplexed(direct).await {
            Ok(false) => Check::ok(
                SESSION,
                format!(
                    "DIRECT_URL ({}) gives sessions for LISTEN, locks, COPY and migrations",
                    redact(direct)
                ),
            ),
            Ok(true) => Check::fail(
                SESSION,
                format!(
                    "DIRECT_URL ({}) goes through a transaction-mode pooler too: {} need a \
                     session connection",
                    redact(direct),
                    needs.len()
                ),
            )
            .with_details(needs),
            Err(e) => {
                Check::fail(SESSION, format!("could not probe DIRECT_URL: {e}")).with_details(needs)
            }
        }
    };
    vec![pooler, session]
}

/// The `replicas` check: asks each replica of `topology` (one round trip each) and
/// reports it up and streaming within the lag bound (`ok`), lagging past the bound
/// (`warn`: its reads go to the primary meanwhile), or down or no longer a standby
/// (`fail`: a promoted replica must leave `REPLICA_URLS`). `ok` without replicas.
pub async fn replica_checks(topology: &Topology) -> Vec<Check> {
    const NAME: &str = "replicas";
    let status = topology.check_replicas().await;
    if status.is_empty() {
        return vec![Check::ok(
            NAME,
            "no REPLICA_URLS: every read goes to the primary",
        )];
    }
    let max_lag = topology.replica_config().max_lag;
    let details: Vec<String> = status
        .iter()
        .map(|s| {
            let state = if !s.up {
                "down".to_owned()
            } else if !s.in_recovery {
                "not a standby (promoted?)".to_owned()
            } else {
                format!("replayed {}, lag {:.1} s", s.replayed, s.lag.as_secs_f64())
            };
            format!("{}: {state}", s.url)
        })
        .collect();
    let broken = status.iter().filter(|s| !s.up || !s.in_recovery).count();
    let lagging = status
        .iter()
        .filter(|s| s.up && s.in_recovery && s.lag > max_lag)
        .count();
    let check = if broken > 0 {
        Check::fail(
            NAME,
            format!(
                "{broken} of {} replicas down or no longer standbys",
                status.len()
            ),
        )
    } else if lagging > 0 {
        Check::warn(
            NAME,
            format!(
                "{lagging} of {} replicas lag more than {} s: their reads go to the primary",
                status.len(),
                max_lag.as_secs_f64()
            ),
        )
    } else {
        Check::ok(
            NAME,
            format!(
                "{} replicas streaming within {} s",
                status.len(),
                max_lag.as_secs_f64()
            ),
        )
    };
    vec![check.with_details(details)]
}

//! Every statement of the queue that SeaORM's builder cannot say, as a named template
//! with the reason it is raw SQL. `{t}`, `{ty}`, `{payload}`, `{result}`, `{error}`,
//! `{running}` and `{st}` are the table's names and words ([`QueueTable::render`]);
//! each template is rendered once per table, on first use.
//!
//! Statements whose parameters are arrays of a batch (finishes, heartbeats,
//! releases) run unnamed on sqlx, planned with the actual arrays every time: a
//! cached generic plan may rescan the array for every row (750 ms instead of 30 ms
//! for 1,000 outcomes; `docs/performance.md`).

use std::sync::LazyLock;

use super::table::{AI_ANNOTATION_JOBS, JOBS, QueueTable};

/// Claims up to `$2` runnable jobs of types `$1` for worker `$3` with a lease of `$4`
/// seconds: a CTE with `FOR UPDATE SKIP LOCKED` feeding an UPDATE … RETURNING. (`id =
/// ANY(ARRAY(…))` keeps the update on the primary key even in the generic plan of the
/// prepared statement, where a join would hash the whole table.)
const CLAIM: &str = "WITH picked AS (
         SELECT id FROM {t}
         WHERE status = 'pending' AND run_at <= now() AND {ty} = ANY($1)
         ORDER BY priority DESC, run_at
         LIMIT $2
         FOR UPDATE SKIP LOCKED
     )
     UPDATE {t} j SET status = '{running}', attempts = j.attempts + 1,
                      locked_by = $3, locked_until = now() + make_interval(secs => $4),
                      claim_token = gen_random_uuid(),
                      started_at = now(), updated_at = now()
     WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
     RETURNING j.id, j.claim_token AS token, j.{ty} AS job_type, j.{payload} AS payload,
               j.attempts AS attempt, j.max_attempts";

/// Completes jobs `$1` under claim tokens `$2` with one shared result `$3` (no-op
/// handlers' `null`, the common batch): array parameters, no per-row join. Tokens are
/// unique per claim, so `claim_token = ANY(tokens)` matches a row only when its
/// current claim's outcome is in the batch.
const COMPLETE_SHARED: &str = "UPDATE {t} j SET status = 'completed', {result} = $3::jsonb,
         completed_at = now(), updated_at = now(), locked_by = NULL, locked_until = NULL,
         claim_token = NULL
     WHERE j.id = ANY($1) AND j.claim_token = ANY($2) AND j.status = '{running}'";

/// Records one outcome per job — a result, or an error with its retry time — from
/// `unnest` of the batch's arrays, and counts completions and failures in the same
/// statement: an UPDATE … FROM unnest in a counting CTE.
const FINISH_EACH: &str = "WITH done AS (
         UPDATE {t} j SET
             status = (CASE WHEN o.result IS NOT NULL THEN 'completed'
                            WHEN j.attempts >= j.max_attempts THEN 'failed'
                            ELSE 'pending' END)::{st},
             {result} = coalesce(o.result::jsonb, j.{result}),
             {error} = CASE WHEN o.result IS NOT NULL THEN j.{error} ELSE o.err END,
             run_at = CASE WHEN o.result IS NULL AND j.attempts < j.max_attempts
                           THEN o.retry_at ELSE j.run_at END,
             completed_at = CASE WHEN o.result IS NOT NULL OR j.attempts >= j.max_attempts
                                 THEN now() END,
             updated_at = now(), locked_by = NULL, locked_until = NULL, claim_token = NULL
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[])
              AS o(id, token, result, err, retry_at)
         WHERE j.id = ANY($1) AND j.id = o.id AND j.claim_token = o.token
           AND j.status = '{running}'
         RETURNING o.result IS NOT NULL AS ok
     )
     SELECT count(*) FILTER (WHERE ok) AS completed, count(*) FILTER (WHERE NOT ok) AS failed
     FROM done";

/// Extends the leases of jobs `$1` under tokens `$2` by `$3` seconds and returns those
/// still held: server time arithmetic and array parameters, one statement.
const HEARTBEAT: &str = "UPDATE {t} SET locked_until = now() + make_interval(secs => $3)
     WHERE id = ANY($1) AND claim_token = ANY($2) AND status = '{running}'
     RETURNING id, claim_token";

/// Returns expired leases to pending (or failed) with a capped back-off from attempt
/// 2 on: CASE expressions over server time, one statement through the partial lease
/// index.
const RESCUE_EXPIRED: &str = "UPDATE {t} SET
         status = (CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'pending' END)::{st},
         {error} = 'lease expired: worker ' || coalesce(locked_by, '?') || ' stopped heartbeating',
         locked_by = NULL,
         locked_until = NULL,
         claim_token = NULL,
         run_at = CASE WHEN attempts > 1
                       THEN greatest(run_at, now() + make_interval(secs => least(
                                $1 * power(2, least(attempts - 2, 30)), $2)))
                       ELSE run_at END
     WHERE status = '{running}' AND locked_until < now()";

/// Puts jobs `$1` under tokens `$2` back to pending without counting the attempt.
const RELEASE: &str = "UPDATE {t} SET status = 'pending', attempts = greatest(attempts - 1, 0),
         locked_by = NULL, locked_until = NULL, claim_token = NULL
     WHERE id = ANY($1) AND claim_token = ANY($2) AND status = '{running}'";

/// Checks that claim `$2` still holds job `$1` and share-locks the row: `FOR SHARE`.
const FENCE: &str =
    "SELECT 1 FROM {t} WHERE id = $1 AND claim_token = $2 AND status = '{running}' FOR SHARE";

/// Cancels job `$1` if pending or running: one statement over either table's status
/// type (a text column or the `ai_job_status` enum).
const CANCEL: &str = "UPDATE {t} SET status = 'cancelled', locked_by = NULL, locked_until = NULL,
         claim_token = NULL
     WHERE id = $1 AND status IN ('pending', '{running}')";

/// Deletes at most `$2` jobs finished more than `$1` seconds ago: a bounded DELETE …
/// WHERE id IN (SELECT … LIMIT), which SeaORM's delete cannot limit.
const DELETE_FINISHED: &str = "DELETE FROM {t} WHERE id IN (
         SELECT id FROM {t}
         WHERE status IN ('completed', 'failed', 'cancelled')
           AND completed_at < now() - make_interval(secs => $1)
           AND created_at < now() - make_interval(secs => $1)
         LIMIT $2)";

/// Jobs per (status, type): a GROUP BY over either table's type expression.
const COUNTS: &str = "SELECT status::text AS status, {ty} AS job_type, count(*) AS count
     FROM {t} GROUP BY 1, 2 ORDER BY 1, 2";

/// The age of the oldest runnable pending job in seconds: server time arithmetic.
const OLDEST_PENDING: &str =
    "SELECT extract(epoch FROM now() - min(run_at))::float8 AS age FROM {t}
     WHERE status = 'pending' AND run_at <= now()";

/// The `$1` most recently failed jobs, in one shape for either table.
const FAILED: &str =
    "SELECT id, {ty} AS job_type, attempts, {error} AS error, completed_at FROM {t}
     WHERE status = 'failed' ORDER BY completed_at DESC NULLS LAST LIMIT $1";

/// Sends failed jobs `$1` back to pending with fresh attempts.
const RETRY_FAILED: &str = "UPDATE {t} SET status = 'pending', attempts = 0, run_at = now()
     WHERE id = ANY($1) AND status = 'failed'";

/// The filter the operator's listing, counts and bulk changes share, over either
/// table's status type, type expression and columns: `$1` status, `$2` type, `$4`
/// priority, `$5`/`$6` created at or after / before, `$7` dedup key, `$8` error text
/// (case-insensitive substring; its `%`, `_` and `\` escaped by the caller), `$9` payload containment (`@>`); a NULL parameter
/// filters nothing. `$3` (only unfinished jobs) is [`UNFINISHED`], kept apart so a
/// count of pending and running jobs does not say `status IN (…)` twice (the
/// planner would square its selectivity and read the table whole). Raw SQL: one
/// template over both tables' names and status types.
const MATCHING_BASE: &str =
    "($1::text IS NULL OR status = $1::{st}) AND ($2::text IS NULL OR {ty} = $2)
     AND ($4::int IS NULL OR priority = $4)
     AND ($5::timestamptz IS NULL OR created_at >= $5)
     AND ($6::timestamptz IS NULL OR created_at < $6)
     AND ($7::text IS NULL OR dedup_key = $7)
     AND ($8::text IS NULL OR {error} ILIKE '%' || $8 || '%')
     AND ($9::jsonb IS NULL OR {payload} @> $9)";

/// A bulk change's place in its sweep: ids after `$11` (the last of the previous
/// batch) and up to `$12` (the newest id when the sweep began).
const SWEEP: &str = "($11::uuid IS NULL OR id > $11) AND ($12::uuid IS NULL OR id <= $12)";

/// `$3`: only unfinished (pending or running) jobs when true.
const UNFINISHED: &str = "($3::bool IS NOT TRUE OR status IN ('pending', '{running}'))";

/// One page of jobs matching the filter, newest first by id (UUIDv7, as the queue
/// writes them), after keyset `$10` (the last id of the previous page), at most `$11`:
/// walking the primary key backwards, so no filter reads the table whole.
const LIST: &str = "SELECT id, {ty} AS job_type, status::text AS status, priority, attempts,
         max_attempts, run_at, locked_by, locked_until, {error} AS last_error, created_at,
         completed_at
     FROM {t} WHERE {matching} AND {unfinished} AND ($10::uuid IS NULL OR id < $10)
     ORDER BY id DESC LIMIT $11";

/// One job with its payload and result, in one shape for either table.
const SHOW: &str = "SELECT id, {ty} AS job_type, status::text AS status, priority, attempts,
         max_attempts, run_at, locked_by, locked_until, {error} AS last_error, created_at,
         completed_at, {payload} AS payload, {result} AS result
     FROM {t} WHERE id = $1";

/// How many jobs match, and how many of them a bulk cancel (pending or running),
/// retry (failed) or delete (finished) would change, each counted up to `$10`
/// (`COUNT_CAP + 1`) along the primary key: a bounded read on any table size.
/// (Pending and running jobs are unfinished; failed and finished ones are not, so
/// under `$3` their counts are 0 without a read.)
const COUNT_MATCHING: &str = "SELECT
         (SELECT count(*) FROM (SELECT 1 FROM {t} WHERE {matching} AND {unfinished}
                                ORDER BY id DESC LIMIT $10) s) AS matching,
         (SELECT count(*) FROM (SELECT 1 FROM {t} WHERE {matching}
                                  AND status IN ('pending', '{running}')
                                ORDER BY id DESC LIMIT $10) s) AS cancellable,
         (SELECT count(*) FROM (SELECT 1 FROM {t} WHERE {matching} AND $3::bool IS NOT TRUE
                                  AND status = 'failed'
                                ORDER BY id DESC LIMIT $10) s) AS retryable,
         (SELECT count(*) FROM (SELECT 1 FROM {t} WHERE {matching} AND $3::bool IS NOT TRUE
                                  AND status IN ('completed', 'failed', 'cancelled')
                                ORDER BY id DESC LIMIT $10) s) AS deletable";

/// Cancels at most `$10` pending or running jobs matching the filter (as [`CANCEL`]
/// does one), of ids after `$11` and up to `$12` in id order, and returns their ids:
/// a bounded batch, so no statement locks many rows, and a sweep that sees each job
/// once.
const CANCEL_MATCHING: &str = "UPDATE {t} SET status = 'cancelled', locked_by = NULL,
         locked_until = NULL, claim_token = NULL
     WHERE id = ANY(ARRAY(SELECT id FROM {t} WHERE {matching} AND {sweep}
                            AND status IN ('pending', '{running}') ORDER BY id LIMIT $10))
       AND status IN ('pending', '{running}')
     RETURNING id";

/// Sends at most `$10` failed jobs matching the filter, of ids after `$11` and up to
/// `$12`, back to pending (as [`RETRY_FAILED`]) and returns their ids.
const RETRY_MATCHING: &str = "UPDATE {t} SET status = 'pending', attempts = 0, run_at = now()
     WHERE id = ANY(ARRAY(SELECT id FROM {t} WHERE {matching} AND {sweep}
                            AND $3::bool IS NOT TRUE
                            AND status = 'failed' ORDER BY id LIMIT $10))
       AND status = 'failed'
     RETURNING id";

/// Deletes at most `$10` finished jobs matching the filter, of ids after `$11` and
/// up to `$12`, and returns their ids.
const DELETE_MATCHING: &str = "DELETE FROM {t}
     WHERE id = ANY(ARRAY(SELECT id FROM {t} WHERE {matching} AND {sweep}
                            AND $3::bool IS NOT TRUE
                            AND status IN ('completed', 'failed', 'cancelled')
                          ORDER BY id LIMIT $10))
       AND status IN ('completed', 'failed', 'cancelled')
     RETURNING id";

/// The newest id of a table (where a bulk sweep stops): the primary key's last entry
/// (`max` has no `uuid` version).
const NEWEST_ID: &str = "SELECT id FROM {t} ORDER BY id DESC LIMIT 1";

/// Deletes job `$1` if it is finished (completed, failed or cancelled).
const DELETE_FINISHED_JOB: &str =
    "DELETE FROM {t} WHERE id = $1 AND status IN ('completed', 'failed', 'cancelled')";

/// Completions per minute over the last hour, minutes ago (0 = this minute) with
/// their counts: a GROUP BY over server time, through the partial index on completed
/// jobs' completion time.
const THROUGHPUT: &str =
    "SELECT floor(extract(epoch FROM now() - completed_at) / 60)::int AS minutes_ago,
         count(*) AS completed
     FROM {t} WHERE status = 'completed' AND completed_at > now() - interval '60 minutes'
     GROUP BY 1";

/// A queue's state in one scan: running jobs whose lease ran out, running, runnable
/// pending and failed jobs, and the oldest runnable job's wait (FILTERed aggregates).
const HEALTH: &str = "SELECT
         count(*) FILTER (WHERE status = '{running}' AND locked_until < now()) AS expired_leases,
         count(*) FILTER (WHERE status = '{running}') AS running,
         count(*) FILTER (WHERE status = 'pending' AND run_at <= now()) AS runnable,
         count(*) FILTER (WHERE status = 'failed') AS failed,
         extract(epoch FROM now() - min(run_at) FILTER (WHERE status = 'pending' AND run_at <= now()))::float8
             AS oldest_wait_seconds
     FROM {t}";

/// `template` with the filter's parts in place.
fn matching(template: &str) -> String {
    template
        .replace("{matching}", MATCHING_BASE)
        .replace("{unfinished}", UNFINISHED)
        .replace("{sweep}", SWEEP)
}

/// A table's statements, rendered.
pub(super) struct Statements {
    pub(super) claim: String,
    pub(super) complete_shared: String,
    pub(super) finish_each: String,
    pub(super) heartbeat: String,
    pub(super) rescue_expired: String,
    pub(super) release: String,
    pub(super) fence: String,
    pub(super) cancel: String,
    pub(super) delete_finished: String,
    pub(super) counts: String,
    pub(super) oldest_pending: String,
    pub(super) failed: String,
    pub(super) retry_failed: String,
    pub(super) health: String,
    pub(super) list: String,
    pub(super) show: String,
    pub(super) count_matching: String,
    pub(super) cancel_matching: String,
    pub(super) retry_matching: String,
    pub(super) delete_matching: String,
    pub(super) delete_finished_job: String,
    pub(super) throughput: String,
    pub(super) newest_id: String,
}

impl Statements {
    fn render(table: &QueueTable) -> Self {
        Self {
            claim: table.render(CLAIM),
            complete_shared: table.render(COMPLETE_SHARED),
            finish_each: table.render(FINISH_EACH),
            heartbeat: table.render(HEARTBEAT),
            rescue_expired: table.render(RESCUE_EXPIRED),
            release: table.render(RELEASE),
            fence: table.render(FENCE),
            cancel: table.render(CANCEL),
            delete_finished: table.render(DELETE_FINISHED),
            counts: table.render(COUNTS),
            oldest_pending: table.render(OLDEST_PENDING),
            failed: table.render(FAILED),
            retry_failed: table.render(RETRY_FAILED),
            health: table.render(HEALTH),
            list: table.render(&matching(LIST)),
            show: table.render(SHOW),
            count_matching: table.render(&matching(COUNT_MATCHING)),
            cancel_matching: table.render(&matching(CANCEL_MATCHING)),
            retry_matching: table.render(&matching(RETRY_MATCHING)),
            delete_matching: table.render(&matching(DELETE_MATCHING)),
            delete_finished_job: table.render(DELETE_FINISHED_JOB),
            throughput: table.render(THROUGHPUT),
            newest_id: table.render(NEWEST_ID),
        }
    }
}

/// `jobs`' statements.
pub(super) static JOBS_SQL: LazyLock<Statements> = LazyLock::new(|| Statements::render(&JOBS));
/// `ai_annotation_jobs`' statements.
pub(super) static AI_ANNOTATION_JOBS_SQL: LazyLock<Statements> =
    LazyLock::new(|| Statements::render(&AI_ANNOTATION_JOBS));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_rendered_for_both_tables() {
        for sql in [&*JOBS_SQL, &*AI_ANNOTATION_JOBS_SQL] {
            for text in [
                &sql.claim,
                &sql.complete_shared,
                &sql.finish_each,
                &sql.heartbeat,
                &sql.rescue_expired,
                &sql.release,
                &sql.fence,
                &sql.cancel,
                &sql.delete_finished,
                &sql.counts,
                &sql.oldest_pending,
                &sql.failed,
                &sql.retry_failed,
                &sql.list,
                &sql.count_matching,
                &sql.cancel_matching,
                &sql.retry_matching,
                &sql.delete_matching,
                &sql.delete_finished_job,
                &sql.throughput,
                &sql.newest_id,
            ] {
                assert!(!text.contains('{'), "unrendered placeholder in {text}");
            }
        }
        assert!(
            AI_ANNOTATION_JOBS_SQL
                .claim
                .contains("status = 'processing'")
        );
        assert!(JOBS_SQL.failed.contains("last_error AS error"));
    }
}

//! Seed 004's batch jobs (`006`) count their AI items in the database: when an
//! `ai_annotation_jobs` job that belongs to a batch (`request_payload->>'batch_id'`)
//! ends — completed, failed (by its handler, by its last attempt's error, or by a
//! lease rescue on its last attempt) or cancelled — a trigger records the item in its
//! batch in the same transaction: processed, or failed with its error in
//! `batch_job_errors`; the batch is `completed` once every item is accounted for. So
//! no way of ending a job leaves its batch waiting.
//!
//! - `record_batch_item(batch, ok, item_index, item_ref, error)`: one item's outcome;
//!   a batch already finished (or unknown) is left alone.
//! - `count_ai_job_batch_item()` and the trigger `ai_annotation_jobs_batch_item`
//!   (`AFTER UPDATE OF status`, only on a change into a final status).
//!
//! `down` drops them.

use sea_orm_migration::prelude::*;

use crate::helpers::sql_migration;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE OR REPLACE FUNCTION record_batch_item(p_batch uuid, p_ok boolean, p_item_index integer,
                                             p_item_ref text, p_error text)
RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE batch_jobs SET
        processed_items = processed_items + CASE WHEN p_ok THEN 1 ELSE 0 END,
        failed_items = failed_items + CASE WHEN p_ok THEN 0 ELSE 1 END,
        status = CASE WHEN processed_items + failed_items + 1 >= total_items
                      THEN 'completed' ELSE 'processing' END
    WHERE id = p_batch AND status IN ('pending', 'processing');
    IF FOUND AND NOT p_ok THEN
        INSERT INTO batch_job_errors (job_id, item_index, item_ref, error_message)
        VALUES (p_batch, p_item_index, p_item_ref, coalesce(p_error, 'failed'));
    END IF;
END;
$fn$;

CREATE OR REPLACE FUNCTION count_ai_job_batch_item() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.request_payload->>'batch_id' IS NOT NULL THEN
        PERFORM record_batch_item(
            (NEW.request_payload->>'batch_id')::uuid,
            NEW.status = 'completed',
            (NEW.request_payload->>'item_index')::integer,
            NEW.image_id::text,
            CASE WHEN NEW.status = 'cancelled' THEN 'cancelled'
                 ELSE coalesce(NEW.error_message, 'failed') END);
    END IF;
    RETURN NULL;
END;
$fn$;

CREATE TRIGGER ai_annotation_jobs_batch_item
    AFTER UPDATE OF status ON ai_annotation_jobs
    FOR EACH ROW
    WHEN (NEW.status IN ('completed', 'failed', 'cancelled') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION count_ai_job_batch_item();
"#;

const DOWN: &str = "DROP TRIGGER ai_annotation_jobs_batch_item ON ai_annotation_jobs;
DROP FUNCTION count_ai_job_batch_item();
DROP FUNCTION record_batch_item(uuid, boolean, integer, text, text);";

sql_migration!(UP, DOWN);

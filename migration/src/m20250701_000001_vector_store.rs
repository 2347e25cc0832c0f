//! The vector document store over seed 003's `documents` and `document_chunks`: what
//! idempotent ingest, filtered and hybrid search and the index lifecycle need.
//!
//! - `embedding_model`: one row, the model whose vectors the store holds (its name and
//!   dimension), recorded by the first ingest; a vector of another model or dimension
//!   is refused. The dimension must be `document_chunks.embedding`'s.
//! - `documents.external_key`: a caller's key, unique per `source` (an absent source
//!   counts as the empty one), for upserts; `idx_documents_external_key` is partial.
//! - `document_chunks.content_hash`: the hash of what a chunk holds (text, metadata,
//!   model, vector), so re-ingesting an unchanged chunk writes nothing.
//! - `document_chunks.search_vector`: `to_tsvector('english', content)`, generated and
//!   stored, with the GIN index `idx_chunks_search_vector`, for hybrid search.
//! - GIN `jsonb_path_ops` indexes on both tables' `metadata`, for containment filters.
//! - `vector_index_builds`: for each vector index, how and on how many rows it was
//!   built. Seed 003's IVFFlat index is built by the migration on an empty table, so its
//!   centroids mean nothing: it is recorded with `rows_at_build = 0`, and the store
//!   searches exactly until it is rebuilt on data.
//!
//! - `search_logs` gains what a search log needs beyond the seed's columns: the
//!   search's `kind` (`vector`, `hybrid`, `mmr`), the best similarity, the result ids
//!   and the index knobs used.
//!
//! `down` drops all of it.

use sea_orm_migration::prelude::*;

use crate::helpers::sql_migration;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE embedding_model (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    dimension integer NOT NULL CHECK (dimension BETWEEN 1 AND 16000),
    recorded_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE documents ADD COLUMN external_key text
    CHECK (external_key IS NULL OR char_length(external_key) BETWEEN 1 AND 500);
CREATE UNIQUE INDEX idx_documents_external_key
    ON documents ((coalesce(source, '')), external_key) WHERE external_key IS NOT NULL;
CREATE INDEX idx_documents_metadata ON documents USING gin (metadata jsonb_path_ops);

ALTER TABLE document_chunks ADD COLUMN content_hash text;
ALTER TABLE document_chunks ADD COLUMN search_vector tsvector
    GENERATED ALWAYS AS (to_tsvector('english'::regconfig, content)) STORED;
CREATE INDEX idx_chunks_search_vector ON document_chunks USING gin (search_vector);
CREATE INDEX idx_chunks_metadata ON document_chunks USING gin (metadata jsonb_path_ops);

CREATE TABLE vector_index_builds (
    index_name text PRIMARY KEY,
    method text NOT NULL CHECK (method IN ('ivfflat', 'hnsw')),
    parameters jsonb NOT NULL DEFAULT '{}'::jsonb,
    rows_at_build bigint NOT NULL CHECK (rows_at_build >= 0),
    built_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE search_logs
    ADD COLUMN kind text NOT NULL DEFAULT 'vector' CHECK (kind IN ('vector', 'hybrid', 'mmr')),
    ADD COLUMN best_similarity double precision,
    ADD COLUMN result_ids uuid[] NOT NULL DEFAULT '{}',
    ADD COLUMN knobs jsonb NOT NULL DEFAULT '{}'::jsonb;

INSERT INTO vector_index_builds (index_name, method, parameters, rows_at_build)
SELECT 'idx_chunks_embedding', 'ivfflat', '{"lists": 100}'::jsonb,
       (SELECT count(*) FROM document_chunks WHERE embedding IS NOT NULL);
"#;

const DOWN: &str = r#"
ALTER TABLE search_logs DROP COLUMN knobs, DROP COLUMN result_ids, DROP COLUMN best_similarity,
    DROP COLUMN kind;
DROP TABLE vector_index_builds;
DROP INDEX idx_chunks_metadata;
DROP INDEX idx_chunks_search_vector;
ALTER TABLE document_chunks DROP COLUMN search_vector;
ALTER TABLE document_chunks DROP COLUMN content_hash;
DROP INDEX idx_documents_metadata;
DROP INDEX idx_documents_external_key;
ALTER TABLE documents DROP COLUMN external_key;
DROP TABLE embedding_model;
"#;

sql_migration!(UP, DOWN);

//! Seed 003 (Sheratan store): the migration guide's SQL verbatim, with assertions;
//! the cascade, the vector index and the jobs trigger at work.

use tests::{TestDb, first_column, plan_text, sqlstate};

#[tokio::test]
async fn verifying_the_setup() {
    let t = TestDb::new().await;
    // The guide's "Enable the extension" step is a no-op on a migrated database.
    t.sql("CREATE EXTENSION IF NOT EXISTS vector;").await;
    let ext = t
        .sql("SELECT * FROM pg_extension WHERE extname = 'vector';")
        .await;
    assert_eq!(ext.len(), 1);
    let tables = t
        .column("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename IN ('documents', 'document_chunks', 'jobs', 'audit_logs', 'search_logs') ORDER BY 1")
        .await;
    assert_eq!(
        tables,
        [
            "audit_logs",
            "document_chunks",
            "documents",
            "jobs",
            "search_logs"
        ]
    );
    let dim = t
        .sql(
            "SELECT column_name, data_type 
FROM information_schema.columns 
WHERE table_name = 'document_chunks' AND column_name = 'embedding';",
        )
        .await;
    assert_eq!(dim, [["embedding", "USER-DEFINED"]]);
    assert_eq!(
        t.scalar("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'document_chunks'::regclass AND attname = 'embedding'")
            .await,
        "vector(384)"
    );
    let indexes = t
        .sql(
            "SELECT indexname, indexdef 
FROM pg_indexes 
WHERE tablename IN ('documents', 'document_chunks', 'jobs', 'audit_logs', 'search_logs')
ORDER BY tablename, indexname;",
        )
        .await;
    let names = first_column(&indexes);
    for expected in [
        "idx_audit_logs_created_at",
        "idx_audit_logs_event_type",
        "idx_audit_logs_resource",
        "idx_audit_logs_user_id",
        "idx_chunks_document_id",
        "idx_chunks_embedding",
        "idx_documents_created_at",
        "idx_documents_source",
        "idx_jobs_created_at",
        "idx_jobs_job_type",
        "idx_jobs_priority",
        "idx_jobs_status",
        "idx_search_logs_created_at",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    let ivf = indexes
        .iter()
        .find(|r| r[0] == "idx_chunks_embedding")
        .map(|r| r[1].clone())
        .unwrap_or_default();
    assert!(
        ivf.contains("USING ivfflat (embedding vector_cosine_ops) WITH (lists='100')"),
        "{ivf}"
    );
}

#[tokio::test]
async fn the_guides_index_and_constraint_statements_run() {
    let t = TestDb::new().await;
    for create in [
        "CREATE INDEX idx_chunks_embedding 
ON document_chunks 
USING ivfflat (embedding vector_cosine_ops);",
        "CREATE INDEX idx_chunks_embedding 
ON document_chunks 
USING ivfflat (embedding vector_cosine_ops)
WITH (lists = 100);",
    ] {
        let rows = t
            .rolled_back(&format!(
                "DROP INDEX idx_chunks_embedding;\n{create}\nSELECT indexdef FROM pg_indexes WHERE indexname = 'idx_chunks_embedding'"
            ))
            .await
            .expect(create);
        assert!(rows[0][0].contains("ivfflat"), "{rows:?}");
    }
    let fk_query = "SELECT conname, conrelid::regclass, confrelid::regclass 
FROM pg_constraint 
WHERE contype = 'f' AND conrelid = 'document_chunks'::regclass;";
    assert_eq!(
        t.sql(fk_query).await,
        [[
            "fk_document_chunks_document",
            "document_chunks",
            "documents"
        ]]
    );
    let readded = t
        .rolled_back(&format!(
            "ALTER TABLE document_chunks DROP CONSTRAINT fk_document_chunks_document;
ALTER TABLE document_chunks 
ADD CONSTRAINT fk_document_chunks_document 
FOREIGN KEY (document_id) 
REFERENCES documents(id) 
ON DELETE CASCADE;
{fk_query}"
        ))
        .await
        .expect("re-add the foreign key");
    assert_eq!(readded.len(), 1);
}

#[tokio::test]
async fn monitoring_and_maintenance() {
    let t = TestDb::new().await;
    let seed = "SELECT 
    schemaname, tablename, indexname, 
    idx_scan, idx_tup_read, idx_tup_fetch
FROM pg_stat_user_indexes
WHERE schemaname = 'public'
ORDER BY idx_scan;";
    let err = t
        .try_sql(seed)
        .await
        .expect_err("the seed's column names are wrong");
    assert_eq!(sqlstate(&err), "42703");
    let fixed = seed.replace("tablename, indexname", "relname, indexrelname");
    assert!(t.sql(&fixed).await.len() > 40);

    t.sql("VACUUM ANALYZE document_chunks;").await;
    let stats = t
        .sql("SELECT * FROM pg_stat_user_tables WHERE relname = 'document_chunks';")
        .await;
    assert_eq!(stats.len(), 1);

    t.rolled_back(
        "CREATE USER sheratan_readonly WITH PASSWORD 'secure_password';
GRANT SELECT ON ALL TABLES IN SCHEMA public TO sheratan_readonly;",
    )
    .await
    .expect("read-only user");
}

fn vector(seed: usize) -> String {
    let v: Vec<String> = (0..384)
        .map(|i| format!("{:.4}", (((i * 7 + seed * 13) % 97) as f64) / 97.0 + 0.01))
        .collect();
    format!("[{}]", v.join(","))
}

#[tokio::test]
async fn chunks_cascade_and_vector_search_uses_the_index() {
    let t = TestDb::new().await;
    let mut sql = String::from(
        "INSERT INTO documents (id, title, content, source) VALUES ('00000000-0000-0000-0000-0000000000d1', 'd', 'text', 'test');\n",
    );
    for i in 0..20 {
        sql.push_str(&format!(
            "INSERT INTO document_chunks (document_id, chunk_index, content, embedding) VALUES ('00000000-0000-0000-0000-0000000000d1', {i}, 'c{i}', '{}');\n",
            vector(i)
        ));
    }
    t.sql(&sql).await;
    let knn = format!(
        "SET LOCAL ivfflat.probes = 100;
         SELECT chunk_index FROM document_chunks ORDER BY embedding <=> '{}' LIMIT 3",
        vector(7)
    );
    let nearest = first_column(&t.rolled_back(&knn).await.expect("k-NN"));
    assert_eq!(nearest.len(), 3);
    assert_eq!(nearest[0], "7", "the chunk itself is nearest");
    let plan = plan_text(
        &t.rolled_back(&format!(
            "SET LOCAL enable_seqscan = off; EXPLAIN SELECT id FROM document_chunks ORDER BY embedding <=> '{}' LIMIT 5",
            vector(1)
        ))
        .await
        .expect("explain"),
    );
    assert!(plan.contains("idx_chunks_embedding"), "{plan}");

    // Wrong dimension: refused, nothing written.
    let err = t
        .try_sql("INSERT INTO document_chunks (document_id, chunk_index, content, embedding) VALUES ('00000000-0000-0000-0000-0000000000d1', 99, 'x', '[1,2,3]')")
        .await
        .expect_err("dimension mismatch");
    assert_eq!(sqlstate(&err), "22000", "{err}");
    // ON DELETE CASCADE.
    t.sql("DELETE FROM documents WHERE id = '00000000-0000-0000-0000-0000000000d1'")
        .await;
    assert_eq!(t.scalar("SELECT count(*) FROM document_chunks").await, "0");
}

#[tokio::test]
async fn jobs_timestamps_and_checks() {
    let t = TestDb::new().await;
    let id = t
        .scalar(
            "INSERT INTO jobs (job_type, payload) VALUES ('embed', '{\"doc\": 1}') RETURNING id",
        )
        .await;
    let state = format!(
        "SELECT status, started_at IS NOT NULL, completed_at IS NOT NULL FROM jobs WHERE id = '{id}'"
    );
    assert_eq!(t.sql(&state).await, [["pending", "f", "f"]]);
    t.sql(&format!(
        "UPDATE jobs SET status = 'running' WHERE id = '{id}'"
    ))
    .await;
    assert_eq!(t.sql(&state).await, [["running", "t", "f"]]);
    t.sql(&format!("UPDATE jobs SET priority = 5 WHERE id = '{id}'"))
        .await;
    assert_eq!(
        t.sql(&state).await,
        [["running", "t", "f"]],
        "no transition, no completed_at"
    );
    t.sql(&format!(
        "UPDATE jobs SET status = 'completed' WHERE id = '{id}'"
    ))
    .await;
    assert_eq!(t.sql(&state).await, [["completed", "t", "t"]]);
    t.sql(&format!(
        "UPDATE jobs SET status = 'pending' WHERE id = '{id}'"
    ))
    .await;
    assert_eq!(
        t.sql(&state).await,
        [["pending", "t", "f"]],
        "a retried job is not completed"
    );

    for bad in [
        "INSERT INTO jobs (job_type, status) VALUES ('x', 'done')",
        "INSERT INTO jobs (job_type, max_attempts) VALUES ('x', 0)",
        "INSERT INTO jobs (job_type) VALUES ('')",
    ] {
        let err = t.try_sql(bad).await.expect_err(bad);
        assert_eq!(sqlstate(&err), "23514", "{bad}");
    }
    // One pending or running job per dedup key; finished ones do not count.
    t.sql("INSERT INTO jobs (job_type, dedup_key) VALUES ('x', 'k')")
        .await;
    let err = t
        .try_sql("INSERT INTO jobs (job_type, dedup_key) VALUES ('x', 'k')")
        .await
        .expect_err("duplicate dedup key");
    assert_eq!(sqlstate(&err), "23505");
    t.sql("UPDATE jobs SET status = 'completed' WHERE dedup_key = 'k'")
        .await;
    t.sql("INSERT INTO jobs (job_type, dedup_key) VALUES ('x', 'k')")
        .await;
    assert_eq!(
        t.scalar("SELECT count(*) FROM jobs WHERE dedup_key = 'k'")
            .await,
        "2"
    );
}

//! `strata docs ingest|search|reindex|health`: the vector document store from a
//! terminal. An ingest is all or nothing: every line is parsed and every chunk
//! embedded before one transaction writes the file, so a bad line (reported by its
//! number) or a failed embedding leaves nothing half-written.

use std::io::{BufRead, BufReader, IsTerminal};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use service::db::Topology;
use service::store::{
    self, AnyEmbedder, DocumentKey, Embedder, EmbedderChoice, EmbeddingModel, Filter,
    HybridOptions, IndexMethod, NewChunk, NewDocument, StoreError, VectorStore,
};
use uuid::Uuid;

use super::Output;
use super::output::or_dash;
use crate::cli::{DocsCommand, EmbedArg};

/// One line of an ingest file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    /// The document's id, to find it again (instead of source + key).
    id: Option<Uuid>,
    source: Option<String>,
    key: Option<String>,
    title: Option<String>,
    /// The whole text; the chunks' texts joined when absent.
    content: Option<String>,
    #[serde(default)]
    metadata: Value,
    chunks: Vec<LineChunk>,
}

/// A chunk: its text alone, or an object.
#[derive(Deserialize)]
#[serde(untagged)]
enum LineChunk {
    Text(String),
    Full {
        content: String,
        #[serde(default)]
        metadata: Value,
        #[serde(default)]
        embedding: Option<Vec<f32>>,
    },
}

/// The embedder `which` names; the local model's error says how to fetch it.
pub fn load_embedder(which: EmbedArg) -> anyhow::Result<AnyEmbedder> {
    let choice = match which {
        EmbedArg::Local => EmbedderChoice::Local,
        EmbedArg::Http => EmbedderChoice::Http,
    };
    AnyEmbedder::load(choice).map_err(|e| match choice {
        // The hint follows the error's own text, which is also kept as the source
        // (and not printed twice).
        EmbedderChoice::Local => {
            let hint = format!("{e} (scripts/setup-model.sh fetches the model)");
            anyhow::Error::new(e).context(hint)
        }
        EmbedderChoice::Http => anyhow::Error::new(e),
    })
}

/// What an ingest did.
#[derive(Serialize)]
struct IngestSummary {
    file: String,
    model: String,
    documents: usize,
    chunks: usize,
    /// Chunks sent to the embedder.
    embedded: usize,
    /// Chunks stored as they are, which kept their stored vectors.
    reused: usize,
    #[serde(flatten)]
    report: store::IngestReport,
    seconds: f64,
}

/// Runs `strata docs …`.
pub async fn run(db: &Topology, command: DocsCommand, out: &mut Output<'_>) -> anyhow::Result<()> {
    match command {
        DocsCommand::Ingest { file, embed, model } => ingest(db, &file, embed, model, out).await,
        DocsCommand::Search {
            text,
            embedding,
            like,
            k,
            source,
            embed,
            text_match,
        } => {
            let filter = source.map(|s| Filter::source([s]));
            // Searches are reads: a replica serves them when there is one.
            let reader = db.reader().await;
            let db = &reader;
            let model = store::recorded_model(db)
                .await?
                .context("the store is empty: ingest documents first (strata docs ingest)")?;
            let vectors = VectorStore::new(model);
            if let Some(text) = text {
                let embedder = load_embedder(embed)?;
                let hits = vectors
                    .search_text(
                        db,
                        &embedder,
                        &text,
                        k,
                        filter.as_ref(),
                        &HybridOptions {
                            text_match,
                            ..HybridOptions::default()
                        },
                    )
                    .await?;
                // The ranks show what each side found: a hit the text did not match
                // has a score from its vector rank alone.
                let rank = |r: Option<i64>| r.map_or_else(|| "-".to_owned(), |r| r.to_string());
                let rows = hits
                    .iter()
                    .enumerate()
                    .map(|(i, h)| {
                        let mut row = hit_row(i, &h.hit);
                        row.insert(1, format!("{:.4}", h.score));
                        row.insert(2, rank(h.vector_rank));
                        row.insert(3, rank(h.text_rank));
                        row
                    })
                    .collect();
                return out.show(
                    &hits,
                    &[
                        "#",
                        "rrf",
                        "vector",
                        "text rank",
                        "similarity",
                        "chunk",
                        "text",
                    ],
                    rows,
                );
            }
            let (query, skip) = match (embedding, like) {
                (Some(json), _) => (
                    serde_json::from_str::<Vec<f32>>(&json)
                        .context("--embedding is not a JSON array of numbers")?,
                    None,
                ),
                (None, Some(like)) => {
                    let (doc, chunk) = like
                        .split_once(':')
                        .and_then(|(d, c)| Some((d.parse::<Uuid>().ok()?, c.parse::<i32>().ok()?)))
                        .with_context(|| {
                            format!("--like {like:?}: expected DOCUMENT_ID:CHUNK_INDEX")
                        })?;
                    let vector =
                        store::chunk_embedding(db, doc, chunk)
                            .await?
                            .with_context(|| {
                                format!("no chunk {chunk} with an embedding in document {doc}")
                            })?;
                    (vector, Some((doc, chunk)))
                }
                (None, None) => bail!("give --text, --embedding or --like"),
            };
            let fetch = if skip.is_some() { k + 1 } else { k };
            let mut hits = vectors.search(db, &query, fetch, filter.as_ref()).await?;
            if let Some((doc, chunk)) = skip {
                hits.retain(|h| !(h.document_id == doc && h.chunk_index == chunk));
                hits.truncate(k);
            }
            let rows = hits
                .iter()
                .enumerate()
                .map(|(i, h)| hit_row(i, h))
                .collect();
            out.show(&hits, &["#", "similarity", "chunk", "text"], rows)
        }
        DocsCommand::Reindex {
            method,
            lists,
            m,
            ef_construction,
            memory,
        } => {
            let method = match method.as_str() {
                "auto" => IndexMethod::Auto,
                "ivfflat" => IndexMethod::Ivfflat { lists },
                "hnsw" => IndexMethod::Hnsw { m, ef_construction },
                other => bail!("--method {other:?}: auto, ivfflat or hnsw"),
            };
            reindex(db, method, &memory, out).await
        }
        DocsCommand::Health => {
            let h = store::index_health(&db.reader().await).await?;
            let rows = vec![
                vec!["index".into(), h.index_name.clone()],
                vec![
                    "exists / valid".into(),
                    format!("{} / {}", h.exists, h.valid),
                ],
                vec!["method".into(), or_dash(h.method.clone())],
                vec!["parameters".into(), h.parameters.to_string()],
                vec!["chosen because".into(), or_dash(h.chosen_because.clone())],
                vec!["rows at build".into(), or_dash(h.rows_at_build)],
                vec![
                    "built at".into(),
                    or_dash(h.built_at.map(|t| t.to_rfc3339())),
                ],
                vec!["rows now".into(), h.rows_now.to_string()],
                vec!["size".into(), service::doctor::human_bytes(h.size_bytes)],
                vec![
                    "built on too little data".into(),
                    h.built_on_too_little_data.to_string(),
                ],
                vec![
                    "recommendation".into(),
                    match &h.recommendation {
                        store::Recommendation::Keep => "keep".to_owned(),
                        store::Recommendation::Rebuild(why) => format!("rebuild: {why}"),
                        store::Recommendation::Wait(why) => format!("wait: {why}"),
                    },
                ],
            ];
            out.show(&h, &["field", "value"], rows)
        }
    }
}

/// A search hit as a table row: rank, similarity, `document:chunk` (what `--like`
/// takes), and the document's title with the start of the chunk's text.
fn hit_row(i: usize, h: &store::SearchHit) -> Vec<String> {
    let text: String = h.content.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut snippet: String = text.chars().take(160).collect();
    if snippet.len() < text.len() {
        snippet.push('…');
    }
    let title = h
        .title
        .as_deref()
        .map(|t| format!("[{t}] "))
        .unwrap_or_default();
    vec![
        (i + 1).to_string(),
        format!("{:.3}", h.similarity),
        format!("{}:{}", h.document_id, h.chunk_index),
        format!("{title}{snippet}"),
    ]
}

/// A progress bar of `len` steps on stderr, hidden off a terminal and with `--json`.
fn bar(out: &Output<'_>, len: u64, what: &str) -> ProgressBar {
    if out.is_json() || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let style =
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_owned());
    bar
}

/// The documents of a JSONL file, each with its line number; an error naming the
/// line of the first bad one.
fn read_documents(path: &Path) -> anyhow::Result<(Vec<NewDocument>, Vec<usize>)> {
    let reader: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(path).with_context(|| path.display().to_string())?;
        Box::new(BufReader::new(file))
    };
    let mut docs = Vec::new();
    let mut lines = Vec::new();
    for (i, text) in reader.lines().enumerate() {
        let number = i + 1;
        let at = || format!("{}:{number}", path.display());
        let text = text.with_context(at)?;
        if text.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(&text).with_context(at)?;
        docs.push(document(line).with_context(at)?);
        lines.push(number);
    }
    if docs.is_empty() {
        bail!("{}: no documents", path.display());
    }
    Ok((docs, lines))
}

/// A parsed line as a document to ingest.
fn document(line: Line) -> anyhow::Result<NewDocument> {
    if line.chunks.is_empty() {
        bail!("the document has no chunks");
    }
    let key = match (line.id, line.source.clone(), line.key) {
        (Some(id), _, None) => Some(DocumentKey::Id(id)),
        (None, Some(source), Some(key)) => Some(DocumentKey::External { source, key }),
        (None, None, Some(_)) => bail!("a \"key\" needs a \"source\""),
        (Some(_), _, Some(_)) => bail!("give \"id\" or \"key\", not both"),
        (None, _, None) => None,
    };
    let chunks: Vec<NewChunk> = line
        .chunks
        .into_iter()
        .map(|c| match c {
            LineChunk::Text(content) => NewChunk::new(content, "", Vec::new()),
            LineChunk::Full {
                content,
                metadata,
                embedding,
            } => {
                let mut chunk = NewChunk::new(content, "", embedding.unwrap_or_default());
                chunk.metadata = metadata;
                chunk
            }
        })
        .collect();
    let content = line.content.unwrap_or_else(|| {
        chunks
            .iter()
            .map(|c| c.content.as_str())
            .collect::<Vec<_>>()
            .join("\n\n")
    });
    Ok(NewDocument {
        key,
        title: line.title,
        content,
        source: line.source,
        metadata: line.metadata,
        chunks,
    })
}

/// A store error with the line its document came from (as context), when it names a
/// document.
fn with_line(e: StoreError, path: &Path, lines: &[usize]) -> anyhow::Error {
    let document = match &e {
        StoreError::ModelMismatch { document, .. }
        | StoreError::WrongDimension { document, .. }
        | StoreError::NonFinite { document, .. }
        | StoreError::EmptyChunk { document, .. }
        | StoreError::NoChunks { document } => Some(*document),
        _ => None,
    };
    match document.and_then(|d| lines.get(d)) {
        Some(line) => anyhow::Error::new(e).context(format!("{}:{line}", path.display())),
        None => e.into(),
    }
}

/// `strata docs ingest`.
async fn ingest(
    db: &Topology,
    path: &Path,
    embed: Option<EmbedArg>,
    model: Option<String>,
    out: &mut Output<'_>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let (mut docs, lines) = read_documents(path)?;
    let chunks: usize = docs.iter().map(|d| d.chunks.len()).sum();
    let missing: Vec<(usize, usize)> = docs
        .iter()
        .enumerate()
        .flat_map(|(d, doc)| {
            doc.chunks
                .iter()
                .enumerate()
                .filter(|(_, c)| c.embedding.is_empty())
                .map(move |(c, _)| (d, c))
        })
        .collect();
    let (mut reused, mut embedded) = (0, 0);
    let model = match embed {
        Some(which) => {
            let embedder = load_embedder(which)?;
            // Another model than the store's is refused before minutes of embedding.
            store::check_recorded(db, embedder.model()).await?;
            // Chunks stored as they are keep their vectors: no embedding for them.
            reused = store::reuse_stored_embeddings(db, &embedder.model().name, &mut docs).await?;
            let progress = bar(out, (missing.len() - reused) as u64, "embedding");
            embedded = store::embed_missing(
                &embedder,
                &mut docs,
                embedder.batch_size().max(1) * 4,
                |n| progress.inc(n as u64),
            )
            .await?;
            progress.finish_and_clear();
            embedder.model().clone()
        }
        None => {
            if let Some(&(d, c)) = missing.first() {
                bail!(
                    "{}:{}: chunk {c} has no embedding: give --embed local|http",
                    path.display(),
                    lines[d]
                );
            }
            // Every document has a chunk (`document` refuses none), and every chunk a vector.
            let dimension = docs
                .iter()
                .flat_map(|d| d.chunks.iter())
                .map(|c| c.embedding.len())
                .next()
                .unwrap_or_default();
            let name = match model {
                Some(name) => name,
                None => store::recorded_model(db).await?.map(|m| m.name).context(
                    "give --model NAME for the file's embeddings (the store has none recorded yet)",
                )?,
            };
            EmbeddingModel::new(name, dimension)?
        }
    };
    for chunk in docs.iter_mut().flat_map(|d| d.chunks.iter_mut()) {
        chunk.model = model.name.clone();
    }
    let spinner = bar(out, 0, "writing");
    spinner.enable_steady_tick(Duration::from_millis(120));
    let report = store::ingest(db, &model, &docs)
        .await
        .map_err(|e| with_line(e, path, &lines));
    spinner.finish_and_clear();
    let report = report?;
    let summary = IngestSummary {
        file: path.display().to_string(),
        model: model.name.clone(),
        documents: docs.len(),
        chunks,
        embedded,
        reused,
        report,
        seconds: started.elapsed().as_secs_f64(),
    };
    let r = &summary.report;
    let message = format!(
        "ingested {} documents ({} written) from {}: {} chunks added, {} unchanged, {} removed; {} embedded with {} ({} unchanged kept their vectors) in {:.1}s",
        summary.documents,
        r.documents_written,
        summary.file,
        r.chunks_added,
        r.chunks_unchanged,
        r.chunks_removed,
        summary.embedded,
        summary.model,
        summary.reused,
        summary.seconds
    );
    out.done(&summary, &message)
}

/// `strata docs reindex`, with the build's progress read from another connection.
async fn reindex(
    db: &Topology,
    method: IndexMethod,
    memory: &str,
    out: &mut Output<'_>,
) -> anyhow::Result<()> {
    let progress = bar(out, 0, "indexing");
    let build = store::reindex(db, method, memory);
    tokio::pin!(build);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let report = loop {
        tokio::select! {
            done = &mut build => break done,
            _ = tick.tick() => {
                if let Ok(Some(p)) = store::build_progress(db).await {
                    let (done, total) = if p.tuples_total > 0 {
                        (p.tuples_done, p.tuples_total)
                    } else {
                        (p.blocks_done, p.blocks_total)
                    };
                    progress.set_length(total.max(0) as u64);
                    progress.set_position(done.max(0) as u64);
                    progress.set_message(p.phase);
                }
            }
        }
    };
    progress.finish_and_clear();
    let report = report?;
    let message = format!(
        "rebuilt idx_chunks_embedding: {} {} on {} rows in {:.2}s",
        report.method,
        report.parameters,
        report.rows,
        report.duration.as_secs_f64()
    );
    out.done(&report, &message)
}

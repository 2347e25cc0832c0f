//! The web console in a real browser: `strata serve` and `strata worker` as
//! processes on a test database, Debian's Chromium driven over WebDriver
//! (chromedriver). The flow: sign in with a token `strata users token create`
//! printed; see a failed job, retry it, and watch it complete under the running
//! worker; approve an annotation; search the sample corpus (ingested by `strata docs
//! ingest --embed local`). A screenshot of each page is saved under
//! `target/console-screenshots/` for a person to look at.
//!
//! Needs `chromium` and `chromedriver` (`scripts/setup-browser.sh`, run by `make
//! test`) and the local model (`STRATA_MODEL_DIR`, `scripts/setup-model.sh`).

mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use support::{STRATA, json as strata_json, strata};
use tests::TestDb;

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free local port.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Where the screenshots go: `target/console-screenshots/` of the workspace.
fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name}: a PNG");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).expect("write png");
}

/// Starts `strata serve` on a free port; its base URL once it listens.
fn serve(t: &TestDb) -> (Killed, String) {
    let mut child = Command::new(STRATA)
        .args([
            "--database-url",
            &t.url,
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--embed",
            "local",
            // Generous: CI fills many test databases at once on two cores.
            "--statement-timeout",
            "10s",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strata serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("strata serve said where it listens")
            .expect("a line");
        if let Some(rest) = line.split("the console is on ").nth(1) {
            break rest
                .split_whitespace()
                .next()
                .expect("a URL")
                .trim_end_matches('/')
                .to_owned();
        }
    };
    // Keep draining its stderr so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Killed(child), url)
}

/// Starts chromedriver on a free port and a headless Chromium session through it.
async fn browser() -> (Killed, Client) {
    let port = free_port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (scripts/setup-browser.sh installs it)");
    let driver = Killed(driver);
    let caps: serde_json::Map<String, Value> = serde_json::from_value(json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1400,1000"]
        }
    }))
    .expect("capabilities");
    let started = Instant::now();
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => return (driver, client),
            Err(e) if started.elapsed() < Duration::from_secs(20) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no WebDriver session: {e}"),
        }
    }
}

/// Clicks the element `css` selects (`what` names it in a failure).
async fn click(client: &Client, css: &str, what: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{what} ({css}): {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {what}: {e}"));
}

/// Types `text` into the element `css` selects.
async fn type_into(client: &Client, css: &str, text: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .send_keys(text)
        .await
        .unwrap_or_else(|e| panic!("type into {css}: {e}"));
}

/// Runs `script` in the page and returns its value.
async fn run(client: &Client, script: &str) -> Value {
    client
        .execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("{script}: {e}"))
}

/// Waits up to `secs` for the text of `selector` to be `want` (the page refreshes
/// itself through htmx every 5 s).
async fn wait_for_text(client: &Client, selector: &str, want: &str, secs: u64) -> String {
    let started = Instant::now();
    loop {
        let text = match client.find(Locator::Css(selector)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.trim() == want || started.elapsed() > Duration::from_secs(secs) {
            return text.trim().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

const BIRD_SVG: &str = "data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIHdpZHRoPSIzMjAiIGhlaWdodD0iMjQwIj48cmVjdCB3aWR0aD0iMzIwIiBoZWlnaHQ9IjI0MCIgZmlsbD0iIzlmYzVlOCIvPjxlbGxpcHNlIGN4PSIxMjAiIGN5PSIxMTAiIHJ4PSI2MCIgcnk9IjM1IiBmaWxsPSIjMjIyIi8+PC9zdmc+";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_retries_a_job_approves_an_annotation_and_searches() {
    let began = Instant::now();
    let step = |what: &str| {
        eprintln!(
            "console browser: {what} at {:.1} s",
            began.elapsed().as_secs_f64()
        )
    };
    let t = TestDb::new().await;
    strata_json(
        &t,
        &["users", "create", "ops@example.org", "--role", "admin"],
    );
    let out = strata(
        &t,
        &[
            "users",
            "token",
            "create",
            "ops@example.org",
            "--expires",
            "1d",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    // The sample corpus's short documents (at most 7 chunks: 11 of 28, 43 of 499
    // chunks): embedding all of it in a test build takes about three minutes.
    let corpus = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/corpus/postgresql-docs.jsonl"),
    )
    .expect("the sample corpus");
    let short: Vec<&str> = corpus
        .lines()
        .filter(|l| {
            serde_json::from_str::<Value>(l).expect("a JSON line")["chunks"]
                .as_array()
                .is_some_and(|c| c.len() <= 7)
        })
        .collect();
    assert_eq!(short.len(), 11);
    let file = std::env::temp_dir().join(format!(
        "strata-console-corpus-{}.jsonl",
        std::process::id()
    ));
    std::fs::write(&file, short.join("\n")).expect("write the corpus");
    let ingest = strata(
        &t,
        &[
            "docs",
            "ingest",
            file.to_str().expect("path"),
            "--embed",
            "local",
        ],
    );
    let _ = std::fs::remove_file(&file);
    assert!(
        ingest.status.success(),
        "{}",
        String::from_utf8_lossy(&ingest.stderr)
    );
    // A maintenance job that failed for good, and an AI annotation awaiting review.
    t.sql(
        r#"INSERT INTO jobs (job_type, status, attempts, max_attempts, payload, last_error, completed_at)
           VALUES ('maintenance', 'failed', 3, 3, '{"task": "vector_index_health"}',
                   'connection reset by peer', now() - interval '3 minutes')"#,
    )
    .await;
    let job = t.scalar("SELECT id::text FROM jobs").await;
    let image = t
        .scalar(&format!(
            "INSERT INTO images (url, species) VALUES ('{BIRD_SVG}', 'Corvus corax') RETURNING id::text"
        ))
        .await;
    t.sql(&format!(
        r#"INSERT INTO annotations (image_id, label, bounding_box, vision_generated, vision_confidence, vision_provider)
           VALUES ('{image}', 'raven',
                   '{{"topLeft": {{"x": 0.2, "y": 0.25}}, "bottomRight": {{"x": 0.55, "y": 0.65}}, "width": 0.35, "height": 0.4}}',
                   true, 0.42, 'openai')"#
    ))
    .await;

    step("set up (users, token, corpus, jobs)");
    let (_server, base) = serve(&t);
    let _worker = Killed(
        Command::new(STRATA)
            .args(["--database-url", &t.url, "worker"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn strata worker"),
    );
    step("strata serve and strata worker started");
    let (_driver, client) = browser().await;

    step("browser up: sign in");
    // 1. Sign in: the console serves nothing before.
    client.goto(&format!("{base}/jobs")).await.expect("goto");
    type_into(&client, "#token", &token).await;
    screenshot(&client, "sign-in").await;
    click(&client, "#login button[type=submit]", "the sign-in button").await;
    assert_eq!(
        wait_for_text(&client, "#viewer", "ops@example.org", 10).await,
        "ops@example.org"
    );
    client.goto(&format!("{base}/")).await.expect("overview");
    assert_eq!(
        wait_for_text(&client, "#queue-jobs .failed", "1", 10).await,
        "1"
    );
    screenshot(&client, "overview").await;

    step("signed in: the failed job");
    // 2. A failed job: open it, retry it, watch the worker complete it.
    client
        .goto(&format!("{base}/jobs?status=failed"))
        .await
        .expect("failed jobs");
    assert_eq!(wait_for_text(&client, "#matching", "1", 10).await, "1");
    screenshot(&client, "jobs").await;
    click(
        &client,
        &format!("tr.job[data-id='{job}'] a"),
        "the failed job's row",
    )
    .await;
    assert_eq!(
        wait_for_text(&client, "#job-status", "failed", 10).await,
        "failed"
    );
    click(&client, "#retry", "the retry button").await;
    let status = wait_for_text(&client, "#job-status", "completed", 60).await;
    assert_eq!(
        status, "completed",
        "the worker ran the retried job; the page refreshed itself"
    );
    screenshot(&client, "job").await;
    // The refresh pauses while the tab is hidden and comes back at once when it is
    // shown: a marker on the refreshed part survives a hidden spell of 7 s (more than
    // one 5 s period) and is gone right after the tab shows again.
    let set_visibility = |state: &'static str| {
        format!(
            "Object.defineProperty(document, 'visibilityState', {{configurable: true, get: () => '{state}'}});
             document.dispatchEvent(new Event('visibilitychange'));"
        )
    };
    const MARKER: &str = "return document.getElementById('job').getAttribute('data-marker')";
    run(&client, &set_visibility("hidden")).await;
    run(
        &client,
        "document.getElementById('job').setAttribute('data-marker', 'kept')",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        run(&client, MARKER).await,
        json!("kept"),
        "no refresh while hidden"
    );
    run(&client, &set_visibility("visible")).await;
    let started = Instant::now();
    let refreshed = loop {
        let marker = run(&client, MARKER).await;
        if marker.is_null() || started.elapsed() > Duration::from_secs(3) {
            break marker.is_null();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        refreshed,
        "a refresh as soon as the tab shows again (well before the next 5 s tick)"
    );
    assert_eq!(
        t.scalar(&format!("SELECT status FROM jobs WHERE id = '{job}'"))
            .await,
        "completed"
    );
    assert_eq!(
        t.scalar("SELECT count(*) FROM audit_logs WHERE event_type = 'job.retried'")
            .await,
        "1"
    );

    step("job completed: the review");
    // 3. Approve the annotation.
    client
        .goto(&format!("{base}/reviews"))
        .await
        .expect("reviews");
    screenshot(&client, "reviews").await;
    click(&client, ".annotation button.approve", "the approve button").await;
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#no-pending"))
        .await
        .expect("nothing left to review");
    assert_eq!(
        t.scalar("SELECT review_status::text FROM annotations")
            .await,
        "approved"
    );

    step("approved: the search");
    // 4. Search the sample corpus.
    client
        .goto(&format!("{base}/documents"))
        .await
        .expect("documents");
    type_into(
        &client,
        "#search-text",
        "which index type for full text search",
    )
    .await;
    click(&client, "#search button[type=submit]", "the search button").await;
    let first = client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#hits tr.hit"))
        .await
        .expect("a hit");
    let _ = first;
    let hits = client
        .find_all(Locator::Css("#hits tr.hit"))
        .await
        .expect("hits");
    assert!(hits.len() >= 3, "several hits, with their scores");
    let mut top = Vec::new();
    for hit in hits.iter().take(3) {
        top.push(hit.text().await.expect("hit text"));
    }
    assert!(
        top.iter()
            .any(|t| t.contains("Preferred Index Types for Text Search")),
        "the section on text search indexes is among the first three: {top:?}"
    );
    screenshot(&client, "documents").await;

    step("searched: the other pages");
    // The other pages, for a person to look at.
    for page in ["caches", "maintenance", "audit", "doctor", "users"] {
        client.goto(&format!("{base}/{page}")).await.expect("page");
        client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("main h1"))
            .await
            .expect("a heading");
        screenshot(&client, page).await;
    }
    step("done");
    client.close().await.expect("close the browser");
    let shots = std::fs::read_dir(screenshot_dir())
        .expect("screenshots")
        .count();
    assert!(shots >= 11, "{shots} screenshots");
}

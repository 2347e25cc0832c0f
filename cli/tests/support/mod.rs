//! Running `strata` as a process against a test's database.

#![allow(dead_code)]

use std::process::{Command, Output};

use serde_json::Value;
use tests::TestDb;

pub const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// Runs `strata --database-url URL ARGS…`.
pub fn strata(t: &TestDb, args: &[&str]) -> Output {
    Command::new(STRATA)
        .arg("--database-url")
        .arg(&t.url)
        .args(args)
        .output()
        .expect("run strata")
}

/// Runs it with `--json`, expects success, and parses stdout.
pub fn json(t: &TestDb, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = strata(t, &all);
    assert!(
        out.status.success(),
        "strata {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// Expects failure with one line on stderr containing `needle`.
pub fn fails(t: &TestDb, args: &[&str], needle: &str) {
    let out = strata(t, args);
    assert_eq!(out.status.code(), Some(1), "strata {args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "{err:?} lacks {needle:?}");
}

/// Runs `strata --database-url URL ARGS…` with `stdin` as its input.
pub fn strata_with_input(t: &TestDb, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(STRATA)
        .arg("--database-url")
        .arg(&t.url)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strata");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// Starts `strata --database-url URL ARGS…` in the background, its output piped.
pub fn spawn(t: &TestDb, args: &[&str]) -> std::process::Child {
    use std::process::Stdio;
    Command::new(STRATA)
        .arg("--database-url")
        .arg(&t.url)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strata")
}

/// Sends SIGINT to `child` and waits for it to exit; expects a clean exit.
pub async fn interrupt(child: std::process::Child) -> Output {
    // SAFETY: sending a signal to our own child process.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(sent, 0);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

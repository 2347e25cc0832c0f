//! `strata users token create|list|revoke`: the secret alone on standard output,
//! once; the list never shows it; a revoked token is refused.

use serde_json::Value;
use tests::TestDb;

mod support;

use support::{json, strata};

#[tokio::test]
async fn a_token_is_printed_once_listed_without_its_secret_and_revoked() {
    let t = TestDb::new().await;
    json(
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
            "2h",
            "--name",
            "laptop",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let secret = stdout.trim_end();
    assert_eq!(stdout.lines().count(), 1, "the secret alone: {stdout:?}");
    assert!(
        secret.starts_with("strata_") && secret.len() == 71,
        "{secret}"
    );
    let signed_in = service::accounts::authenticate(&t.db, secret)
        .await
        .expect("the printed secret signs in");
    assert_eq!(signed_in.email, "ops@example.org");

    let listed = json(&t, &["users", "token", "list", "ops@example.org"]);
    let tokens = listed.as_array().expect("tokens");
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0]["name"], "laptop");
    assert!(
        !listed.to_string().contains(&secret[7..]),
        "no secret in the list"
    );
    let id = tokens[0]["id"].as_str().expect("id").to_owned();

    let revoked: Value = json(
        &t,
        &["users", "token", "revoke", &id, "--by", "ops@example.org"],
    );
    assert_eq!(revoked["revoked"], true);
    assert!(
        service::accounts::authenticate(&t.db, secret)
            .await
            .is_err()
    );
    let out = strata(&t, &["users", "token", "create", "nobody@example.org"]);
    assert_eq!(out.status.code(), Some(1), "an unknown email fails");
}

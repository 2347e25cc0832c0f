//! A payload as the console shows it: values under secret-looking keys replaced.

use serde_json::Value;

/// What a redacted value reads as.
pub const REDACTED: &str = "[redacted]";

/// Parts of a key name that mark its value secret (compared without case, `-` and
/// `_`): `password`, `secret`, `token`, `apikey`, `authorization`, `credential`,
/// `privatekey`, `signature`, `cookie`, `session`.
const SECRET_WORDS: [&str; 10] = [
    "password",
    "secret",
    "token",
    "apikey",
    "authorization",
    "credential",
    "privatekey",
    "signature",
    "cookie",
    "session",
];

/// Whether `key` looks like it names a secret.
fn secret_key(key: &str) -> bool {
    let folded: String = key
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_WORDS.iter().any(|w| folded.contains(w)) || folded == "key" || folded == "auth"
}

/// `value` with every value under a secret-looking key (at any depth) replaced by
/// [`REDACTED`]; other values kept.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if secret_key(k) {
                        Value::String(REDACTED.to_owned())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secret_looking_keys_are_redacted_at_any_depth() {
        let payload = json!({
            "url": "https://example.com/a.pdf",
            "api_key": "sk-123",
            "headers": {"Authorization": "Bearer x", "Accept": "text/plain"},
            "items": [{"accessToken": "t"}, {"name": "n"}],
            "key": "k",
            "keyword": "kept",
        });
        let shown = redact(&payload);
        assert_eq!(shown["url"], "https://example.com/a.pdf");
        assert_eq!(shown["api_key"], REDACTED);
        assert_eq!(shown["headers"]["Authorization"], REDACTED);
        assert_eq!(shown["headers"]["Accept"], "text/plain");
        assert_eq!(shown["items"][0]["accessToken"], REDACTED);
        assert_eq!(shown["items"][1]["name"], "n");
        assert_eq!(shown["key"], REDACTED);
        assert_eq!(shown["keyword"], "kept");
    }
}

//! How values read on a page: times, ages, sizes, rates.

use chrono::{DateTime, FixedOffset, Utc};

/// `text` safe inside HTML text and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A time as `2026-12-07 15:04:05` (UTC).
pub(crate) fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A stored time (with its offset) as [`time`] shows it.
pub(crate) fn time_fixed(t: DateTime<FixedOffset>) -> String {
    time(t.with_timezone(&Utc))
}

/// An optional time, or a dash.
pub(crate) fn maybe_time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "–".to_owned(), time)
}

/// Seconds as `45 s`, `12 min`, `3.5 h` or `2.0 d`.
pub(crate) fn age(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 90.0 * 60.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 48.0 * 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} d", s / 86400.0)
    }
}

/// A share as a percentage with one decimal, or a dash.
pub(crate) fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "–".to_owned(), |r| format!("{:.1} %", r * 100.0))
}

/// `text` cut to `max` characters, with `…` when something was cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    let mut chars = text.chars();
    let mut short: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        short.push('…');
    }
    short
}

/// A form or query field: trimmed, and `None` when empty.
pub(crate) fn field(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

//! Where a command writes: a table fitted to the terminal, or the same rows as JSON.

use std::io::Write;

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;

/// A command's output: a writer it is given (stdout, or a buffer in tests), and
/// whether to print JSON.
pub struct Output<'a> {
    out: &'a mut dyn Write,
    json: bool,
}

impl<'a> Output<'a> {
    /// Output to `out`, as JSON when `json`.
    pub fn new(out: &'a mut dyn Write, json: bool) -> Self {
        Self { out, json }
    }

    /// Whether it prints JSON (progress bars stay hidden then).
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints `value` as JSON, or `rows` under `headers` as a table.
    pub fn show<T: Serialize>(
        &mut self,
        value: &T,
        headers: &[&str],
        rows: Vec<Vec<String>>,
    ) -> anyhow::Result<()> {
        if self.json {
            let text = serde_json::to_string_pretty(value)?;
            writeln!(self.out, "{text}")?;
        } else {
            let mut table = Table::new();
            table
                .load_preset(UTF8_FULL_CONDENSED)
                .set_content_arrangement(ContentArrangement::Dynamic)
                .set_header(headers.to_vec());
            // Fitted to the terminal; to 120 columns when the output is not one.
            if table.width().is_none() {
                table.set_width(120);
            }
            for row in rows {
                table.add_row(row);
            }
            writeln!(self.out, "{table}")?;
        }
        Ok(())
    }

    /// Prints a one-line message (or `value` as JSON).
    pub fn done<T: Serialize>(&mut self, value: &T, message: &str) -> anyhow::Result<()> {
        if self.json {
            let text = serde_json::to_string_pretty(value)?;
            writeln!(self.out, "{text}")?;
        } else {
            writeln!(self.out, "{message}")?;
        }
        Ok(())
    }
}

/// An optional value as text, `-` when absent.
pub fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// `n` and the noun, singular for one: "1 review", "3 reviews".
pub fn count_of(n: i64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::count_of;

    #[test]
    fn one_is_singular_and_the_rest_plural() {
        assert_eq!(count_of(1, "review"), "1 review");
        assert_eq!(count_of(0, "review"), "0 reviews");
        assert_eq!(count_of(3, "job"), "3 jobs");
    }
}

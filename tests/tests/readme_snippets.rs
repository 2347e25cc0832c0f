//! Every Rust block of the README is an excerpt of the example application
//! (`examples/library_tour/src`), which the workspace compiles and the test
//! `example_app` runs: the README's code cannot drift from code that works.

use std::path::Path;

/// A text without its whitespace: formatting (rustfmt's line breaks) aside, what the
/// code says.
fn tokens(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The README's ```rust blocks.
fn rust_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```rust") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn every_rust_block_of_the_readme_is_in_the_example() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let sources: Vec<String> = std::fs::read_dir(root.join("examples/library_tour/src"))
        .expect("example sources")
        .map(|entry| std::fs::read_to_string(entry.expect("entry").path()).expect("source"))
        .collect();
    let blocks = rust_blocks(&readme);
    assert!(blocks.len() >= 10, "found only {} blocks", blocks.len());
    let sources: Vec<String> = sources.iter().map(|s| tokens(s)).collect();
    for block in &blocks {
        let wanted = tokens(block);
        let found = sources.iter().any(|source| source.contains(&wanted));
        assert!(
            found,
            "README block not found in examples/library_tour/src:\n{block}"
        );
    }
}

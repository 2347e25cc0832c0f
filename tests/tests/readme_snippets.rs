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

/// The dependency tables of a manifest or of a README block: every line from
/// `[dependencies]` on, comments and blank lines left out, whitespace removed, and
/// the path to Strata's crates written as an outside application writes it
/// (`../strata/`; the example, inside the workspace, has `../../`).
fn dependency_lines(toml: &str) -> Vec<String> {
    let start = if toml.starts_with("[dependencies]") {
        0
    } else {
        toml.find("\n[dependencies]")
            .expect("a [dependencies] table")
            + 1
    };
    toml[start..]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| tokens(&l.replace("\"../../", "\"../strata/")))
        .collect()
}

#[test]
fn the_readme_dependencies_are_the_example_manifests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let manifest = std::fs::read_to_string(root.join("examples/library_tour/Cargo.toml"))
        .expect("example manifest");
    let start = readme
        .find("```toml\n[dependencies]")
        .expect("the README's dependencies block");
    let block = &readme[start + "```toml\n".len()..];
    let block = &block[..block.find("```").expect("end of the block")];
    assert_eq!(dependency_lines(block), dependency_lines(&manifest));
}

#[test]
fn the_readme_lists_every_entity() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let start = readme.find("`entity::{").expect("the README's entity list");
    let list = &readme[start + "`entity::{".len()..];
    let listed: Vec<String> = list[..list.find('}').expect("end of the list")]
        .split(',')
        .map(|name| name.trim().to_owned())
        .collect();
    let mut generated: Vec<String> = std::fs::read_dir(root.join("entity/src"))
        .expect("entity sources")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter_map(|file| file.strip_suffix(".rs").map(str::to_owned))
        .filter(|name| !["lib", "prelude", "sea_orm_active_enums"].contains(&name.as_str()))
        .collect();
    generated.sort();
    assert_eq!(listed, generated);
}

#[test]
fn the_readme_optimisation_lines_are_the_workspaces() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("root manifest");
    let profile_lines = |text: &str| -> Vec<String> {
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        lines
            .windows(2)
            .filter(|w| {
                w[0].starts_with("[profile.dev.package.") && w[0] != "[profile.dev.package.\"*\"]"
            })
            .map(|w| format!("{} {}", w[0], w[1]))
            .collect()
    };
    let start = readme
        .find("```toml\n[profile.dev.package.")
        .expect("the README's optimisation block");
    let block = &readme[start..];
    let block = &block[..block[3..].find("```").expect("end") + 3];
    let wanted = profile_lines(block);
    assert_eq!(wanted.len(), 11);
    assert_eq!(wanted, profile_lines(&manifest));
}

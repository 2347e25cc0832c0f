//! `service` is the library applications import: its normal dependency tree holds
//! nothing of the migration command line (clap, sea-orm-cli, sea-orm-migration, the
//! `migration` crate); `migration` without its `cli` feature, what an application
//! that migrates from code imports, holds no clap or sea-orm-cli. Neither holds the
//! development infrastructure (`devdb`, the embedded cluster, with `rcgen`): the
//! library connects to the URL it is given and never starts a database.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

/// The crates in `cargo tree -p <package> -e normal`, by name.
fn normal_dependencies(package: &str) -> HashSet<String> {
    tree(package, &[])
}

/// The crates in `cargo tree -p <package> -e normal <extra…>`, by name.
fn tree(package: &str, extra: &[&str]) -> HashSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            package,
        ])
        .args(extra)
        .current_dir(workspace)
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn service_depends_on_no_command_line_crate() {
    let service = normal_dependencies("service");
    assert!(
        service.contains("sea-orm"),
        "the tree was read: {service:?}"
    );
    for banned in [
        "clap",
        "sea-orm-cli",
        "sea-orm-migration",
        "migration",
        "devdb",
        "rcgen",
    ] {
        assert!(!service.contains(banned), "service depends on {banned}");
    }
    let devdb = normal_dependencies("devdb");
    for banned in [
        "clap",
        "sea-orm-cli",
        "sea-orm-migration",
        "migration",
        "service",
    ] {
        assert!(!devdb.contains(banned), "devdb depends on {banned}");
    }
}

#[test]
fn migrating_from_code_compiles_no_command_line() {
    // What an application gets with `migration = { …, default-features = false }`.
    let library = tree("migration", &["--no-default-features"]);
    assert!(
        library.contains("sea-orm-migration"),
        "the tree was read: {library:?}"
    );
    for banned in ["clap", "sea-orm-cli", "devdb", "rcgen"] {
        assert!(
            !library.contains(banned),
            "migration without its cli feature depends on {banned}"
        );
    }
    // The migration binary's default still has its command line.
    assert!(tree("migration", &[]).contains("clap"));
}

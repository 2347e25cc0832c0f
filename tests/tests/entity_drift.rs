//! `entity/src` is exactly what `scripts/generate-entities.sh` (sea-orm-cli 2.0.4 with
//! postgres-vector) generates from a freshly migrated database.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use tests::TestDb;

fn read_dir(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("dir entry").path();
            let name = path
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path).expect("read generated file");
            (name, text)
        })
        .collect()
}

#[tokio::test]
async fn generated_entities_match_entity_src() {
    let t = TestDb::new().await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("entities-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("create output dir");
    let status = Command::new("bash")
        .arg(root.join("scripts/generate-entities.sh"))
        .arg(&t.url)
        .arg(&out)
        .status()
        .expect("run scripts/generate-entities.sh (needs sea-orm-cli 2.0.4 on PATH: `make test` installs it)");
    assert!(status.success(), "entity generation failed");
    let generated = read_dir(&out);
    let committed = read_dir(&root.join("entity/src"));
    let _ = std::fs::remove_dir_all(&out);
    assert_eq!(
        generated.keys().collect::<Vec<_>>(),
        committed.keys().collect::<Vec<_>>(),
        "entity/src has other files than the generator writes: regenerate it (README, 'Entities')"
    );
    for (name, text) in &generated {
        assert_eq!(
            &committed[name], text,
            "entity/src/{name} differs from the generated file: regenerate, never hand-edit"
        );
    }
}

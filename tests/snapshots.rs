//! Every committed insta snapshot is still made by its test: a snapshot whose assertion was
//! renamed or removed would otherwise sit in the tree, checked by nothing.

use std::path::Path;

/// The names `insta::assert_*_snapshot!("name", …)` calls give in a test file.
fn snapshot_names(source: &str) -> Vec<String> {
    source
        .match_indices("snapshot!(")
        .filter_map(|(at, call)| {
            let rest = source[at + call.len()..].trim_start();
            let rest = rest.strip_prefix('"')?;
            rest.find('"').map(|end| rest[..end].to_owned())
        })
        .collect()
}

#[test]
fn every_snapshot_is_referenced_by_its_test() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = keygraph_kernel::testing::repository_files(root, ".snap");
    assert!(
        !files.is_empty(),
        "no snapshots found under {}",
        root.display()
    );
    let mut unreferenced = Vec::new();
    for file in &files {
        // <dir>/snapshots/<test file>__<name>.snap, made by <dir>/<test file>.rs
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some((test_file, name)) = stem.split_once("__") else {
            unreferenced.push(format!("{} (not <test>__<name>.snap)", file.display()));
            continue;
        };
        let source = file
            .parent()
            .and_then(Path::parent)
            .map(|dir| dir.join(format!("{test_file}.rs")))
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default();
        if !snapshot_names(&source).iter().any(|n| n == name) {
            unreferenced.push(file.display().to_string());
        }
    }
    assert!(
        unreferenced.is_empty(),
        "snapshots no assertion makes (delete them, or restore their assertion):\n{}",
        unreferenced.join("\n")
    );
}

#[test]
fn names_are_read_from_multi_line_calls() {
    let source = "insta::assert_json_snapshot!(\n        \"plan_a\",\n x); assert_snapshot!(\"b\", y); assert_json_snapshot!(value)";
    assert_eq!(snapshot_names(source), ["plan_a", "b"]);
}

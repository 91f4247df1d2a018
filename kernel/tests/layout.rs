//! The repository's layout rule: a Rust file holds one responsibility, which fits in about
//! 600 lines of code (a `#[cfg(test)] mod tests` at its end not counted). A longer file says
//! why in its module documentation, with a line `//! Long because …`.

use std::path::PathBuf;

const MAX_LINES: usize = 600;
const REASON: &str = "//! Long because";

/// Lines of `source` before its test module, if it ends with one.
fn code_lines(source: &str) -> usize {
    let lines: Vec<&str> = source.lines().collect();
    let tests = lines
        .windows(2)
        .position(|w| w[0].trim() == "#[cfg(test)]" && w[1].starts_with("mod tests"));
    tests.unwrap_or(lines.len())
}

#[test]
fn no_file_is_longer_than_its_responsibility_without_saying_why() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let files = keygraph_kernel::testing::repository_files(&root, ".rs");
    assert!(files.len() > 50, "found only {} Rust files", files.len());
    let mut long: Vec<String> = files
        .iter()
        .filter_map(|path| {
            let source = std::fs::read_to_string(path).ok()?;
            let lines = code_lines(&source);
            (lines > MAX_LINES && !source.contains(REASON)).then(|| {
                let shown = path.strip_prefix(&root).unwrap_or(path);
                format!("{} ({lines} lines)", shown.display())
            })
        })
        .collect();
    long.sort();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines with no `{REASON} …` in their module docs: split them by \
         responsibility, or say why they are one: {long:#?}"
    );
}

#[test]
fn a_test_module_at_the_end_is_not_counted() {
    assert_eq!(code_lines("a\nb\n#[cfg(test)]\nmod tests {\n}\n"), 2);
    assert_eq!(code_lines("a\nb\n"), 2);
}

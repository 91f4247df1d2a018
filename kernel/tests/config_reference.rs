//! `docs/configuration.md` against `config/default.yaml`, the settings' one source:
//! - its reference section is generated from the file's keys, defaults and comments, and this
//!   test fails when the two differ (`UPDATE_DOCS=1 cargo test -p keygraph-kernel --test
//!   config_reference` rewrites the section);
//! - every key the hand-written tables name exists.

use std::path::PathBuf;

const BEGIN: &str =
    "<!-- reference: generated from config/default.yaml by kernel/tests/config_reference.rs -->";
const END: &str = "<!-- end of reference -->";

/// A key of `config/default.yaml`: its dotted path, its default as written (none for a
/// section), and the comment above it.
#[derive(Debug)]
struct Key {
    path: String,
    default: Option<String>,
    comment: String,
}

fn repository_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repository_file(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The keys of the YAML subset `config/default.yaml` is written in: block maps, one key per
/// line, scalar or flow values, comments on lines of their own.
fn keys(yaml: &str) -> Vec<Key> {
    let mut keys = Vec::new();
    // (indent, key) of the maps the current line is inside.
    let mut parents: Vec<(usize, String)> = Vec::new();
    let mut comment: Vec<String> = Vec::new();
    for (number, line) in yaml.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            comment.clear();
            continue;
        }
        if let Some(text) = trimmed.strip_prefix('#') {
            comment.push(text.trim().to_owned());
            continue;
        }
        let indent = line.len() - trimmed.len();
        let (key, value) = trimmed
            .split_once(':')
            .unwrap_or_else(|| panic!("config/default.yaml:{}: not `key: value`", number + 1));
        while parents.last().is_some_and(|(i, _)| *i >= indent) {
            parents.pop();
        }
        let path = parents
            .iter()
            .map(|(_, k)| k.as_str())
            .chain([key])
            .collect::<Vec<_>>()
            .join(".");
        let value = value.trim();
        keys.push(Key {
            path,
            default: (!value.is_empty()).then(|| value.to_owned()),
            comment: comment.join(" "),
        });
        comment.clear();
        if value.is_empty() {
            parents.push((indent, key.to_owned()));
        }
    }
    keys
}

/// `text` in a Markdown table cell: pipes escaped, and `<…>` shown rather than taken as HTML.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('<', "&lt;")
}

/// The reference section: one row per key, sections included (their comment introduces them).
fn reference(keys: &[Key]) -> String {
    let mut out = format!("{BEGIN}\n\n| key | default | meaning |\n| --- | --- | --- |\n");
    for key in keys {
        let default = match &key.default {
            // A code span shows `<` as is; only the pipe needs escaping there.
            Some(value) => format!("`{}`", value.replace('|', "\\|")),
            None => "(section)".to_owned(),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            key.path,
            default,
            cell(&key.comment)
        ));
    }
    out.push('\n');
    out.push_str(END);
    out
}

#[test]
fn the_reference_lists_every_key_of_default_yaml() {
    let keys = keys(&read("config/default.yaml"));
    assert!(keys.len() > 100, "parsed only {} keys", keys.len());
    let page = read("docs/configuration.md");
    let (start, end) = match (page.find(BEGIN), page.find(END)) {
        (Some(start), Some(end)) if start < end => (start, end + END.len()),
        _ => panic!("docs/configuration.md has no reference section ({BEGIN} … {END})"),
    };
    let expected = reference(&keys);
    if std::env::var_os("UPDATE_DOCS").is_some() {
        let updated = format!("{}{expected}{}", &page[..start], &page[end..]);
        std::fs::write(repository_file("docs/configuration.md"), updated).expect("write docs");
        return;
    }
    assert!(
        page[start..end] == expected,
        "docs/configuration.md's reference is not config/default.yaml's keys: run \
         `UPDATE_DOCS=1 cargo test -p keygraph-kernel --test config_reference`"
    );
}

/// Whether `pattern` (a key, `a.*`, or with a `<name>` segment) names keys of `known`.
fn names_a_key(pattern: &str, known: &[Key]) -> bool {
    let segments: Vec<&str> = pattern.split('.').collect();
    known.iter().any(|key| {
        let path: Vec<&str> = key.path.split('.').collect();
        let mut i = 0;
        for segment in &segments {
            match *segment {
                s if s.ends_with('*') => {
                    return path
                        .get(i)
                        .is_some_and(|p| p.starts_with(s.trim_end_matches('*')));
                }
                s if s.starts_with('<') && s.ends_with('>') => {}
                s if path.get(i) == Some(&s) => {}
                _ => return false,
            }
            i += 1;
        }
        i == path.len()
    })
}

/// The keys named in the first column of the hand-written tables: `a.b` or `a.b` / `.c`
/// (a sibling of the one before it).
fn named_keys(page: &str) -> Vec<String> {
    let hand_written = page.split(BEGIN).next().unwrap_or(page);
    let mut named = Vec::new();
    for row in hand_written.lines().filter(|l| l.starts_with("| `")) {
        let first = row.split(" | ").next().unwrap_or(row);
        let mut previous: Option<String> = None;
        for token in first.split('`').skip(1).step_by(2) {
            let full = match (token.strip_prefix('.'), &previous) {
                (Some(sibling), Some(before)) => {
                    let before = before.trim_end_matches(".*");
                    let parent = before.rsplit_once('.').map_or("", |(p, _)| p);
                    format!("{parent}.{sibling}")
                }
                _ => token.to_owned(),
            };
            named.push(full.clone());
            previous = Some(full);
        }
    }
    named
}

#[test]
fn every_key_the_tables_name_exists() {
    let keys = keys(&read("config/default.yaml"));
    let named = named_keys(&read("docs/configuration.md"));
    assert!(named.len() > 20, "found only {} named keys", named.len());
    let unknown: Vec<&String> = named.iter().filter(|k| !names_a_key(k, &keys)).collect();
    assert!(
        unknown.is_empty(),
        "docs/configuration.md names settings config/default.yaml does not have: {unknown:?}"
    );
}

#[test]
fn the_checks_see_a_wrong_key() {
    let keys = keys("a:\n  # The b.\n  b: 1\n  c:\n    d: x\n");
    assert_eq!(
        keys.iter().map(|k| k.path.as_str()).collect::<Vec<_>>(),
        ["a", "a.b", "a.c", "a.c.d"]
    );
    assert_eq!(keys[1].comment, "The b.");
    assert!(names_a_key("a.c.d", &keys) && names_a_key("a.*", &keys));
    assert!(names_a_key("a.<name>.d", &keys) && names_a_key("a.c.*", &keys));
    assert!(names_a_key("a.c.d*", &keys) && !names_a_key("a.c.e*", &keys));
    assert!(!names_a_key("a.e", &keys) && !names_a_key("a.c.d", &keys[..3]));
    assert_eq!(
        named_keys("| `a.b` / `.c` | x |\n| `a.b.*` / `.d.*` | y |\n"),
        ["a.b", "a.c", "a.b.*", "a.d.*"]
    );
}

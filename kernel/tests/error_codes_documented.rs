//! `docs/errors.md` documents every `extensions.code`: each [`ErrorCode`] has a row, and every
//! row is an [`ErrorCode`].

use std::collections::BTreeSet;

use keygraph_kernel::ErrorCode;

const PAGE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/errors.md"));

/// The codes of the page's table: the first cell of each row, as `` `CODE` ``.
fn documented(page: &str) -> Vec<String> {
    page.lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(code, _)| code.to_owned())
        .collect()
}

#[test]
fn every_error_code_has_one_row_and_every_row_is_a_code() {
    let rows = documented(PAGE);
    let listed: BTreeSet<&str> = rows.iter().map(String::as_str).collect();
    assert_eq!(listed.len(), rows.len(), "a code has two rows: {rows:?}");
    let variants: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let undocumented: Vec<&&str> = variants.difference(&listed).collect();
    assert!(
        undocumented.is_empty(),
        "docs/errors.md has no row for {undocumented:?}"
    );
    let unknown: Vec<&&str> = listed.difference(&variants).collect();
    assert!(
        unknown.is_empty(),
        "docs/errors.md lists {unknown:?}, which ErrorCode does not have"
    );
}

#[test]
fn all_lists_each_code_once_and_wire_strings_read_back() {
    let strings: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(strings.len(), ErrorCode::ALL.len());
    for code in ErrorCode::ALL {
        assert_eq!(ErrorCode::from_wire(code.as_str()), Some(code));
    }
    assert_eq!(ErrorCode::from_wire("user@example.com"), None);
}

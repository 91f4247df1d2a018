//! An entity's representation for an entity fetch: its key and `@requires` fields, as the
//! fetch's `requires` selection names them, written straight as JSON; or, when rewrites
//! apply or a key is selected twice, built as a value first ([`build_requires`]).

use hive_router_query_planner::ast::selection_item::SelectionItem;
use hive_router_query_planner::ast::selection_set::SelectionSet;

use super::entities::EntityJob;
use super::locations::type_name;
use super::merge::{apply_rewrite, deep_merge};
use crate::graph::Graph;
use crate::json::{self, Object, Sources, Value};

/// The representation of `entity` for `job`, as JSON; `None` when it cannot be fetched (a key
/// field is missing, e.g. null) or the fetch is not for its type (no type condition of
/// `requires` matched: `... on Admin` over a list of accounts).
pub(super) fn representation(
    entity: &Value,
    job: &EntityJob<'_>,
    graph: &Graph,
    sources: &mut Sources,
) -> Option<Vec<u8>> {
    let mut written = Vec::with_capacity(64);
    if job.input_rewrites.is_none()
        && let Some(()) = write_requires(entity, job.requires, graph, sources, &mut written)?
    {
        return (written.as_slice() != b"{}").then_some(written);
    }
    // Rewrites, or a key selected twice: build the value, then write it.
    let mut representation = build_requires(entity, job.requires, graph, sources)?;
    if matches!(&representation, Value::Object(members) if members.is_empty()) {
        return None;
    }
    for rewrite in job.input_rewrites.into_iter().flatten() {
        apply_rewrite(&mut representation, rewrite, graph, sources);
    }
    written.clear();
    json::write(&mut written, &representation, sources);
    Some(written)
}

/// Writes the representation of `value` for `selections` straight as JSON. `None`: a required
/// field is missing; `Some(None)`: a key would be written twice (values to merge), so the
/// caller builds it instead.
fn write_requires(
    value: &Value,
    selections: &SelectionSet,
    graph: &Graph,
    sources: &Sources,
    out: &mut Vec<u8>,
) -> Option<Option<()>> {
    match value {
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if write_requires(item, selections, graph, sources, out)?.is_none() {
                    return Some(None);
                }
            }
            out.push(b']');
        }
        Value::Object(_) if !selections.items.is_empty() => {
            out.push(b'{');
            let mut written: Vec<&str> = Vec::new();
            if write_requires_fields(value, selections, graph, sources, out, &mut written)?
                .is_none()
            {
                return Some(None);
            }
            out.push(b'}');
        }
        other => json::write(out, other, sources),
    }
    Some(Some(()))
}

fn write_requires_fields<'s>(
    value: &Value,
    selections: &'s SelectionSet,
    graph: &Graph,
    sources: &Sources,
    out: &mut Vec<u8>,
    written: &mut Vec<&'s str>,
) -> Option<Option<()>> {
    for item in &selections.items {
        match item {
            // As in `build_requires_fields`: `name` is the key in the data, `alias` the field name the
            // subgraph expects.
            SelectionItem::Field(field) => {
                let child = value.get(&field.name, sources)?;
                let key = field.alias.as_deref().unwrap_or(&field.name);
                if written.contains(&key) {
                    return Some(None);
                }
                if !written.is_empty() {
                    out.push(b',');
                }
                written.push(key);
                json::write_name(out, key);
                out.push(b':');
                if field.selections.items.is_empty() {
                    json::write(out, child, sources);
                } else if write_requires(child, &field.selections, graph, sources, out)?.is_none() {
                    return Some(None);
                }
            }
            SelectionItem::InlineFragment(fragment) => {
                if type_name(value, sources)
                    .is_some_and(|t| graph.type_matches(t, &fragment.type_condition))
                    && write_requires_fields(
                        value,
                        &fragment.selections,
                        graph,
                        sources,
                        out,
                        written,
                    )?
                    .is_none()
                {
                    return Some(None);
                }
            }
            SelectionItem::FragmentSpread(_) => {}
        }
    }
    Some(Some(()))
}

/// Builds the representation of `value` for `requires` as a value: its key (and required)
/// fields under the names the subgraph expects, values selected twice merged. `None` when a
/// required field is missing.
fn build_requires(
    value: &Value,
    selections: &SelectionSet,
    graph: &Graph,
    sources: &mut Sources,
) -> Option<Value> {
    match value {
        Value::Null => Some(Value::Null),
        Value::Array(items) => items
            .iter()
            .map(|item| build_requires(item, selections, graph, sources))
            .collect::<Option<Vec<_>>>()
            .map(Value::Array),
        Value::Object(_) if selections.items.is_empty() => Some(value.clone()),
        Value::Object(_) => {
            let mut out = Object::new();
            build_requires_fields(value, selections, graph, sources, &mut out)?;
            Some(Value::Object(out))
        }
        leaf => Some(leaf.clone()),
    }
}

/// [`build_requires`] for an object: the fields of `selections` (and of its inline fragments
/// that match the object's type) into `out`.
fn build_requires_fields(
    value: &Value,
    selections: &SelectionSet,
    graph: &Graph,
    sources: &mut Sources,
    out: &mut Object,
) -> Option<()> {
    for item in &selections.items {
        match item {
            // In `requires`, the planner writes `alias: name` the other way round from an
            // operation: `name` is the key in the data (its `_internal_qp_alias_N` when a
            // required `comments(limit: 3)` sits beside the client's `comments(limit: 1)`),
            // `alias` the field name the subgraph expects in the representation.
            SelectionItem::Field(field) => {
                let child = value.get(&field.name, sources)?;
                let projected = if field.selections.items.is_empty() {
                    child.clone()
                } else {
                    build_requires(child, &field.selections, graph, sources)?
                };
                let key = field.alias.as_deref().unwrap_or(&field.name);
                match json::get_mut(out, key, sources) {
                    Some(existing) => deep_merge(existing, projected, graph, sources),
                    None => {
                        let key = sources.make(key);
                        out.push((key, projected));
                    }
                }
            }
            SelectionItem::InlineFragment(fragment) => {
                if type_name(value, sources)
                    .is_some_and(|t| graph.type_matches(t, &fragment.type_condition))
                {
                    build_requires_fields(value, &fragment.selections, graph, sources, out)?;
                }
            }
            SelectionItem::FragmentSpread(_) => {}
        }
    }
    Some(())
}

//! Changing the merged data: the planner's fetch rewrites (a value set, a key renamed, at a
//! path with type conditions) on representations and answers, and [`deep_merge`], which
//! folds each fetch's answer into what is merged so far.

use hive_router_query_planner::planner::plan_nodes::{FetchNodePathSegment, FetchRewrite};

use super::locations::type_name;
use crate::graph::Graph;
use crate::json::{self, Object, Sources, Value};

/// Applies one of the planner's rewrites to `value`.
pub(super) fn apply_rewrite(
    value: &mut Value,
    rewrite: &FetchRewrite,
    graph: &Graph,
    sources: &mut Sources,
) {
    match rewrite {
        FetchRewrite::ValueSetter(setter) => rewrite_at(
            value,
            &setter.path,
            graph,
            sources,
            &mut |object, key, sources| {
                let set = Value::String(sources.make(&setter.set_value_to));
                set_member(object, key, set, sources);
            },
        ),
        FetchRewrite::KeyRenamer(renamer) => rewrite_at(
            value,
            &renamer.path,
            graph,
            sources,
            &mut |object, key, sources| {
                if let Some(index) = json::position(object, key, sources) {
                    let (_, moved) = object.remove(index);
                    set_member(object, &renamer.rename_key_to, moved, sources);
                }
            },
        ),
    }
}

/// Sets the member `key` of `object` to `value`, replacing it or adding it at the end.
fn set_member(object: &mut Object, key: &str, value: Value, sources: &mut Sources) {
    match json::get_mut(object, key, sources) {
        Some(existing) => *existing = value,
        None => {
            let key = sources.make(key);
            object.push((key, value));
        }
    }
}

fn rewrite_at(
    value: &mut Value,
    path: &[FetchNodePathSegment],
    graph: &Graph,
    sources: &mut Sources,
    action: &mut dyn FnMut(&mut Object, &str, &mut Sources),
) {
    if let Value::Array(items) = value {
        for item in items {
            rewrite_at(item, path, graph, sources, action);
        }
        return;
    }
    match path.split_first() {
        None => {}
        Some((FetchNodePathSegment::TypenameEquals(types), rest))
            if type_name(value, sources)
                .is_some_and(|t| types.iter().any(|c| graph.type_matches(t, c))) =>
        {
            rewrite_at(value, rest, graph, sources, action);
        }
        Some((FetchNodePathSegment::TypenameEquals(_), _)) => {}
        Some((FetchNodePathSegment::Key(key), rest)) => {
            let Value::Object(object) = value else {
                return;
            };
            if rest.is_empty() {
                action(object, key, sources);
            } else if let Some(child) = json::get_mut(object, key, sources) {
                rewrite_at(child, rest, graph, sources, action);
            }
        }
    }
}

/// Merges `source` into `target`: objects key by key, lists of equal length element-wise,
/// anything else replaced. A `__typename` naming an interface (an `@interfaceObject`
/// subgraph's answer) does not replace a concrete type already known.
pub fn deep_merge(target: &mut Value, source: Value, graph: &Graph, sources: &Sources) {
    match (target, source) {
        (Value::Object(target), Value::Object(source)) => {
            if target.is_empty() {
                *target = source;
                return;
            }
            target.reserve(source.len());
            for (key, value) in source {
                let existing = target.iter().position(|(k, _)| sources.same(*k, key));
                if existing.is_some()
                    && sources.is(key, "__typename")
                    && value.as_str(sources).is_some_and(|t| graph.is_abstract(t))
                {
                    continue;
                }
                match existing {
                    Some(index) => deep_merge(&mut target[index].1, value, graph, sources),
                    None => target.push((key, value)),
                }
            }
        }
        (Value::Array(target), Value::Array(source)) if target.len() == source.len() => {
            for (existing, value) in target.iter_mut().zip(source) {
                deep_merge(existing, value, graph, sources);
            }
        }
        (target, source) => *target = source,
    }
}

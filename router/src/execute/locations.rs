//! Where a plan's path leads in the merged data: the objects it names, through lists and
//! type conditions, in document order ([`locations`], with their response paths when asked;
//! [`locations_mut`] to change them). Entity fetches collect from and merge into them.

use hive_router_query_planner::planner::plan_nodes::FlattenNodePathSegment;
use serde_json::{Value as Json, json};

use crate::graph::Graph;
use crate::json::{self, Sources, Value};

/// One element of a response path; keys are the plan's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PathElem<'p> {
    Key(&'p str),
    Index(usize),
}

impl PathElem<'_> {
    pub(super) fn to_json(self) -> Json {
        match self {
            PathElem::Key(k) => Json::String(k.to_owned()),
            PathElem::Index(i) => json!(i),
        }
    }
}

/// The `__typename` of an object, if it has one.
pub(super) fn type_name<'s>(value: &Value, sources: &'s Sources) -> Option<&'s str> {
    value
        .get("__typename", sources)
        .and_then(|t| t.as_str(sources))
}

/// The objects `segments` lead to from `value`, in document order, into `out`; with `paths`
/// (a stack and where to put them), their response paths too.
pub(super) fn locations<'a, 'p>(
    value: &'a Value,
    segments: &'p [FlattenNodePathSegment],
    paths: &mut Option<(&mut Vec<PathElem<'p>>, &mut Vec<Vec<PathElem<'p>>>)>,
    out: &mut Vec<&'a Value>,
    graph: &Graph,
    sources: &Sources,
) {
    if let Value::Array(items) = value {
        // A list where the path names a field: every element continues the path.
        for (i, item) in items.iter().enumerate() {
            if let Some((here, _)) = paths {
                here.push(PathElem::Index(i));
            }
            locations(item, segments, paths, out, graph, sources);
            if let Some((here, _)) = paths {
                here.pop();
            }
        }
        return;
    }
    let Value::Object(object) = value else {
        return;
    };
    match segments.split_first() {
        None => {
            out.push(value);
            if let Some((here, found)) = paths {
                found.push(here.clone());
            }
        }
        Some((FlattenNodePathSegment::Field(name), rest)) => {
            if let Some(child) = json::get(object, name, sources) {
                if let Some((here, _)) = paths {
                    here.push(PathElem::Key(name));
                }
                locations(child, rest, paths, out, graph, sources);
                if let Some((here, _)) = paths {
                    here.pop();
                }
            }
        }
        Some((FlattenNodePathSegment::List, rest)) => {
            locations(value, rest, paths, out, graph, sources)
        }
        Some((FlattenNodePathSegment::TypeCondition(types), rest)) => {
            if type_name(value, sources)
                .is_some_and(|t| types.iter().any(|c| graph.type_matches(t, c)))
            {
                locations(value, rest, paths, out, graph, sources);
            }
        }
    }
}

/// [`locations`] for changing them: `visit` gets each, in the same order.
pub(super) fn locations_mut(
    value: &mut Value,
    segments: &[FlattenNodePathSegment],
    graph: &Graph,
    sources: &Sources,
    visit: &mut dyn FnMut(&mut Value),
) {
    if let Value::Array(items) = value {
        for item in items {
            locations_mut(item, segments, graph, sources, visit);
        }
        return;
    }
    if !matches!(value, Value::Object(_)) {
        return;
    }
    match segments.split_first() {
        None => visit(value),
        Some((FlattenNodePathSegment::Field(name), rest)) => {
            if let Some(child) = value.get_mut(name, sources) {
                locations_mut(child, rest, graph, sources, visit);
            }
        }
        Some((FlattenNodePathSegment::List, rest)) => {
            locations_mut(value, rest, graph, sources, visit)
        }
        Some((FlattenNodePathSegment::TypeCondition(types), rest)) => {
            if type_name(value, sources)
                .is_some_and(|t| types.iter().any(|c| graph.type_matches(t, c)))
            {
                locations_mut(value, rest, graph, sources, visit);
            }
        }
    }
}

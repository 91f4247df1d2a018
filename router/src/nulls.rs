//! GraphQL null propagation (spec §6.4.4, "Handling Execution Errors") over a projected response.
//!
//! async-graphql's dynamic executor leaves an errored field out of its parent object instead of
//! propagating the null. This pass restores the spec's behaviour: the errored position becomes
//! null if its type is nullable; otherwise the null moves to the parent position, up to the
//! nearest nullable one, or to `data` itself.

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
};
use async_graphql::registry::{MetaType, Registry};
use async_graphql::{Name, PathSegment, Value};

/// One step of a response path with the type at that position (e.g. `[User!]!`).
struct Step {
    segment: PathSegment,
    ty: String,
}

/// Applies null propagation for every errored path; `data` becomes null when it reaches the root.
pub fn propagate(
    registry: &Registry,
    query: &str,
    operation_name: Option<&str>,
    data: &mut Value,
    errored: &[Vec<PathSegment>],
) {
    let Ok(document) = async_graphql::parser::parse_query(query) else {
        return;
    };
    let Some((root_type, selections)) = operation(registry, &document, operation_name) else {
        return;
    };
    for path in errored {
        let Some(steps) = typed_path(registry, &document, &root_type, selections, path) else {
            continue;
        };
        apply(data, &steps);
    }
}

fn operation<'d>(
    registry: &Registry,
    document: &'d ExecutableDocument,
    name: Option<&str>,
) -> Option<(String, &'d SelectionSet)> {
    let operation = match (&document.operations, name) {
        (DocumentOperations::Single(op), _) => op,
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name)?,
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next()?,
        (DocumentOperations::Multiple(_), None) => return None,
    };
    let root = match operation.node.ty {
        OperationType::Query => registry.query_type.clone(),
        OperationType::Mutation => registry.mutation_type.clone()?,
        OperationType::Subscription => registry.subscription_type.clone()?,
    };
    Some((root, &operation.node.selection_set.node))
}

/// The field name and sub-selection of the selection answering `key` in `selections`.
fn find_field<'d>(
    document: &'d ExecutableDocument,
    selections: &'d SelectionSet,
    key: &str,
    parent: &MetaType,
) -> Option<(&'d str, Vec<&'d SelectionSet>)> {
    let mut name: Option<&str> = None;
    let mut subs = Vec::new();
    collect_field(document, selections, key, parent, &mut name, &mut subs, 0);
    name.map(|n| (n, subs))
}

fn collect_field<'d>(
    document: &'d ExecutableDocument,
    selections: &'d SelectionSet,
    key: &str,
    parent: &MetaType,
    name: &mut Option<&'d str>,
    subs: &mut Vec<&'d SelectionSet>,
    depth: usize,
) {
    if depth > 64 {
        return;
    }
    for selection in &selections.items {
        match &selection.node {
            Selection::Field(field) => {
                let field = &field.node;
                if field.response_key().node.as_str() == key
                    && parent.field_by_name(field.name.node.as_str()).is_some()
                {
                    name.get_or_insert(field.name.node.as_str());
                    subs.push(&field.selection_set.node);
                }
            }
            Selection::InlineFragment(fragment) => collect_field(
                document,
                &fragment.node.selection_set.node,
                key,
                parent,
                name,
                subs,
                depth + 1,
            ),
            Selection::FragmentSpread(spread) => {
                if let Some(fragment) = document.fragments.get(&spread.node.fragment_name.node) {
                    collect_field(
                        document,
                        &fragment.node.selection_set.node,
                        key,
                        parent,
                        name,
                        subs,
                        depth + 1,
                    );
                }
            }
        }
    }
}

/// `[User!]!` -> `User`.
pub(crate) fn named(ty: &str) -> &str {
    ty.trim_matches(|c| c == '[' || c == ']' || c == '!')
}

/// `[User!]!` -> `User!` (the item type of a list type).
fn item_type(ty: &str) -> Option<&str> {
    let ty = ty.strip_suffix('!').unwrap_or(ty);
    ty.strip_prefix('[')?.strip_suffix(']')
}

/// The type that holds field `name` when the parent is `ty` (for unions: a member that has it).
fn parent_type<'r>(registry: &'r Registry, ty: &str, field: &str) -> Option<&'r MetaType> {
    let meta = registry.types.get(ty)?;
    if meta.field_by_name(field).is_some() {
        return Some(meta);
    }
    meta.possible_types()?
        .iter()
        .filter_map(|member| registry.types.get(member))
        .find(|member| member.field_by_name(field).is_some())
}

fn typed_path(
    registry: &Registry,
    document: &ExecutableDocument,
    root: &str,
    selections: &SelectionSet,
    path: &[PathSegment],
) -> Option<Vec<Step>> {
    let mut steps = Vec::with_capacity(path.len());
    let mut current_type = root.to_owned();
    let mut current_selections: Vec<&SelectionSet> = vec![selections];
    let mut list_type: Option<String> = None;
    for segment in path {
        match segment {
            PathSegment::Field(key) => {
                let parent = parent_type(registry, named(&current_type), key).or_else(|| {
                    // The key may be an alias: find the field first, then its parent.
                    registry.types.get(named(&current_type))
                })?;
                let mut found = None;
                for selection in &current_selections {
                    if let Some(hit) = find_field(document, selection, key, parent) {
                        found = Some(hit);
                        break;
                    }
                }
                let (name, subs) = match found {
                    Some(hit) => hit,
                    None => {
                        // An alias on a union member: look through the members.
                        let members = registry.types.get(named(&current_type))?.possible_types()?;
                        members.iter().find_map(|member| {
                            let meta = registry.types.get(member)?;
                            current_selections
                                .iter()
                                .find_map(|s| find_field(document, s, key, meta))
                        })?
                    }
                };
                let holder = parent_type(registry, named(&current_type), name)?;
                let ty = holder.field_by_name(name)?.ty.clone();
                steps.push(Step {
                    segment: segment.clone(),
                    ty: ty.clone(),
                });
                current_type = ty.clone();
                list_type = Some(ty);
                current_selections = subs;
            }
            PathSegment::Index(_) => {
                let item = item_type(list_type.as_deref()?)?.to_owned();
                steps.push(Step {
                    segment: segment.clone(),
                    ty: item.clone(),
                });
                current_type = item.clone();
                list_type = Some(item);
            }
        }
    }
    Some(steps)
}

fn apply(data: &mut Value, steps: &[Step]) {
    // The deepest nullable position at or above the errored one takes the null.
    let nullable_at = (0..steps.len())
        .rev()
        .find(|&i| !steps[i].ty.ends_with('!'));
    match nullable_at {
        None => *data = Value::Null,
        Some(i) => {
            let (parent, last) = (&steps[..i], &steps[i]);
            let Some(container) = navigate(data, parent) else {
                return;
            };
            match (container, &last.segment) {
                (Value::Object(object), PathSegment::Field(key)) => {
                    object.insert(Name::new(key), Value::Null);
                }
                (Value::List(items), PathSegment::Index(index)) => {
                    if let Some(item) = items.get_mut(*index) {
                        *item = Value::Null;
                    }
                }
                _ => {}
            }
        }
    }
}

fn navigate<'v>(mut value: &'v mut Value, steps: &[Step]) -> Option<&'v mut Value> {
    for step in steps {
        value = match (value, &step.segment) {
            (Value::Object(object), PathSegment::Field(key)) => object.get_mut(key.as_str())?,
            (Value::List(items), PathSegment::Index(index)) => items.get_mut(*index)?,
            _ => return None,
        };
    }
    Some(value)
}

/// async-graphql answers null for an object whose selection resolved no field (say, only a
/// fragment on another type); the spec answers `{}`. Where the merged subgraph data has an
/// object and no error lies at or below the position, the null becomes `{}`. An object
/// whose `__typename` the API schema does not have (an `@inaccessible` type) stays null.
pub fn restore_empty_objects(
    registry: &Registry,
    projected: &mut Value,
    source: &serde_json::Value,
    errored: &[Vec<PathSegment>],
) {
    let mut path = Vec::new();
    restore(registry, projected, source, errored, &mut path);
}

fn restore(
    registry: &Registry,
    projected: &mut Value,
    source: &serde_json::Value,
    errored: &[Vec<PathSegment>],
    path: &mut Vec<PathSegment>,
) {
    match (projected, source) {
        (projected @ Value::Null, serde_json::Value::Object(object))
            if !errored.iter().any(|e| e.starts_with(path)) =>
        {
            let hidden = object
                .get("__typename")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|t| crate::api_schema::is_hidden_type(registry, t));
            if !hidden {
                *projected = Value::Object(Default::default());
            }
        }
        (Value::Object(map), serde_json::Value::Object(fields)) => {
            for (key, value) in map.iter_mut() {
                if let Some(child) = fields.get(key.as_str()) {
                    path.push(PathSegment::Field(key.to_string()));
                    restore(registry, value, child, errored, path);
                    path.pop();
                }
            }
        }
        (Value::List(items), serde_json::Value::Array(children)) => {
            for (index, (item, child)) in items.iter_mut().zip(children).enumerate() {
                path.push(PathSegment::Index(index));
                restore(registry, item, child, errored, path);
                path.pop();
            }
        }
        _ => {}
    }
}

//! Two rewrites of the client's document before validation and execution, each for a gap
//! in async-graphql's dynamic schema. Positions are kept, so errors point at the client's text.
//!
//! - **Fragments on a union, where the value is of that union.** async-graphql's dynamic
//!   executor matches a fragment's type condition against the object's own name and its
//!   interfaces, never a union, so `search { ...Result }` with
//!   `fragment Result on SearchResult { ... on Book { title } }` would select nothing. Where
//!   the parent type *is* that union, the condition always holds: the fragment is rewritten
//!   as one without a condition (a spread is inlined).
//! - **Narrowed fields.** A field declared wider than the schema says (`Book.similar` as
//!   `Product` for `Book`, see `api_schema::covariant_type`) gets its selections wrapped in
//!   `... on Book { … }`: what the schema allows below it stays valid, and every value there
//!   is a `Book` anyway.
//!
//! Nothing else in the document changes.

use std::collections::HashSet;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, InlineFragment, Selection, SelectionSet, TypeCondition,
};
use async_graphql::registry::{MetaType, Registry};
use async_graphql::{Name, Positioned};

use crate::api_schema::Narrowed;

fn is_union(registry: &Registry, name: &str) -> bool {
    matches!(registry.types.get(name), Some(MetaType::Union { .. }))
}

/// Whether the document needs a rewrite: a fragment on a union, or (when the schema has
/// narrowed fields at all) possibly a narrowed field. Most documents do not and are left
/// untouched.
pub fn needs_rewrite(
    registry: &Registry,
    narrowed: &Narrowed,
    document: &ExecutableDocument,
) -> bool {
    !narrowed.is_empty() || has_union_conditions(registry, document)
}

fn has_union_conditions(registry: &Registry, document: &ExecutableDocument) -> bool {
    fn walk(registry: &Registry, set: &SelectionSet) -> bool {
        set.items.iter().any(|item| match &item.node {
            Selection::Field(field) => walk(registry, &field.node.selection_set.node),
            Selection::InlineFragment(fragment) => {
                fragment
                    .node
                    .type_condition
                    .as_ref()
                    .is_some_and(|c| is_union(registry, c.node.on.node.as_str()))
                    || walk(registry, &fragment.node.selection_set.node)
            }
            Selection::FragmentSpread(_) => false,
        })
    }
    document
        .fragments
        .values()
        .any(|f| is_union(registry, f.node.type_condition.node.on.node.as_str()))
        || match &document.operations {
            DocumentOperations::Single(op) => walk(registry, &op.node.selection_set.node),
            DocumentOperations::Multiple(ops) => ops
                .values()
                .any(|op| walk(registry, &op.node.selection_set.node)),
        }
}

/// Rewrites fragments on a union `U` whose parent type is `U` into fragments without a
/// condition (named fragments used only that way are inlined and then dropped), and wraps
/// the selections of narrowed fields in a fragment on their real type.
pub fn rewrite_for_validation(
    registry: &Registry,
    narrowed: &Narrowed,
    document: &mut ExecutableDocument,
) {
    let fragments = document.fragments.clone();
    let mut inlined = HashSet::new();
    let roots = [
        Some(registry.query_type.clone()),
        registry.mutation_type.clone(),
        registry.subscription_type.clone(),
    ];
    let rewrite_op = |op: &mut Positioned<async_graphql::parser::types::OperationDefinition>,
                      inlined: &mut HashSet<Name>| {
        let root = match op.node.ty {
            async_graphql::parser::types::OperationType::Query => roots[0].clone(),
            async_graphql::parser::types::OperationType::Mutation => roots[1].clone(),
            async_graphql::parser::types::OperationType::Subscription => roots[2].clone(),
        };
        if let Some(root) = root {
            rewrite(
                registry,
                narrowed,
                &fragments,
                &root,
                &mut op.node.selection_set.node,
                inlined,
                0,
            );
        }
    };
    match &mut document.operations {
        DocumentOperations::Single(op) => rewrite_op(op, &mut inlined),
        DocumentOperations::Multiple(ops) => {
            for op in ops.values_mut() {
                rewrite_op(op, &mut inlined);
            }
        }
    }
    for fragment in document.fragments.values_mut() {
        let parent = fragment.node.type_condition.node.on.node.to_string();
        rewrite(
            registry,
            narrowed,
            &fragments,
            &parent,
            &mut fragment.node.selection_set.node,
            &mut inlined,
            0,
        );
    }
    // Drop inlined fragments nothing spreads any more (validation rejects unused ones).
    let used = used_fragments(document);
    document
        .fragments
        .retain(|name, _| !inlined.contains(name) || used.contains(name));
}

fn field_type<'r>(registry: &'r Registry, parent: &str, field: &str) -> Option<&'r str> {
    let meta = registry.types.get(parent)?;
    let ty = &meta.field_by_name(field)?.ty;
    Some(crate::nulls::named(ty))
}

fn rewrite(
    registry: &Registry,
    narrowed: &Narrowed,
    fragments: &std::collections::HashMap<
        Name,
        Positioned<async_graphql::parser::types::FragmentDefinition>,
    >,
    parent: &str,
    set: &mut SelectionSet,
    inlined: &mut HashSet<Name>,
    depth: usize,
) {
    if depth > 64 {
        return;
    }
    for item in &mut set.items {
        let replacement = match &mut item.node {
            Selection::Field(field) => {
                let name = field.node.name.node.as_str();
                let real = narrowed.get(parent).and_then(|fields| fields.get(name));
                let set = &mut field.node.selection_set;
                if let Some(real) = real
                    && !set.node.items.is_empty()
                {
                    let items = std::mem::take(&mut set.node.items);
                    let inner = SelectionSet { items };
                    let fragment = InlineFragment {
                        type_condition: Some(Positioned::new(
                            TypeCondition {
                                on: Positioned::new(Name::new(real), set.pos),
                            },
                            set.pos,
                        )),
                        directives: Vec::new(),
                        selection_set: Positioned::new(inner, set.pos),
                    };
                    set.node.items = vec![Positioned::new(
                        Selection::InlineFragment(Positioned::new(fragment, set.pos)),
                        set.pos,
                    )];
                }
                if let Some(ty) = field_type(registry, parent, name) {
                    let ty = ty.to_owned();
                    rewrite(
                        registry,
                        narrowed,
                        fragments,
                        &ty,
                        &mut field.node.selection_set.node,
                        inlined,
                        depth + 1,
                    );
                }
                None
            }
            Selection::InlineFragment(fragment) => {
                let condition = fragment
                    .node
                    .type_condition
                    .as_ref()
                    .map(|c| c.node.on.node.to_string());
                if condition.as_deref() == Some(parent) && is_union(registry, parent) {
                    fragment.node.type_condition = None;
                }
                let inner = condition.unwrap_or_else(|| parent.to_owned());
                rewrite(
                    registry,
                    narrowed,
                    fragments,
                    &inner,
                    &mut fragment.node.selection_set.node,
                    inlined,
                    depth + 1,
                );
                None
            }
            Selection::FragmentSpread(spread) => {
                let name = &spread.node.fragment_name.node;
                match fragments.get(name) {
                    Some(definition)
                        if definition.node.type_condition.node.on.node.as_str() == parent
                            && is_union(registry, parent) =>
                    {
                        inlined.insert(name.clone());
                        let mut selection_set = definition.node.selection_set.clone();
                        rewrite(
                            registry,
                            narrowed,
                            fragments,
                            parent,
                            &mut selection_set.node,
                            inlined,
                            depth + 1,
                        );
                        Some(Selection::InlineFragment(Positioned::new(
                            InlineFragment {
                                type_condition: None,
                                directives: spread.node.directives.clone(),
                                selection_set,
                            },
                            spread.pos,
                        )))
                    }
                    _ => None,
                }
            }
        };
        if let Some(replacement) = replacement {
            item.node = replacement;
        }
    }
}

fn used_fragments(document: &ExecutableDocument) -> HashSet<Name> {
    fn walk(set: &SelectionSet, out: &mut HashSet<Name>) {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => walk(&field.node.selection_set.node, out),
                Selection::InlineFragment(fragment) => walk(&fragment.node.selection_set.node, out),
                Selection::FragmentSpread(spread) => {
                    out.insert(spread.node.fragment_name.node.clone());
                }
            }
        }
    }
    let mut out = HashSet::new();
    match &document.operations {
        DocumentOperations::Single(op) => walk(&op.node.selection_set.node, &mut out),
        DocumentOperations::Multiple(ops) => {
            for op in ops.values() {
                walk(&op.node.selection_set.node, &mut out);
            }
        }
    }
    for fragment in document.fragments.values() {
        walk(&fragment.node.selection_set.node, &mut out);
    }
    out
}

//! The response plan: what [`crate::project`] writes for an operation, worked out once per
//! operation (and per combination of the `@skip` / `@include` variables it uses) instead of
//! for every value of every response.
//!
//! For each selection set and each concrete type its value may have, the plan holds the
//! fields CollectFields (spec §6.3.2) gives, merged by response key, with each field's type
//! as a shape: non-null and list wrappers around a leaf (which scalar or enum, and the enum's
//! values) or a composite (the selection set below, again per concrete type). Fragments are
//! resolved here, against every type they may apply to, so writing a response only follows
//! the plan. A selection set met again with the same type (fragments used in several places,
//! the same field under several object types) is planned once and shared.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use graphql_tools::parser::query::{Field, Selection as AstSelection, SelectionSet, TypeCondition};
use serde_json::{Map, Value as Json};

use crate::operation::{Operation, QueryValue, included};
use crate::types::{AstType, Kind, Types};

type FieldNode = Field<'static, String>;

/// A compiled response plan.
#[derive(Debug)]
pub struct ResponsePlan {
    /// The root type's fields.
    pub root: Arc<Fields>,
}

/// The fields written for an object of one concrete type.
#[derive(Debug)]
pub struct Fields {
    pub type_name: String,
    /// `"TypeName"`, as written for `__typename`.
    pub quoted_type_name: Vec<u8>,
    pub fields: Vec<FieldPlan>,
}

#[derive(Debug)]
pub struct FieldPlan {
    pub key: String,
    /// `"key":`, as written before the value.
    pub quoted_key: Vec<u8>,
    pub kind: FieldKind,
}

fn quoted(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 2);
    crate::json::write_str(&mut out, text.as_bytes());
    out
}

#[derive(Debug)]
pub enum FieldKind {
    /// `__typename`: the object's concrete type.
    Typename,
    /// A root `__schema` / `__type`: the introspection answer under this key.
    Introspection,
    /// A field the type does not have (validation checked the declared type): null.
    Missing,
    Data {
        /// `Parent.field`, for errors.
        coordinate: Arc<str>,
        shape: Shape,
    },
}

#[derive(Debug)]
pub enum Shape {
    NonNull(Box<Shape>),
    List {
        item: Box<Shape>,
        /// The list type as written (`[User!]`), for errors.
        written: String,
    },
    Leaf(Leaf),
    Composite(Arc<Selection>),
}

#[derive(Debug)]
pub enum Leaf {
    Int,
    Float,
    String,
    Boolean,
    Id,
    /// A custom scalar: the owning subgraph judges its values.
    Custom,
    Enum {
        name: String,
        values: Arc<HashSet<String>>,
    },
    /// Not an output type the API schema knows: passed on as is.
    Unknown,
}

/// A selection set on a (possibly abstract) type, planned for each concrete type.
#[derive(Debug)]
pub struct Selection {
    pub type_name: String,
    pub kind: SelectionKind,
    /// Per concrete type: for an interface also the interface itself (an `@interfaceObject`
    /// answer names it).
    pub by_type: Vec<(String, Arc<Fields>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectionKind {
    Object,
    Interface,
    Union,
}

impl Selection {
    pub fn fields_for(&self, concrete: &str) -> Option<&Arc<Fields>> {
        self.by_type
            .iter()
            .find(|(name, _)| name == concrete)
            .map(|(_, fields)| fields)
    }
}

/// The variables an operation's `@skip` / `@include` conditions read: a response plan holds
/// for one combination of their values.
pub fn condition_variables(operation: &Operation) -> Vec<String> {
    fn walk(
        operation: &Operation,
        selections: &SelectionSet<'static, String>,
        seen: &mut HashSet<String>,
        out: &mut Vec<String>,
    ) {
        for item in &selections.items {
            let (directives, below) = match item {
                AstSelection::Field(f) => (&f.directives, Some(&f.selection_set)),
                AstSelection::InlineFragment(f) => (&f.directives, Some(&f.selection_set)),
                AstSelection::FragmentSpread(s) => {
                    let below = seen.insert(format!("fragment {}", s.fragment_name));
                    let fragment = below
                        .then(|| operation.fragment(&s.fragment_name))
                        .flatten()
                        .map(|f| &f.selection_set);
                    (&s.directives, fragment)
                }
            };
            for directive in directives {
                if directive.name == "skip" || directive.name == "include" {
                    for (_, value) in &directive.arguments {
                        if let QueryValue::Variable(name) = value
                            && seen.insert(name.clone())
                        {
                            out.push(name.clone());
                        }
                    }
                }
            }
            if let Some(below) = below {
                walk(operation, below, seen, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(
        operation,
        operation.selection_set(),
        &mut HashSet::new(),
        &mut out,
    );
    out
}

/// Which combination of condition values `variables` gives (see [`condition_variables`]).
pub fn condition_key(conditions: &[String], variables: &Map<String, Json>) -> Vec<bool> {
    conditions
        .iter()
        .map(|name| variables.get(name) == Some(&Json::Bool(true)))
        .collect()
}

/// Plans `operation`'s response for `variables` (only its condition variables matter).
pub fn compile(
    types: &Types,
    operation: &Operation,
    variables: &Map<String, Json>,
) -> ResponsePlan {
    let mut compiler = Compiler {
        types,
        operation,
        variables,
        fields: HashMap::new(),
        selections: HashMap::new(),
        enums: HashMap::new(),
    };
    let root = operation.root_type(types);
    let root = compiler.fields(root, &[operation.selection_set()], true);
    ResponsePlan { root }
}

/// Selection sets by address: the operation is immutable while it is planned.
type NodeSet = Vec<usize>;

struct Compiler<'a> {
    types: &'a Types,
    operation: &'a Operation,
    variables: &'a Map<String, Json>,
    fields: HashMap<(String, NodeSet), Arc<Fields>>,
    selections: HashMap<(String, NodeSet), Arc<Selection>>,
    enums: HashMap<String, Arc<HashSet<String>>>,
}

fn addresses(sets: &[&SelectionSet<'static, String>]) -> NodeSet {
    sets.iter().map(|s| *s as *const _ as usize).collect()
}

impl<'a> Compiler<'a> {
    /// CollectFields of `sets` for an object of type `concrete`, grouped by response key.
    fn collect(
        &self,
        concrete: &str,
        selections: &'a SelectionSet<'static, String>,
        out: &mut Vec<(&'a str, Vec<&'a FieldNode>)>,
        visited: &mut Vec<&'a str>,
    ) {
        for item in &selections.items {
            match item {
                AstSelection::Field(field) => {
                    if !included(&field.directives, self.variables) {
                        continue;
                    }
                    let key = field.alias.as_deref().unwrap_or(&field.name);
                    match out.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, fields)) => fields.push(field),
                        None => out.push((key, vec![field])),
                    }
                }
                AstSelection::InlineFragment(fragment) => {
                    let applies = match &fragment.type_condition {
                        Some(TypeCondition::On(condition)) => {
                            self.types.type_matches(concrete, condition)
                        }
                        None => true,
                    };
                    if applies && included(&fragment.directives, self.variables) {
                        self.collect(concrete, &fragment.selection_set, out, visited);
                    }
                }
                AstSelection::FragmentSpread(spread) => {
                    let name = spread.fragment_name.as_str();
                    if visited.contains(&name) || !included(&spread.directives, self.variables) {
                        continue;
                    }
                    visited.push(name);
                    let Some(fragment) = self.operation.fragment(name) else {
                        continue;
                    };
                    let TypeCondition::On(condition) = &fragment.type_condition;
                    if self.types.type_matches(concrete, condition) {
                        self.collect(concrete, &fragment.selection_set, out, visited);
                    }
                }
            }
        }
    }

    fn fields(
        &mut self,
        concrete: &str,
        sets: &[&'a SelectionSet<'static, String>],
        root: bool,
    ) -> Arc<Fields> {
        let memo = (concrete.to_owned(), addresses(sets));
        if !root && let Some(fields) = self.fields.get(&memo) {
            return fields.clone();
        }
        let mut grouped = Vec::new();
        let mut visited = Vec::new();
        for set in sets {
            self.collect(concrete, set, &mut grouped, &mut visited);
        }
        let mut planned = Vec::with_capacity(grouped.len());
        for (key, nodes) in grouped {
            let name = nodes[0].name.as_str();
            let kind = if name == "__typename" {
                FieldKind::Typename
            } else if root && (name == "__schema" || name == "__type") {
                FieldKind::Introspection
            } else {
                match self.types.field_type(concrete, name) {
                    None => FieldKind::Missing,
                    Some(ty) => {
                        let below: Vec<&'a SelectionSet<'static, String>> =
                            nodes.iter().map(|n| &n.selection_set).collect();
                        FieldKind::Data {
                            coordinate: Arc::from(format!("{concrete}.{name}")),
                            shape: self.shape(ty, &below),
                        }
                    }
                }
            };
            let mut quoted_key = quoted(key);
            quoted_key.push(b':');
            planned.push(FieldPlan {
                key: key.to_owned(),
                quoted_key,
                kind,
            });
        }
        let fields = Arc::new(Fields {
            type_name: concrete.to_owned(),
            quoted_type_name: quoted(concrete),
            fields: planned,
        });
        if !root {
            self.fields.insert(memo, fields.clone());
        }
        fields
    }

    fn shape(&mut self, ty: &AstType, below: &[&'a SelectionSet<'static, String>]) -> Shape {
        match ty {
            AstType::NonNullType(inner) => Shape::NonNull(Box::new(self.shape(inner, below))),
            AstType::ListType(inner) => Shape::List {
                item: Box::new(self.shape(inner, below)),
                written: ty.to_string(),
            },
            AstType::NamedType(name) => {
                let kind = self.types.get(name).map(|t| &t.kind);
                match kind {
                    Some(Kind::Enum(values)) => {
                        let values = self
                            .enums
                            .entry(name.clone())
                            .or_insert_with(|| Arc::new(values.clone()))
                            .clone();
                        Shape::Leaf(Leaf::Enum {
                            name: name.clone(),
                            values,
                        })
                    }
                    Some(Kind::Scalar) => Shape::Leaf(match name.as_str() {
                        "Int" => Leaf::Int,
                        "Float" => Leaf::Float,
                        "String" => Leaf::String,
                        "Boolean" => Leaf::Boolean,
                        "ID" => Leaf::Id,
                        _ => Leaf::Custom,
                    }),
                    Some(Kind::Object) => {
                        Shape::Composite(self.selection(name, SelectionKind::Object, below))
                    }
                    Some(Kind::Interface) => {
                        Shape::Composite(self.selection(name, SelectionKind::Interface, below))
                    }
                    Some(Kind::Union) => {
                        Shape::Composite(self.selection(name, SelectionKind::Union, below))
                    }
                    Some(Kind::InputObject(_)) | None => Shape::Leaf(Leaf::Unknown),
                }
            }
        }
    }

    fn selection(
        &mut self,
        name: &str,
        kind: SelectionKind,
        below: &[&'a SelectionSet<'static, String>],
    ) -> Arc<Selection> {
        let memo = (name.to_owned(), addresses(below));
        if let Some(selection) = self.selections.get(&memo) {
            return selection.clone();
        }
        let mut concrete: Vec<String> = match kind {
            SelectionKind::Object => vec![name.to_owned()],
            SelectionKind::Interface | SelectionKind::Union => {
                let mut members: Vec<String> = self
                    .types
                    .possible_objects(name)
                    .map(str::to_owned)
                    .collect();
                members.sort();
                members
            }
        };
        if kind == SelectionKind::Interface {
            concrete.push(name.to_owned());
        }
        let by_type = concrete
            .into_iter()
            .map(|c| {
                let fields = self.fields(&c, below, false);
                (c, fields)
            })
            .collect();
        let selection = Arc::new(Selection {
            type_name: name.to_owned(),
            kind,
            by_type,
        });
        self.selections.insert(memo, selection.clone());
        selection
    }
}

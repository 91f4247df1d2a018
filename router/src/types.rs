//! The API schema as the router's executor reads it: each type's kind, field types, enum values
//! and input fields, and which object types an interface or union may be, by name.

use std::collections::{HashMap, HashSet};

use graphql_tools::parser::schema::{Definition, Document, TypeDefinition};

/// A field, argument or variable type as written in SDL (`[User!]!`).
pub type AstType = graphql_tools::parser::schema::Type<'static, String>;
/// A constant value in SDL (an argument's default).
pub type ConstValue = graphql_tools::parser::schema::Value<'static, String>;

/// An input object's field: its type and default.
#[derive(Debug)]
pub struct InputField {
    pub name: String,
    pub ty: AstType,
    pub default: Option<ConstValue>,
}

/// What kind of type a name is, with what the executor needs of it.
#[derive(Debug)]
pub enum Kind {
    Scalar,
    Enum(HashSet<String>),
    Object,
    Interface,
    Union,
    InputObject(Vec<InputField>),
}

#[derive(Debug)]
pub struct TypeInfo {
    pub kind: Kind,
    /// Output fields (objects and interfaces): name -> type.
    pub fields: HashMap<String, AstType>,
}

/// Every type of a schema document, by name.
#[derive(Debug, Default)]
pub struct Types {
    types: HashMap<String, TypeInfo>,
    possible: HashMap<String, HashSet<String>>,
    pub query: String,
    pub mutation: Option<String>,
    pub subscription: Option<String>,
}

pub const BUILT_IN_SCALARS: [&str; 5] = ["Int", "Float", "String", "Boolean", "ID"];

impl Types {
    pub fn new(document: &Document<'static, String>) -> Self {
        let mut types: HashMap<String, TypeInfo> = BUILT_IN_SCALARS
            .iter()
            .map(|name| {
                let info = TypeInfo {
                    kind: Kind::Scalar,
                    fields: HashMap::new(),
                };
                ((*name).to_owned(), info)
            })
            .collect();
        let fields_of = |fields: &[graphql_tools::parser::schema::Field<'static, String>]| -> HashMap<String, AstType> {
            fields
                .iter()
                .map(|f| (f.name.clone(), f.field_type.clone()))
                .collect()
        };
        let mut schema_roots = None;
        for definition in &document.definitions {
            let (name, kind, fields) = match definition {
                Definition::SchemaDefinition(schema) => {
                    schema_roots = Some((
                        schema.query.clone(),
                        schema.mutation.clone(),
                        schema.subscription.clone(),
                    ));
                    continue;
                }
                Definition::TypeDefinition(TypeDefinition::Scalar(t)) => {
                    (&t.name, Kind::Scalar, HashMap::new())
                }
                Definition::TypeDefinition(TypeDefinition::Enum(t)) => (
                    &t.name,
                    Kind::Enum(t.values.iter().map(|v| v.name.clone()).collect()),
                    HashMap::new(),
                ),
                Definition::TypeDefinition(TypeDefinition::Object(t)) => {
                    (&t.name, Kind::Object, fields_of(&t.fields))
                }
                Definition::TypeDefinition(TypeDefinition::Interface(t)) => {
                    (&t.name, Kind::Interface, fields_of(&t.fields))
                }
                Definition::TypeDefinition(TypeDefinition::Union(t)) => {
                    (&t.name, Kind::Union, HashMap::new())
                }
                Definition::TypeDefinition(TypeDefinition::InputObject(t)) => (
                    &t.name,
                    Kind::InputObject(
                        t.fields
                            .iter()
                            .map(|f| InputField {
                                name: f.name.clone(),
                                ty: f.value_type.clone(),
                                default: f.default_value.clone(),
                            })
                            .collect(),
                    ),
                    HashMap::new(),
                ),
                Definition::TypeExtension(_) | Definition::DirectiveDefinition(_) => continue,
            };
            types.insert(name.clone(), TypeInfo { kind, fields });
        }
        let defined = |name: &str| types.contains_key(name).then(|| name.to_owned());
        let (query, mutation, subscription) = match schema_roots {
            Some((query, mutation, subscription)) => (
                query.unwrap_or_else(|| "Query".into()),
                mutation,
                subscription,
            ),
            None => ("Query".into(), defined("Mutation"), defined("Subscription")),
        };
        Self {
            possible: possible_types(document),
            types,
            query,
            mutation,
            subscription,
        }
    }

    pub fn get(&self, name: &str) -> Option<&TypeInfo> {
        self.types.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.types.contains_key(name)
    }

    pub fn field_type(&self, parent: &str, field: &str) -> Option<&AstType> {
        self.types.get(parent)?.fields.get(field)
    }

    /// Whether an object of type `actual` matches the type condition `condition`.
    pub fn type_matches(&self, actual: &str, condition: &str) -> bool {
        actual == condition
            || self
                .possible
                .get(condition)
                .is_some_and(|members| members.contains(actual))
    }

    /// The types an interface or union may be (objects, and interfaces implementing it).
    pub fn possible_objects<'t>(&'t self, abstract_type: &str) -> impl Iterator<Item = &'t str> {
        self.possible
            .get(abstract_type)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// Whether `actual` is one of the types an interface or union `abstract_type` may be.
    pub fn is_possible(&self, abstract_type: &str, actual: &str) -> bool {
        self.possible
            .get(abstract_type)
            .is_some_and(|members| members.contains(actual))
    }
}

/// The members of every interface (objects and interfaces implementing it) and union.
pub fn possible_types(document: &Document<'static, String>) -> HashMap<String, HashSet<String>> {
    let mut out: HashMap<String, HashSet<String>> = HashMap::new();
    for definition in &document.definitions {
        match definition {
            Definition::TypeDefinition(TypeDefinition::Object(object)) => {
                for interface in &object.implements_interfaces {
                    out.entry(interface.clone())
                        .or_default()
                        .insert(object.name.clone());
                }
            }
            Definition::TypeDefinition(TypeDefinition::Interface(interface)) => {
                for parent in &interface.implements_interfaces {
                    out.entry(parent.clone())
                        .or_default()
                        .insert(interface.name.clone());
                }
            }
            Definition::TypeDefinition(TypeDefinition::Union(union)) => {
                out.entry(union.name.clone())
                    .or_default()
                    .extend(union.types.iter().cloned());
            }
            _ => {}
        }
    }
    out
}

/// The named type inside list and non-null wrappers.
pub fn named_type(ty: &AstType) -> &str {
    match ty {
        AstType::NamedType(name) => name,
        AstType::ListType(inner) | AstType::NonNullType(inner) => named_type(inner),
    }
}

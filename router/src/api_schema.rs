//! The API schema (what clients see) as an executable async-graphql schema.
//!
//! The planner's consumer schema (the supergraph without `@inaccessible` members and federation
//! internals) is turned into an `async_graphql::dynamic::Schema`. That schema does three jobs for
//! the router: it parses and validates operations and coerces variables (spec-worded errors with
//! locations), it answers introspection, and it projects the merged subgraph data onto the
//! client's selection — aliases, fragments, `__typename`, `@skip`/`@include` and null
//! propagation as the GraphQL spec words them.
//!
//! Its resolvers never fetch anything: root fields await the plan run of the request (see
//! [`crate::execute::PlanRun`]) and every other field reads its response key from the parent's
//! JSON.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_graphql::dynamic::{
    Enum, EnumItem, Field, FieldFuture, FieldValue, InputObject, InputValue, Interface,
    InterfaceField, Object, ResolverContext, Scalar, Schema, TypeRef, Union,
};
use async_graphql::registry::Registry;
use async_graphql::{Name, Value as GqlValue};
use graphql_tools::parser::schema::{
    Definition, Directive, Document, Field as FieldDefinition, Type as AstType, TypeDefinition,
    Value as AstValue,
};
use serde_json::Value as Json;

use crate::execute::PlanRun;

const BUILT_IN_SCALARS: [&str; 5] = ["Int", "Float", "String", "Boolean", "ID"];

/// How a field's JSON value becomes a resolver result.
#[derive(Debug)]
enum Shape {
    Scalar,
    Enum,
    Object,
    Abstract(Arc<Possible>),
    List(Box<Shape>),
}

/// The object types an interface or union may resolve to.
#[derive(Debug, Default)]
struct Possible {
    types: HashSet<String>,
    /// Used when a subgraph's object has no usable `__typename` (none selected, or an
    /// `@interfaceObject` naming the interface): any member serves the interface's fields.
    fallback: Option<String>,
}

/// Limits applied by validation.
#[derive(Debug, Clone, Copy)]
pub struct ValidationLimits {
    pub max_depth: usize,
}

/// `out` with `field`'s description, deprecation and arguments: for `Field` and
/// `InterfaceField` alike, which share these builder methods but no trait.
macro_rules! field_details {
    ($out:expr, $field:expr) => {{
        let mut out = $out;
        if let Some(description) = &$field.description {
            out = out.description(description);
        }
        if let Some(reason) = deprecation(&$field.directives) {
            out = out.deprecation(Some(&reason));
        }
        for argument in &$field.arguments {
            out = out.argument(input_value(argument));
        }
        out
    }};
}

/// Object fields declared with their interface's type although the schema narrows it
/// (`Book.similar: Book` for `Product.similar: Product`): type -> field -> the real type.
pub type Narrowed = HashMap<String, HashMap<String, String>>;

/// Builds the executable API schema from the consumer schema, and names the fields it had to
/// declare with a wider type than the schema's (see [`covariant_type`]).
pub fn build(
    document: &Document<'static, String>,
    limits: ValidationLimits,
) -> Result<(Schema, Narrowed), String> {
    let mut narrowed = Narrowed::new();
    let kinds = type_kinds(document);
    let interface_fields = interface_fields(document);
    let (query, mutation, subscription) = root_names(document);
    let roots: HashSet<&str> = [
        Some(query.as_str()),
        mutation.as_deref(),
        subscription.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut builder =
        Schema::build(&query, mutation.as_deref(), None).limit_depth(limits.max_depth);
    for definition in &document.definitions {
        let Definition::TypeDefinition(definition) = definition else {
            continue;
        };
        match definition {
            TypeDefinition::Scalar(scalar) => {
                if BUILT_IN_SCALARS.contains(&scalar.name.as_str()) || scalar.name.starts_with("__")
                {
                    continue;
                }
                let mut out = Scalar::new(&scalar.name);
                if let Some(description) = &scalar.description {
                    out = out.description(description);
                }
                if let Some(url) = string_argument(&scalar.directives, "specifiedBy", "url") {
                    out = out.specified_by_url(url);
                }
                builder = builder.register(out);
            }
            TypeDefinition::Object(object) => {
                if object.name.starts_with("__") {
                    continue;
                }
                if subscription.as_deref() == Some(object.name.as_str()) {
                    // Subscriptions are not served by this router.
                    continue;
                }
                let is_root = roots.contains(object.name.as_str());
                let mut out = Object::new(&object.name);
                if let Some(description) = &object.description {
                    out = out.description(description);
                }
                for interface in &object.implements_interfaces {
                    out = out.implement(interface);
                }
                for field in &object.fields {
                    if field.name.starts_with("__") {
                        continue;
                    }
                    let field_type = covariant_type(
                        &object.name,
                        field,
                        &object.implements_interfaces,
                        &interface_fields,
                        &mut narrowed,
                    );
                    let declared = named_type(&field_type);
                    let shape = if declared == named_type(&field.field_type) {
                        Arc::new(shape_of(&field_type, &kinds))
                    } else {
                        Arc::new(narrowed_shape(&field.field_type, declared, &kinds))
                    };
                    let out_field = if is_root {
                        Field::new(&field.name, type_ref(&field_type), move |ctx| {
                            resolve_root(ctx, shape.clone())
                        })
                    } else {
                        Field::new(&field.name, type_ref(&field_type), move |ctx| {
                            resolve_field(ctx, &shape)
                        })
                    };
                    out = out.field(field_details!(out_field, field));
                }
                builder = builder.register(out);
            }
            TypeDefinition::Interface(interface) => {
                let mut out = Interface::new(&interface.name);
                if let Some(description) = &interface.description {
                    out = out.description(description);
                }
                for parent in &interface.implements_interfaces {
                    out = out.implement(parent);
                }
                for field in &interface.fields {
                    let field_type = covariant_type(
                        &interface.name,
                        field,
                        &interface.implements_interfaces,
                        &interface_fields,
                        &mut narrowed,
                    );
                    let out_field = InterfaceField::new(&field.name, type_ref(&field_type));
                    out = out.field(field_details!(out_field, field));
                }
                builder = builder.register(out);
            }
            TypeDefinition::Union(union) => {
                let mut out = Union::new(&union.name);
                if let Some(description) = &union.description {
                    out = out.description(description);
                }
                for member in &union.types {
                    out = out.possible_type(member);
                }
                builder = builder.register(out);
            }
            TypeDefinition::Enum(definition) => {
                if definition.name.starts_with("__") {
                    continue;
                }
                let mut out = Enum::new(&definition.name);
                if let Some(description) = &definition.description {
                    out = out.description(description);
                }
                for value in &definition.values {
                    let mut item = EnumItem::new(&value.name);
                    if let Some(description) = &value.description {
                        item = item.description(description);
                    }
                    if let Some(reason) = deprecation(&value.directives) {
                        item = item.deprecation(Some(&reason));
                    }
                    out = out.item(item);
                }
                builder = builder.register(out);
            }
            TypeDefinition::InputObject(input) => {
                let mut out = InputObject::new(&input.name);
                if let Some(description) = &input.description {
                    out = out.description(description);
                }
                if input.directives.iter().any(|d| d.name == "oneOf") {
                    out = out.oneof();
                }
                for field in &input.fields {
                    out = out.field(input_value(field));
                }
                builder = builder.register(out);
            }
        }
    }
    let schema = builder.finish().map_err(|e| e.to_string())?;
    Ok((schema, narrowed))
}

#[derive(Clone)]
enum Kind {
    Scalar,
    Enum,
    Object,
    Abstract(Arc<Possible>),
}

fn type_kinds(document: &Document<'static, String>) -> HashMap<String, Kind> {
    let mut kinds: HashMap<String, Kind> = BUILT_IN_SCALARS
        .iter()
        .map(|name| ((*name).to_owned(), Kind::Scalar))
        .collect();
    // Members of each interface and union, in document order.
    let mut members: HashMap<String, Vec<String>> = HashMap::new();
    for definition in &document.definitions {
        match definition {
            Definition::TypeDefinition(TypeDefinition::Object(object)) => {
                for interface in &object.implements_interfaces {
                    members
                        .entry(interface.clone())
                        .or_default()
                        .push(object.name.clone());
                }
            }
            Definition::TypeDefinition(TypeDefinition::Union(union)) => {
                members
                    .entry(union.name.clone())
                    .or_default()
                    .extend(union.types.iter().cloned());
            }
            _ => {}
        }
    }
    for definition in &document.definitions {
        if let Definition::TypeDefinition(definition) = definition {
            let (name, kind) = match definition {
                TypeDefinition::Scalar(t) => (&t.name, Kind::Scalar),
                TypeDefinition::Enum(t) => (&t.name, Kind::Enum),
                TypeDefinition::Object(t) => (&t.name, Kind::Object),
                TypeDefinition::Interface(t) => (&t.name, abstract_kind(&mut members, &t.name)),
                TypeDefinition::Union(t) => (&t.name, abstract_kind(&mut members, &t.name)),
                TypeDefinition::InputObject(t) => (&t.name, Kind::Scalar),
            };
            kinds.insert(name.clone(), kind);
        }
    }
    kinds
}

fn abstract_kind(members: &mut HashMap<String, Vec<String>>, name: &str) -> Kind {
    let list = members.remove(name).unwrap_or_default();
    Kind::Abstract(Arc::new(Possible {
        fallback: list.first().cloned(),
        types: list.into_iter().collect(),
    }))
}

/// Whether `typename` (a subgraph's `__typename`) names a type clients cannot see: one
/// that is not in the API schema (`@inaccessible`). Such a value is `null` to them.
pub(crate) fn is_hidden_type(registry: &Registry, typename: &str) -> bool {
    !registry.types.contains_key(typename)
}

/// Every interface's field types, by interface and field name.
fn interface_fields(
    document: &Document<'static, String>,
) -> HashMap<String, HashMap<String, AstType<'static, String>>> {
    document
        .definitions
        .iter()
        .filter_map(|d| match d {
            Definition::TypeDefinition(TypeDefinition::Interface(i)) => Some((
                i.name.clone(),
                i.fields
                    .iter()
                    .map(|f| (f.name.clone(), f.field_type.clone()))
                    .collect(),
            )),
            _ => None,
        })
        .collect()
}

fn named_type<'t>(ty: &'t AstType<'static, String>) -> &'t str {
    match ty {
        AstType::NamedType(name) => name,
        AstType::ListType(inner) | AstType::NonNullType(inner) => named_type(inner),
    }
}

fn with_named(ty: &AstType<'static, String>, name: &str) -> AstType<'static, String> {
    match ty {
        AstType::NamedType(_) => AstType::NamedType(name.to_owned()),
        AstType::ListType(inner) => AstType::ListType(Box::new(with_named(inner, name))),
        AstType::NonNullType(inner) => AstType::NonNullType(Box::new(with_named(inner, name))),
    }
}

/// GraphQL lets a field narrow the type of the interface field it implements (`Book.similar:
/// [Book]` for `Product.similar: [Product]`); async-graphql's schema check wants the same
/// named type. Such a field is declared with the interface's named type (and its own list and
/// non-null wrappers); values still resolve to their concrete types by `__typename`, and
/// the client's selections below it are wrapped in a fragment on the real type before
/// validation (`fragments::rewrite_for_validation`), so fields only it has stay valid.
/// Such fields of `owner` are recorded in `narrowed`.
fn covariant_type(
    owner: &str,
    field: &FieldDefinition<'static, String>,
    implements: &[String],
    interface_fields: &HashMap<String, HashMap<String, AstType<'static, String>>>,
    narrowed: &mut Narrowed,
) -> AstType<'static, String> {
    let ty = &field.field_type;
    for interface in implements {
        if let Some(interface_type) = interface_fields
            .get(interface)
            .and_then(|f| f.get(&field.name))
            && named_type(interface_type) != named_type(ty)
        {
            narrowed
                .entry(owner.to_owned())
                .or_default()
                .insert(field.name.clone(), named_type(ty).to_owned());
            return with_named(ty, named_type(interface_type));
        }
    }
    ty.clone()
}

fn root_names(document: &Document<'static, String>) -> (String, Option<String>, Option<String>) {
    let defined = |name: &str| {
        document.definitions.iter().any(|d| {
            matches!(d, Definition::TypeDefinition(TypeDefinition::Object(o)) if o.name == name)
        })
    };
    let schema = document.definitions.iter().find_map(|d| match d {
        Definition::SchemaDefinition(s) => Some(s),
        _ => None,
    });
    match schema {
        Some(s) => (
            s.query.clone().unwrap_or_else(|| "Query".into()),
            s.mutation.clone(),
            s.subscription.clone(),
        ),
        None => (
            "Query".into(),
            defined("Mutation").then(|| "Mutation".into()),
            defined("Subscription").then(|| "Subscription".into()),
        ),
    }
}

fn shape_of(ty: &AstType<'static, String>, kinds: &HashMap<String, Kind>) -> Shape {
    match ty {
        AstType::NonNullType(inner) => shape_of(inner, kinds),
        AstType::ListType(inner) => Shape::List(Box::new(shape_of(inner, kinds))),
        AstType::NamedType(name) => match kinds.get(name) {
            Some(Kind::Enum) => Shape::Enum,
            Some(Kind::Object) => Shape::Object,
            Some(Kind::Abstract(possible)) => Shape::Abstract(possible.clone()),
            Some(Kind::Scalar) | None => Shape::Scalar,
        },
    }
}

/// The shape of a narrowed field (declared as `declared`, an interface): its values are
/// always of its real object type, and resolve as that type even when the subgraph's answer
/// has no `__typename` (the planner asks for none where the supergraph type is concrete).
fn narrowed_shape(
    ty: &AstType<'static, String>,
    declared: &str,
    kinds: &HashMap<String, Kind>,
) -> Shape {
    match ty {
        AstType::NonNullType(inner) => narrowed_shape(inner, declared, kinds),
        AstType::ListType(inner) => Shape::List(Box::new(narrowed_shape(inner, declared, kinds))),
        AstType::NamedType(real) => match (kinds.get(real), kinds.get(declared)) {
            (Some(Kind::Object), Some(Kind::Abstract(_))) => Shape::Abstract(Arc::new(Possible {
                types: HashSet::from([real.clone()]),
                fallback: Some(real.clone()),
            })),
            _ => shape_of(ty, kinds),
        },
    }
}

fn type_ref(ty: &AstType<'static, String>) -> TypeRef {
    match ty {
        AstType::NamedType(name) => TypeRef::Named(name.clone().into()),
        AstType::ListType(inner) => TypeRef::List(Box::new(type_ref(inner))),
        AstType::NonNullType(inner) => TypeRef::NonNull(Box::new(type_ref(inner))),
    }
}

fn input_value(value: &graphql_tools::parser::schema::InputValue<'static, String>) -> InputValue {
    let mut out = InputValue::new(&value.name, type_ref(&value.value_type));
    if let Some(description) = &value.description {
        out = out.description(description);
    }
    if let Some(default) = &value.default_value {
        out = out.default_value(const_value(default));
    }
    if let Some(reason) = deprecation(&value.directives) {
        out = out.deprecation(Some(&reason));
    }
    out
}

fn const_value(value: &AstValue<'static, String>) -> GqlValue {
    match value {
        AstValue::Null | AstValue::Variable(_) => GqlValue::Null,
        AstValue::Int(n) => n.as_i64().map_or(GqlValue::Null, GqlValue::from),
        AstValue::Float(f) => GqlValue::from(*f),
        AstValue::String(s) => GqlValue::String(s.clone()),
        AstValue::Boolean(b) => GqlValue::Boolean(*b),
        AstValue::Enum(e) => GqlValue::Enum(Name::new(e)),
        AstValue::List(items) => GqlValue::List(items.iter().map(const_value).collect()),
        AstValue::Object(fields) => GqlValue::Object(
            fields
                .iter()
                .map(|(k, v)| (Name::new(k), const_value(v)))
                .collect(),
        ),
    }
}

fn string_argument(
    directives: &[Directive<'static, String>],
    directive: &str,
    argument: &str,
) -> Option<String> {
    directives
        .iter()
        .filter(|d| d.name == directive)
        .flat_map(|d| d.arguments.iter())
        .find_map(|(name, value)| match value {
            AstValue::String(s) if name == argument => Some(s.clone()),
            _ => None,
        })
}

fn deprecation(directives: &[Directive<'static, String>]) -> Option<String> {
    directives.iter().any(|d| d.name == "deprecated").then(|| {
        string_argument(directives, "deprecated", "reason")
            .unwrap_or_else(|| "No longer supported".to_owned())
    })
}

fn response_key<'a>(ctx: &ResolverContext<'a>) -> &'a str {
    ctx.ctx.item.node.response_key().node.as_str()
}

fn resolve_root(ctx: ResolverContext<'_>, shape: Arc<Shape>) -> FieldFuture<'_> {
    FieldFuture::new(async move {
        let run = ctx.ctx.data::<Arc<PlanRun>>()?;
        let outcome = run.outcome().await;
        let key = response_key(&ctx);
        let value = outcome.data.as_object().and_then(|data| data.get(key));
        to_field_value(&ctx.ctx.schema_env.registry, value, &shape)
    })
}

fn resolve_field<'a>(ctx: ResolverContext<'a>, shape: &Shape) -> FieldFuture<'a> {
    let key = response_key(&ctx);
    let value = ctx
        .parent_value
        .downcast_ref::<Json>()
        .and_then(|parent| parent.get(key));
    match to_field_value(&ctx.ctx.schema_env.registry, value, shape) {
        Ok(value) => FieldFuture::Value(value),
        Err(err) => FieldFuture::new(async move { Err::<Option<FieldValue<'_>>, _>(err) }),
    }
}

fn to_field_value<'a>(
    registry: &Registry,
    value: Option<&'a Json>,
    shape: &Shape,
) -> async_graphql::Result<Option<FieldValue<'a>>> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    Ok(Some(match shape {
        Shape::Scalar => {
            FieldValue::value(GqlValue::from_json(value.clone()).unwrap_or(GqlValue::Null))
        }
        Shape::Enum => match value {
            Json::String(name) => FieldValue::value(GqlValue::Enum(Name::new(name))),
            other => {
                return Err(async_graphql::Error::new(format!(
                    "a subgraph answered {other} where an enum value belongs"
                )));
            }
        },
        Shape::Object => FieldValue::borrowed_any(value),
        Shape::Abstract(possible) => {
            let typename = value.get("__typename").and_then(Json::as_str);
            if typename.is_some_and(|t| is_hidden_type(registry, t)) {
                return Ok(None);
            }
            let named = typename.filter(|t| possible.types.contains(*t));
            let Some(type_name) = named.or(possible.fallback.as_deref()) else {
                return Err(async_graphql::Error::new(
                    "a subgraph answered an object of an abstract type that has no object types",
                ));
            };
            FieldValue::borrowed_any(value).with_type(type_name.to_owned())
        }
        Shape::List(inner) => {
            let Json::Array(items) = value else {
                return Err(async_graphql::Error::new(format!(
                    "a subgraph answered {} where a list belongs",
                    kind_of(value)
                )));
            };
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(to_field_value(registry, Some(item), inner)?.unwrap_or(FieldValue::NULL));
            }
            FieldValue::list(out)
        }
    }))
}

fn kind_of(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

//! The API schema (what clients see) as an async-graphql schema, for introspection.
//!
//! The planner's consumer schema (the supergraph without `@inaccessible` members and federation
//! internals) is turned into an `async_graphql::dynamic::Schema`, which answers the `__schema`
//! and `__type` root fields of an operation ([`introspect`]). Everything else an operation asks
//! is validated by [`crate::operation`], fetched by [`crate::execute`] and projected by
//! [`crate::project`]; this schema's own field resolvers never run.

use std::collections::HashMap;

use async_graphql::ValidationMode;
use async_graphql::dynamic::{
    Enum, EnumItem, Field, FieldFuture, InputObject, InputValue, Interface, InterfaceField, Object,
    Scalar, Schema, TypeRef, Union,
};
use async_graphql::{Name, Value as GqlValue};
use graphql_tools::parser::schema::{
    Definition, Directive, Document, Field as FieldDefinition, Type as AstType, TypeDefinition,
    Value as AstValue,
};
use serde_json::{Map, Value as Json};

use crate::types::{BUILT_IN_SCALARS, Types, named_type};

/// Answers an operation's introspection fields, `document` (see
/// [`crate::operation::Operation::introspection`]), by response key, with the errors of
/// answering them.
pub async fn introspect(
    schema: &Schema,
    document: &str,
    variables: &Map<String, Json>,
) -> (Map<String, Json>, Vec<Json>) {
    let request = async_graphql::Request::new(document).variables(
        async_graphql::Variables::from_json(Json::Object(variables.clone())),
    );
    let response = schema.execute(request).await;
    let errors = response
        .errors
        .iter()
        .filter_map(|e| serde_json::to_value(e).ok())
        .collect();
    let answers = match response.data.into_json() {
        Ok(Json::Object(answers)) => answers,
        _ => Map::new(),
    };
    (answers, errors)
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

/// Builds the introspection schema from the consumer schema and its type index.
pub fn build(document: &Document<'static, String>, types: &Types) -> Result<Schema, String> {
    let interface_fields = interface_fields(document);
    let (query, mutation, subscription) = (&types.query, &types.mutation, &types.subscription);
    // Operations were validated already (`crate::operation`); what reaches this schema is
    // only their introspection fields.
    let mut builder =
        Schema::build(query, mutation.as_deref(), None).validation_mode(ValidationMode::Fast);
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
                    let field_type =
                        covariant_type(field, &object.implements_interfaces, &interface_fields);
                    let out_field = Field::new(&field.name, type_ref(&field_type), |_| {
                        FieldFuture::Value(None)
                    });
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
                    let field_type =
                        covariant_type(field, &interface.implements_interfaces, &interface_fields);
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
    builder.finish().map_err(|e| e.to_string())
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
/// non-null wrappers). Only introspection sees this; validation and projection use the
/// schema's own types.
fn covariant_type(
    field: &FieldDefinition<'static, String>,
    implements: &[String],
    interface_fields: &HashMap<String, HashMap<String, AstType<'static, String>>>,
) -> AstType<'static, String> {
    let ty = &field.field_type;
    for interface in implements {
        if let Some(interface_type) = interface_fields
            .get(interface)
            .and_then(|f| f.get(&field.name))
            && named_type(interface_type) != named_type(ty)
        {
            return with_named(ty, named_type(interface_type));
        }
    }
    ty.clone()
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

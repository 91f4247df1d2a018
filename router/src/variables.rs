//! Variable coercion (spec §6.1.2 CoerceVariableValues, with input coercion §3.5, §3.9,
//! §3.10, §3.12): each request's variables checked against the operation's variable types,
//! defaults filled in, and every value that does not fit answered with a `BAD_USER_INPUT`
//! request error naming the variable and where in it the problem is.

use keygraph_kernel::ErrorCode;
use serde_json::{Map, Value as Json, json};

use crate::operation::{Operation, QueryValue, request_error};
use crate::types::{AstType, Kind, Types};

impl Operation {
    /// Coerces the request's variables to the operation's variable types (spec
    /// CoerceVariableValues): defaults fill in what is missing, and every value that does not
    /// fit its type is an error naming the variable and what was wrong.
    pub fn coerce_variables(
        &self,
        types: &Types,
        mut provided: Map<String, Json>,
    ) -> Result<Map<String, Json>, Vec<Json>> {
        let mut out = Map::new();
        let mut errors = Vec::new();
        for definition in self.variable_definitions() {
            let name = &definition.name;
            let ty = &definition.var_type;
            let fail = |message: String| {
                request_error(
                    format!("Variable \"${name}\" {message}"),
                    ErrorCode::BadUserInput,
                )
            };
            match provided.remove(name) {
                None => match &definition.default_value {
                    Some(default) => {
                        match coerce_input(types, ty, query_value_json(default), &mut vec![]) {
                            Ok(value) => {
                                out.insert(name.clone(), value);
                            }
                            Err(problem) => {
                                errors.push(fail(format!("has an invalid default: {problem}")));
                            }
                        }
                    }
                    None if matches!(ty, AstType::NonNullType(_)) => {
                        errors.push(fail(format!("of required type \"{ty}\" was not provided.")));
                    }
                    None => {}
                },
                Some(Json::Null) if matches!(ty, AstType::NonNullType(_)) => {
                    errors.push(fail(format!("of non-null type \"{ty}\" must not be null.")));
                }
                Some(value) => match coerce_input(types, ty, value, &mut vec![]) {
                    Ok(value) => {
                        out.insert(name.clone(), value);
                    }
                    Err(problem) => errors.push(fail(format!("got an invalid value: {problem}"))),
                },
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }
}

/// Where in a variable's value a problem is (`.input.tags[2]`).
fn at(path: &[String]) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" at `{}`", path.concat())
    }
}

/// Input coercion (spec §3.5, §3.9, §3.10, §3.12) of a JSON value to `ty`.
fn coerce_input(
    types: &Types,
    ty: &AstType,
    value: Json,
    path: &mut Vec<String>,
) -> Result<Json, String> {
    match ty {
        AstType::NonNullType(inner) => {
            if value.is_null() {
                return Err(format!("null{} where \"{ty}\" must not be null", at(path)));
            }
            coerce_input(types, inner, value, path)
        }
        _ if value.is_null() => Ok(Json::Null),
        AstType::ListType(inner) => match value {
            Json::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    path.push(format!("[{i}]"));
                    out.push(coerce_input(types, inner, item, path)?);
                    path.pop();
                }
                Ok(Json::Array(out))
            }
            // A single value where a list belongs is a list of one.
            other => Ok(Json::Array(vec![coerce_input(types, inner, other, path)?])),
        },
        AstType::NamedType(name) => coerce_named(types, name, value, path),
    }
}

fn coerce_named(
    types: &Types,
    name: &str,
    value: Json,
    path: &mut Vec<String>,
) -> Result<Json, String> {
    let wrong = |value: &Json, what: &str| {
        Err(format!(
            "{}{} where {what} belongs",
            json_kind(value),
            at(path)
        ))
    };
    match name {
        "Int" => match value.as_i64() {
            Some(n) if i32::try_from(n).is_ok() => Ok(value),
            Some(_) => Err(format!(
                "{value}{} is outside the 32-bit range of Int",
                at(path)
            )),
            None => wrong(&value, "an Int"),
        },
        "Float" => match value {
            Json::Number(_) => Ok(value),
            _ => wrong(&value, "a Float"),
        },
        "String" => match value {
            Json::String(_) => Ok(value),
            _ => wrong(&value, "a String"),
        },
        "Boolean" => match value {
            Json::Bool(_) => Ok(value),
            _ => wrong(&value, "a Boolean"),
        },
        "ID" => match value {
            Json::String(_) => Ok(value),
            Json::Number(n) if n.is_i64() || n.is_u64() => Ok(Json::String(n.to_string())),
            _ => wrong(&value, "an ID"),
        },
        _ => match types.get(name).map(|t| &t.kind) {
            Some(Kind::Enum(values)) => match &value {
                Json::String(v) if values.contains(v) => Ok(value),
                Json::String(v) => Err(format!(
                    "\"{v}\"{} is not a value of the enum {name}",
                    at(path)
                )),
                _ => wrong(&value, &format!("a value of the enum {name}")),
            },
            Some(Kind::InputObject(fields)) => {
                let Json::Object(mut given) = value else {
                    return wrong(&value, &format!("an object of the input type {name}"));
                };
                let mut out = Map::new();
                for field in fields {
                    path.push(format!(".{}", field.name));
                    match given.remove(&field.name) {
                        Some(v) => {
                            out.insert(
                                field.name.clone(),
                                coerce_input(types, &field.ty, v, path)?,
                            );
                        }
                        None => match &field.default {
                            Some(default) => {
                                let default = query_value_json(default);
                                out.insert(
                                    field.name.clone(),
                                    coerce_input(types, &field.ty, default, path)?,
                                );
                            }
                            None if matches!(field.ty, AstType::NonNullType(_)) => {
                                return Err(format!(
                                    "the required field{} of type \"{}\" is missing",
                                    at(path),
                                    field.ty
                                ));
                            }
                            None => {}
                        },
                    }
                    path.pop();
                }
                if let Some(unknown) = given.keys().next() {
                    return Err(format!(
                        "the input type {name} has no field `{unknown}`{}",
                        at(path)
                    ));
                }
                Ok(Json::Object(out))
            }
            // Custom scalars: the subgraph that owns them judges their values.
            Some(Kind::Scalar) => Ok(value),
            _ => Err(format!("the type {name} is not an input type")),
        },
    }
}

fn json_kind(value: &Json) -> String {
    match value {
        Json::Null => "null".into(),
        Json::Bool(b) => format!("the boolean {b}"),
        Json::Number(n) => format!("the number {n}"),
        Json::String(s) => format!("the string \"{s}\""),
        Json::Array(_) => "a list".into(),
        Json::Object(_) => "an object".into(),
    }
}

/// A default value (a constant: validation refused variables in it).
pub fn query_value_json(value: &QueryValue) -> Json {
    match value {
        QueryValue::Variable(_) | QueryValue::Null => Json::Null,
        QueryValue::Int(n) => n.as_i64().map_or(Json::Null, Json::from),
        QueryValue::Float(f) => json!(f),
        QueryValue::String(s) | QueryValue::Enum(s) => Json::String(s.clone()),
        QueryValue::Boolean(b) => Json::Bool(*b),
        QueryValue::List(items) => Json::Array(items.iter().map(query_value_json).collect()),
        QueryValue::Object(fields) => Json::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), query_value_json(v)))
                .collect(),
        ),
    }
}

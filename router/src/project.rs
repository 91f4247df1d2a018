//! Projection of the merged subgraph data onto the client's operation (spec §6.3, §6.4): the
//! client's response keys in selection order, fragments by type condition, `__typename`,
//! `@skip` / `@include`, and null propagation with one error per failed position.
//!
//! The merged data is keyed by the client's response keys (the planner keeps its aliases), and
//! an abstract value carries the `__typename` the planner asked for.

use graphql_tools::parser::query::{Field, Selection, SelectionSet, TypeCondition};
use serde_json::{Map, Value as Json, json};

use crate::operation::{Operation, included};
use crate::types::{AstType, Kind, Types};

/// The client's `data` and the errors of positions that became null here.
#[derive(Debug)]
pub struct Projected {
    pub data: Json,
    pub errors: Vec<Json>,
}

type FieldNode = Field<'static, String>;

/// The code of the error a fetch that failed as a whole is reported with ([`crate::execute`]).
pub const FETCH_FAILED: &str = "SUBGRAPH_UNAVAILABLE";
/// Fields by response key, in the order the selection names them.
type Grouped<'a> = Vec<(&'a str, Vec<&'a FieldNode>)>;

#[derive(Debug, Clone, Copy)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

impl Segment<'_> {
    fn to_json(self) -> Json {
        match self {
            Segment::Key(key) => Json::String(key.to_owned()),
            Segment::Index(i) => json!(i),
        }
    }

    fn is(self, json: &Json) -> bool {
        match (self, json) {
            (Segment::Key(key), Json::String(s)) => key == s,
            (Segment::Index(i), Json::Number(n)) => n.as_u64() == u64::try_from(i).ok(),
            _ => false,
        }
    }
}

/// This position is null, and an error already says why.
struct Nulled;

/// What a request's projection reads.
pub struct Input<'a> {
    pub types: &'a Types,
    pub operation: &'a Operation,
    pub variables: &'a Map<String, Json>,
    /// The plan run's merged data.
    pub data: &'a Json,
    /// Errors already reported (by subgraphs): a null they explain is not reported again.
    pub reported: &'a [Json],
    /// Answers to the operation's `__schema` / `__type` root fields, by response key.
    pub introspection: Option<&'a Map<String, Json>>,
}

/// Projects the merged data onto the operation.
pub fn project(input: &Input<'_>) -> Projected {
    let mut failed_fetch = false;
    let mut reported = Vec::new();
    for error in input.reported {
        match error.get("path").and_then(Json::as_array) {
            Some(path) if !path.is_empty() => reported.push(path),
            // A fetch that failed as a whole (unavailable, timed out, no GraphQL answer) names
            // no position: the nulls it leaves are all its doing.
            _ if error.pointer("/extensions/code") == Some(&json!(FETCH_FAILED)) => {
                failed_fetch = true;
            }
            _ => {}
        }
    }
    let mut projector = Projector {
        input,
        reported,
        failed_fetch,
        path: Vec::new(),
        errors: Vec::new(),
    };
    let root = input.operation.root_type(input.types);
    let mut fields = Grouped::new();
    projector.collect(
        root,
        input.operation.selection_set(),
        &mut fields,
        &mut Vec::new(),
    );
    let empty = Map::new();
    let data = input.data.as_object().unwrap_or(&empty);
    let data = match projector.object(root, &fields, data) {
        Ok(object) => Json::Object(object),
        Err(Nulled) => Json::Null,
    };
    Projected {
        data,
        errors: projector.errors,
    }
}

struct Projector<'a> {
    input: &'a Input<'a>,
    reported: Vec<&'a Vec<Json>>,
    /// A subgraph error without a path (a whole fetch failed) explains every null.
    failed_fetch: bool,
    path: Vec<Segment<'a>>,
    errors: Vec<Json>,
}

impl<'a> Projector<'a> {
    /// CollectFields (spec §6.3.2) of `selections` for an object of type `type_name`.
    fn collect(
        &self,
        type_name: &str,
        selections: &'a SelectionSet<'static, String>,
        out: &mut Grouped<'a>,
        visited: &mut Vec<&'a str>,
    ) {
        let types = self.input.types;
        let variables = self.input.variables;
        for item in &selections.items {
            match item {
                Selection::Field(field) => {
                    if !included(&field.directives, variables) {
                        continue;
                    }
                    let key = field.alias.as_deref().unwrap_or(&field.name);
                    match out.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, fields)) => fields.push(field),
                        None => out.push((key, vec![field])),
                    }
                }
                Selection::InlineFragment(fragment) => {
                    let applies = match &fragment.type_condition {
                        Some(TypeCondition::On(condition)) => {
                            types.type_matches(type_name, condition)
                        }
                        None => true,
                    };
                    if applies && included(&fragment.directives, variables) {
                        self.collect(type_name, &fragment.selection_set, out, visited);
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.fragment_name.as_str();
                    if visited.contains(&name) || !included(&spread.directives, variables) {
                        continue;
                    }
                    visited.push(name);
                    let Some(fragment) = self.input.operation.fragment(name) else {
                        continue;
                    };
                    let TypeCondition::On(condition) = &fragment.type_condition;
                    if types.type_matches(type_name, condition) {
                        self.collect(type_name, &fragment.selection_set, out, visited);
                    }
                }
            }
        }
    }

    /// ExecuteSelectionSet (spec §6.3) of an object of type `type_name` over its data.
    fn object(
        &mut self,
        type_name: &'a str,
        fields: &Grouped<'a>,
        data: &'a Map<String, Json>,
    ) -> Result<Map<String, Json>, Nulled> {
        let mut out = Map::with_capacity(fields.len());
        for (key, nodes) in fields {
            let name = nodes[0].name.as_str();
            if name == "__typename" {
                out.insert((*key).to_owned(), Json::String(type_name.to_owned()));
                continue;
            }
            if self.path.is_empty() && (name == "__schema" || name == "__type") {
                let answer = self
                    .input
                    .introspection
                    .and_then(|answers| answers.get(*key));
                out.insert((*key).to_owned(), answer.cloned().unwrap_or(Json::Null));
                continue;
            }
            let Some(ty) = self.input.types.field_type(type_name, name) else {
                // Validation checked the field against the declared type; an object whose
                // type lacks it has nothing to give.
                out.insert((*key).to_owned(), Json::Null);
                continue;
            };
            let value = data.get(*key).unwrap_or(&Json::Null);
            self.path.push(Segment::Key(key));
            let completed = self.complete((type_name, name), ty, nodes, value);
            self.path.pop();
            match completed {
                Ok(value) => {
                    out.insert((*key).to_owned(), value);
                }
                Err(Nulled) if matches!(ty, AstType::NonNullType(_)) => return Err(Nulled),
                Err(Nulled) => {
                    out.insert((*key).to_owned(), Json::Null);
                }
            }
        }
        Ok(out)
    }

    /// CompleteValue (spec §6.4.3). `Err` means null with the error already recorded; a
    /// nullable position turns it into null, a non-null one passes it up.
    fn complete(
        &mut self,
        coordinate: (&str, &str),
        ty: &'a AstType,
        nodes: &[&'a FieldNode],
        value: &'a Json,
    ) -> Result<Json, Nulled> {
        match ty {
            AstType::NonNullType(inner) => match self.complete(coordinate, inner, nodes, value)? {
                Json::Null => {
                    let (parent, field) = coordinate;
                    Err(self.fail(format!(
                        "Cannot return null for non-nullable field {parent}.{field}."
                    )))
                }
                value => Ok(value),
            },
            _ if value.is_null() => Ok(Json::Null),
            AstType::ListType(inner) => {
                let Json::Array(items) = value else {
                    return Err(self.fail(format!(
                        "A subgraph answered {} where the list `{ty}` belongs.",
                        kind_of(value)
                    )));
                };
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    self.path.push(Segment::Index(i));
                    let completed = self.complete(coordinate, inner, nodes, item);
                    self.path.pop();
                    match completed {
                        Ok(item) => out.push(item),
                        Err(Nulled) if matches!(**inner, AstType::NonNullType(_)) => {
                            return Err(Nulled);
                        }
                        Err(Nulled) => out.push(Json::Null),
                    }
                }
                Ok(Json::Array(out))
            }
            AstType::NamedType(name) => self.named(name, nodes, value),
        }
    }

    fn named(
        &mut self,
        name: &'a str,
        nodes: &[&'a FieldNode],
        value: &'a Json,
    ) -> Result<Json, Nulled> {
        let types = self.input.types;
        let kind = types.get(name).map(|t| &t.kind);
        let object = match (kind, value) {
            (Some(Kind::Enum(values)), Json::String(v)) if values.contains(v) => {
                return Ok(value.clone());
            }
            (Some(Kind::Enum(_)), _) => {
                return Err(
                    self.bad_value(format!("Enum \"{name}\" cannot represent value: {value}"))
                );
            }
            (Some(Kind::Object | Kind::Interface | Kind::Union), Json::Object(object)) => object,
            (Some(Kind::Object | Kind::Interface | Kind::Union), _) => {
                return Err(self.bad_value(format!(
                    "A subgraph answered {} where an object of type {name} belongs.",
                    kind_of(value)
                )));
            }
            (Some(Kind::Scalar), _) => {
                return built_in_scalar(name, value).map_err(|message| self.bad_value(message));
            }
            (Some(Kind::InputObject(_)) | None, _) => return Ok(value.clone()),
        };
        let typename = object.get("__typename").and_then(Json::as_str);
        let concrete = match (kind, typename) {
            (Some(Kind::Object), _) => name,
            // A type clients cannot see (`@inaccessible`) is null to them.
            (_, Some(typename)) if !types.contains(typename) => return Ok(Json::Null),
            (_, Some(typename)) if types.is_possible(name, typename) => typename,
            // An interface with no object type to go by (an `@interfaceObject` answer naming
            // the interface, or no `__typename`): its own fields and fragments on it apply.
            (Some(Kind::Interface), None) => name,
            (Some(Kind::Interface), Some(typename)) if typename == name => name,
            (_, typename) => {
                return Err(self.bad_value(format!(
                    "A subgraph answered an object of type {} where {name} belongs.",
                    typename.map_or("(no __typename)".to_owned(), |t| format!("\"{t}\""))
                )));
            }
        };
        let mut fields = Grouped::new();
        let mut visited = Vec::new();
        for node in nodes {
            self.collect(concrete, &node.selection_set, &mut fields, &mut visited);
        }
        self.object(concrete, &fields, object).map(Json::Object)
    }

    /// Records an error at the current path unless a reported error already explains this
    /// position (one at it, above it or below it).
    fn fail(&mut self, message: String) -> Nulled {
        self.record(message, self.failed_fetch)
    }

    /// Records an error about a value a subgraph answered (wrong type, unknown enum value):
    /// that is news even where a fetch failed elsewhere.
    fn bad_value(&mut self, message: String) -> Nulled {
        self.record(message, false)
    }

    fn record(&mut self, message: String, explained_anyway: bool) -> Nulled {
        let path = &self.path;
        let explained = explained_anyway
            || self.reported.iter().any(|reported| {
                reported
                    .iter()
                    .zip(path.iter())
                    .all(|(json, segment)| segment.is(json))
            });
        if !explained {
            self.errors.push(json!({
                "message": message,
                "path": path.iter().map(|s| s.to_json()).collect::<Vec<_>>(),
            }));
        }
        Nulled
    }
}

/// CoerceResult of a built-in scalar, as graphql-js serializes them; other scalars are the
/// owning subgraph's to judge.
fn built_in_scalar(name: &str, value: &Json) -> Result<Json, String> {
    let fits = match (name, value) {
        ("Int", Json::Number(n)) => match n.as_i64() {
            Some(i) => i32::try_from(i).is_ok().then(|| value.clone()),
            None => n
                .as_f64()
                .filter(|f| {
                    f.fract() == 0.0 && *f >= f64::from(i32::MIN) && *f <= f64::from(i32::MAX)
                })
                .map(|f| json!(f as i64)),
        },
        ("Float", Json::Number(_)) | ("String", Json::String(_)) | ("Boolean", Json::Bool(_)) => {
            Some(value.clone())
        }
        ("String", Json::Bool(_) | Json::Number(_)) => Some(Json::String(value.to_string())),
        ("ID", Json::String(_)) => Some(value.clone()),
        ("ID", Json::Number(n)) if n.is_i64() || n.is_u64() => Some(Json::String(n.to_string())),
        ("Int" | "Float" | "String" | "Boolean" | "ID", _) => None,
        _ => Some(value.clone()),
    };
    fits.ok_or_else(|| format!("{name} cannot represent value: {value}"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::tests::prepare;

    fn run(query: &str, data: Json, reported: Json) -> Projected {
        let (types, operation) = prepare(query);
        let operation = operation.expect("the operation is valid");
        let reported = reported.as_array().cloned().unwrap_or_default();
        project(&Input {
            types: &types,
            operation: &operation,
            variables: &Map::new(),
            data: &data,
            reported: &reported,
            introspection: None,
        })
    }

    #[test]
    fn a_null_moves_up_to_the_nearest_nullable_position_with_one_error() {
        let data = json!({
            "me": { "id": "1", "name": null },
            "users": [{ "id": "1", "name": "Ada" }, { "id": "2", "name": null }],
        });
        let projected = run("{ me { id name } users { name } }", data.clone(), json!([]));
        assert_eq!(projected.data, json!({ "me": null, "users": null }));
        let paths: Vec<&Json> = projected.errors.iter().map(|e| &e["path"]).collect();
        assert_eq!(
            paths,
            [&json!(["me", "name"]), &json!(["users", 1, "name"])]
        );
        assert_eq!(
            projected.errors[0]["message"],
            "Cannot return null for non-nullable field User.name."
        );

        // A null a subgraph already explained is not reported again.
        let reported = json!([{ "message": "lookup failed", "path": ["users", 1] }]);
        let projected = run("{ me { id name } users { name } }", data, reported);
        assert_eq!(projected.errors.len(), 1, "{:?}", projected.errors);

        // Past the last nullable position: `data` itself is null.
        let projected = run(
            "{ strict { name } }",
            json!({ "strict": { "name": null } }),
            json!([]),
        );
        assert_eq!(projected.data, Json::Null);
    }

    #[test]
    fn abstract_values_resolve_by_typename() {
        let query = "{ node { id ... on User { name } } hidden { id } }";
        let data = json!({
            "node": { "__typename": "User", "id": "1", "name": "Ada" },
            "hidden": { "__typename": "Secret", "id": "2" },
        });
        let projected = run(query, data, json!([]));
        // A type clients cannot see is null to them, without an error.
        assert_eq!(
            projected.data,
            json!({ "node": { "id": "1", "name": "Ada" }, "hidden": null })
        );
        assert!(projected.errors.is_empty());

        // An `@interfaceObject` answer names the interface: its own fields still apply.
        let data = json!({ "node": { "__typename": "Node", "id": "n1" }, "hidden": null });
        let projected = run(
            "{ node { __typename id ... on User { name } } }",
            data,
            json!([]),
        );
        assert_eq!(
            projected.data,
            json!({ "node": { "__typename": "Node", "id": "n1" } })
        );
    }

    #[test]
    fn a_union_value_needs_a_typename_of_its_members() {
        for (data, shown) in [
            (json!({}), "(no __typename)"),
            (json!({ "__typename": "Found" }), "\"Found\""),
            (json!({ "__typename": "Color" }), "\"Color\""),
        ] {
            let projected = run(
                "{ found { __typename } }",
                json!({ "found": data }),
                json!([]),
            );
            assert_eq!(projected.data, json!({ "found": null }));
            assert_eq!(
                projected.errors[0]["message"],
                format!("A subgraph answered an object of type {shown} where Found belongs."),
            );
        }
    }

    #[test]
    fn built_in_scalars_are_checked_as_graphql_js_serializes_them() {
        let query = "{ count label me { id } }";
        let data = json!({ "count": 2.0, "label": 7, "me": { "id": 12 } });
        let projected = run(query, data, json!([]));
        assert_eq!(
            projected.data,
            json!({ "count": 2, "label": "7", "me": { "id": "12" } })
        );
        assert!(projected.errors.is_empty());

        let data = json!({ "count": 3_000_000_000_i64, "label": { "a": 1 }, "me": { "id": true } });
        let projected = run(query, data, json!([]));
        assert_eq!(
            projected.data,
            json!({ "count": null, "label": null, "me": null })
        );
        let messages: Vec<&str> = projected
            .errors
            .iter()
            .filter_map(|e| e["message"].as_str())
            .collect();
        assert_eq!(
            messages,
            [
                "Int cannot represent value: 3000000000",
                "String cannot represent value: {\"a\":1}",
                "ID cannot represent value: true",
            ]
        );
    }

    #[test]
    fn a_fetch_that_failed_as_a_whole_explains_its_nulls() {
        let reported = json!([{
            "message": "subgraph `accounts` is unavailable",
            "extensions": { "code": FETCH_FAILED },
        }]);
        let projected = run("{ users { name } }", json!({ "users": [{}, {}] }), reported);
        assert_eq!(projected.data, json!({ "users": null }));
        assert!(projected.errors.is_empty(), "{:?}", projected.errors);
    }

    #[test]
    fn keys_follow_the_selection_and_bad_values_are_errors() {
        let query = "{ color b: me { name } a: me { id ...F } } fragment F on User { name id }";
        let data = json!({
            "a": { "name": "Ada", "id": "1" },
            "b": { "name": "Bob" },
            "color": "BLUE",
        });
        let projected = run(query, data, json!([]));
        assert_eq!(
            serde_json::to_string(&projected.data).unwrap_or_default(),
            r#"{"color":null,"b":{"name":"Bob"},"a":{"id":"1","name":"Ada"}}"#
        );
        assert_eq!(
            projected.errors[0]["message"],
            "Enum \"Color\" cannot represent value: \"BLUE\""
        );
        let projected = run("{ users { id } }", json!({ "users": "x" }), json!([]));
        assert_eq!(projected.data, json!({ "users": null }));
        assert_eq!(projected.errors[0]["path"], json!(["users"]));
    }
}

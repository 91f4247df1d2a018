//! Writing the response: the merged subgraph data projected onto the client's operation (spec
//! §6.3, §6.4) by following its [`ResponsePlan`], straight into the response's bytes: the
//! client's response keys in selection order, `__typename`, values checked against their
//! types, and null propagation with one error per failed position (a null in a non-null
//! position cuts the buffer back to the nearest nullable position and writes `null` there).
//!
//! The merged data is keyed by the client's response keys (the planner keeps its aliases), and
//! an abstract value carries the `__typename` the planner asked for.

use keygraph_kernel::ErrorCode;
use serde_json::{Map, Value as Json, json};

use crate::json::{self, Object, Sources, Value};
use crate::response_plan::{
    FieldKind, Fields, Leaf, ResponsePlan, Selection, SelectionKind, Shape,
};
use crate::types::Types;

/// The start of the response body, `{"data":` and the client's data (an object, or `null`),
/// for the caller to finish (errors, closing brace) in place; and the errors of positions
/// that became null here.
#[derive(Debug)]
pub struct Projected {
    pub body: Vec<u8>,
    pub errors: Vec<Json>,
}

/// What [`Projected::body`] starts with.
pub const BODY_START: &[u8] = b"{\"data\":";

impl Projected {
    /// The data alone.
    pub fn data(&self) -> &[u8] {
        self.body.get(BODY_START.len()..).unwrap_or_default()
    }
}

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
    pub plan: &'a ResponsePlan,
    /// The plan run's merged data, and the bytes its strings live in.
    pub data: &'a Value,
    pub sources: &'a Sources,
    /// Errors already reported (by subgraphs): a null they explain is not reported again.
    pub reported: &'a [Json],
    /// Answers to the operation's `__schema` / `__type` root fields, by response key.
    pub introspection: Option<&'a Map<String, Json>>,
    /// A size to reserve for the output (the subgraph answers' total is a good guess).
    pub size_hint: usize,
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
            _ if error.pointer("/extensions/code").and_then(Json::as_str)
                == Some(ErrorCode::SubgraphUnavailable.as_str()) =>
            {
                failed_fetch = true;
            }
            _ => {}
        }
    }
    let mut writer = Writer {
        input,
        reported,
        failed_fetch,
        path: Vec::new(),
        errors: Vec::new(),
    };
    let empty = Object::new();
    let data = match input.data {
        Value::Object(members) => members,
        _ => &empty,
    };
    let mut out = Vec::with_capacity(input.size_hint + input.size_hint / 8 + 64);
    out.extend_from_slice(BODY_START);
    if writer.object(&input.plan.root, data, &mut out).is_err() {
        out.truncate(BODY_START.len());
        out.extend_from_slice(b"null");
    }
    Projected {
        body: out,
        errors: writer.errors,
    }
}

struct Writer<'a> {
    input: &'a Input<'a>,
    reported: Vec<&'a Vec<Json>>,
    /// A subgraph error without a path (a whole fetch failed) explains every null.
    failed_fetch: bool,
    path: Vec<Segment<'a>>,
    errors: Vec<Json>,
}

static NULL: Value = Value::Null;

impl<'a> Writer<'a> {
    /// ExecuteSelectionSet (spec §6.3) of an object over its data.
    fn object(
        &mut self,
        fields: &'a Fields,
        data: &'a Object,
        out: &mut Vec<u8>,
    ) -> Result<(), Nulled> {
        out.push(b'{');
        // Subgraphs answer in the order asked, which is mostly the plan's: look for each key
        // just after the last one found before searching the whole object.
        let sources = self.input.sources;
        let mut next = 0;
        for (i, field) in fields.fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&field.quoted_key);
            match &field.kind {
                FieldKind::Typename => out.extend_from_slice(&fields.quoted_type_name),
                FieldKind::Introspection => {
                    match self.input.introspection.and_then(|a| a.get(&field.key)) {
                        Some(answer) => json::write_serde(out, answer),
                        None => out.extend_from_slice(b"null"),
                    }
                }
                FieldKind::Missing => out.extend_from_slice(b"null"),
                FieldKind::Data { coordinate, shape } => {
                    let value = match data.get(next) {
                        Some((key, value)) if sources.is(*key, &field.key) => {
                            next += 1;
                            value
                        }
                        _ => match data
                            .iter()
                            .position(|(key, _)| sources.is(*key, &field.key))
                        {
                            Some(found) => {
                                next = found + 1;
                                &data[found].1
                            }
                            None => &NULL,
                        },
                    };
                    self.path.push(Segment::Key(&field.key));
                    let start = out.len();
                    let completed = self.complete(coordinate, shape, value, out);
                    self.path.pop();
                    if completed.is_err() {
                        if matches!(shape, Shape::NonNull(_)) {
                            return Err(Nulled);
                        }
                        out.truncate(start);
                        out.extend_from_slice(b"null");
                    }
                }
            }
        }
        out.push(b'}');
        Ok(())
    }

    /// CompleteValue (spec §6.4.3): writes the value, answering whether it wrote `null`.
    /// `Err` means null with the error already recorded; a nullable position turns it into
    /// null, a non-null one passes it up.
    fn complete(
        &mut self,
        coordinate: &str,
        shape: &'a Shape,
        value: &'a Value,
        out: &mut Vec<u8>,
    ) -> Result<bool, Nulled> {
        match shape {
            Shape::NonNull(inner) => {
                let start = out.len();
                if self.complete(coordinate, inner, value, out)? {
                    out.truncate(start);
                    return Err(self.fail(format!(
                        "Cannot return null for non-nullable field {coordinate}."
                    )));
                }
                Ok(false)
            }
            _ if value.is_null() => {
                out.extend_from_slice(b"null");
                Ok(true)
            }
            Shape::List { item, written } => {
                let Value::Array(items) = value else {
                    return Err(self.fail(format!(
                        "A subgraph answered {} where the list `{written}` belongs.",
                        kind_of(value)
                    )));
                };
                out.push(b'[');
                for (i, element) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.path.push(Segment::Index(i));
                    let start = out.len();
                    let completed = self.complete(coordinate, item, element, out);
                    self.path.pop();
                    if completed.is_err() {
                        if matches!(**item, Shape::NonNull(_)) {
                            return Err(Nulled);
                        }
                        out.truncate(start);
                        out.extend_from_slice(b"null");
                    }
                }
                out.push(b']');
                Ok(false)
            }
            Shape::Leaf(leaf) => self.leaf(leaf, value, out).map(|()| false),
            Shape::Composite(selection) => self.composite(selection, value, out),
        }
    }

    fn composite(
        &mut self,
        selection: &'a Selection,
        value: &'a Value,
        out: &mut Vec<u8>,
    ) -> Result<bool, Nulled> {
        let name = selection.type_name.as_str();
        let Value::Object(object) = value else {
            return Err(self.bad_value(format!(
                "A subgraph answered {} where an object of type {name} belongs.",
                kind_of(value)
            )));
        };
        let fields = match selection.kind {
            SelectionKind::Object => selection.by_type.first().map(|(_, f)| f),
            SelectionKind::Interface | SelectionKind::Union => {
                let sources = self.input.sources;
                let typename =
                    json::get(object, "__typename", sources).and_then(|t| t.as_str(sources));
                let types = self.input.types;
                match typename {
                    // A type clients cannot see (`@inaccessible`) is null to them.
                    Some(typename) if !types.contains(typename) => {
                        out.extend_from_slice(b"null");
                        return Ok(true);
                    }
                    Some(typename) if types.is_possible(name, typename) => {
                        selection.fields_for(typename)
                    }
                    // An interface with no object type to go by (an `@interfaceObject` answer
                    // naming the interface, or no `__typename`): its own fields and fragments
                    // on it apply.
                    None if selection.kind == SelectionKind::Interface => {
                        selection.fields_for(name)
                    }
                    Some(typename)
                        if selection.kind == SelectionKind::Interface && typename == name =>
                    {
                        selection.fields_for(name)
                    }
                    typename => {
                        return Err(self.bad_value(format!(
                            "A subgraph answered an object of type {} where {name} belongs.",
                            typename.map_or("(no __typename)".to_owned(), |t| format!("\"{t}\""))
                        )));
                    }
                }
            }
        };
        match fields {
            Some(fields) => self.object(fields, object, out).map(|()| false),
            None => {
                out.extend_from_slice(b"{}");
                Ok(false)
            }
        }
    }

    /// CoerceResult of a leaf, as graphql-js serializes built-in scalars; other scalars are
    /// the owning subgraph's to judge.
    fn leaf(&mut self, leaf: &Leaf, value: &Value, out: &mut Vec<u8>) -> Result<(), Nulled> {
        let sources = self.input.sources;
        let refuse = |writer: &mut Self, name: &str| {
            Err(writer.bad_value(format!(
                "{name} cannot represent value: {}",
                value.to_serde(writer.input.sources)
            )))
        };
        match (leaf, value) {
            (Leaf::Int, Value::Number(n)) => match n.as_i64() {
                Some(i) if i32::try_from(i).is_ok() => json::write_number(out, n),
                Some(_) => return refuse(self, "Int"),
                None => match n.as_f64() {
                    Some(f)
                        if f.fract() == 0.0
                            && f >= f64::from(i32::MIN)
                            && f <= f64::from(i32::MAX) =>
                    {
                        out.extend_from_slice(itoa::Buffer::new().format(f as i64).as_bytes());
                    }
                    _ => return refuse(self, "Int"),
                },
            },
            (Leaf::Float, Value::Number(n)) => json::write_number(out, n),
            (Leaf::String | Leaf::Id, Value::String(s)) => json::write_string(out, *s, sources),
            (Leaf::String, Value::Bool(b)) => {
                out.extend_from_slice(if *b { b"\"true\"" } else { b"\"false\"" })
            }
            (Leaf::String, Value::Number(n)) => {
                out.push(b'"');
                json::write_number(out, n);
                out.push(b'"');
            }
            (Leaf::Id, Value::Number(n)) if n.is_i64() || n.is_u64() => {
                out.push(b'"');
                json::write_number(out, n);
                out.push(b'"');
            }
            (Leaf::Boolean, Value::Bool(_)) => json::write(out, value, sources),
            (Leaf::Int, _) => return refuse(self, "Int"),
            (Leaf::Float, _) => return refuse(self, "Float"),
            (Leaf::String, _) => return refuse(self, "String"),
            (Leaf::Boolean, _) => return refuse(self, "Boolean"),
            (Leaf::Id, _) => return refuse(self, "ID"),
            (Leaf::Enum { values, .. }, Value::String(s)) if values.contains(sources.text(*s)) => {
                json::write_string(out, *s, sources);
            }
            (Leaf::Enum { name, .. }, _) => {
                return Err(self.bad_value(format!(
                    "Enum \"{name}\" cannot represent value: {}",
                    value.to_serde(sources)
                )));
            }
            (Leaf::Custom | Leaf::Unknown, _) => json::write(out, value, sources),
        }
        Ok(())
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

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::tests::prepare;

    /// The projection's data (parsed back) and errors.
    struct Projected {
        data: Json,
        errors: Vec<Json>,
    }

    fn run(query: &str, data: Json, reported: Json) -> Projected {
        let (types, operation) = prepare(query);
        let operation = operation.expect("the operation is valid");
        let reported = reported.as_array().cloned().unwrap_or_default();
        let plan = crate::response_plan::compile(&types, &operation, &Map::new());
        let mut sources = Sources::default();
        let data = Value::from_serde(&data, &mut sources);
        let projected = project(&Input {
            types: &types,
            plan: &plan,
            data: &data,
            sources: &sources,
            reported: &reported,
            introspection: None,
            size_hint: 0,
        });
        Projected {
            data: serde_json::from_slice(projected.data()).expect("valid JSON"),
            errors: projected.errors,
        }
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
            "extensions": { "code": "SUBGRAPH_UNAVAILABLE" },
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

//! A client's operation as the router runs it: parsed, selected and validated against the API
//! schema once (cached with its plan). Its variables are coerced on every request, in
//! [`crate::variables`].

use std::collections::HashMap;

use graphql_tools::parser::query::{
    Definition, FragmentDefinition, OperationDefinition, Selection, SelectionSet,
    VariableDefinition,
};
use graphql_tools::validation::rules::default_rules_validation_plan;
use graphql_tools::validation::validate::{ValidationPlan, validate};
use keygraph_kernel::ErrorCode;
use keygraph_kernel::limits::{self, LimitExceeded};
use serde_json::{Map, Value as Json, json};

use crate::types::Types;

pub type QueryDocument = graphql_tools::parser::query::Document<'static, String>;
pub type QueryValue = graphql_tools::parser::query::Value<'static, String>;
type Schema = graphql_tools::parser::schema::Document<'static, String>;

/// The kind of operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    Query,
    Mutation,
    Subscription,
}

impl OperationKind {
    /// `query`, `mutation` or `subscription`.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Query => "query",
            OperationKind::Mutation => "mutation",
            OperationKind::Subscription => "subscription",
        }
    }
}

/// A parsed and validated operation of a document.
#[derive(Debug)]
pub struct Operation {
    selection_set: SelectionSet<'static, String>,
    variable_definitions: Vec<VariableDefinition<'static, String>>,
    fragments: HashMap<String, FragmentDefinition<'static, String>>,
    pub kind: OperationKind,
    /// The operation's `__schema` / `__type` root fields as a document of their own, for the
    /// introspection schema to answer; `None` when it asks for neither.
    pub introspection: Option<String>,
}

/// The rules every operation is validated with: graphql-tools' implementation of the spec's
/// rules, but for field selection merging, which [`crate::merging`] checks in linear time.
pub fn validation_plan() -> ValidationPlan {
    let mut plan = default_rules_validation_plan();
    plan.rules
        .retain(|rule| rule.error_code() != "OverlappingFieldsCanBeMerged");
    plan
}

/// A request error: `message` with `code`.
pub(crate) fn request_error(message: impl Into<String>, code: ErrorCode) -> Json {
    json!({ "message": message.into(), "extensions": { "code": code.as_str() } })
}

/// Parses an operation document under the edge's token limit (and graphql-tools' fixed
/// nesting limit of `{`, `[` and `(`); a syntax error says where.
pub fn parse(query: &str, max_tokens: usize) -> Result<QueryDocument, Parsed> {
    match graphql_tools::parser::parse_query_with_token_limit::<String>(query, max_tokens) {
        Ok(document) => Ok(document.into_static()),
        Err(err) => {
            let message = err.to_string();
            if message.contains("Token limit exceeded") {
                return Err(Parsed::Refused(LimitExceeded::Tokens {
                    max: max_tokens as u64,
                }));
            }
            if message.contains("Recursion limit exceeded") {
                return Err(Parsed::Refused(LimitExceeded::Brackets {
                    max: PARSER_NESTING,
                }));
            }
            let position = err.0.position;
            let detail: Vec<&str> = message.lines().skip(1).collect();
            Err(Parsed::Invalid(vec![json!({
                "message": format!("Syntax Error: {}", detail.join("; ")),
                "locations": [{ "line": position.line, "column": position.column }],
                "extensions": { "code": ErrorCode::GraphqlParseFailed.as_str() },
            })]))
        }
    }
}

/// How deeply graphql-tools' parser lets `{`, `[` and `(` nest.
pub const PARSER_NESTING: u64 = 50;

/// Why a document did not parse.
#[derive(Debug)]
pub enum Parsed {
    /// A syntax error, as GraphQL errors with locations.
    Invalid(Vec<Json>),
    /// The parser stopped at a limit.
    Refused(LimitExceeded),
}

/// graphql-tools' AST as [`keygraph_kernel::limits::measure`] reads it.
pub struct Measured<'d>(pub &'d QueryDocument);

impl limits::Document for Measured<'_> {
    type Selection = Selection<'static, String>;

    fn operations(&self) -> Vec<limits::Definition<'_, Self::Selection>> {
        use graphql_tools::parser::query::OperationDefinition as Op;
        self.0
            .definitions
            .iter()
            .filter_map(|d| match d {
                Definition::Operation(op) => Some(limits::Definition {
                    directives: match op {
                        Op::SelectionSet(_) => 0,
                        Op::Query(q) => q.directives.len(),
                        Op::Mutation(m) => m.directives.len(),
                        Op::Subscription(s) => s.directives.len(),
                    },
                    selections: &root_selections(op).items,
                }),
                Definition::Fragment(_) => None,
            })
            .collect()
    }

    fn fragments(&self) -> Vec<(&str, limits::Definition<'_, Self::Selection>)> {
        self.0
            .definitions
            .iter()
            .filter_map(|d| match d {
                Definition::Fragment(f) => Some((
                    f.name.as_str(),
                    limits::Definition {
                        directives: f.directives.len(),
                        selections: &f.selection_set.items,
                    },
                )),
                Definition::Operation(_) => None,
            })
            .collect()
    }

    fn node(selection: &Self::Selection) -> limits::Node<'_, Self::Selection> {
        match selection {
            Selection::Field(field) => limits::Node::Field {
                aliased: field.alias.is_some(),
                directives: field.directives.len(),
                selections: &field.selection_set.items,
            },
            Selection::InlineFragment(fragment) => limits::Node::InlineFragment {
                directives: fragment.directives.len(),
                selections: &fragment.selection_set.items,
            },
            Selection::FragmentSpread(spread) => limits::Node::FragmentSpread {
                directives: spread.directives.len(),
                fragment: &spread.fragment_name,
            },
        }
    }
}

fn root_selections<'o>(
    operation: &'o OperationDefinition<'static, String>,
) -> &'o SelectionSet<'static, String> {
    match operation {
        OperationDefinition::SelectionSet(s) => s,
        OperationDefinition::Query(q) => &q.selection_set,
        OperationDefinition::Mutation(m) => &m.selection_set,
        OperationDefinition::Subscription(s) => &s.selection_set,
    }
}

fn kind_of(operation: &OperationDefinition<'static, String>) -> OperationKind {
    match operation {
        OperationDefinition::SelectionSet(_) | OperationDefinition::Query(_) => {
            OperationKind::Query
        }
        OperationDefinition::Mutation(_) => OperationKind::Mutation,
        OperationDefinition::Subscription(_) => OperationKind::Subscription,
    }
}

/// The operation a request runs: the one `operation_name` names, or the document's only one.
pub fn select<'d>(
    document: &'d QueryDocument,
    operation_name: Option<&str>,
) -> Result<&'d OperationDefinition<'static, String>, Vec<Json>> {
    let mut operations = document.definitions.iter().filter_map(|d| match d {
        Definition::Operation(op) => Some(op),
        Definition::Fragment(_) => None,
    });
    match operation_name {
        Some(name) => operations
            .find(|op| operation_name_of(op) == Some(name))
            .ok_or_else(|| {
                vec![request_error(
                    format!("Unknown operation named \"{name}\"."),
                    ErrorCode::OperationResolutionFailure,
                )]
            }),
        None => match (operations.next(), operations.next()) {
            (Some(op), None) => Ok(op),
            (None, _) => Err(vec![request_error(
                "The document has no operation to run.",
                ErrorCode::OperationResolutionFailure,
            )]),
            (Some(_), Some(_)) => Err(vec![request_error(
                "The document has several operations: say which to run with `operationName`.",
                ErrorCode::OperationResolutionFailure,
            )]),
        },
    }
}

/// The kind of operation a request selects, when it selects one.
pub fn selected_kind(
    document: &QueryDocument,
    operation_name: Option<&str>,
) -> Option<OperationKind> {
    select(document, operation_name).ok().map(kind_of)
}

impl Operation {
    /// Selects the operation `operation_name` names and validates the whole document against
    /// the API schema. Errors are GraphQL errors, with locations. The document's size was
    /// held to the edge's limits before (validation costs what the inlined operation does).
    pub fn prepare(
        types: &Types,
        schema: &Schema,
        plan: &ValidationPlan,
        document: &QueryDocument,
        operation_name: Option<&str>,
    ) -> Result<Self, Vec<Json>> {
        let selected = select(document, operation_name)?;
        let mut errors: Vec<Json> = validate(schema, document, plan)
            .into_iter()
            .map(|e| {
                let mut error = Map::new();
                error.insert("message".into(), Json::String(e.message));
                if !e.locations.is_empty() {
                    let locations = e
                        .locations
                        .iter()
                        .map(|p| json!({ "line": p.line, "column": p.column }))
                        .collect();
                    error.insert("locations".into(), Json::Array(locations));
                }
                error.insert(
                    "extensions".into(),
                    json!({ "code": ErrorCode::GraphqlValidationFailed.as_str() }),
                );
                Json::Object(error)
            })
            .collect();
        errors.extend(crate::merging::conflicts(types, document));
        if !errors.is_empty() {
            return Err(errors);
        }
        let kind = kind_of(selected);
        let selection_set = root_selections(selected);
        let variable_definitions = match selected {
            OperationDefinition::SelectionSet(_) => &[][..],
            OperationDefinition::Query(q) => &q.variable_definitions[..],
            OperationDefinition::Mutation(m) => &m.variable_definitions[..],
            OperationDefinition::Subscription(s) => &s.variable_definitions[..],
        };
        let root_missing = match kind {
            OperationKind::Query => None,
            OperationKind::Mutation => types.mutation.is_none().then_some("mutations"),
            OperationKind::Subscription => Some("subscriptions"),
        };
        if let Some(what) = root_missing {
            return Err(vec![request_error(
                format!("This router does not serve {what}."),
                ErrorCode::GraphqlValidationFailed,
            )]);
        }
        let mut operation = Self {
            selection_set: selection_set.clone(),
            variable_definitions: variable_definitions.to_vec(),
            fragments: document
                .definitions
                .iter()
                .filter_map(|d| match d {
                    Definition::Fragment(f) => Some((f.name.clone(), f.clone())),
                    Definition::Operation(_) => None,
                })
                .collect(),
            kind,
            introspection: None,
        };
        operation.introspection = operation.introspection_document();
        Ok(operation)
    }

    pub fn selection_set(&self) -> &SelectionSet<'static, String> {
        &self.selection_set
    }

    pub fn variable_definitions(&self) -> &[VariableDefinition<'static, String>] {
        &self.variable_definitions
    }

    pub fn fragment(&self, name: &str) -> Option<&FragmentDefinition<'static, String>> {
        self.fragments.get(name)
    }

    /// A query of the operation's `__schema` / `__type` root fields (also those inside
    /// fragments on the root type), with its variables and fragments.
    fn introspection_document(&self) -> Option<String> {
        fn collect<'o>(
            operation: &'o Operation,
            selections: &'o SelectionSet<'static, String>,
            visited: &mut Vec<&'o str>,
            out: &mut Vec<Selection<'static, String>>,
        ) {
            for item in &selections.items {
                match item {
                    Selection::Field(field)
                        if field.name == "__schema" || field.name == "__type" =>
                    {
                        out.push(item.clone());
                    }
                    Selection::Field(_) => {}
                    Selection::InlineFragment(fragment) => {
                        collect(operation, &fragment.selection_set, visited, out);
                    }
                    Selection::FragmentSpread(spread) => {
                        let name = spread.fragment_name.as_str();
                        if visited.contains(&name) {
                            continue;
                        }
                        visited.push(name);
                        if let Some(fragment) = operation.fragment(name) {
                            collect(operation, &fragment.selection_set, visited, out);
                        }
                    }
                }
            }
        }
        let mut fields = Vec::new();
        collect(self, &self.selection_set, &mut Vec::new(), &mut fields);
        if fields.is_empty() {
            return None;
        }
        let position = self.selection_set.span.0;
        let query = graphql_tools::parser::query::Query {
            position,
            name: None,
            variable_definitions: self.variable_definitions.clone(),
            directives: Vec::new(),
            selection_set: SelectionSet {
                span: self.selection_set.span,
                items: fields,
            },
        };
        let mut document = query.to_string();
        for fragment in self.fragments.values() {
            document.push_str(&fragment.to_string());
        }
        Some(document)
    }

    /// The root type the operation selects on.
    pub fn root_type<'t>(&self, types: &'t Types) -> &'t str {
        match self.kind {
            OperationKind::Mutation => types.mutation.as_deref().unwrap_or("Mutation"),
            OperationKind::Subscription => types.subscription.as_deref().unwrap_or("Subscription"),
            OperationKind::Query => &types.query,
        }
    }
}

fn operation_name_of<'o>(operation: &'o OperationDefinition<'static, String>) -> Option<&'o str> {
    match operation {
        OperationDefinition::SelectionSet(_) => None,
        OperationDefinition::Query(q) => q.name.as_deref(),
        OperationDefinition::Mutation(m) => m.name.as_deref(),
        OperationDefinition::Subscription(s) => s.name.as_deref(),
    }
}

/// Whether `@skip` / `@include` leave a selection in, given the coerced variables.
pub fn included(
    directives: &[graphql_tools::parser::query::Directive<'static, String>],
    variables: &Map<String, Json>,
) -> bool {
    let condition = |name: &str| {
        directives
            .iter()
            .find(|d| d.name == name)
            .and_then(|d| d.arguments.iter().find(|(arg, _)| arg == "if"))
            .map(|(_, value)| match value {
                QueryValue::Boolean(b) => *b,
                QueryValue::Variable(v) => variables.get(v) == Some(&Json::Bool(true)),
                _ => false,
            })
    };
    condition("skip") != Some(true) && condition("include") != Some(false)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const SDL: &str = r#"
        scalar ID scalar Int scalar Float scalar String scalar Boolean
        type Query {
          me: User
          users: [User!]
          strict: User!
          node: Node
          hidden: Node
          color: Color
          search(filter: Filter!, first: Int): [User]
          grid(cells: [[Int]], filter: Filter): Int
          found: Found
          count: Int
          label: String
        }
        union Found = User
        interface Node { id: ID! }
        type User implements Node { id: ID! name: String! friends: [User] }
        enum Color { RED GREEN }
        input Filter { name: String!, limit: Int = 10, tags: [String!] }
    "#;

    /// The types of [`SDL`] and `query` prepared against them.
    pub fn prepare(query: &str) -> (Types, Result<Operation, Vec<Json>>) {
        let schema = graphql_tools::parser::parse_schema::<String>(SDL)
            .expect("test schema parses")
            .into_static();
        let types = Types::new(&schema);
        let operation = match parse(query, 15_000) {
            Ok(document) => {
                Operation::prepare(&types, &schema, &validation_plan(), &document, None)
            }
            Err(Parsed::Invalid(errors)) => Err(errors),
            Err(Parsed::Refused(refused)) => panic!("{refused}"),
        };
        (types, operation)
    }

    fn coerce(query: &str, variables: Json) -> Result<Map<String, Json>, Vec<Json>> {
        let (types, operation) = prepare(query);
        let Json::Object(variables) = variables else {
            panic!("variables are an object")
        };
        operation
            .expect("the operation is valid")
            .coerce_variables(&types, variables)
    }

    fn messages(errors: &[Json]) -> Vec<&str> {
        errors
            .iter()
            .filter_map(|e| e["message"].as_str())
            .collect()
    }

    const SEARCH: &str = "query($f: Filter!, $n: Int = 3) { search(filter: $f, first: $n) { id } }";

    #[test]
    fn variables_get_defaults_and_single_values_become_lists() {
        let variables = coerce(SEARCH, json!({ "f": { "name": "ada", "tags": "x" } }));
        assert_eq!(
            variables,
            Ok(
                json!({ "f": { "name": "ada", "limit": 10, "tags": ["x"] }, "n": 3 })
                    .as_object()
                    .cloned()
                    .unwrap_or_default()
            )
        );
    }

    #[test]
    fn defaults_are_coerced_like_values() {
        let variables = coerce(
            "query($m: [[Int]] = 1, $f: Filter = { name: \"a\" }) { grid(cells: $m, filter: $f) }",
            json!({}),
        );
        assert_eq!(
            variables,
            Ok(json!({ "m": [[1]], "f": { "name": "a", "limit": 10 } })
                .as_object()
                .cloned()
                .unwrap_or_default())
        );
    }

    #[test]
    fn wrong_variables_say_which_and_where() {
        let cases = [
            (
                json!({}),
                "Variable \"$f\" of required type \"Filter!\" was not provided.",
            ),
            (
                json!({ "f": null }),
                "Variable \"$f\" of non-null type \"Filter!\" must not be null.",
            ),
            (
                json!({ "f": { "name": 1 } }),
                "Variable \"$f\" got an invalid value: the number 1 at `.name` where a String belongs",
            ),
            (
                json!({ "f": { "name": "a", "tags": ["x", null] } }),
                "Variable \"$f\" got an invalid value: null at `.tags[1]` where \"String!\" must not be null",
            ),
            (
                json!({ "f": {} }),
                "Variable \"$f\" got an invalid value: the required field at `.name` of type \"String!\" is missing",
            ),
            (
                json!({ "f": { "name": "a", "nope": 1 } }),
                "Variable \"$f\" got an invalid value: the input type Filter has no field `nope`",
            ),
            (
                json!({ "f": { "name": "a" }, "n": 4_000_000_000_i64 }),
                "Variable \"$n\" got an invalid value: 4000000000 is outside the 32-bit range of Int",
            ),
        ];
        for (variables, expected) in cases {
            let errors = coerce(SEARCH, variables.clone()).expect_err("refused");
            assert_eq!(messages(&errors), [expected], "{variables}");
            assert_eq!(errors[0]["extensions"]["code"], "BAD_USER_INPUT");
        }
    }

    #[test]
    fn invalid_documents_get_errors_with_locations() {
        let (_, result) = prepare("{ me { nope } }");
        let errors = result.expect_err("invalid");
        assert_eq!(
            messages(&errors),
            ["Cannot query field \"nope\" on type \"User\"."]
        );
        assert_eq!(errors[0]["locations"], json!([{ "line": 1, "column": 8 }]));

        let (_, result) = prepare("{ me { id }");
        let errors = result.expect_err("syntax");
        assert_eq!(errors[0]["extensions"]["code"], "GRAPHQL_PARSE_FAILED");
        assert!(errors[0]["locations"].is_array(), "{errors:?}");

        let (_, result) = prepare("query A { me { id } } query B { me { id } }");
        let errors = result.expect_err("ambiguous");
        assert!(messages(&errors)[0].contains("operationName"), "{errors:?}");
    }

    #[test]
    fn the_parser_stops_at_its_limits() {
        let long = format!("{{ me {{ {} }} }}", "id ".repeat(100));
        assert!(matches!(
            parse(&long, 50),
            Err(Parsed::Refused(LimitExceeded::Tokens { max: 50 }))
        ));
        let deep = format!("{{{}id{}}}", "me{".repeat(60), "}".repeat(60));
        assert!(matches!(
            parse(&deep, 15_000),
            Err(Parsed::Refused(LimitExceeded::Brackets {
                max: PARSER_NESTING
            }))
        ));
    }

    #[test]
    fn the_selected_operation_and_its_kind() {
        let document = parse("query A { me { id } } mutation B { me { id } }", 100)
            .unwrap_or_else(|_| panic!("parses"));
        assert_eq!(
            selected_kind(&document, Some("B")),
            Some(OperationKind::Mutation)
        );
        assert_eq!(
            selected_kind(&document, Some("A")),
            Some(OperationKind::Query)
        );
        assert_eq!(selected_kind(&document, None), None);
        assert_eq!(selected_kind(&document, Some("C")), None);
    }
}

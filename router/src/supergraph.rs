//! The supergraph: composed from subgraph SDLs with `graphql-composition`, then fixed up so the
//! query planner sees everything it needs.
//!
//! Two fix-ups (both idempotent, so a supergraph composed elsewhere can go through them too):
//! - Root types get `@join__type(graph: G)` for every subgraph `G` that contributes root fields.
//!   `graphql-composition` leaves root types without them, and the planner then finds no path
//!   to any root field.
//! - When a type or field carries `@authenticated` or `@requiresScopes`, the schema gets the
//!   `@link` that turns that spec on. The planner (and so the router's checks, which read the
//!   planner's view) ignores both directives without it.

use std::collections::BTreeSet;

use graphql_tools::parser::Pos;
use graphql_tools::parser::schema::Type as AstType;
use graphql_tools::parser::schema::{
    Definition, Directive, DirectiveDefinition, DirectiveLocation, Document, InputValue,
    TypeDefinition, Value,
};

/// A subgraph's name, GraphQL URL and SDL (as served at `_service { sdl }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubgraphSdl {
    pub name: String,
    pub url: String,
    pub sdl: String,
}

/// Why no supergraph came out: every message of composition, or the reason the SDL is unusable.
#[derive(Debug, thiserror::Error)]
pub enum SupergraphError {
    #[error("composition failed:\n{}", .0.join("\n"))]
    Composition(Vec<String>),
    #[error("subgraph `{name}` has an invalid SDL: {message}")]
    Ingest { name: String, message: String },
    #[error("the supergraph SDL does not parse: {0}")]
    Parse(String),
}

pub const AUTHENTICATED_SPEC: &str = "https://specs.apollo.dev/authenticated/v0.1";
pub const REQUIRES_SCOPES_SPEC: &str = "https://specs.apollo.dev/requiresScopes/v0.1";

/// Composes the subgraphs into a supergraph SDL, with the planner fix-ups applied. Composition
/// warnings are returned beside it, to be logged.
pub fn compose(subgraphs: &[SubgraphSdl]) -> Result<(String, Vec<String>), SupergraphError> {
    let mut input = graphql_composition::Subgraphs::default();
    for subgraph in subgraphs {
        input
            .ingest_str(&subgraph.sdl, &subgraph.name, Some(&subgraph.url))
            .map_err(|e| SupergraphError::Ingest {
                name: subgraph.name.clone(),
                message: e.to_string(),
            })?;
    }
    let result = graphql_composition::compose(&mut input);
    let warnings: Vec<String> = result
        .diagnostics()
        .iter_warnings()
        .map(str::to_owned)
        .collect();
    let graph = result.into_result().map_err(|diagnostics| {
        SupergraphError::Composition(diagnostics.iter_errors().map(str::to_owned).collect())
    })?;
    let sdl = graphql_composition::render_federated_sdl(&graph)
        .map_err(|e| SupergraphError::Composition(vec![e.to_string()]))?;
    Ok((fix_up(&sdl)?, warnings))
}

/// Applies the planner fix-ups to a supergraph SDL (from composition or from a file).
pub fn fix_up(sdl: &str) -> Result<String, SupergraphError> {
    let mut document = graphql_tools::parser::parse_schema::<String>(sdl)
        .map_err(|e| SupergraphError::Parse(e.to_string()))?
        .into_static();
    add_root_join_types(&mut document);
    link_authorization_specs(&mut document);
    Ok(document.to_string())
}

fn root_type_names(document: &Document<'static, String>) -> Vec<String> {
    let schema = document.definitions.iter().find_map(|d| match d {
        Definition::SchemaDefinition(s) => Some(s),
        _ => None,
    });
    match schema {
        Some(s) => [&s.query, &s.mutation, &s.subscription]
            .into_iter()
            .flatten()
            .cloned()
            .collect(),
        None => vec!["Query".into(), "Mutation".into(), "Subscription".into()],
    }
}

fn all_graphs(document: &Document<'static, String>) -> Vec<String> {
    document
        .definitions
        .iter()
        .find_map(|d| match d {
            Definition::TypeDefinition(TypeDefinition::Enum(e)) if e.name == "join__Graph" => {
                Some(e.values.iter().map(|v| v.name.clone()).collect())
            }
            _ => None,
        })
        .unwrap_or_default()
}

fn graph_argument(directive: &Directive<'static, String>) -> Option<String> {
    directive
        .arguments
        .iter()
        .find_map(|(name, value)| match value {
            Value::Enum(graph) if name == "graph" => Some(graph.clone()),
            _ => None,
        })
}

fn directive(
    name: &str,
    arguments: Vec<(String, Value<'static, String>)>,
) -> Directive<'static, String> {
    Directive {
        position: Pos::default(),
        name: name.to_owned(),
        arguments,
    }
}

fn add_root_join_types(document: &mut Document<'static, String>) {
    let roots = root_type_names(document);
    let graphs = all_graphs(document);
    for definition in &mut document.definitions {
        let Definition::TypeDefinition(TypeDefinition::Object(object)) = definition else {
            continue;
        };
        if !roots.contains(&object.name) {
            continue;
        }
        let mut contributing = BTreeSet::new();
        for field in &object.fields {
            let joins: Vec<String> = field
                .directives
                .iter()
                .filter(|d| d.name == "join__field")
                .filter_map(graph_argument)
                .collect();
            if field.directives.iter().any(|d| d.name == "join__field") && !joins.is_empty() {
                contributing.extend(joins);
            } else if !field.name.starts_with("__") {
                // No @join__field: every subgraph defines the field.
                contributing.extend(graphs.iter().cloned());
            }
        }
        let present: BTreeSet<String> = object
            .directives
            .iter()
            .filter(|d| d.name == "join__type")
            .filter_map(graph_argument)
            .collect();
        for graph in contributing.difference(&present) {
            object.directives.push(directive(
                "join__type",
                vec![("graph".into(), Value::Enum(graph.clone()))],
            ));
        }
    }
}

fn uses_directive(document: &Document<'static, String>, name: &str) -> bool {
    let used =
        |directives: &[Directive<'static, String>]| directives.iter().any(|d| d.name == name);
    document
        .definitions
        .iter()
        .any(|definition| match definition {
            Definition::TypeDefinition(t) => match t {
                TypeDefinition::Object(o) => {
                    used(&o.directives) || o.fields.iter().any(|f| used(&f.directives))
                }
                TypeDefinition::Interface(i) => {
                    used(&i.directives) || i.fields.iter().any(|f| used(&f.directives))
                }
                TypeDefinition::Scalar(s) => used(&s.directives),
                TypeDefinition::Enum(e) => used(&e.directives),
                TypeDefinition::Union(_) | TypeDefinition::InputObject(_) => false,
            },
            _ => false,
        })
}

fn has_link(document: &Document<'static, String>, prefix: &str) -> bool {
    document.definitions.iter().any(|d| match d {
        Definition::SchemaDefinition(s) => s.directives.iter().any(|d| {
            d.name == "link"
                && d.arguments.iter().any(|(n, v)| {
                    n == "url" && matches!(v, Value::String(url) if url.starts_with(prefix))
                })
        }),
        _ => false,
    })
}

fn has_directive_definition(document: &Document<'static, String>, name: &str) -> bool {
    document
        .definitions
        .iter()
        .any(|d| matches!(d, Definition::DirectiveDefinition(def) if def.name == name))
}

const AUTH_LOCATIONS: [DirectiveLocation; 5] = [
    DirectiveLocation::FieldDefinition,
    DirectiveLocation::Object,
    DirectiveLocation::Interface,
    DirectiveLocation::Scalar,
    DirectiveLocation::Enum,
];

fn link_authorization_specs(document: &mut Document<'static, String>) {
    let specs = [
        ("authenticated", AUTHENTICATED_SPEC, None),
        (
            "requiresScopes",
            REQUIRES_SCOPES_SPEC,
            // scopes: [[requiresScopes__Scope!]!]!
            Some(AstType::NonNullType(Box::new(AstType::ListType(Box::new(
                AstType::NonNullType(Box::new(AstType::ListType(Box::new(AstType::NonNullType(
                    Box::new(AstType::NamedType("String".into())),
                ))))),
            ))))),
        ),
    ];
    for (name, url, scopes_type) in specs {
        if !uses_directive(document, name) {
            continue;
        }
        let prefix = url.rsplit_once('/').map_or(url, |(p, _)| p);
        if !has_link(document, &format!("{prefix}/")) {
            let schema = document.definitions.iter_mut().find_map(|d| match d {
                Definition::SchemaDefinition(s) => Some(s),
                _ => None,
            });
            if let Some(schema) = schema {
                schema.directives.push(directive(
                    "link",
                    vec![
                        ("url".into(), Value::String(url.to_owned())),
                        ("for".into(), Value::Enum("SECURITY".into())),
                    ],
                ));
            }
        }
        if !has_directive_definition(document, name) {
            let arguments = scopes_type
                .map(|value_type| InputValue {
                    position: Pos::default(),
                    description: None,
                    name: "scopes".into(),
                    value_type,
                    default_value: None,
                    directives: vec![],
                })
                .into_iter()
                .collect();
            document
                .definitions
                .push(Definition::DirectiveDefinition(DirectiveDefinition {
                    position: Pos::default(),
                    description: None,
                    name: name.to_owned(),
                    arguments,
                    repeatable: false,
                    locations: AUTH_LOCATIONS.to_vec(),
                }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRODUCTS: &str = r#"
        extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key", "@authenticated", "@requiresScopes"])
        type Query { products: [Product!]! secret: String @authenticated }
        type Product @key(fields: "id") { id: ID! name: String! price: Int @requiresScopes(scopes: [["billing.read"]]) }
    "#;
    const REVIEWS: &str = r#"
        extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key"])
        type Query { latestReview: Review }
        type Review { body: String! product: Product! }
        type Product @key(fields: "id") { id: ID! }
    "#;

    fn subgraphs() -> Vec<SubgraphSdl> {
        vec![
            SubgraphSdl {
                name: "products".into(),
                url: "http://p/graphql".into(),
                sdl: PRODUCTS.into(),
            },
            SubgraphSdl {
                name: "reviews".into(),
                url: "http://r/graphql".into(),
                sdl: REVIEWS.into(),
            },
        ]
    }

    #[test]
    fn root_types_join_every_contributing_subgraph() -> Result<(), SupergraphError> {
        let (sdl, _) = compose(&subgraphs())?;
        let query = sdl.split("type Query").nth(1).unwrap_or_default();
        let header = query.split('{').next().unwrap_or_default();
        assert!(header.contains("@join__type(graph: PRODUCTS)"), "{header}");
        assert!(header.contains("@join__type(graph: REVIEWS)"), "{header}");
        Ok(())
    }

    #[test]
    fn authorization_specs_are_linked_when_used() -> Result<(), SupergraphError> {
        let (sdl, _) = compose(&subgraphs())?;
        assert!(sdl.contains(AUTHENTICATED_SPEC), "{sdl}");
        assert!(sdl.contains(REQUIRES_SCOPES_SPEC), "{sdl}");
        // The planner sees the directives only with the link: check its view.
        let document = graphql_tools::parser::parse_schema::<String>(&sdl)
            .map_err(|e| SupergraphError::Parse(e.to_string()))?
            .into_static();
        let state =
            hive_router_query_planner::state::supergraph_state::SupergraphState::new(&document);
        let Some(hive_router_query_planner::state::supergraph_state::SupergraphDefinition::Object(
            query,
        )) = state.definitions.get("Query")
        else {
            panic!("no Query type");
        };
        assert!(!query.fields["secret"].authenticated.is_empty());
        let Some(hive_router_query_planner::state::supergraph_state::SupergraphDefinition::Object(
            product,
        )) = state.definitions.get("Product")
        else {
            panic!("no Product type");
        };
        assert!(!product.fields["price"].requires_scopes.is_empty());
        Ok(())
    }

    #[test]
    fn fix_up_is_idempotent() -> Result<(), SupergraphError> {
        let (sdl, _) = compose(&subgraphs())?;
        assert_eq!(fix_up(&sdl)?, sdl);
        Ok(())
    }

    #[test]
    fn a_broken_subgraph_is_named() {
        let broken = vec![SubgraphSdl {
            name: "bad".into(),
            url: "http://b".into(),
            sdl: "type Query {".into(),
        }];
        let err = compose(&broken)
            .map(|_| ())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("bad"), "{err}");
    }
}

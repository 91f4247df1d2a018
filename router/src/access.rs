//! Access at the router: what the fields and types an operation selects ask of the caller
//! (`@authenticated`, `@requiresScopes`, and a recent second factor for step-up fields:
//! `router.step_up_fields` and `@policy(policies: [["step_up"]])`), collected once when the
//! operation is planned and checked against each request's token before anything runs.

use std::collections::BTreeSet;

use hive_router_query_planner::ast::operation::OperationDefinition;
use hive_router_query_planner::ast::selection_item::SelectionItem;
use hive_router_query_planner::ast::selection_set::SelectionSet;
use hive_router_query_planner::ast::value::Value as PlanValue;
use hive_router_query_planner::state::supergraph_state::{SupergraphDefinition, SupergraphState};
use keygraph_kernel::guard::Authentication;

use crate::plan::PlanError;

/// What a field or type demands of the caller (`@authenticated`, `@requiresScopes`).
#[derive(Debug, Clone)]
enum Requirement {
    Authenticated {
        coordinate: String,
    },
    /// Any one group, all of its scopes.
    Scopes {
        coordinate: String,
        groups: Vec<Vec<String>>,
    },
    /// A recent sign-in with the second factor (`router.step_up_fields`).
    StepUp {
        coordinate: String,
    },
}

/// Everything an operation asks of the caller, in selection order.
#[derive(Debug, Clone, Default)]
pub struct Requirements(Vec<Requirement>);

impl Requirements {
    /// Every `@authenticated` / `@requiresScopes` and step-up field (or type) `operation`
    /// touches.
    pub(crate) fn of(
        supergraph: &SupergraphState,
        step_up: &BTreeSet<String>,
        operation: &OperationDefinition,
    ) -> Self {
        Self(requirements(supergraph, step_up, operation))
    }

    /// Refuses the operation when a field or type it selects needs a token or scopes the
    /// caller does not have; a token that was sent and refused says why.
    pub fn check(&self, authentication: &Authentication) -> Result<(), PlanError> {
        let principal = authentication.principal();
        for requirement in &self.0 {
            match (requirement, principal) {
                (Requirement::Authenticated { coordinate }, None)
                | (Requirement::Scopes { coordinate, .. }, None)
                | (Requirement::StepUp { coordinate }, None) => {
                    return Err(match authentication {
                        Authentication::Invalid(refused) => PlanError::Unauthenticated {
                            message: format!(
                                "`{coordinate}` needs a signed-in caller, and the access token sent was refused: {refused}"
                            ),
                            reason: Some(refused.reason()),
                        },
                        _ => PlanError::Unauthenticated {
                            message: format!(
                                "`{coordinate}` needs a signed-in caller: send an access token as `Authorization: Bearer <token>`"
                            ),
                            reason: None,
                        },
                    });
                }
                (Requirement::Scopes { coordinate, groups }, Some(principal)) => {
                    let granted = groups
                        .iter()
                        .any(|group| group.iter().all(|scope| principal.has_permission(scope)));
                    if !granted {
                        let wanted: Vec<String> = groups.iter().map(|g| g.join(" and ")).collect();
                        return Err(PlanError::Forbidden(format!(
                            "`{coordinate}` needs the permission {}",
                            wanted.join(", or ")
                        )));
                    }
                }
                (Requirement::StepUp { coordinate }, Some(principal)) => {
                    if !principal.stepped_up() {
                        return Err(PlanError::StepUpRequired(format!("`{coordinate}`")));
                    }
                }
                (Requirement::Authenticated { .. }, Some(_)) => {}
            }
        }
        Ok(())
    }
}

fn type_requirements(definition: &SupergraphDefinition, out: &mut Vec<Requirement>) {
    let (authenticated, scopes) = match definition {
        SupergraphDefinition::Object(t) => (!t.authenticated.is_empty(), &t.requires_scopes),
        SupergraphDefinition::Interface(t) => (!t.authenticated.is_empty(), &t.requires_scopes),
        SupergraphDefinition::Scalar(t) => (!t.authenticated.is_empty(), &t.requires_scopes),
        SupergraphDefinition::Enum(t) => (!t.authenticated.is_empty(), &t.requires_scopes),
        SupergraphDefinition::Union(_) | SupergraphDefinition::InputObject(_) => return,
    };
    let name = definition.name().to_owned();
    if authenticated {
        out.push(Requirement::Authenticated {
            coordinate: name.clone(),
        });
    }
    for directive in scopes {
        out.push(Requirement::Scopes {
            coordinate: name.clone(),
            groups: scope_groups(&directive.scopes),
        });
    }
}

fn scope_groups(value: &PlanValue) -> Vec<Vec<String>> {
    let PlanValue::List(groups) = value else {
        return vec![];
    };
    groups
        .iter()
        .map(|group| match group {
            PlanValue::List(scopes) => scopes
                .iter()
                .filter_map(|s| match s {
                    PlanValue::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            PlanValue::String(s) => vec![s.clone()],
            _ => vec![],
        })
        .collect()
}

/// The fields whose `@policy` asks for [`STEP_UP_POLICY`](keygraph_kernel::guard::STEP_UP_POLICY).
/// A policy the router does not evaluate refuses the supergraph: it would otherwise let
/// everyone through.
pub(crate) fn policy_step_up_fields(
    document: &graphql_tools::parser::schema::Document<'static, String>,
) -> Result<BTreeSet<String>, String> {
    use graphql_tools::parser::schema::{Definition, TypeDefinition, Value};
    let mut out = BTreeSet::new();
    for definition in &document.definitions {
        let (name, fields) = match definition {
            Definition::TypeDefinition(TypeDefinition::Object(t)) => (&t.name, &t.fields),
            Definition::TypeDefinition(TypeDefinition::Interface(t)) => (&t.name, &t.fields),
            _ => continue,
        };
        for field in fields {
            for directive in field.directives.iter().filter(|d| d.name == "policy") {
                let coordinate = format!("{name}.{}", field.name);
                let names: Vec<&str> = directive
                    .arguments
                    .iter()
                    .filter(|(argument, _)| argument == "policies")
                    .flat_map(|(_, groups)| match groups {
                        Value::List(groups) => groups.iter().collect::<Vec<_>>(),
                        _ => Vec::new(),
                    })
                    .flat_map(|group| match group {
                        Value::List(policies) => policies
                            .iter()
                            .map(|p| match p {
                                Value::String(p) => p.as_str(),
                                _ => "",
                            })
                            .collect::<Vec<_>>(),
                        _ => vec![""],
                    })
                    .collect();
                if let Some(unknown) = names
                    .iter()
                    .find(|p| **p != keygraph_kernel::guard::STEP_UP_POLICY)
                {
                    return Err(format!(
                        "`{coordinate}` asks for the policy `{unknown}`, which this router does not evaluate (it knows `step_up`)"
                    ));
                }
                if !names.is_empty() {
                    out.insert(coordinate);
                }
            }
        }
    }
    Ok(out)
}

/// Every `@authenticated` / `@requiresScopes` and step-up field the operation touches, in
/// selection order.
fn requirements(
    supergraph: &SupergraphState,
    step_up: &BTreeSet<String>,
    operation: &OperationDefinition,
) -> Vec<Requirement> {
    let root = match operation.operation_kind {
        Some(hive_router_query_planner::state::supergraph_state::OperationKind::Mutation) => {
            supergraph
                .mutation_type
                .clone()
                .unwrap_or_else(|| "Mutation".into())
        }
        Some(hive_router_query_planner::state::supergraph_state::OperationKind::Subscription) => {
            supergraph
                .subscription_type
                .clone()
                .unwrap_or_else(|| "Subscription".into())
        }
        _ => supergraph.query_type.clone(),
    };
    let mut out = Vec::new();
    walk_requirements(
        supergraph,
        step_up,
        &root,
        &operation.selection_set,
        &mut out,
    );
    out
}

fn walk_requirements(
    supergraph: &SupergraphState,
    step_up: &BTreeSet<String>,
    parent: &str,
    selections: &SelectionSet,
    out: &mut Vec<Requirement>,
) {
    let Some(definition) = supergraph.definitions.get(parent) else {
        return;
    };
    for item in &selections.items {
        match item {
            SelectionItem::Field(field) => {
                let Some(field_definition) = definition.fields().get(&field.name) else {
                    continue;
                };
                let coordinate = format!("{parent}.{}", field.name);
                if !field_definition.authenticated.is_empty() {
                    out.push(Requirement::Authenticated {
                        coordinate: coordinate.clone(),
                    });
                }
                for directive in &field_definition.requires_scopes {
                    out.push(Requirement::Scopes {
                        coordinate: coordinate.clone(),
                        groups: scope_groups(&directive.scopes),
                    });
                }
                if step_up.contains(&coordinate) {
                    out.push(Requirement::StepUp {
                        coordinate: coordinate.clone(),
                    });
                }
                let target = field_definition.field_type.inner_type();
                if let Some(target_definition) = supergraph.definitions.get(target) {
                    type_requirements(target_definition, out);
                }
                if !field.selections.items.is_empty() {
                    walk_requirements(supergraph, step_up, target, &field.selections, out);
                }
            }
            SelectionItem::InlineFragment(fragment) => {
                if let Some(target_definition) =
                    supergraph.definitions.get(&fragment.type_condition)
                    && fragment.type_condition != parent
                {
                    type_requirements(target_definition, out);
                }
                walk_requirements(
                    supergraph,
                    step_up,
                    &fragment.type_condition,
                    &fragment.selections,
                    out,
                );
            }
            SelectionItem::FragmentSpread(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Graph;
    use crate::graph::tests::{graph, options};

    /// `router.step_up_fields` guard their fields at the router; a coordinate the
    /// supergraph lacks is refused when the graph loads.
    #[test]
    fn step_up_fields_need_a_recent_second_factor() {
        let sdl = include_str!("../../schema/supergraph.graphql");
        let graph = Graph::new(sdl.to_owned(), &options(&["Mutation.deleteRole"])).expect("builds");
        let principal = |step_up_until| {
            Authentication::Authenticated(keygraph_kernel::token::Principal {
                user_id: uuid::Uuid::nil(),
                session_id: uuid::Uuid::nil(),
                token_id: None,
                roles: vec![],
                scopes: vec!["*".into()],
                step_up_until,
            })
        };
        let check = |query: &str, authentication: &Authentication| match &graph
            .prepare(query, None)
            .outcome
        {
            Ok(prepared) => prepared.check_access(authentication),
            Err(err) => panic!("{query} does not prepare: {err}"),
        };
        // Keygraph's own sensitive fields carry `@policy(policies: [["step_up"]])`.
        let change = "mutation { changePassword(currentPassword: \"a\", newPassword: \"b\") }";
        assert!(matches!(
            check(change, &principal(None)),
            Err(PlanError::StepUpRequired(_))
        ));
        let delete = "mutation { deleteRole(id: \"x\") }";
        let now = keygraph_kernel::testing::now_secs();
        match check(delete, &principal(None)) {
            Err(err @ PlanError::StepUpRequired(_)) => {
                assert_eq!(err.code().as_str(), "STEP_UP_REQUIRED");
                assert!(err.to_string().contains("`Mutation.deleteRole`"), "{err}");
                assert!(err.to_string().contains("stepUp"), "{err}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            check(delete, &principal(Some(now - 1))),
            Err(PlanError::StepUpRequired(_))
        ));
        assert!(check(delete, &principal(Some(now + 60))).is_ok());
        assert!(matches!(
            check(delete, &Authentication::Anonymous),
            Err(PlanError::Unauthenticated { .. })
        ));
        // Other fields are not affected.
        assert!(check("{ roles { totalCount } }", &principal(None)).is_ok());
        let other_policy = sdl.replacen("[[\"step_up\"]]", "[[\"weekdays_only\"]]", 1);
        assert!(
            Graph::new(other_policy, &options(&[]))
                .err()
                .is_some_and(|e| e.contains("`weekdays_only`, which this router does not evaluate")),
        );
        let unknown = Graph::new(sdl.to_owned(), &options(&["Mutation.noSuchField"]));
        assert!(
            unknown
                .err()
                .is_some_and(|e| e.contains("`Mutation.noSuchField` is not a field")),
        );
    }

    const ME: &str = "{ me { id email roles { name } permissions } }";

    fn access(query: &str, authentication: &Authentication) -> Result<(), PlanError> {
        match &graph().prepare(query, None).outcome {
            Ok(prepared) => prepared.check_access(authentication),
            Err(err) => panic!("{query} does not prepare: {err}"),
        }
    }

    /// Keygraph's own guarded fields carry access directives, so the router refuses them
    /// before any subgraph is called; sign-in and its payload need no token.
    #[test]
    fn keygraph_fields_are_guarded_at_the_router() {
        let anonymous = Authentication::Anonymous;
        for query in [
            ME,
            "{ users { totalCount } }",
            "{ roles { totalCount } }",
            "{ sessions { id } }",
            "mutation { logout }",
            "mutation { deleteRole(id: \"x\") }",
        ] {
            assert!(
                matches!(
                    access(query, &anonymous),
                    Err(PlanError::Unauthenticated { .. })
                ),
                "{query}"
            );
        }
        let login = "mutation { login(email: \"a@b.c\", password: \"p\") { ... on AuthPayload { accessToken user { email roles { name } permissions } } } }";
        assert!(access(login, &anonymous).is_ok());
        let refreshed = "mutation { refresh(refreshToken: \"r\") { accessToken user { email } } }";
        assert!(access(refreshed, &anonymous).is_ok());

        let reader = Authentication::Authenticated(keygraph_kernel::token::Principal {
            user_id: uuid::Uuid::nil(),
            session_id: uuid::Uuid::nil(),
            token_id: None,
            roles: vec![],
            scopes: vec!["identity.user.read".into()],
            step_up_until: None,
        });
        assert!(access("{ users { totalCount } }", &reader).is_ok());
        match access("{ roles { totalCount } }", &reader) {
            Err(PlanError::Forbidden(message)) => assert!(message.contains("authz.role.read")),
            other => panic!("{other:?}"),
        }
    }
}

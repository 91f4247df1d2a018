//! Whether a subgraph's access directives say what its guards do, so the router's access step
//! (which reads the directives) and the subgraph's own guards (which run on direct calls) can
//! never disagree.
//!
//! Every root field of the subgraph's SDL is called twice, with arguments made up from their
//! types: without a token, and with a token that holds no permission.
//! - `@requiresScopes(scopes: [[code]])`: the anonymous call is refused for want of a token,
//!   the other with FORBIDDEN naming `code` (so the scope is the permission the guard checks).
//! - `@federation__authenticated` (Apollo's `@authenticated`): the anonymous call is refused
//!   for want of a token, the other is not.
//! - neither: the anonymous call is not refused for want of a token.

use std::collections::HashMap;

use async_graphql::parser::types::{
    BaseType, ConstDirective, FieldDefinition, ServiceDocument, Type, TypeKind,
    TypeSystemDefinition,
};

use super::{Answer, TestServer, TestSigner};
use crate::guard::NEEDS_TOKEN;

/// What a field's directives demand.
#[derive(Debug, PartialEq, Eq)]
enum Demand {
    Nothing,
    SignedIn,
    Scope(Vec<String>),
}

/// Calls every root field of `sdl` on `server` (see the module docs), with tokens of
/// `signer`, and panics, naming every field whose directives and guard disagree.
pub async fn assert_directives_match_guards(sdl: &str, signer: &TestSigner, server: &TestServer) {
    let no_permissions = signer.token(uuid::Uuid::now_v7(), &[]);
    let call = |query: String, token: Option<String>| async move {
        server
            .gql(&query, serde_json::json!({}), token.as_deref())
            .await
    };
    let document = async_graphql::parser::parse_schema(sdl).expect("the SDL parses");
    let types = Types::of(&document);
    let mut disagreements = Vec::new();
    let mut checked = 0;
    for (root, keyword) in [("Query", "query"), ("Mutation", "mutation")] {
        let Some(TypeKind::Object(object)) = types.kinds.get(root) else {
            continue;
        };
        for field in &object.fields {
            let field = &field.node;
            if field.name.node.starts_with('_') {
                continue;
            }
            checked += 1;
            let query = format!("{keyword} {{ {} }}", types.call(field));
            let anonymous = call(query.clone(), None).await;
            let without = call(query.clone(), Some(no_permissions.clone())).await;
            let wants_token = |answer: &Answer| {
                answer.0["errors"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|e| e["message"] == NEEDS_TOKEN)
            };
            let demand = demand(&field.directives);
            let agrees = match &demand {
                Demand::Nothing => !wants_token(&anonymous),
                Demand::SignedIn => wants_token(&anonymous) && !wants_token(&without),
                Demand::Scope(codes) => {
                    wants_token(&anonymous)
                        && without.code() == "FORBIDDEN"
                        && codes
                            .iter()
                            .all(|code| without.message().contains(&format!("`{code}`")))
                }
            };
            if !agrees {
                disagreements.push(format!(
                    "{root}.{} declares {demand:?}, but `{query}` answers {} without a token and {} without permissions",
                    field.name.node, anonymous.0, without.0
                ));
            }
        }
    }
    assert!(checked > 0, "the SDL has no root fields");
    assert!(
        disagreements.is_empty(),
        "directives and guards disagree:\n{}",
        disagreements.join("\n")
    );
}

fn demand(directives: &[async_graphql::Positioned<ConstDirective>]) -> Demand {
    for directive in directives {
        match directive.node.name.node.as_str() {
            "requiresScopes" => {
                let scopes = directive
                    .node
                    .get_argument("scopes")
                    .map(|v| v.node.clone().into_json().unwrap_or_default());
                let codes = scopes
                    .as_ref()
                    .and_then(|v| v.as_array())
                    .into_iter()
                    .flatten()
                    .flat_map(|group| group.as_array().cloned().unwrap_or_default())
                    .filter_map(|code| code.as_str().map(str::to_owned))
                    .collect();
                return Demand::Scope(codes);
            }
            "federation__authenticated" | "authenticated" => return Demand::SignedIn,
            _ => {}
        }
    }
    Demand::Nothing
}

/// The SDL's type definitions by name.
struct Types<'d> {
    kinds: HashMap<&'d str, &'d TypeKind>,
}

impl<'d> Types<'d> {
    fn of(document: &'d ServiceDocument) -> Self {
        let kinds = document
            .definitions
            .iter()
            .filter_map(|definition| match definition {
                TypeSystemDefinition::Type(t) => Some((t.node.name.node.as_str(), &t.node.kind)),
                _ => None,
            })
            .collect();
        Self { kinds }
    }

    /// `field(arg: value ...) { __typename }`, with a made-up value for each required argument.
    fn call(&self, field: &FieldDefinition) -> String {
        let arguments: Vec<String> = field
            .arguments
            .iter()
            .filter(|a| !a.node.ty.node.nullable && a.node.default_value.is_none())
            .map(|a| format!("{}: {}", a.node.name.node, self.value(&a.node.ty.node, 0)))
            .collect();
        let arguments = if arguments.is_empty() {
            String::new()
        } else {
            format!("({})", arguments.join(", "))
        };
        let selection = match self.kinds.get(named(&field.ty.node)) {
            Some(TypeKind::Object(_) | TypeKind::Interface(_) | TypeKind::Union(_)) => {
                " { __typename }"
            }
            _ => "",
        };
        format!("{}{arguments}{selection}", field.name.node)
    }

    /// A literal of type `ty` that passes type checks (and the usual validators).
    fn value(&self, ty: &Type, depth: usize) -> String {
        match &ty.base {
            BaseType::List(_) => "[]".to_owned(),
            BaseType::Named(name) => match (name.as_str(), self.kinds.get(name.as_str())) {
                ("ID", _) => "\"01930000-0000-7000-8000-000000000000\"".to_owned(),
                ("Int", _) => "1".to_owned(),
                ("Float", _) => "1.5".to_owned(),
                ("Boolean", _) => "false".to_owned(),
                ("DateTime", _) => "\"2026-01-01T00:00:00Z\"".to_owned(),
                (_, Some(TypeKind::Enum(e))) => e
                    .values
                    .first()
                    .map(|v| v.node.value.node.to_string())
                    .unwrap_or_default(),
                (_, Some(TypeKind::InputObject(input))) if depth < 5 => {
                    let fields: Vec<String> = input
                        .fields
                        .iter()
                        .filter(|f| !f.node.ty.node.nullable && f.node.default_value.is_none())
                        .map(|f| {
                            format!(
                                "{}: {}",
                                f.node.name.node,
                                self.value(&f.node.ty.node, depth + 1)
                            )
                        })
                        .collect();
                    format!("{{ {} }}", fields.join(", "))
                }
                _ => "\"probe.user@example.com\"".to_owned(),
            },
        }
    }
}

fn named(ty: &Type) -> &str {
    match &ty.base {
        BaseType::Named(name) => name.as_str(),
        BaseType::List(inner) => named(inner),
    }
}

//! Permission codes over real HTTP beside a real identity service, on SQLite and Postgres:
//! wildcards expanded against the catalog, and malformed codes and role names refused with
//! the reason, leaving nothing half-written.

mod common;

use common::{Stack, reps};
use keygraph_authz::entity::role_permission;
use keygraph_kernel::testing::Backend;
use serde_json::json;
use uuid::Uuid;

keygraph_kernel::on_both_backends!(
    wildcards_expand_against_the_catalog,
    invalid_codes_are_refused_with_reasons,
);

async fn wildcards_expand_against_the_catalog(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let readers = stack.seed_role("readers", &["identity.user.*"]).await;
    let everything = stack.seed_role("everything", &["*"]).await;
    let [reader, root] = stack.seed_users_with_roles(2, &[]).await[..] else {
        unreachable!()
    };
    stack.assign_directly(reader, readers).await;
    stack.assign_directly(root, everything).await;
    let check = |user: Uuid, codes: &[&str]| {
        let stack = &stack;
        let codes: Vec<String> = codes.iter().map(|c| (*c).to_owned()).collect();
        async move {
            let answer = stack
                .gql(
                    "query($u: ID!, $c: [String!]!) { checkPermissions(userId: $u, codes: $c) { granted } }",
                    json!({ "u": user, "c": codes }),
                    Some(&stack.admin()),
                )
                .await;
            answer.data()["checkPermissions"]
                .as_array()
                .expect("list")
                .iter()
                .map(|c| c["granted"].as_bool().expect("bool"))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        check(
            reader,
            &[
                "identity.user.read",
                "identity.user.delete",
                "identity.users.read",
                "authz.role.read"
            ]
        )
        .await,
        [true, true, false, false]
    );
    assert_eq!(
        check(
            root,
            &[
                "identity.user.read",
                "authz.role.read",
                "billing.invoice.read"
            ]
        )
        .await,
        [true, true, true]
    );
    let effective = stack
        .gql("query($r: [_Any!]!) { _entities(representations: $r) { ... on User { permissions } } }", reps(&[reader, root]), Some(&stack.admin()))
        .await;
    let reader_codes = &effective.data()["_entities"][0]["permissions"];
    assert_eq!(
        reader_codes,
        &json!([
            "identity.user.delete",
            "identity.user.read",
            "identity.user.update"
        ])
    );
    let root_codes = effective.data()["_entities"][1]["permissions"]
        .as_array()
        .expect("list")
        .len();
    assert_eq!(
        root_codes,
        keygraph_kernel::permissions::CATALOG.len(),
        "`*` expands to the whole catalog"
    );
}

async fn invalid_codes_are_refused_with_reasons(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let admin = stack.admin();
    let role = stack.create_role("ops", &[]).await;
    let grant = |code: &str| {
        let stack = &stack;
        let admin = admin.clone();
        let code = code.to_owned();
        async move {
            stack
                .gql(
                    "mutation($r: ID!, $c: String!) { grantPermission(roleId: $r, code: $c) { id } }",
                    json!({ "r": role, "c": code }),
                    Some(&admin),
                )
                .await
        }
    };
    grant("identity.*.read")
        .await
        .expect_error("BAD_USER_INPUT", "whole trailing segment");
    grant("identity.user*")
        .await
        .expect_error("BAD_USER_INPUT", "whole trailing segment");
    grant("Identity.user.read")
        .await
        .expect_error("BAD_USER_INPUT", "lowercase");
    grant("identity.user")
        .await
        .expect_error("BAD_USER_INPUT", "module.resource.action");
    grant(&"a".repeat(200))
        .await
        .expect_error("BAD_USER_INPUT", "at most 128");
    let define = |code: &str| {
        let stack = &stack;
        let admin = admin.clone();
        let code = code.to_owned();
        async move {
            stack
                .gql(
                    "mutation($c: String!) { definePermission(input: { code: $c, description: \"x\" }) { code } }",
                    json!({ "c": code }),
                    Some(&admin),
                )
                .await
        }
    };
    define("billing.invoice.*")
        .await
        .expect_error("BAD_USER_INPUT", "whole trailing segment");
    define("billing.invoice.read").await.data();
    stack
        .gql(
            "query($u: ID!) { checkPermissions(userId: $u, codes: [\"not a code\"]) { granted } }",
            json!({ "u": Uuid::now_v7() }),
            Some(&admin),
        )
        .await
        .expect_error("BAD_USER_INPUT", "module.resource.action");
    stack
        .gql(
            "mutation { createRole(input: { name: \"Bad Name\" }) { id } }",
            json!({}),
            Some(&admin),
        )
        .await
        .expect_error("BAD_USER_INPUT", "not a role name");
    assert_eq!(
        stack.count::<role_permission::Entity>().await,
        1,
        "only admin's `*`: nothing half-written"
    );
}

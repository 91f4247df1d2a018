//! Who may read and change roles and grants, over real HTTP beside a real identity service,
//! on SQLite and Postgres: tokens and permissions checked, sensitive changes checked against
//! current grants, and nobody handing out more than they hold.

mod common;

use common::{ENTITIES, Stack, reps};
use keygraph_kernel::testing::Backend;
use serde_json::json;

keygraph_kernel::on_both_backends!(access_is_checked,);

async fn access_is_checked(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let role = stack.seed_role("readers", &["identity.user.read"]).await;
    let users = stack.seed_users_with_roles(2, &[role]).await;
    let (alice, bob) = (users[0], users[1]);
    let alice_token = stack.token(alice, &[]);

    stack
        .gql("{ roles { totalCount } }", json!({}), None)
        .await
        .expect_error("UNAUTHENTICATED", "access token");
    stack
        .gql("{ roles { totalCount } }", json!({}), Some(&alice_token))
        .await
        .expect_error("FORBIDDEN", "authz.role.read");
    stack
        .gql(
            "mutation { createRole(input: { name: \"x\" }) { id } }",
            json!({}),
            Some(&alice_token),
        )
        .await
        .expect_error("FORBIDDEN", "authz.role.create");
    stack
        .gql("{ permissions { code } }", json!({}), Some(&alice_token))
        .await
        .expect_error("FORBIDDEN", "authz.permission.read");

    let own = stack
        .gql(ENTITIES, reps(&[alice]), Some(&alice_token))
        .await;
    assert_eq!(
        own.data()["_entities"][0]["roles"][0]["name"],
        json!("readers")
    );
    stack
        .gql(ENTITIES, reps(&[bob]), Some(&alice_token))
        .await
        .expect_error("FORBIDDEN", "authz.role.read");
    stack
        .gql(ENTITIES, reps(&[bob]), None)
        .await
        .expect_error("UNAUTHENTICATED", "access token");
    stack
        .gql(
            "query($u: ID!) { checkPermissions(userId: $u, codes: [\"identity.user.read\"]) { granted } }",
            json!({ "u": bob }),
            Some(&alice_token),
        )
        .await
        .expect_error("FORBIDDEN", "authz.permission.read");
    let role_reader = stack.token(alice, &["authz.role.read"]);
    let other = stack.gql(ENTITIES, reps(&[bob]), Some(&role_reader)).await;
    assert_eq!(
        other.data()["_entities"][0]["roles"][0]["name"],
        json!("readers")
    );
    stack
        .gql("query($r: [_Any!]!) { _entities(representations: $r) { ... on User { permissions } } }", reps(&[bob]), Some(&role_reader))
        .await
        .expect_error("FORBIDDEN", "authz.permission.read");

    // What a token's scope says is not enough for sensitive changes: they read current
    // grants (the scope may be up to the token's lifetime old).
    let target = stack.seed_role("target", &[]).await;
    let stale = stack.token(bob, &["authz.role.grant", "identity.user.read"]);
    stack
        .gql(
            "mutation($r: ID!) { grantPermission(roleId: $r, code: \"identity.user.read\") { id } }",
            json!({ "r": target }),
            Some(&stale),
        )
        .await
        .expect_error("FORBIDDEN", "`authz.role.grant`, which you do not hold (any more)");

    // Nobody hands out more than they hold.
    let granting = stack
        .seed_role(
            "granters",
            &[
                "authz.role.grant",
                "authz.role.assign",
                "identity.user.read",
            ],
        )
        .await;
    stack.assign_directly(alice, granting).await;
    let granter = stack.token(
        alice,
        &[
            "authz.role.grant",
            "authz.role.assign",
            "identity.user.read",
        ],
    );
    stack
        .gql(
            "mutation($r: ID!) { grantPermission(roleId: $r, code: \"identity.user.delete\") { id } }",
            json!({ "r": target }),
            Some(&granter),
        )
        .await
        .expect_error("FORBIDDEN", "identity.user.delete");
    stack
        .gql(
            "mutation($r: ID!) { grantPermission(roleId: $r, code: \"identity.*\") { id } }",
            json!({ "r": target }),
            Some(&granter),
        )
        .await
        .expect_error("FORBIDDEN", "you do not hold `identity.*`");
    stack
        .gql(
            "mutation($r: ID!) { grantPermission(roleId: $r, code: \"identity.user.read\") { id } }",
            json!({ "r": target }),
            Some(&granter),
        )
        .await
        .data();
    let admins = stack
        .gql(
            "{ roleByName(name: \"admin\") { id } }",
            json!({}),
            Some(&stack.admin()),
        )
        .await;
    stack
        .gql(
            "mutation($u: ID!, $r: ID!) { assignRole(userId: $u, roleId: $r) { id } }",
            json!({ "u": bob, "r": admins.data()["roleByName"]["id"] }),
            Some(&granter),
        )
        .await
        .expect_error("FORBIDDEN", "hand out");
    // An admin token holds every code, so it may grant `*`.
    stack
        .gql(
            "mutation($r: ID!) { grantPermission(roleId: $r, code: \"*\") { id } }",
            json!({ "r": target }),
            Some(&stack.admin()),
        )
        .await
        .data();
}

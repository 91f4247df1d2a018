//! Privilege escalation paths across identity and authz, over real HTTP, on SQLite and on
//! Postgres: taking away needs what handing out needs, nobody acts on an account more
//! powerful than their own, the last administrator stays, and wildcards are held, not
//! assembled.

mod common;

use common::Stack;
use keygraph_kernel::testing::{Answer, Backend};
use serde_json::json;
use uuid::Uuid;

keygraph_kernel::on_both_backends!(
    a_helpdesk_cannot_act_on_an_administrator,
    taking_away_needs_what_handing_out_needs,
    the_last_active_administrator_stays,
    wildcards_must_cover_codes_and_be_held_whole,
);

const HELPDESK: &[&str] = &[
    "identity.user.read",
    "identity.user.update",
    "identity.user.delete",
    "authz.role.read",
    "authz.role.assign",
];

async fn admin_role(stack: &Stack) -> Uuid {
    let found = stack
        .gql(
            "{ roleByName(name: \"admin\") { id } }",
            json!({}),
            Some(&stack.admin()),
        )
        .await;
    Uuid::parse_str(found.data()["roleByName"]["id"].as_str().expect("id")).expect("uuid")
}

async fn set_status(stack: &Stack, user: Uuid, status: &str, token: &str) -> Answer {
    stack
        .identity
        .gql(
            "mutation($u: ID!, $s: UserStatus!) { setUserStatus(id: $u, status: $s) { status } }",
            json!({ "u": user, "s": status }),
            Some(token),
        )
        .await
}

async fn delete_user(stack: &Stack, user: Uuid, token: &str) -> Answer {
    stack
        .identity
        .gql(
            "mutation($u: ID!) { deleteUser(id: $u) }",
            json!({ "u": user }),
            Some(token),
        )
        .await
}

async fn unassign(stack: &Stack, user: Uuid, role: Uuid, token: &str) -> Answer {
    stack
        .gql(
            "mutation($u: ID!, $r: ID!) { unassignRole(userId: $u, roleId: $r) { id } }",
            json!({ "u": user, "r": role }),
            Some(token),
        )
        .await
}

/// A user holding `codes` through a role of their own, and their token.
async fn user_holding(stack: &Stack, email: &str, codes: &[&str]) -> (Uuid, String) {
    let user = stack.create_user(email).await;
    let role = stack
        .seed_role(
            &email.split('@').next().unwrap_or("r").replace('.', "_"),
            codes,
        )
        .await;
    stack.assign_directly(user, role).await;
    (user, stack.token(user, codes))
}

async fn a_helpdesk_cannot_act_on_an_administrator(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let (_, helpdesk) = user_holding(&stack, "helpdesk@example.com", HELPDESK).await;
    let admin = stack.admin_id;
    set_status(&stack, admin, "DISABLED", &helpdesk)
        .await
        .expect_error("FORBIDDEN", "this account holds permissions you do not");
    delete_user(&stack, admin, &helpdesk)
        .await
        .expect_error("FORBIDDEN", "this account holds permissions you do not");
    unassign(&stack, admin, admin_role(&stack).await, &helpdesk)
        .await
        .expect_error("FORBIDDEN", "you do not hold `*`");
    // The administrator is untouched.
    let me = stack
        .identity
        .gql("{ me { status } }", json!({}), Some(&stack.admin()))
        .await;
    assert_eq!(me.data()["me"]["status"], json!("ACTIVE"));

    // Accounts holding no more than the helpdesk are theirs to manage.
    let (reader, _) = user_holding(&stack, "reader@example.com", &["identity.user.read"]).await;
    assert_eq!(
        set_status(&stack, reader, "DISABLED", &helpdesk)
            .await
            .data()["setUserStatus"]["status"],
        json!("DISABLED")
    );
    set_status(&stack, reader, "ACTIVE", &helpdesk).await.data();
    delete_user(&stack, reader, &helpdesk).await.data();

    // A token's scope alone is not enough: the grants are read now.
    let (former, _) = user_holding(&stack, "former@example.com", &[]).await;
    let stale = stack.token(former, HELPDESK);
    let (victim, _) = user_holding(&stack, "victim@example.com", &[]).await;
    set_status(&stack, victim, "DISABLED", &stale)
        .await
        .expect_error(
            "FORBIDDEN",
            "`identity.user.update`, which you do not hold (any more)",
        );
}

async fn taking_away_needs_what_handing_out_needs(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let powerful = stack
        .create_role("powerful", &["identity.user.delete", "identity.user.read"])
        .await;
    let (target, _) = user_holding(&stack, "target@example.com", &[]).await;
    stack.assign(target, powerful).await.data();

    // Only `authz.role.grant`: it may not revoke a code it does not hold.
    let (_, granter) = user_holding(&stack, "granter@example.com", &["authz.role.grant"]).await;
    stack
        .gql(
            "mutation($r: ID!) { revokePermission(roleId: $r, code: \"identity.user.delete\") { id } }",
            json!({ "r": powerful }),
            Some(&granter),
        )
        .await
        .expect_error("FORBIDDEN", "you do not hold `identity.user.delete`");
    // Only `authz.role.assign`: it may not take a role granting what it does not hold.
    let (_, assigner) = user_holding(&stack, "assigner@example.com", &["authz.role.assign"]).await;
    unassign(&stack, target, powerful, &assigner)
        .await
        .expect_error("FORBIDDEN", "you do not hold `identity.user.delete`");
    // Holding the role's codes is not enough when the user holds more than the actor.
    let extra = stack.create_role("extra", &["authz.permission.read"]).await;
    stack.assign(target, extra).await.data();
    let (_, peer) = user_holding(
        &stack,
        "peer@example.com",
        &[
            "authz.role.assign",
            "identity.user.delete",
            "identity.user.read",
        ],
    )
    .await;
    unassign(&stack, target, powerful, &peer)
        .await
        .expect_error(
            "FORBIDDEN",
            "this user holds permissions you do not (`authz.permission.read`)",
        );
    // Deleting a role takes its grants away too.
    let (_, deleter) = user_holding(&stack, "deleter@example.com", &["authz.role.delete"]).await;
    stack
        .gql(
            "mutation($r: ID!) { deleteRole(id: $r) }",
            json!({ "r": powerful }),
            Some(&deleter),
        )
        .await
        .expect_error("FORBIDDEN", "you do not hold `identity.user.delete`");
    // The administrator may do all of it; the role is still there for that.
    unassign(&stack, target, powerful, &stack.admin())
        .await
        .data();
    stack
        .gql(
            "mutation($r: ID!) { revokePermission(roleId: $r, code: \"identity.user.delete\") { id } }",
            json!({ "r": powerful }),
            Some(&stack.admin()),
        )
        .await
        .data();
}

async fn the_last_active_administrator_stays(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let (admin, root) = (stack.admin_id, stack.admin());
    let admins = admin_role(&stack).await;
    set_status(&stack, admin, "DISABLED", &root)
        .await
        .expect_error("CONFLICT", "last active administrator");
    delete_user(&stack, admin, &root)
        .await
        .expect_error("CONFLICT", "last active administrator");
    unassign(&stack, admin, admins, &root)
        .await
        .expect_error("CONFLICT", "no active administrator");

    // With a second one, the first may go; then the second is the last.
    let second = stack.create_user("second@example.com").await;
    stack.assign(second, admins).await.data();
    let codes: Vec<&str> = keygraph_kernel::permissions::CATALOG
        .iter()
        .map(|(c, _)| *c)
        .collect();
    let second_token = stack.token(second, &codes);
    set_status(&stack, admin, "DISABLED", &second_token)
        .await
        .data();
    unassign(&stack, second, admins, &second_token)
        .await
        .expect_error("CONFLICT", "no active administrator");
    // A custom role holding `*` counts as well, and losing it is checked the same way.
    let everything = stack.create_role("everything", &["*"]).await;
    stack.assign(second, everything).await.data();
    unassign(&stack, second, admins, &second_token).await.data();
    stack
        .gql(
            "mutation($r: ID!) { revokePermission(roleId: $r, code: \"*\") { id } }",
            json!({ "r": everything }),
            Some(&second_token),
        )
        .await
        .expect_error("CONFLICT", "no active administrator");
    stack
        .gql(
            "mutation($r: ID!) { deleteRole(id: $r) }",
            json!({ "r": everything }),
            Some(&second_token),
        )
        .await
        .expect_error("CONFLICT", "no active administrator");
}

async fn wildcards_must_cover_codes_and_be_held_whole(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let target = stack.create_role("billing_admins", &[]).await;
    let grant = |code: &'static str, token: String| {
        let stack = &stack;
        async move {
            stack
                .gql(
                    "mutation($r: ID!, $c: String!) { grantPermission(roleId: $r, code: $c) { id } }",
                    json!({ "r": target, "c": code }),
                    Some(&token),
                )
                .await
        }
    };
    // No catalog code under it yet: refused, even for an administrator.
    let refused = grant("billing.*", stack.admin()).await;
    refused.expect_error("BAD_USER_INPUT", "covers no code in the permission catalog");
    assert_eq!(refused.0["errors"][0]["extensions"]["field"], json!("code"));
    // Holding every code a wildcard covers today is not holding the wildcard: it would
    // also grant codes defined under it later.
    let (_, granter) = user_holding(
        &stack,
        "granter@example.com",
        &[
            "authz.role.grant",
            "identity.user.read",
            "identity.user.update",
            "identity.user.delete",
        ],
    )
    .await;
    grant("identity.user.*", granter.clone())
        .await
        .expect_error("FORBIDDEN", "you do not hold `identity.user.*`");
    grant("identity.user.read", granter).await.data();
    grant("identity.user.*", stack.admin()).await.data();
}

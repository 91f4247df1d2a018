//! Roles over real HTTP beside a real identity service, on SQLite and Postgres: building a
//! role and assigning it, renaming and name conflicts, deleting roles (built-in ones stay),
//! unknown ids, repeats that change and record nothing, and the seeded catalog and roles.

mod common;

use common::{ENTITIES, Stack, reps};
use keygraph_authz::entity::{role_permission, user_role};
use keygraph_kernel::testing::Backend;
use serde_json::{Value, json};
use uuid::Uuid;

keygraph_kernel::on_both_backends!(
    an_admin_builds_a_role_and_the_user_holds_it,
    duplicate_role_names_conflict,
    deleting_a_role_removes_its_grants_and_built_ins_stay,
    unknown_ids_are_not_found,
    repeats_change_nothing_and_record_nothing,
    the_catalog_and_built_in_roles_are_seeded,
);

async fn an_admin_builds_a_role_and_the_user_holds_it(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let admin = stack.admin();
    let support = stack
        .gql(
            "mutation { createRole(input: { name: \"support\", description: \"Helps users\" }) { id name description builtIn permissions { code } } }",
            json!({}),
            Some(&admin),
        )
        .await;
    let role = &support.data()["createRole"];
    assert_eq!(
        (&role["name"], &role["builtIn"], &role["permissions"]),
        (&json!("support"), &json!(false), &json!([]))
    );
    let role_id = role["id"].as_str().expect("id").to_owned();
    for code in ["identity.user.read", "authz.role.*"] {
        stack
            .gql(
                "mutation($r: ID!, $c: String!) { grantPermission(roleId: $r, code: $c) { name } }",
                json!({ "r": role_id, "c": code }),
                Some(&admin),
            )
            .await
            .data();
    }
    let user = stack.create_user("ada@example.com").await;
    let assigned = stack
        .gql(
            "mutation($u: ID!, $r: ID!) { assignRole(userId: $u, roleId: $r) { id roles { name } } }",
            json!({ "u": user, "r": role_id }),
            Some(&admin),
        )
        .await;
    // Beside `user`, which every account holds (`authz.default_roles`).
    assert_eq!(
        assigned.data()["assignRole"]["roles"],
        json!([{ "name": "support" }, { "name": "user" }])
    );

    let own = stack.token(user, &[]);
    let me = stack
        .gql(
            "query($r: [_Any!]!) { _entities(representations: $r) { ... on User { roles { name permissions { code description } } permissions can(permission: \"authz.role.delete\") cannot: can(permission: \"identity.user.delete\") } } }",
            reps(&[user]),
            Some(&own),
        )
        .await;
    let me = &me.data()["_entities"][0];
    assert_eq!(
        me["roles"][0]["permissions"][0]["code"],
        json!("authz.role.*")
    );
    assert!(
        me["roles"][0]["permissions"][0]["description"]
            .as_str()
            .is_some_and(|d| d.contains("authz.role."))
    );
    assert_eq!(
        me["permissions"],
        json!([
            "authz.role.assign",
            "authz.role.create",
            "authz.role.delete",
            "authz.role.grant",
            "authz.role.read",
            "authz.role.update",
            "identity.user.read"
        ])
    );
    assert_eq!((&me["can"], &me["cannot"]), (&json!(true), &json!(false)));

    let checks = stack
        .gql(
            "query($u: ID!) { checkPermissions(userId: $u, codes: [\"identity.user.read\", \"identity.user.delete\", \"authz.role.create\", \"billing.invoice.read\"]) { code granted } }",
            json!({ "u": user }),
            Some(&own),
        )
        .await;
    let granted: Vec<bool> = checks.data()["checkPermissions"]
        .as_array()
        .expect("list")
        .iter()
        .map(|c| c["granted"].as_bool().expect("bool"))
        .collect();
    assert_eq!(granted, [true, false, true, false]);
    let mine = stack.gql("{ myPermissions }", json!({}), Some(&own)).await;
    assert_eq!(mine.data()["myPermissions"], me["permissions"]);
    assert_eq!(
        stack.audit_actions().await,
        [
            "authz.role.created",
            "authz.role.permission_granted",
            "authz.role.permission_granted",
            "authz.user.role_assigned"
        ]
    );
}

async fn duplicate_role_names_conflict(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let admin = stack.admin();
    stack.create_role("ops", &[]).await;
    let other = stack.create_role("dev", &[]).await;
    stack
        .gql(
            "mutation { createRole(input: { name: \"ops\" }) { id } }",
            json!({}),
            Some(&admin),
        )
        .await
        .expect_error("CONFLICT", "already exists");
    stack
        .gql(
            "mutation($id: ID!) { updateRole(id: $id, input: { name: \"ops\" }) { id } }",
            json!({ "id": other }),
            Some(&admin),
        )
        .await
        .expect_error("CONFLICT", "already exists");
    let renamed = stack
        .gql(
            "mutation($id: ID!) { updateRole(id: $id, input: { name: \"developers\", description: \"Builds things\" }) { name description } }",
            json!({ "id": other }),
            Some(&admin),
        )
        .await;
    assert_eq!(
        renamed.data()["updateRole"],
        json!({ "name": "developers", "description": "Builds things" })
    );
}

async fn deleting_a_role_removes_its_grants_and_built_ins_stay(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let admin = stack.admin();
    let role = stack.create_role("temp", &["identity.user.read"]).await;
    let user = stack.create_user("grace@example.com").await;
    stack.assign(user, role).await.data();
    let deleted = stack
        .gql(
            "mutation($id: ID!) { deleteRole(id: $id) }",
            json!({ "id": role }),
            Some(&admin),
        )
        .await;
    assert_eq!(deleted.data()["deleteRole"], json!(role.to_string()));
    let roles = stack.gql(ENTITIES, reps(&[user]), Some(&admin)).await;
    assert_eq!(
        roles.data()["_entities"][0]["roles"],
        json!([{ "name": "user", "permissions": [] }]),
        "only the default role is left"
    );
    assert_eq!(
        stack.count::<user_role::Entity>().await,
        1,
        "only the administrator's admin role is left"
    );
    assert_eq!(
        stack.count::<role_permission::Entity>().await,
        1,
        "only admin's `*` is left"
    );

    let admin_role = stack
        .gql(
            "{ roleByName(name: \"admin\") { id } }",
            json!({}),
            Some(&admin),
        )
        .await
        .data()["roleByName"]["id"]
        .clone();
    stack
        .gql(
            "mutation($id: ID!) { deleteRole(id: $id) }",
            json!({ "id": admin_role }),
            Some(&admin),
        )
        .await
        .expect_error("FORBIDDEN", "cannot be deleted");
    stack
        .gql(
            "mutation($id: ID!) { updateRole(id: $id, input: { name: \"root\" }) { id } }",
            json!({ "id": admin_role }),
            Some(&admin),
        )
        .await
        .expect_error("FORBIDDEN", "cannot be renamed");
    stack
        .gql(
            "mutation($id: ID!) { revokePermission(roleId: $id, code: \"*\") { id } }",
            json!({ "id": admin_role }),
            Some(&admin),
        )
        .await
        .expect_error("FORBIDDEN", "always holds `*`");
}

async fn unknown_ids_are_not_found(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let admin = stack.admin();
    let nobody = Uuid::now_v7();
    let missing = stack
        .gql(
            "query($id: ID!) { role(id: $id) { id } }",
            json!({ "id": nobody }),
            Some(&admin),
        )
        .await;
    assert!(missing.data()["role"].is_null());
    for mutation in [
        "mutation($id: ID!) { deleteRole(id: $id) }",
        "mutation($id: ID!) { updateRole(id: $id, input: { description: \"x\" }) { id } }",
        "mutation($id: ID!) { grantPermission(roleId: $id, code: \"identity.user.read\") { id } }",
    ] {
        stack
            .gql(mutation, json!({ "id": nobody }), Some(&admin))
            .await
            .expect_error("NOT_FOUND", "no role");
    }
    let role = stack.create_role("ops", &[]).await;
    stack
        .assign(nobody, role)
        .await
        .expect_error("NOT_FOUND", "no user");
    stack
        .gql(
            "mutation($id: ID!) { grantPermission(roleId: $id, code: \"billing.invoice.read\") { id } }",
            json!({ "id": role }),
            Some(&admin),
        )
        .await
        .expect_error("NOT_FOUND", "not in the permission catalog");
    stack
        .gql("query { role(id: \"x\") { id } }", json!({}), Some(&admin))
        .await
        .expect_error("BAD_USER_INPUT", "not a role id");
}

async fn repeats_change_nothing_and_record_nothing(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let admin = stack.admin();
    let role = stack.create_role("ops", &["identity.user.read"]).await;
    let user = stack.create_user("linus@example.com").await;
    for _ in 0..2 {
        stack.assign(user, role).await.data();
        stack
            .gql(
                "mutation($r: ID!) { grantPermission(roleId: $r, code: \"identity.user.read\") { id } }",
                json!({ "r": role }),
                Some(&admin),
            )
            .await
            .data();
        stack
            .gql(
                "mutation { definePermission(input: { code: \"billing.invoice.read\", description: \"Read invoices\" }) { code } }",
                json!({}),
                Some(&admin),
            )
            .await
            .data();
    }
    for _ in 0..2 {
        stack
            .gql(
                "mutation($u: ID!, $r: ID!) { unassignRole(userId: $u, roleId: $r) { id } }",
                json!({ "u": user, "r": role }),
                Some(&admin),
            )
            .await
            .data();
        stack
            .gql(
                "mutation($r: ID!) { revokePermission(roleId: $r, code: \"identity.user.read\") { id } }",
                json!({ "r": role }),
                Some(&admin),
            )
            .await
            .data();
    }
    assert_eq!(
        stack.audit_actions().await,
        [
            "authz.role.created",
            "authz.role.permission_granted",
            "authz.user.role_assigned",
            "authz.permission.defined",
            "authz.user.role_unassigned",
            "authz.role.permission_revoked",
        ]
    );
}

async fn the_catalog_and_built_in_roles_are_seeded(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let admin = stack.admin();
    let identity = stack
        .gql(
            "{ permissions(module: \"identity\") { code module description } }",
            json!({}),
            Some(&admin),
        )
        .await;
    let codes: Vec<&str> = identity.data()["permissions"]
        .as_array()
        .expect("list")
        .iter()
        .map(|p| p["code"].as_str().expect("code"))
        .collect();
    assert_eq!(
        codes,
        [
            "identity.user.delete",
            "identity.user.read",
            "identity.user.update"
        ]
    );
    let roles = stack
        .gql("{ roles(first: 10) { totalCount edges { node { name builtIn permissions { code } } } } }", json!({}), Some(&admin))
        .await;
    assert_eq!(roles.data()["roles"]["totalCount"], json!(2));
    let nodes: Vec<&Value> = roles.data()["roles"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| &e["node"])
        .collect();
    assert_eq!(
        nodes[0],
        &json!({ "name": "admin", "builtIn": true, "permissions": [{ "code": "*" }] })
    );
    assert_eq!(nodes[1]["name"], json!("user"));
    stack
        .gql(
            "{ roles(first: 101) { totalCount } }",
            json!({}),
            Some(&admin),
        )
        .await
        .expect_error("BAD_USER_INPUT", "between 0 and 100");
}

//! The authz subgraph over real HTTP beside a real identity service, on SQLite and Postgres.

mod common;

use std::time::Duration;

use common::{ENTITIES, Options, Stack, reps};
use keygraph_authz::entity::{role_permission, user_role};
use keygraph_identity::entity::pending_call;
use keygraph_kernel::{
    internal::LocalServices,
    testing::{Backend, INTERNAL_TOKEN, TestServer},
};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

keygraph_kernel::on_both_backends!(
    an_admin_builds_a_role_and_the_user_holds_it,
    wildcards_expand_against_the_catalog,
    invalid_codes_are_refused_with_reasons,
    duplicate_role_names_conflict,
    deleting_a_role_removes_its_grants_and_built_ins_stay,
    unknown_ids_are_not_found,
    access_is_checked,
    repeats_change_nothing_and_record_nothing,
    the_catalog_and_built_in_roles_are_seeded,
    internal_endpoints_serve_grants_to_auth,
    deleting_a_user_in_identity_removes_their_grants,
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

async fn internal_endpoints_serve_grants_to_auth(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let role = stack.seed_role("readers", &["identity.user.*"]).await;
    let user = stack.seed_users_with_roles(1, &[role]).await[0];
    let path = format!("/internal/users/{user}/grants");
    let (status, _) = stack.authz.internal(Method::GET, &path, None, None).await;
    assert_eq!(status, 401);
    let (status, _) = stack
        .authz
        .internal(Method::GET, &path, None, Some("wrong"))
        .await;
    assert_eq!(status, 401);
    let (status, grants) = stack
        .authz
        .internal(Method::GET, &path, None, Some(INTERNAL_TOKEN))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        grants,
        json!({ "roles": ["readers", "user"], "permissions": ["identity.user.delete", "identity.user.read", "identity.user.update"] })
    );
    let (status, _) = stack
        .authz
        .internal(
            Method::GET,
            "/internal/users/nope/grants",
            None,
            Some(INTERNAL_TOKEN),
        )
        .await;
    assert_eq!(status, 400);
}

async fn deleting_a_user_in_identity_removes_their_grants(backend: Backend) {
    // Identity first talks to an address where authz is not yet listening.
    let reserved = TestServer::listener().await;
    let authz_base = TestServer::base_of(&reserved);
    let authz_addr = reserved.local_addr().expect("addr");
    drop(reserved);
    let Some(stack) = Stack::start_with(
        backend,
        Options {
            identity_authz_url: Some(authz_base),
            authz_listener: None,
            first_admin: Some("first@keygraph.test".into()),
        },
    )
    .await
    else {
        return;
    };
    let role = stack.seed_role("readers", &["identity.user.read"]).await;
    let user = stack.create_user("dennis@example.com").await;
    stack.assign_directly(user, role).await;
    let delete = || async {
        stack
            .identity
            .gql(
                "mutation($id: ID!) { deleteUser(id: $id) }",
                json!({ "id": user }),
                Some(&stack.admin()),
            )
            .await
    };

    // Whether the caller may delete is authz's to say: without an answer, nothing happens.
    delete()
        .await
        .expect_error("SERVICE_UNAVAILABLE", "authz does not answer");
    assert!(
        pending_call(&stack, user, pending_call::DROP_GRANTS)
            .await
            .is_none()
    );
    assert_eq!(stack.count::<user_role::Entity>().await, 2);

    // A hand-over made meanwhile (the first administrator's role) is kept while authz is
    // unreachable...
    let first = stack.create_user("first@keygraph.test").await;
    let mut pending = None;
    for _ in 0..50 {
        pending = pending_call(&stack, first, pending_call::ASSIGN_ROLE).await;
        if pending.as_ref().is_some_and(|p| p.attempts > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pending = pending.expect("the assignment waits for authz");
    assert!(
        pending.attempts > 0 && pending.last_error.is_some(),
        "{pending:?}"
    );

    // ...and delivered once an authz answers at that address.
    let listener = tokio::net::TcpListener::bind(authz_addr)
        .await
        .expect("rebind");
    let late_authz =
        keygraph_authz::build(&stack.config, INTERNAL_TOKEN, &LocalServices::default())
            .await
            .expect("authz");
    let _late = TestServer::start_on(
        listener,
        "authz",
        late_authz.router,
        &stack.config,
        keygraph_kernel::http::database_readiness(late_authz.db),
        TestServer::shutdown_pair(),
    );
    let mut delivered = false;
    for _ in 0..100 {
        delivered = pending_call(&stack, first, pending_call::ASSIGN_ROLE)
            .await
            .is_none();
        if delivered {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(delivered, "the first administrator's role is delivered");
    assert_eq!(stack.count::<user_role::Entity>().await, 3);

    delete().await.data();
    let mut remaining = 3;
    for _ in 0..100 {
        remaining = stack.count::<user_role::Entity>().await;
        if remaining == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(remaining, 2, "the deleted user's grants are gone");
    assert!(
        stack
            .audit_actions()
            .await
            .contains(&"authz.user.grants_removed".to_owned())
    );
    let left = pending_call(&stack, user, pending_call::DROP_GRANTS).await;
    assert!(left.is_none(), "the hand-over is done");
}

/// Identity's pending call of `kind` about `user`, if any.
async fn pending_call(stack: &Stack, user: Uuid, kind: &str) -> Option<pending_call::Model> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    pending_call::Entity::find()
        .filter(pending_call::Column::UserId.eq(user))
        .filter(pending_call::Column::Kind.eq(kind))
        .one(&stack.identity_db)
        .await
        .expect("pending calls")
}

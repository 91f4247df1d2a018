//! Default roles (`authz.default_roles`, `[user]` by default): every account holds them
//! without an assignment, new and existing alike, in every look-up of what a user holds; they
//! cannot be taken from one account, deleted or given `*`; and start-up refuses a setting that
//! names a role the database does not have. On SQLite and Postgres.

mod common;

use common::{ENTITIES, Stack, reps};
use keygraph_authz::{entity::user_role, service::Authz};
use keygraph_kernel::{
    internal::{InternalClient, LocalServices},
    testing::{Backend, INTERNAL_TOKEN},
};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

keygraph_kernel::on_both_backends!(
    a_new_account_holds_the_default_role,
    a_code_granted_to_user_reaches_every_account,
    default_roles_are_not_taken_deleted_or_given_everything,
    start_up_refuses_a_default_role_that_does_not_fit,
    the_setting_decides_which_roles_every_account_holds,
);

/// The built-in `user` role's id.
async fn user_role_id(stack: &Stack) -> Uuid {
    let found = stack
        .gql(
            "{ roleByName(name: \"user\") { id } }",
            json!({}),
            Some(&stack.admin()),
        )
        .await;
    Uuid::parse_str(found.data()["roleByName"]["id"].as_str().expect("id")).expect("uuid")
}

/// What auth puts into a user's tokens: `{"roles", "permissions"}`.
async fn token_grants(stack: &Stack, user: Uuid) -> Value {
    let (status, grants) = stack
        .authz
        .internal(
            Method::GET,
            &format!("/internal/users/{user}/grants"),
            None,
            Some(INTERNAL_TOKEN),
        )
        .await;
    assert_eq!(status, 200, "{grants}");
    grants
}

async fn a_new_account_holds_the_default_role(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let user = stack.create_user("newcomer@example.com").await;
    let own = stack.token(user, &[]);
    let me = stack.gql(ENTITIES, reps(&[user]), Some(&own)).await;
    assert_eq!(
        me.data()["_entities"][0]["roles"],
        json!([{ "name": "user", "permissions": [] }])
    );
    assert_eq!(
        token_grants(&stack, user).await,
        json!({ "roles": ["user"], "permissions": [] })
    );
    // Implicitly: nothing was stored for the new account.
    assert_eq!(
        stack.count::<user_role::Entity>().await,
        1,
        "only the administrator's admin role is stored"
    );
    // The administrator holds it beside `admin`.
    let admin = stack
        .gql(ENTITIES, reps(&[stack.admin_id]), Some(&stack.admin()))
        .await;
    let names: Vec<&str> = admin.data()["_entities"][0]["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["admin", "user"]);
}

async fn a_code_granted_to_user_reaches_every_account(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let admin = stack.admin();
    let existing = stack.create_user("existing@example.com").await;
    stack
        .gql(
            "mutation { definePermission(input: { code: \"billing.invoice.read\", description: \"Read invoices\" }) { code } }",
            json!({}),
            Some(&admin),
        )
        .await
        .data();
    let granted = stack
        .gql(
            "mutation($r: ID!) { grantPermission(roleId: $r, code: \"billing.invoice.read\") { name permissions { code } } }",
            json!({ "r": user_role_id(&stack).await }),
            Some(&admin),
        )
        .await;
    assert_eq!(
        granted.data()["grantPermission"],
        json!({ "name": "user", "permissions": [{ "code": "billing.invoice.read" }] })
    );

    let fresh = stack.create_user("fresh@example.com").await;
    for user in [fresh, existing] {
        assert_eq!(
            token_grants(&stack, user).await,
            json!({ "roles": ["user"], "permissions": ["billing.invoice.read"] }),
            "{user}"
        );
        let own = stack.token(user, &[]);
        let checks = stack
            .gql(
                "query($u: ID!) { checkPermissions(userId: $u, codes: [\"billing.invoice.read\", \"identity.user.read\"]) { granted } myPermissions }",
                json!({ "u": user }),
                Some(&own),
            )
            .await;
        assert_eq!(
            checks.data()["checkPermissions"],
            json!([{ "granted": true }, { "granted": false }])
        );
        assert_eq!(
            checks.data()["myPermissions"],
            json!(["billing.invoice.read"])
        );
    }
    // Beside a role of their own, merged and sorted, each code once.
    let readers = stack
        .create_role("readers", &["identity.user.read", "billing.invoice.read"])
        .await;
    stack.assign(fresh, readers).await.data();
    assert_eq!(
        token_grants(&stack, fresh).await,
        json!({ "roles": ["readers", "user"], "permissions": ["billing.invoice.read", "identity.user.read"] })
    );
    let both = stack
        .gql(
            "query($r: [_Any!]!) { _entities(representations: $r) { ... on User { permissions roles { name } } } }",
            reps(&[fresh, existing]),
            Some(&admin),
        )
        .await;
    assert_eq!(
        both.data()["_entities"],
        json!([
            { "permissions": ["billing.invoice.read", "identity.user.read"], "roles": [{ "name": "readers" }, { "name": "user" }] },
            { "permissions": ["billing.invoice.read"], "roles": [{ "name": "user" }] },
        ])
    );
}

async fn default_roles_are_not_taken_deleted_or_given_everything(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let admin = stack.admin();
    let role = user_role_id(&stack).await;
    let user = stack.create_user("kept@example.com").await;
    stack
        .gql(
            "mutation($u: ID!, $r: ID!) { unassignRole(userId: $u, roleId: $r) { id } }",
            json!({ "u": user, "r": role }),
            Some(&admin),
        )
        .await
        .expect_error(
            "BAD_USER_INPUT",
            "every account holds the role `user` through `authz.default_roles`",
        );
    // Assigning it is a harmless repeat: success, nothing stored, nothing recorded.
    let assigned = stack.assign(user, role).await;
    assert!(assigned.0.get("errors").is_none(), "{}", assigned.0);
    assert_eq!(stack.count::<user_role::Entity>().await, 1);
    stack
        .assign(Uuid::now_v7(), role)
        .await
        .expect_error("NOT_FOUND", "no user");
    stack
        .gql(
            "mutation($id: ID!) { deleteRole(id: $id) }",
            json!({ "id": role }),
            Some(&admin),
        )
        .await
        .expect_error("FORBIDDEN", "`authz.default_roles`");
    stack
        .gql(
            "mutation($r: ID!) { grantPermission(roleId: $r, code: \"*\") { id } }",
            json!({ "r": role }),
            Some(&admin),
        )
        .await
        .expect_error("FORBIDDEN", "every account an administrator");
    assert_eq!(stack.audit_actions().await, Vec::<String>::new());
    assert_eq!(
        token_grants(&stack, user).await["roles"],
        json!(["user"]),
        "still held"
    );
}

async fn start_up_refuses_a_default_role_that_does_not_fit(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    for (roles, says) in [
        (
            vec!["user", "nope"],
            "setting `authz.default_roles`: there is no role named `nope`",
        ),
        (vec!["admin"], "the role `admin` grants `*`"),
    ] {
        let mut config = stack.config.clone();
        config.authz.default_roles = roles.iter().map(|r| (*r).to_owned()).collect();
        match keygraph_authz::build(&config, INTERNAL_TOKEN, &LocalServices::default()).await {
            Ok(_) => panic!("authz started with default roles {roles:?}"),
            Err(err) => assert!(format!("{err:#}").contains(says), "{roles:?}: {err:#}"),
        }
    }
}

/// The service over the stack's database with other default roles.
async fn authz_with(stack: &Stack, roles: &[&str]) -> Authz {
    let identity =
        InternalClient::new(&stack.config.authz.identity_url, INTERNAL_TOKEN).expect("client");
    let names: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
    Authz::new(stack.db.clone(), identity)
        .with_default_roles(&names)
        .await
        .expect("the default roles exist")
}

async fn the_setting_decides_which_roles_every_account_holds(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let staff = stack.seed_role("staff", &["identity.user.read"]).await;
    let user = stack.create_user("someone@example.com").await;

    let none = authz_with(&stack, &[]).await;
    let grants = none.user_grants(user).await.expect("grants");
    assert!(grants.roles.is_empty() && grants.permissions.is_empty());
    assert!(none.roles_of_users(&[user]).await.expect("roles")[&user].is_empty());

    let two = authz_with(&stack, &["user", "staff"]).await;
    assert!(two.is_default_role(staff));
    // Assigned as well as default: still once.
    stack.assign_directly(user, staff).await;
    let grants = two.user_grants(user).await.expect("grants");
    assert_eq!(grants.roles, ["staff", "user"]);
    assert_eq!(grants.permissions, ["identity.user.read"]);
    let other = Uuid::now_v7();
    let roles = two.roles_of_users(&[user, other]).await.expect("roles");
    for holder in [user, other] {
        let names: Vec<&str> = roles[&holder].iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["staff", "user"], "{holder}");
    }
    let effective = two
        .effective_permissions_of_users(&[user, other])
        .await
        .expect("codes");
    assert_eq!(effective[&user], ["identity.user.read"]);
    assert_eq!(effective[&other], ["identity.user.read"]);
    assert_eq!(
        two.check(other, &["identity.user.read".to_owned()])
            .await
            .expect("check"),
        [("identity.user.read".to_owned(), true)]
    );
    // Nobody is more powerful than anyone else through a role everyone holds.
    let authority = two.authority(other, user).await.expect("authority");
    assert_eq!(authority.actor_permissions, ["identity.user.read"]);
    assert!(authority.target_beyond_actor.is_empty());
}

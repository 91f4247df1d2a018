//! Authz and identity talking to each other, over real HTTP, on SQLite and Postgres: the
//! internal endpoint serving a user's grants to auth, and a user deleted in identity losing
//! their grants, handed over through identity's pending calls while authz is unreachable.

mod common;

use std::time::Duration;

use common::{Options, Stack};
use keygraph_authz::entity::user_role;
use keygraph_identity::entity::pending_call;
use keygraph_kernel::{
    internal::LocalServices,
    testing::{Backend, INTERNAL_TOKEN, TestServer},
};
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

keygraph_kernel::on_both_backends!(
    internal_endpoints_serve_grants_to_auth,
    deleting_a_user_in_identity_removes_their_grants,
);

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

//! Who may call what, over real HTTP, on SQLite and on Postgres: access tokens and
//! permissions on queries, mutations and entity references, and the internal endpoints
//! needing the internal token and answering every credential failure alike.

mod common;

use common::{INTERNAL_TOKEN, TestService};
use keygraph_kernel::testing::Backend;
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

const PASSWORD: &str = "quiet lantern harbor";

keygraph_kernel::on_both_backends!(
    access_is_checked_by_token_and_permission,
    internal_endpoints_need_the_token_and_fail_uniformly,
);

async fn access_is_checked_by_token_and_permission(backend: Backend) {
    let Some(svc) = TestService::start(backend).await else {
        return;
    };
    let alice = svc.verified_user("alice@example.com", PASSWORD).await;
    let bob = svc.verified_user("bob@example.com", PASSWORD).await;
    let alice_token = svc.token(alice, &[]);

    svc.gql("{ me { id } }", json!({}), None)
        .await
        .expect_error("UNAUTHENTICATED", "needs an access token");
    svc.gql("{ me { id } }", json!({}), Some("garbage"))
        .await
        .expect_error("UNAUTHENTICATED", "malformed");
    let other_signer = keygraph_kernel::testing::TestSigner::default();
    svc.gql(
        "{ me { id } }",
        json!({}),
        Some(&other_signer.token(alice, &[])),
    )
    .await
    .expect_error("UNAUTHENTICATED", "signature");
    let me = svc
        .gql("{ me { id email } }", json!({}), Some(&alice_token))
        .await;
    assert_eq!(me.data()["me"]["email"], json!("alice@example.com"));

    let user_query = "query($id: ID!) { user(id: $id) { email } }";
    let own = svc
        .gql(user_query, json!({ "id": alice }), Some(&alice_token))
        .await;
    assert_eq!(own.data()["user"]["email"], json!("alice@example.com"));
    svc.gql(user_query, json!({ "id": bob }), Some(&alice_token))
        .await
        .expect_error("FORBIDDEN", "identity.user.read");
    for grant in ["identity.user.read", "identity.user.*", "identity.*", "*"] {
        let reader = svc.token(alice, &[grant]);
        let other = svc
            .gql(user_query, json!({ "id": bob }), Some(&reader))
            .await;
        assert_eq!(
            other.data()["user"]["email"],
            json!("bob@example.com"),
            "{grant}"
        );
    }
    let near_miss = svc.token(alice, &["identity.users.read", "identity.user.readx"]);
    svc.gql(user_query, json!({ "id": bob }), Some(&near_miss))
        .await
        .expect_error("FORBIDDEN", "identity.user.read");
    let missing = svc
        .gql(
            user_query,
            json!({ "id": Uuid::now_v7() }),
            Some(&svc.admin()),
        )
        .await;
    assert!(missing.data()["user"].is_null());

    svc.gql("{ users { totalCount } }", json!({}), Some(&alice_token))
        .await
        .expect_error("FORBIDDEN", "identity.user.read");
    svc.gql(
        "mutation($id: ID!) { setUserStatus(id: $id, status: DISABLED) { id } }",
        json!({ "id": bob }),
        Some(&svc.token(alice, &["identity.user.read"])),
    )
    .await
    .expect_error("FORBIDDEN", "identity.user.update");
    svc.gql(
        "mutation($id: ID!) { deleteUser(id: $id) }",
        json!({ "id": bob }),
        Some(&alice_token),
    )
    .await
    .expect_error("FORBIDDEN", "identity.user.delete");

    // Entity references from other subgraphs are checked the same way.
    let entities =
        "query($r: [_Any!]!) { _entities(representations: $r) { ... on User { email } } }";
    let reps = |id: Uuid| json!({ "r": [{ "__typename": "User", "id": id }] });
    let own = svc.gql(entities, reps(alice), Some(&alice_token)).await;
    assert_eq!(
        own.data()["_entities"][0]["email"],
        json!("alice@example.com")
    );
    svc.gql(entities, reps(bob), Some(&alice_token))
        .await
        .expect_error("FORBIDDEN", "identity.user.read");
    svc.gql(entities, reps(bob), None)
        .await
        .expect_error("UNAUTHENTICATED", "access token");
    let reader = svc.token(alice, &["identity.user.read"]);
    let many = svc
        .gql(
            entities,
            json!({ "r": [
                { "__typename": "User", "id": bob },
                { "__typename": "User", "id": Uuid::now_v7() },
                { "__typename": "User", "id": alice },
            ] }),
            Some(&reader),
        )
        .await;
    assert_eq!(
        many.data()["_entities"],
        json!([{ "email": "bob@example.com" }, null, { "email": "alice@example.com" }])
    );
}

async fn internal_endpoints_need_the_token_and_fail_uniformly(backend: Backend) {
    let Some(svc) = TestService::start(backend).await else {
        return;
    };
    let user = svc.verified_user("dennis@example.com", PASSWORD).await;
    let body = json!({ "email": "dennis@example.com", "password": PASSWORD });
    for token in [None, Some("wrong-token"), Some(&INTERNAL_TOKEN[1..])] {
        let (status, answer) = svc
            .internal(
                Method::POST,
                "/internal/credentials/verify",
                Some(body.clone()),
                token,
            )
            .await;
        assert_eq!(status, 401, "{token:?}");
        assert_eq!(answer["error"], json!("unauthorized"));
    }
    let (status, answer) = svc
        .internal(
            Method::POST,
            "/internal/credentials/verify",
            Some(json!({ "email": 1 })),
            Some(INTERNAL_TOKEN),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));

    let (_, valid) = svc
        .internal(
            Method::POST,
            "/internal/credentials/verify",
            Some(body),
            Some(INTERNAL_TOKEN),
        )
        .await;
    assert_eq!(valid["valid"], json!(true));
    assert_eq!(valid["user"]["id"], json!(user.to_string()));
    assert_eq!(valid["user"]["emailVerified"], json!(true));

    svc.gql(
        "mutation($id: ID!) { setUserStatus(id: $id, status: DISABLED) { id } }",
        json!({ "id": svc.verified_user("ken@example.com", PASSWORD).await }),
        Some(&svc.admin()),
    )
    .await
    .data();
    let mut answers = Vec::new();
    for (email, password) in [
        ("nobody@example.com", PASSWORD),
        ("dennis@example.com", "not the password"),
        ("ken@example.com", PASSWORD),
        ("not an email", PASSWORD),
    ] {
        let (status, answer) = svc
            .internal(
                Method::POST,
                "/internal/credentials/verify",
                Some(json!({ "email": email, "password": password })),
                Some(INTERNAL_TOKEN),
            )
            .await;
        answers.push((status, answer));
    }
    assert!(
        answers
            .iter()
            .all(|a| *a == (200, json!({ "valid": false }))),
        "one answer for every failure: {answers:?}"
    );

    let (status, _) = svc
        .internal(
            Method::GET,
            "/internal/users/not-a-uuid",
            None,
            Some(INTERNAL_TOKEN),
        )
        .await;
    assert_eq!(status, 400);
}

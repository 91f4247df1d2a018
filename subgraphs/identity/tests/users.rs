//! Managing accounts over real HTTP, on SQLite and on Postgres: administrators paging,
//! filtering, disabling and deleting users, and users changing their own password and
//! profile.

mod common;

use common::{INTERNAL_TOKEN, TestService};
use keygraph_kernel::testing::Backend;
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

const PASSWORD: &str = "quiet lantern harbor";
const NEW_PASSWORD: &str = "copper meadow thimble";

keygraph_kernel::on_both_backends!(
    users_are_paged_filtered_and_counted,
    admins_disable_and_delete_users,
    users_change_their_password_and_profile,
);

async fn users_are_paged_filtered_and_counted(backend: Backend) {
    let Some(svc) = TestService::start(backend).await else {
        return;
    };
    for i in 0..5 {
        svc.register(&format!("user{i}@example.com"), PASSWORD)
            .await
            .data();
    }
    svc.gql(
        "mutation($i: RegisterInput!) { register(input: $i) }",
        json!({ "i": { "email": "edsger@example.com", "password": PASSWORD, "displayName": "Edsger 100%_Dijkstra" } }),
        None,
    )
    .await
    .data();
    let admin = svc.admin();
    let page = "query($first: Int, $after: String, $f: UserFilter) { users(first: $first, after: $after, filter: $f) { totalCount pageInfo { hasNextPage hasPreviousPage endCursor } edges { cursor node { email } } } }";
    let mut seen = Vec::new();
    let mut after = serde_json::Value::Null;
    for round in 0..3 {
        let answer = svc
            .gql(page, json!({ "first": 2, "after": after }), Some(&admin))
            .await;
        let users = &answer.data()["users"];
        assert_eq!(users["totalCount"], json!(6));
        assert_eq!(users["pageInfo"]["hasNextPage"], json!(round < 2));
        assert_eq!(users["pageInfo"]["hasPreviousPage"], json!(round > 0));
        for edge in users["edges"].as_array().expect("edges") {
            seen.push(edge["node"]["email"].as_str().expect("email").to_owned());
        }
        after = users["pageInfo"]["endCursor"].clone();
    }
    let expected: Vec<String> = (0..5)
        .map(|i| format!("user{i}@example.com"))
        .chain(["edsger@example.com".to_owned()])
        .collect();
    assert_eq!(seen, expected, "stable creation order across pages");

    let search = |s: &str| {
        let svc = &svc;
        let admin = admin.clone();
        let s = s.to_owned();
        async move {
            svc.gql(page, json!({ "f": { "search": s } }), Some(&admin))
                .await
                .data()["users"]["totalCount"]
                .clone()
        }
    };
    assert_eq!(search("USER3").await, json!(1));
    assert_eq!(search("dijkstra").await, json!(1));
    assert_eq!(
        search("100%_").await,
        json!(1),
        "LIKE wildcards are matched literally"
    );
    assert_eq!(search("r%d").await, json!(0), "`%` is no wildcard");
    assert_eq!(search("example.com").await, json!(6));

    let edsger = svc.user_id("edsger@example.com").await;
    svc.gql(
        "mutation($id: ID!) { setUserStatus(id: $id, status: DISABLED) { status } }",
        json!({ "id": edsger }),
        Some(&admin),
    )
    .await
    .data();
    let disabled = svc
        .gql(page, json!({ "f": { "status": "DISABLED" } }), Some(&admin))
        .await;
    assert_eq!(disabled.data()["users"]["totalCount"], json!(1));
    assert_eq!(
        disabled.data()["users"]["edges"][0]["node"]["email"],
        json!("edsger@example.com")
    );

    svc.gql(page, json!({ "first": 101 }), Some(&admin))
        .await
        .expect_error("BAD_USER_INPUT", "between 0 and 100");
    svc.gql(page, json!({ "first": -1 }), Some(&admin))
        .await
        .expect_error("BAD_USER_INPUT", "between 0 and 100");
    svc.gql(page, json!({ "after": "bogus!" }), Some(&admin))
        .await
        .expect_error("BAD_USER_INPUT", "cursor");
    svc.gql(
        page,
        json!({ "f": { "search": "x".repeat(101) } }),
        Some(&admin),
    )
    .await
    .expect_error("BAD_USER_INPUT", "at most 100");
}

async fn admins_disable_and_delete_users(backend: Backend) {
    let Some(svc) = TestService::start(backend).await else {
        return;
    };
    let user = svc.verified_user("linus@example.com", PASSWORD).await;
    let admin = svc.admin();
    let set = |status: &str| {
        let svc = &svc;
        let admin = admin.clone();
        let status = status.to_owned();
        async move {
            svc.gql(
                &format!(
                    "mutation($id: ID!) {{ setUserStatus(id: $id, status: {status}) {{ status }} }}"
                ),
                json!({ "id": user }),
                Some(&admin),
            )
            .await
        }
    };
    assert_eq!(
        set("DISABLED").await.data()["setUserStatus"]["status"],
        json!("DISABLED")
    );
    assert_eq!(
        set("DISABLED").await.data()["setUserStatus"]["status"],
        json!("DISABLED")
    );
    assert!(
        !svc.check_credentials("linus@example.com", PASSWORD).await,
        "disabled accounts cannot sign in"
    );
    let status = svc
        .internal(
            Method::GET,
            &format!("/internal/users/{user}"),
            None,
            Some(INTERNAL_TOKEN),
        )
        .await;
    assert_eq!(status.1["status"], json!("disabled"));
    set("ACTIVE").await.data();
    assert!(svc.check_credentials("linus@example.com", PASSWORD).await);

    let changes = svc
        .audit_actions()
        .await
        .into_iter()
        .filter(|a| a == "identity.user.status_changed")
        .count();
    assert_eq!(changes, 2, "a repeated status change records nothing");

    svc.gql(
        "mutation($id: ID!) { setUserStatus(id: $id, status: DISABLED) { id } }",
        json!({ "id": Uuid::now_v7() }),
        Some(&admin),
    )
    .await
    .expect_error("NOT_FOUND", "no user");
    svc.gql(
        "mutation { deleteUser(id: \"nope\") }",
        json!({}),
        Some(&admin),
    )
    .await
    .expect_error("BAD_USER_INPUT", "not a user id");

    let deleted = svc
        .gql(
            "mutation($id: ID!) { deleteUser(id: $id) }",
            json!({ "id": user }),
            Some(&admin),
        )
        .await;
    assert_eq!(deleted.data()["deleteUser"], json!(user.to_string()));
    svc.gql(
        "mutation($id: ID!) { deleteUser(id: $id) }",
        json!({ "id": user }),
        Some(&admin),
    )
    .await
    .expect_error("NOT_FOUND", "no user");
    let gone = svc
        .internal(
            Method::GET,
            &format!("/internal/users/{user}"),
            None,
            Some(INTERNAL_TOKEN),
        )
        .await;
    assert_eq!(gone.0, 404);
    assert!(!svc.check_credentials("linus@example.com", PASSWORD).await);
    assert_eq!(
        svc.audit_actions().await.last().map(String::as_str),
        Some("identity.user.deleted")
    );
    // The address is free again.
    svc.register("linus@example.com", PASSWORD).await.data();
    svc.wait_for_mail("linus@example.com", "Confirm").await;
}

async fn users_change_their_password_and_profile(backend: Backend) {
    let Some(svc) = TestService::start(backend).await else {
        return;
    };
    let user = svc.verified_user("margaret@example.com", PASSWORD).await;
    let token = svc.token(user, &[]);
    let change = "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }";
    svc.gql(
        change,
        json!({ "c": "wrong password here", "n": NEW_PASSWORD }),
        Some(&token),
    )
    .await
    .expect_error("BAD_USER_INPUT", "current password is not correct");
    svc.gql(
        change,
        json!({ "c": PASSWORD, "n": PASSWORD }),
        Some(&token),
    )
    .await
    .expect_error("BAD_USER_INPUT", "must differ");
    svc.gql(
        change,
        json!({ "c": PASSWORD, "n": "margaret@example.com" }),
        Some(&token),
    )
    .await
    .expect_error("BAD_USER_INPUT", "too common");
    svc.gql(change, json!({ "c": PASSWORD, "n": NEW_PASSWORD }), None)
        .await
        .expect_error("UNAUTHENTICATED", "access token");
    assert_eq!(
        svc.gql(
            change,
            json!({ "c": PASSWORD, "n": NEW_PASSWORD }),
            Some(&token)
        )
        .await
        .data()["changePassword"],
        json!(true)
    );
    assert!(
        svc.check_credentials("margaret@example.com", NEW_PASSWORD)
            .await
    );

    let update = "mutation($n: String) { updateProfile(input: { displayName: $n }) { displayName updatedAt } }";
    let renamed = svc
        .gql(update, json!({ "n": "  Margaret H.  " }), Some(&token))
        .await;
    assert_eq!(
        renamed.data()["updateProfile"]["displayName"],
        json!("Margaret H.")
    );
    svc.gql(update, json!({ "n": "bad\u{0007}name" }), Some(&token))
        .await
        .expect_error("BAD_USER_INPUT", "control characters");
    let unchanged = svc.gql(update, json!({ "n": null }), Some(&token)).await;
    assert_eq!(
        unchanged.data()["updateProfile"]["displayName"],
        json!("Margaret H.")
    );
    let actions = svc.audit_actions().await;
    assert_eq!(
        actions
            .iter()
            .filter(|a| a.as_str() == "identity.user.profile_updated")
            .count(),
        1
    );
    assert!(actions.contains(&"identity.user.password_changed".to_owned()));
}

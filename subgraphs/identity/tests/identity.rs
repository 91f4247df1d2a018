//! The identity subgraph over real HTTP, on SQLite and on Postgres.

mod common;

use common::{INTERNAL_TOKEN, TestService, link_token};
use keygraph_kernel::testing::Backend;
use reqwest::Method;
use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait};
use serde_json::json;
use uuid::Uuid;

const PASSWORD: &str = "quiet lantern harbor";
const NEW_PASSWORD: &str = "copper meadow thimble";

keygraph_kernel::on_both_backends!(
    register_verify_and_reset_through_mailed_links,
    registration_does_not_reveal_taken_addresses,
    bad_input_is_refused_and_leaves_nothing_behind,
    mailed_tokens_are_single_use_and_expire,
    mail_requests_are_rate_limited_per_address,
    access_is_checked_by_token_and_permission,
    users_are_paged_filtered_and_counted,
    admins_disable_and_delete_users,
    users_change_their_password_and_profile,
    internal_endpoints_need_the_token_and_fail_uniformly,
    schema_lives_in_its_own_postgres_schema,
    mutations_are_refused_over_get,
);

async fn register_verify_and_reset_through_mailed_links(backend: Backend) {
    let Some(svc) = TestService::start(backend).await else {
        return;
    };
    assert!(
        svc.register("Grace@Example.org", PASSWORD).await.data()["register"]
            .as_bool()
            .unwrap_or(false)
    );

    let mail = svc.wait_for_mail("Grace@example.org", "Confirm").await;
    let link_base = svc
        .config
        .identity
        .links
        .verify_email
        .replace("{token}", "");
    assert!(
        mail.contains(&link_base),
        "the mail carries the configured link:\n{mail}"
    );
    let verified = svc.verify_email(&link_token(&mail)).await;
    let user = &verified.data()["verifyEmail"];
    assert_eq!(
        (&user["email"], &user["emailVerified"], &user["status"]),
        (&json!("Grace@example.org"), &json!(true), &json!("ACTIVE"))
    );

    // The link's page loads without spending the token.
    let page = svc
        .http
        .get(format!("{}/verify-email?token=x", svc.base))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("html").contains("verifyEmail"));

    svc.request_reset("grace@EXAMPLE.org").await.data();
    let mail = svc.wait_for_mail("Grace@example.org", "Reset").await;
    let reset = svc.reset_password(&link_token(&mail), NEW_PASSWORD).await;
    assert_eq!(reset.data()["resetPassword"], json!(true));
    assert!(
        svc.check_credentials("grace@example.org", NEW_PASSWORD)
            .await
    );
    assert!(!svc.check_credentials("grace@example.org", PASSWORD).await);

    assert_eq!(
        svc.audit_actions().await,
        [
            "identity.user.registered",
            "identity.user.email_verified",
            "identity.password_reset.requested",
            "identity.user.password_reset",
        ]
    );
}

async fn registration_does_not_reveal_taken_addresses(backend: Backend) {
    // Every mail to alan counts against one limit; this test is about the answers.
    let Some(svc) = TestService::start_with(backend, |config| {
        config.identity.mail_rate_limit.max = 100;
    })
    .await
    else {
        return;
    };
    let first = svc.register("alan@example.net", PASSWORD).await;
    let again = svc
        .register("ALAN@example.net", "another fine passphrase")
        .await;
    assert_eq!(
        first.0, again.0,
        "a taken address answers exactly like a new one"
    );
    let notice = svc
        .wait_for_mail("ALAN@example.net", "tried to register")
        .await;
    assert!(notice.contains("already has one"), "{notice}");

    // Unknown addresses answer like known ones, and get no mail.
    for mutation in ["requestPasswordReset", "requestEmailVerification"] {
        let unknown = svc
            .gql(
                &format!("mutation {{ {mutation}(email: \"nobody@example.net\") }}"),
                json!({}),
                None,
            )
            .await;
        let known = svc
            .gql(
                &format!("mutation {{ {mutation}(email: \"alan@example.net\") }}"),
                json!({}),
                None,
            )
            .await;
        assert_eq!(unknown.0, known.0, "{mutation}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(svc.mails_to("nobody@example.net").is_empty());

    let users = svc
        .gql("{ users { totalCount } }", json!({}), Some(&svc.admin()))
        .await;
    assert_eq!(
        users.data()["users"]["totalCount"],
        json!(1),
        "one account, case-insensitively"
    );
}

async fn bad_input_is_refused_and_leaves_nothing_behind(backend: Backend) {
    let Some(svc) = TestService::start(backend).await else {
        return;
    };
    let register = |email: &str, password: &str, name: Option<&str>| {
        let svc = &svc;
        let input = json!({ "email": email, "password": password, "displayName": name });
        async move {
            svc.gql(
                "mutation($input: RegisterInput!) { register(input: $input) }",
                json!({ "input": input }),
                None,
            )
            .await
        }
    };
    let cases = [
        (register("not-an-email", PASSWORD, None).await, "email", "@"),
        (
            register(&format!("{}@example.com", "a".repeat(250)), PASSWORD, None).await,
            "email",
            "at most 254",
        ),
        (
            register("ok@example.com", "short", None).await,
            "password",
            "at least 8",
        ),
        (
            register("ok@example.com", &"long ".repeat(26), None).await,
            "password",
            "at most 128",
        ),
        (
            register("ok@example.com", "password123", None).await,
            "password",
            "too common",
        ),
        (
            register("ok@example.com", PASSWORD, Some(&"n".repeat(101))).await,
            "displayName",
            "at most 100",
        ),
        (
            register("ok@example.com", PASSWORD, Some("  ")).await,
            "displayName",
            "must not be empty",
        ),
    ];
    for (answer, field, text) in &cases {
        answer.expect_error("BAD_USER_INPUT", text);
        assert_eq!(
            answer.0["errors"][0]["extensions"]["field"],
            json!(field),
            "{}",
            answer.0
        );
        assert!(answer.0["data"].is_null(), "{}", answer.0);
    }
    let wrong_type = svc
        .gql(
            "mutation($input: RegisterInput!) { register(input: $input) }",
            json!({ "input": { "email": 5 } }),
            None,
        )
        .await;
    assert!(
        wrong_type.message().contains("email") || wrong_type.message().contains("Invalid value"),
        "{}",
        wrong_type.0
    );

    let users = keygraph_identity::entity::user::Entity::find()
        .count(&svc.db)
        .await
        .expect("count");
    let events = keygraph_kernel::outbox::entity::Entity::find()
        .count(&svc.db)
        .await
        .expect("count");
    assert_eq!(
        (users, events),
        (0, 0),
        "no partial rows after refused input"
    );
}

async fn mailed_tokens_are_single_use_and_expire(backend: Backend) {
    // Several links to one address: more mails than the default limit allows.
    let Some(svc) = TestService::start_with(backend, |config| {
        config.identity.mail_rate_limit.max = 20;
    })
    .await
    else {
        return;
    };
    svc.register("ken@example.com", PASSWORD).await.data();
    let token = link_token(&svc.wait_for_mail("ken@example.com", "Confirm").await);
    for bad in ["not-a-token".to_owned(), "A".repeat(43), "x".repeat(10_000)] {
        svc.verify_email(&bad)
            .await
            .expect_error("BAD_USER_INPUT", "not valid");
    }
    svc.verify_email(&token).await.data();
    svc.verify_email(&token)
        .await
        .expect_error("BAD_USER_INPUT", "already used");

    // A verification token is no reset token.
    svc.request_reset("ken@example.com").await.data();
    let reset_token = link_token(&svc.wait_for_mail("ken@example.com", "Reset").await);
    svc.verify_email(&reset_token)
        .await
        .expect_error("BAD_USER_INPUT", "not valid");

    // An expired link is refused and changes nothing.
    svc.db
        .execute_unprepared("UPDATE email_tokens SET expires_at = created_at")
        .await
        .expect("expire tokens");
    svc.reset_password(&reset_token, NEW_PASSWORD)
        .await
        .expect_error("BAD_USER_INPUT", "expired");
    assert!(svc.check_credentials("ken@example.com", PASSWORD).await);

    // A newer reset link replaces the older one.
    let sent = svc.mails_to("ken@example.com").len();
    svc.request_reset("ken@example.com").await.data();
    let older = link_token(&svc.wait_for_mail_count("ken@example.com", sent + 1).await);
    svc.request_reset("ken@example.com").await.data();
    let newest = link_token(&svc.wait_for_mail_count("ken@example.com", sent + 2).await);
    assert_ne!(older, newest);
    svc.reset_password(&older, NEW_PASSWORD)
        .await
        .expect_error("BAD_USER_INPUT", "replaced by a newer one");
    // A weak new password is refused without spending the token.
    svc.reset_password(&newest, "12345678")
        .await
        .expect_error("BAD_USER_INPUT", "too common");
    svc.reset_password(&newest, NEW_PASSWORD).await.data();
    svc.reset_password(&newest, "yet another passphrase")
        .await
        .expect_error("BAD_USER_INPUT", "already used");
    assert!(svc.check_credentials("ken@example.com", NEW_PASSWORD).await);
}

async fn mail_requests_are_rate_limited_per_address(backend: Backend) {
    let Some(svc) = TestService::start(backend).await else {
        return;
    };
    svc.register("barbara@example.com", PASSWORD).await.data();
    // Barbara's verification mail counted; the stranger asks for one too (an unknown
    // address gets none, but the request counts alike).
    svc.gql(
        "mutation { requestEmailVerification(email: \"stranger@example.com\") }",
        json!({}),
        None,
    )
    .await
    .data();
    // The limit applies alike to known and unknown addresses: it reveals nothing.
    for email in ["barbara@example.com", "stranger@example.com"] {
        for _ in 0..2 {
            svc.request_reset(email).await.data();
        }
        let limited = svc.request_reset(email).await;
        limited.expect_error("RATE_LIMITED", "try again in");
        let wait = limited.0["errors"][0]["extensions"]["retryAfter"]
            .as_u64()
            .expect("retryAfter");
        assert!(wait > 0 && wait <= 900, "{wait}");
    }
    // Other addresses are not affected.
    svc.request_reset("other@example.com").await.data();
}

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

async fn mutations_are_refused_over_get(backend: Backend) {
    let Some(svc) = TestService::start(backend).await else {
        return;
    };
    let get = |query: &str| {
        svc.http
            .get(format!("{}/graphql", svc.base))
            .query(&[("query", query)])
            .send()
    };
    let refused = get("mutation { requestPasswordReset(email: \"a@example.com\") }")
        .await
        .expect("get");
    assert_eq!(refused.status(), 405);
    assert_eq!(refused.headers()["allow"], "POST");
    let body: serde_json::Value = refused.json().await.expect("json");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("POST")),
        "{body}"
    );
    let query = get("{ __typename }").await.expect("get");
    assert_eq!(query.status(), 200);
    let body: serde_json::Value = query.json().await.expect("json");
    assert_eq!(body["data"]["__typename"], json!("Query"));
}

async fn schema_lives_in_its_own_postgres_schema(backend: Backend) {
    let Some(svc) = TestService::start(backend).await else {
        return;
    };
    let live = svc
        .http
        .get(format!("{}/health/live", svc.base))
        .send()
        .await
        .expect("live");
    assert_eq!(live.status(), 200);
    let ready = svc
        .http
        .get(format!("{}/health/ready", svc.base))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 200);
    assert!(ready.headers().contains_key("x-request-id"));
    if backend != Backend::Postgres {
        return;
    }
    let row = svc
        .db
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*)::bigint AS n FROM information_schema.tables WHERE table_schema = $1 AND table_name IN ('users', 'credentials', 'email_tokens', 'outbox', 'seaql_migrations')",
            [svc.config.identity.schema.clone().into()],
        ))
        .await
        .expect("query")
        .expect("row");
    let tables: i64 = row.try_get("", "n").expect("n");
    assert_eq!(
        tables, 5,
        "every table, the migration table included, is in the service's schema"
    );
}

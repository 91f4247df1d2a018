//! Registration and mailed links over real HTTP, on SQLite and on Postgres: register, verify
//! and reset through the links in the mails, answers that do not reveal taken or unknown
//! addresses, refused input leaving nothing behind, single-use and expiring tokens, and the
//! per-address limit on mail requests.

mod common;

use common::{TestService, link_token};
use keygraph_kernel::testing::Backend;
use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait};
use serde_json::json;

const PASSWORD: &str = "quiet lantern harbor";
const NEW_PASSWORD: &str = "copper meadow thimble";

keygraph_kernel::on_both_backends!(
    register_verify_and_reset_through_mailed_links,
    registration_does_not_reveal_taken_addresses,
    bad_input_is_refused_and_leaves_nothing_behind,
    mailed_tokens_are_single_use_and_expire,
    mail_requests_are_rate_limited_per_address,
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

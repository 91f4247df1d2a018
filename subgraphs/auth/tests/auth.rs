//! The auth subgraph with identity and authz, over real HTTP, on SQLite and Postgres.

mod common;

use std::time::Duration;

use common::{Calls, Login, PASSWORD, Stack};
use keygraph_kernel::testing::{Backend, INTERNAL_TOKEN, jwt_claims};
use reqwest::Method;
use serde_json::json;

keygraph_kernel::on_both_backends!(
    a_user_signs_in_refreshes_lists_and_ends_sessions,
    failed_sign_ins_answer_alike,
    unverified_sign_in_follows_config,
    reuse_of_a_spent_refresh_token_ends_the_session,
    concurrent_refreshes_one_wins_and_the_session_lives,
    sessions_expire_idle_and_absolute,
    logout_all_ends_every_session,
    failed_sign_ins_are_throttled_also_as_aliases,
    rotated_keys_keep_verifying_until_their_tokens_expire,
    a_password_change_ends_the_other_sessions,
    revoking_others_sessions_needs_the_permission,
    tokens_carry_current_roles_and_permissions,
    internal_calls_can_stay_in_process,
);

async fn a_user_signs_in_refreshes_lists_and_ends_sessions(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    stack.register("ada@example.com").await;
    let first = stack.login("Ada@Example.com").await;
    let me = stack.me(&first.access).await;
    assert_eq!(me.data()["me"]["email"], json!("ada@example.com"));
    let second = stack.login("ada@example.com").await;

    let sessions = stack
        .auth
        .gql(
            "{ sessions { id current } }",
            json!({}),
            Some(&second.access),
        )
        .await;
    let list = sessions.data()["sessions"]
        .as_array()
        .expect("list")
        .clone();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0], json!({ "id": second.session, "current": true }));
    assert_eq!(list[1], json!({ "id": first.session, "current": false }));

    let renewed = stack.refresh(&second.refresh).await;
    assert_ne!(renewed.refresh, second.refresh);
    assert_eq!(renewed.session, second.session, "refresh keeps the session");
    stack.me(&renewed.access).await.data();

    stack
        .auth
        .gql(
            "mutation($id: ID!) { revokeSession(id: $id) }",
            json!({ "id": first.session }),
            Some(&renewed.access),
        )
        .await
        .data();
    let waited = stack.until_refused(&first.access).await;
    assert!(waited <= Duration::from_secs(5), "refused after {waited:?}");
    stack
        .refresh_answer(&first.refresh)
        .await
        .expect_error("UNAUTHENTICATED", "session has ended");

    stack
        .auth
        .gql("mutation { logout }", json!({}), Some(&renewed.access))
        .await
        .data();
    stack.until_refused(&renewed.access).await;
    // authz refuses it too, within the same bound (it polls on its own clock).
    let waited = stack.until_authz_refuses(&renewed.access).await;
    assert!(
        waited <= Duration::from_secs(5),
        "authz refused after {waited:?}"
    );
    let actions = stack.audit_actions().await;
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "auth.login.succeeded")
            .count(),
        2
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "auth.session.ended")
            .count(),
        2
    );
}

async fn failed_sign_ins_answer_alike(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    stack.register("grace@example.com").await;
    stack.register("linus@example.com").await;
    let linus = stack.login("linus@example.com").await;
    stack
        .identity
        .gql(
            "mutation($id: ID!) { setUserStatus(id: $id, status: DISABLED) { id } }",
            json!({ "id": linus.user }),
            Some(&stack.admin()),
        )
        .await
        .data();
    let mut answers = Vec::new();
    for (email, password) in [
        ("nobody@example.com", PASSWORD),
        ("grace@example.com", "not the password"),
        ("linus@example.com", PASSWORD),
    ] {
        let answer = stack.login_answer(email, password).await;
        answers.push((answer.code().to_owned(), answer.message().to_owned()));
    }
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    assert_eq!(answers[0].0, "UNAUTHENTICATED");
    // Disabling the account ended its sessions too.
    stack.until_refused(&linus.access).await;
    stack
        .refresh_answer(&linus.refresh)
        .await
        .expect_error("UNAUTHENTICATED", "ended");
}

async fn unverified_sign_in_follows_config(backend: Backend) {
    let Some(stack) = Stack::start_with(backend, |c| c.auth.allow_unverified_login = false).await
    else {
        return;
    };
    stack.register("ken@example.com").await;
    stack
        .login_answer("ken@example.com", PASSWORD)
        .await
        .expect_error("UNAUTHENTICATED", "confirm your email address");
}

async fn reuse_of_a_spent_refresh_token_ends_the_session(backend: Backend) {
    let Some(stack) = Stack::start_with(backend, |c| c.auth.refresh_reuse_grace_secs = 0).await
    else {
        return;
    };
    stack.register("dennis@example.com").await;
    let login = stack.login("dennis@example.com").await;
    let next = stack.refresh(&login.refresh).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    stack
        .refresh_answer(&login.refresh)
        .await
        .expect_error("UNAUTHENTICATED", "already used");
    // The whole family is gone: the newest refresh token and the access tokens too.
    stack
        .refresh_answer(&next.refresh)
        .await
        .expect_error("UNAUTHENTICATED", "session has ended");
    stack.until_refused(&next.access).await;
    assert!(
        stack
            .audit_actions()
            .await
            .contains(&"auth.refresh.reuse_detected".to_owned())
    );
}

async fn concurrent_refreshes_one_wins_and_the_session_lives(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    stack.register("barbara@example.com").await;
    let login = stack.login("barbara@example.com").await;
    let (a, b) = tokio::join!(
        stack.refresh_answer(&login.refresh),
        stack.refresh_answer(&login.refresh)
    );
    let answers = [a, b];
    let ok: Vec<_> = answers
        .iter()
        .filter(|a| a.0.get("errors").is_none())
        .collect();
    assert_eq!(
        ok.len(),
        1,
        "exactly one refresh wins: {:?}",
        answers.iter().map(|a| &a.0).collect::<Vec<_>>()
    );
    let loser = answers
        .iter()
        .find(|a| a.0.get("errors").is_some())
        .expect("one loses");
    loser.expect_error("CONFLICT", "use the newest refresh token");
    // Within the grace the loser is not taken as theft: the winner's tokens keep working.
    let winner = Login {
        access: ok[0].data()["refresh"]["accessToken"]
            .as_str()
            .expect("access")
            .to_owned(),
        refresh: ok[0].data()["refresh"]["refreshToken"]
            .as_str()
            .expect("refresh")
            .to_owned(),
        session: login.session.clone(),
        user: login.user,
    };
    stack.me(&winner.access).await.data();
    stack.refresh(&winner.refresh).await;
}

async fn sessions_expire_idle_and_absolute(backend: Backend) {
    let Some(stack) = Stack::start_with(backend, |c| c.auth.refresh_idle_ttl_secs = 1).await else {
        return;
    };
    stack.register("margaret@example.com").await;
    let idle = stack.login("margaret@example.com").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    stack
        .refresh_answer(&idle.refresh)
        .await
        .expect_error("UNAUTHENTICATED", "expired");

    let absolute = stack.login("margaret@example.com").await;
    use sea_orm::ConnectionTrait;
    stack
        .db
        .execute_unprepared("UPDATE sessions SET expires_at = created_at")
        .await
        .expect("end sessions");
    stack
        .refresh_answer(&absolute.refresh)
        .await
        .expect_error("UNAUTHENTICATED", "expired");
}

async fn logout_all_ends_every_session(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    stack.register("alan@example.com").await;
    let sessions: Vec<Login> = futures_join(&stack, "alan@example.com", 3).await;
    let ended = stack
        .auth
        .gql(
            "mutation { logoutAll }",
            json!({}),
            Some(&sessions[0].access),
        )
        .await;
    assert_eq!(ended.data()["logoutAll"], json!(3));
    for login in &sessions {
        stack.until_refused(&login.access).await;
        stack
            .refresh_answer(&login.refresh)
            .await
            .expect_error("UNAUTHENTICATED", "ended");
    }
}

async fn futures_join(stack: &Stack, email: &str, count: usize) -> Vec<Login> {
    let mut sessions = Vec::new();
    for _ in 0..count {
        sessions.push(stack.login(email).await);
    }
    sessions
}

async fn failed_sign_ins_are_throttled_also_as_aliases(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    stack.register("edsger@example.com").await;
    let aliases: String = (0..8)
        .map(|i| format!("a{i}: login(email: \"edsger@example.com\", password: \"wrong guess {i}\") {{ ... on AuthPayload {{ accessToken }} }}"))
        .collect::<Vec<_>>()
        .join(" ");
    let answer = stack
        .auth
        .gql(&format!("mutation {{ {aliases} }}"), json!({}), None)
        .await;
    let codes: Vec<&str> = answer.0["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["extensions"]["code"].as_str().expect("code"))
        .collect();
    assert_eq!(codes.len(), 8, "every alias answers: {}", answer.0);
    let limited = codes.iter().filter(|c| **c == "RATE_LIMITED").count();
    let refused = codes.iter().filter(|c| **c == "UNAUTHENTICATED").count();
    assert_eq!(
        (refused, limited),
        (5, 3),
        "five free attempts, then throttled: {codes:?}"
    );
    let throttled = stack.login_answer("edsger@example.com", PASSWORD).await;
    throttled.expect_error("RATE_LIMITED", "try again in");
    let wait = throttled.0["errors"][0]["extensions"]["retryAfter"]
        .as_u64()
        .expect("retryAfter");
    assert!((1..=30).contains(&wait), "{wait}");
}

async fn rotated_keys_keep_verifying_until_their_tokens_expire(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    stack.register("niklaus@example.com").await;
    let before = stack.login("niklaus@example.com").await;
    let kids = stack.jwks_kids().await;
    assert_eq!(kids.len(), 2, "current and next are published: {kids:?}");
    let next_kid = kids[1].clone();

    let rotated = stack
        .auth
        .gql(
            "mutation { rotateSigningKey { kid } }",
            json!({}),
            Some(&stack.admin()),
        )
        .await;
    assert_eq!(
        rotated.data()["rotateSigningKey"]["kid"],
        next_kid,
        "the published next key signs now"
    );
    let after = stack.login("niklaus@example.com").await;
    let kid_of = |token: &str| {
        use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
        let header = token.split('.').next().expect("header");
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("b64")).expect("json");
        header["kid"].clone()
    };
    assert_eq!(kid_of(&after.access), next_kid);
    assert_ne!(kid_of(&before.access), next_kid);
    assert!(
        stack
            .audit_actions()
            .await
            .contains(&"auth.key.rotated".to_owned()),
        "the rotation is audited"
    );
    stack.me(&before.access).await.data();
    stack.me(&after.access).await.data();

    // Once the previous key's last tokens have expired, it retires and leaves JWKS.
    use keygraph_auth::entity::signing_key;
    use sea_orm::{ActiveModelTrait as _, EntityTrait as _, Set};
    let previous = kid_of(&before.access).as_str().expect("kid").to_owned();
    assert!(
        stack.jwks_kids().await.contains(&previous),
        "the previous key is published while its tokens may be valid"
    );
    let stored = signing_key::Entity::find_by_id(previous.clone())
        .one(&stack.db)
        .await
        .expect("read")
        .expect("the previous key");
    assert_eq!(stored.status, signing_key::PREVIOUS);
    let mut backdated: signing_key::ActiveModel = stored.into();
    backdated.retired_at = Set(Some(chrono::Utc::now() - chrono::Duration::days(1)));
    backdated.update(&stack.db).await.expect("backdate");
    let kids = stack.jwks_kids().await;
    assert_eq!(kids.len(), 2, "current and next only: {kids:?}");
    assert!(!kids.contains(&previous), "{kids:?}");
    let retired = signing_key::Entity::find_by_id(previous)
        .one(&stack.db)
        .await
        .expect("read")
        .expect("the previous key");
    assert_eq!(retired.status, signing_key::RETIRED);

    stack
        .auth
        .gql(
            "mutation { rotateSigningKey { kid } }",
            json!({}),
            Some(&stack.signer.token(before.user, &[])),
        )
        .await
        .expect_error("FORBIDDEN", "auth.key.rotate");
}

async fn a_password_change_ends_the_other_sessions(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    stack.register("frances@example.com").await;
    let here = stack.login("frances@example.com").await;
    let elsewhere = stack.login("frances@example.com").await;
    stack
        .identity
        .gql(
            "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }",
            json!({ "c": PASSWORD, "n": "copper meadow thimble" }),
            Some(&here.access),
        )
        .await
        .data();
    stack.until_refused(&elsewhere.access).await;
    stack.me(&here.access).await.data();
    stack.refresh(&here.refresh).await;
}

async fn revoking_others_sessions_needs_the_permission(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    stack.register("a@example.com").await;
    stack.register("b@example.com").await;
    let a = stack.login("a@example.com").await;
    let b = stack.login("b@example.com").await;
    stack
        .auth
        .gql(
            "mutation($id: ID!) { revokeSession(id: $id) }",
            json!({ "id": b.session }),
            Some(&a.access),
        )
        .await
        .expect_error("NOT_FOUND", "no session");
    stack.me(&b.access).await.data();
    let operator = stack.signer.token(a.user, &["auth.session.revoke"]);
    stack
        .auth
        .gql(
            "mutation($id: ID!) { revokeSession(id: $id) }",
            json!({ "id": b.session }),
            Some(&operator),
        )
        .await
        .data();
    stack.until_refused(&b.access).await;
    let (status, _) = stack
        .auth
        .internal(Method::GET, "/internal/revocations", None, None)
        .await;
    assert_eq!(status, 401);
    let (status, list) = stack
        .auth
        .internal(
            Method::GET,
            "/internal/revocations",
            None,
            Some(INTERNAL_TOKEN),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["sessions"], json!([b.session]));
}

async fn tokens_carry_current_roles_and_permissions(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    stack.register("grace@example.com").await;
    let login = stack.login("grace@example.com").await;
    stack
        .give_role(login.user, "readers", &["identity.user.*"])
        .await;
    // The old token has no such permission; the refreshed one does.
    stack
        .identity
        .gql("{ users { totalCount } }", json!({}), Some(&login.access))
        .await
        .expect_error("FORBIDDEN", "identity.user.read");
    let renewed = stack.refresh(&login.refresh).await;
    let users = stack
        .identity
        .gql("{ users { totalCount } }", json!({}), Some(&renewed.access))
        .await;
    // grace and the stack's administrator.
    assert_eq!(users.data()["users"]["totalCount"], json!(2));
    let payload = jwt_claims(&stack.refresh(&renewed.refresh).await.access);
    assert_eq!(payload["roles"], json!(["readers", "user"]));
    assert_eq!(
        payload["scope"],
        json!("identity.user.delete identity.user.read identity.user.update")
    );
    assert_eq!(payload["sid"], json!(login.session));
}

/// As the embedded default wires them: every internal call goes into the other service's
/// router in this process. The addresses the services call each other at have no listener,
/// so each step below that needs a call (authz asking identity for the user, auth asking
/// identity for the password check and the account and authz for the claims, identity asking
/// auth to end sessions) works only in process.
async fn internal_calls_can_stay_in_process(backend: Backend) {
    let Some(stack) = Stack::start_wired(backend, Calls::InProcess, |_| {}).await else {
        return;
    };
    stack.register("hedy@example.com").await;
    let here = stack.login("hedy@example.com").await;
    let elsewhere = stack.login("hedy@example.com").await;
    stack.give_role(here.user, "auditors", &[]).await;
    let renewed = stack.refresh(&here.refresh).await;
    let claims = jwt_claims(&renewed.access);
    assert_eq!(claims["roles"], json!(["auditors", "user"]), "{claims}");

    stack
        .identity
        .gql(
            "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }",
            json!({ "c": PASSWORD, "n": "copper meadow thimble" }),
            Some(&renewed.access),
        )
        .await
        .data();
    let waited = stack.until_refused(&elsewhere.access).await;
    assert!(waited <= Duration::from_secs(5), "refused after {waited:?}");
    stack.me(&renewed.access).await.data();
    stack
        .login_answer("hedy@example.com", PASSWORD)
        .await
        .expect_error("UNAUTHENTICATED", "not correct");
}

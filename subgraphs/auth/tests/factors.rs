//! Second factors through the auth subgraph, with identity and authz, over real HTTP, on
//! SQLite and Postgres: TOTP enrolment, sign-in with a challenge, recovery codes, step-up,
//! throttling, the role policy and an administrator's reset.

mod common;

use common::{Stack, authenticator::App};
use keygraph_auth::totp;
use keygraph_kernel::testing::{Answer, Backend, jwt_claims};
use serde_json::{Value, json};
use uuid::Uuid;

keygraph_kernel::on_both_backends!(
    an_authenticator_is_enrolled_and_then_needed_to_sign_in,
    recovery_codes_sign_in_once_each,
    sensitive_changes_need_a_recent_second_factor,
    a_challenge_is_single_use_short_lived_and_bound_to_its_client,
    wrong_codes_are_throttled_per_account,
    a_role_can_require_a_second_factor,
    an_administrator_resets_a_users_factors,
    a_deleted_users_factors_go_with_them,
);

const LOGIN: &str = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { \
    __typename \
    ... on AuthPayload { accessToken refreshToken sessionId } \
    ... on SecondFactorChallenge { challenge expiresAt methods enrolment { factorId secret uri qrCode } } } }";

const COMPLETE: &str = "mutation($c: String!, $p: SecondFactorInput!) { completeLogin(challenge: $c, proof: $p) { accessToken refreshToken sessionId recoveryCodes } }";

const STEP_UP: &str =
    "mutation($p: SecondFactorInput!) { stepUp(proof: $p) { accessToken refreshToken } }";

async fn login(stack: &Stack, email: &str) -> Value {
    stack.login_as(LOGIN, email).await
}

async fn complete(stack: &Stack, challenge: &Value, proof: Value) -> Answer {
    stack
        .auth
        .gql(COMPLETE, json!({ "c": challenge, "p": proof }), None)
        .await
}

/// A user who enrolled an authenticator in their first session.
struct Enrolled {
    app: App,
    /// The first session's tokens, from before the enrolment (a password sign-in).
    access: String,
    refresh: String,
    recovery_codes: Vec<String>,
}

/// Registers `email`, signs in, and enrols an authenticator.
async fn enrolled(stack: &Stack, email: &str) -> Enrolled {
    stack.register(email).await;
    let first = login(stack, email).await;
    assert_eq!(first["__typename"], "AuthPayload", "{first}");
    let access = first["accessToken"].as_str().expect("token").to_owned();
    let refresh = first["refreshToken"].as_str().expect("token").to_owned();
    let begun = stack
        .auth
        .gql(
            "mutation { beginTotpEnrolment(name: \"Phone\") { factorId secret uri qrCode expiresAt } }",
            json!({}),
            Some(&access),
        )
        .await;
    let enrolment = begun.data()["beginTotpEnrolment"].clone();
    let secret = enrolment["secret"].as_str().expect("secret");
    assert!(
        enrolment["uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("otpauth://totp/Keygraph:")
                && u.contains(&format!("secret={secret}"))),
        "{enrolment}"
    );
    assert!(
        enrolment["qrCode"]
            .as_str()
            .is_some_and(|q| q.starts_with("data:image/svg+xml;base64,"))
    );
    let mut app = App::new(secret);
    let confirm = "mutation($f: ID!, $c: String!) { confirmTotpEnrolment(factorId: $f, code: $c) { factor { id kind name } recoveryCodes } }";
    // Not in use until a correct code confirms it.
    let wrong = stack
        .auth
        .gql(
            confirm,
            json!({ "f": enrolment["factorId"], "c": app.wrong_code() }),
            Some(&access),
        )
        .await;
    wrong.expect_error("BAD_USER_INPUT", "the code is not correct");
    assert_eq!(login(stack, email).await["__typename"], "AuthPayload");
    let confirmed = stack
        .auth
        .gql(
            confirm,
            json!({ "f": enrolment["factorId"], "c": app.code().await }),
            Some(&access),
        )
        .await;
    let confirmed = confirmed.data()["confirmTotpEnrolment"].clone();
    assert_eq!(confirmed["factor"]["kind"], "TOTP");
    assert_eq!(confirmed["factor"]["name"], "Phone");
    let codes: Vec<String> = confirmed["recoveryCodes"]
        .as_array()
        .expect("recovery codes with the first factor")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    Enrolled {
        app,
        access,
        refresh,
        recovery_codes: codes,
    }
}

async fn an_authenticator_is_enrolled_and_then_needed_to_sign_in(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let Enrolled {
        mut app, access, ..
    } = enrolled(&stack, "ada@example.com").await;
    let claims = jwt_claims(&access);
    assert_eq!(claims["amr"], json!(["pwd"]));
    assert!(claims["auth_time"].is_i64());

    let listed = stack
        .auth
        .gql(
            "{ secondFactors { name kind lastUsedAt } recoveryCodesRemaining }",
            json!({}),
            Some(&access),
        )
        .await;
    assert_eq!(
        listed.data()["secondFactors"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(listed.data()["recoveryCodesRemaining"], 10);

    // The password alone no longer signs in: it answers a challenge.
    let answer = login(&stack, "ada@example.com").await;
    assert_eq!(answer["__typename"], "SecondFactorChallenge", "{answer}");
    assert_eq!(answer["methods"], json!(["TOTP", "RECOVERY_CODE"]));
    assert!(answer["enrolment"].is_null());
    let challenge = answer["challenge"].clone();

    // A wrong code, and the code that confirmed the enrolment (its step is spent).
    complete(&stack, &challenge, json!({ "totpCode": app.wrong_code() }))
        .await
        .expect_error("BAD_USER_INPUT", "the code is not correct");
    let spent = totp::code_at_step(&app.secret, app.last_step.expect("a used step"));
    complete(&stack, &challenge, json!({ "totpCode": spent }))
        .await
        .expect_error("BAD_USER_INPUT", "already used");
    complete(&stack, &challenge, json!({ "totpCode": "12 34" }))
        .await
        .expect_error("BAD_USER_INPUT", "6 digits");
    complete(
        &stack,
        &challenge,
        json!({ "totpCode": "123456", "recoveryCode": "x" }),
    )
    .await
    .expect_error("BAD_USER_INPUT", "exactly one");

    let signed = complete(&stack, &challenge, json!({ "totpCode": app.code().await })).await;
    let signed = signed.data()["completeLogin"].clone();
    assert!(signed["recoveryCodes"].is_null(), "shown only at enrolment");
    let access = signed["accessToken"].as_str().expect("token").to_owned();
    let claims = jwt_claims(&access);
    assert_eq!(claims["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(claims["mfa_enrolled"], true);
    stack.me(&access).await.data();

    // The refreshed token keeps how and when the user signed in.
    let renewed = stack
        .refresh(signed["refreshToken"].as_str().expect("refresh"))
        .await;
    let renewed_claims = jwt_claims(&renewed.access);
    assert_eq!(renewed_claims["amr"], claims["amr"]);
    assert_eq!(renewed_claims["auth_time"], claims["auth_time"]);

    let actions = stack.audit_actions().await;
    for action in [
        "auth.factor.enrolment_started",
        "auth.factor.enrolled",
        "auth.recovery_codes.generated",
        "auth.login.second_factor_due",
        "auth.factor.failed",
        "auth.factor.verified",
    ] {
        assert!(actions.iter().any(|a| a == action), "{action}: {actions:?}");
    }
    // Two wrong codes at enrolment and sign-in, one replay and one malformed code.
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "auth.factor.failed")
            .count(),
        4,
        "{actions:?}"
    );
}

async fn recovery_codes_sign_in_once_each(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let codes = enrolled(&stack, "grace@example.com").await.recovery_codes;
    let first = login(&stack, "grace@example.com").await;
    let signed = complete(
        &stack,
        &first["challenge"],
        json!({ "recoveryCode": codes[0].to_uppercase() }),
    )
    .await;
    let access = signed.data()["completeLogin"]["accessToken"]
        .as_str()
        .expect("token")
        .to_owned();
    let again = login(&stack, "grace@example.com").await;
    complete(
        &stack,
        &again["challenge"],
        json!({ "recoveryCode": codes[0] }),
    )
    .await
    .expect_error("BAD_USER_INPUT", "already used");
    let left = stack
        .auth
        .gql("{ recoveryCodesRemaining }", json!({}), Some(&access))
        .await;
    assert_eq!(left.data()["recoveryCodesRemaining"], 9);

    // Signed in with a recovery code, the session counts as multi-factor: new codes replace
    // every old one.
    let fresh = stack
        .auth
        .gql(
            "mutation { regenerateRecoveryCodes }",
            json!({}),
            Some(&access),
        )
        .await;
    let fresh = fresh.data()["regenerateRecoveryCodes"]
        .as_array()
        .expect("codes")
        .clone();
    assert_eq!(fresh.len(), 10);
    complete(
        &stack,
        &again["challenge"],
        json!({ "recoveryCode": codes[1] }),
    )
    .await
    .expect_error("BAD_USER_INPUT", "not correct");
    complete(
        &stack,
        &again["challenge"],
        json!({ "recoveryCode": fresh[0] }),
    )
    .await
    .data();
}

async fn sensitive_changes_need_a_recent_second_factor(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let Enrolled {
        mut app,
        access,
        refresh,
        ..
    } = enrolled(&stack, "barbara@example.com").await;
    let factor = stack
        .auth
        .gql("{ secondFactors { id } }", json!({}), Some(&access))
        .await
        .data()["secondFactors"][0]["id"]
        .clone();
    // Refreshed after the enrolment, the first session's token is of a password sign-in of
    // an account that now has a second factor: not enough for sensitive changes.
    let password_only = stack.refresh(&refresh).await.access;
    assert_eq!(jwt_claims(&password_only)["mfa_enrolled"], true);
    assert_eq!(jwt_claims(&password_only)["amr"], json!(["pwd"]));
    let remove = "mutation($id: ID!) { removeSecondFactor(id: $id) }";
    stack
        .auth
        .gql(remove, json!({ "id": factor }), Some(&password_only))
        .await
        .expect_error("STEP_UP_REQUIRED", "stepUp");
    for (server, query) in [
        (&stack.auth, "mutation { regenerateRecoveryCodes }"),
        (&stack.auth, "mutation { beginTotpEnrolment { factorId } }"),
        (
            &stack.identity,
            "mutation { changePassword(currentPassword: \"quiet lantern harbor\", newPassword: \"brand new passphrase here\") }",
        ),
    ] {
        server
            .gql(query, json!({}), Some(&password_only))
            .await
            .expect_error("STEP_UP_REQUIRED", "second factor");
    }
    // A token whose sign-in is older than the window does not pass either.
    let mut old = stack.signer.claims(Uuid::now_v7(), &[]);
    old.auth_time = Some(old.iat - 601);
    stack
        .identity
        .gql(
            "mutation { changePassword(currentPassword: \"x\", newPassword: \"brand new passphrase here\") }",
            json!({}),
            Some(&stack.signer.sign(&old)),
        )
        .await
        .expect_error("STEP_UP_REQUIRED", "changing the password");

    // Stepping up with the code gives a fresh multi-factor token for the same session.
    stack
        .auth
        .gql(
            STEP_UP,
            json!({ "p": { "totpCode": app.wrong_code() } }),
            Some(&password_only),
        )
        .await
        .expect_error("BAD_USER_INPUT", "not correct");
    let stepped = stack
        .auth
        .gql(
            STEP_UP,
            json!({ "p": { "totpCode": app.code().await } }),
            Some(&password_only),
        )
        .await;
    let stepped_access = stepped.data()["stepUp"]["accessToken"]
        .as_str()
        .expect("token")
        .to_owned();
    let claims = jwt_claims(&stepped_access);
    assert_eq!(claims["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(claims["sid"], jwt_claims(&password_only)["sid"]);
    stack
        .auth
        .gql(remove, json!({ "id": factor }), Some(&stepped_access))
        .await
        .data();
    // The last factor gone, the password signs in alone again and recovery codes are gone.
    assert_eq!(
        login(&stack, "barbara@example.com").await["__typename"],
        "AuthPayload"
    );
    stack.assert_audited("auth.factor.removed").await;
}

async fn a_challenge_is_single_use_short_lived_and_bound_to_its_client(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let Enrolled { mut app, .. } = enrolled(&stack, "linus@example.com").await;
    let challenge = login(&stack, "linus@example.com").await["challenge"].clone();
    // Another client (another browser) cannot complete it, even with a right code.
    let elsewhere: Value = reqwest::Client::builder()
        .user_agent("another browser")
        .build()
        .expect("client")
        .post(format!("{}/graphql", stack.auth.base))
        .json(&json!({ "query": COMPLETE, "variables": { "c": challenge, "p": { "totpCode": app.peek().await.1 } } }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    Answer(elsewhere).expect_error("UNAUTHENTICATED", "another client");
    // The right client completes it once.
    complete(&stack, &challenge, json!({ "totpCode": app.code().await }))
        .await
        .data();
    complete(
        &stack,
        &challenge,
        json!({ "totpCode": app.peek().await.1 }),
    )
    .await
    .expect_error("UNAUTHENTICATED", "already used");
    // An expired one is refused.
    let late = login(&stack, "linus@example.com").await;
    sea_orm::ConnectionTrait::execute_unprepared(
        &stack.db,
        "UPDATE sign_in_challenges SET expires_at = created_at WHERE used_at IS NULL",
    )
    .await
    .expect("expire the challenge");
    complete(
        &stack,
        &late["challenge"],
        json!({ "totpCode": app.peek().await.1 }),
    )
    .await
    .expect_error("UNAUTHENTICATED", "expired");
    complete(
        &stack,
        &json!("not a challenge"),
        json!({ "totpCode": "123456" }),
    )
    .await
    .expect_error("UNAUTHENTICATED", "sign in again");
}

async fn wrong_codes_are_throttled_per_account(backend: Backend) {
    // A long first delay, so none ends while the test runs.
    let Some(stack) = Stack::start_with(backend, |c| c.auth.throttle.base_delay_secs = 120).await
    else {
        return;
    };
    let Enrolled { app, .. } = enrolled(&stack, "edsger@example.com").await;
    // Guesses on several challenges of the account count together.
    let mut refused = 0;
    let mut wrong = 0;
    for _ in 0..4 {
        let challenge = login(&stack, "edsger@example.com").await["challenge"].clone();
        for _ in 0..3 {
            let answer =
                complete(&stack, &challenge, json!({ "totpCode": app.wrong_code() })).await;
            match answer.code() {
                "BAD_USER_INPUT" => wrong += 1,
                "RATE_LIMITED" => refused += 1,
                other => panic!("unexpected {other}: {}", answer.0),
            }
        }
    }
    // Five free failures (the enrolment's right code cleared its wrong one), then a wait.
    assert_eq!(wrong, 5, "free attempts");
    assert_eq!(refused, 7);
    // While the delay lasts even the right code waits; another account does not.
    let challenge = login(&stack, "edsger@example.com").await["challenge"].clone();
    let waiting = complete(
        &stack,
        &challenge,
        json!({ "totpCode": app.peek().await.1 }),
    )
    .await;
    assert_eq!(waiting.code(), "RATE_LIMITED", "{}", waiting.0);
    assert!(waiting.0["errors"][0]["extensions"]["retryAfter"].as_u64() >= Some(1));
    let Enrolled { app: mut other, .. } = enrolled(&stack, "niklaus@example.com").await;
    let challenge = login(&stack, "niklaus@example.com").await["challenge"].clone();
    complete(
        &stack,
        &challenge,
        json!({ "totpCode": other.code().await }),
    )
    .await
    .data();
}

async fn a_role_can_require_a_second_factor(backend: Backend) {
    let Some(stack) = Stack::start_with(backend, |c| {
        c.auth.mfa.required_for_roles = vec!["admin".into()];
    })
    .await
    else {
        return;
    };
    // The administrator has no factor: signing in enrols one.
    let answer = login(&stack, "root@keygraph.test").await;
    assert_eq!(answer["__typename"], "SecondFactorChallenge", "{answer}");
    assert_eq!(answer["methods"], json!(["TOTP"]));
    let enrolment = &answer["enrolment"];
    let mut app = App::new(enrolment["secret"].as_str().expect("secret"));
    complete(
        &stack,
        &answer["challenge"],
        json!({ "recoveryCode": "aaaa-bbbb" }),
    )
    .await
    .expect_error("BAD_USER_INPUT", "adds an authenticator");
    let signed = complete(
        &stack,
        &answer["challenge"],
        json!({ "totpCode": app.code().await }),
    )
    .await;
    let signed = signed.data()["completeLogin"].clone();
    assert_eq!(signed["recoveryCodes"].as_array().map(Vec::len), Some(10));
    let access = signed["accessToken"].as_str().expect("token").to_owned();
    assert_eq!(jwt_claims(&access)["amr"], json!(["pwd", "otp", "mfa"]));
    // The only factor of a holder of the role stays.
    let factor = stack
        .auth
        .gql("{ secondFactors { id } }", json!({}), Some(&access))
        .await
        .data()["secondFactors"][0]["id"]
        .clone();
    stack
        .auth
        .gql(
            "mutation($id: ID!) { removeSecondFactor(id: $id) }",
            json!({ "id": factor }),
            Some(&access),
        )
        .await
        .expect_error("CONFLICT", "requires a second factor");
    // Users without the role sign in with the password alone.
    stack.register("plain@example.com").await;
    assert_eq!(
        login(&stack, "plain@example.com").await["__typename"],
        "AuthPayload"
    );
}

async fn an_administrator_resets_a_users_factors(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let Enrolled { access, .. } = enrolled(&stack, "hedy@example.com").await;
    let user = jwt_claims(&access)["sub"].clone();
    let reset = "mutation($u: ID!) { resetSecondFactors(userId: $u) }";
    // A user's own token lacks the permission.
    stack
        .auth
        .gql(reset, json!({ "u": user }), Some(&access))
        .await
        .expect_error("FORBIDDEN", "auth.factor.reset");
    // A scope claiming the permission is not enough: current grants are read.
    let claimed = stack.signer.token(
        Uuid::parse_str(user.as_str().expect("id")).expect("uuid"),
        &[keygraph_kernel::permissions::auth::FACTOR_RESET],
    );
    stack
        .auth
        .gql(reset, json!({ "u": user }), Some(&claimed))
        .await
        .expect_error("FORBIDDEN", "do not hold");
    let answer = stack
        .auth
        .gql(reset, json!({ "u": user }), Some(&stack.admin()))
        .await;
    assert_eq!(answer.data()["resetSecondFactors"], 1);
    assert_eq!(
        login(&stack, "hedy@example.com").await["__typename"],
        "AuthPayload"
    );
    stack.assert_audited("auth.factor.reset").await;
}

async fn a_deleted_users_factors_go_with_them(backend: Backend) {
    use keygraph_auth::entity::{factor, recovery_code};
    use sea_orm::{ColumnTrait as _, EntityTrait as _, PaginatorTrait as _, QueryFilter as _};
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let Enrolled { access, .. } = enrolled(&stack, "ada@example.com").await;
    let user = Uuid::parse_str(jwt_claims(&access)["sub"].as_str().expect("sub")).expect("uuid");
    let left = || async {
        let factors = factor::Entity::find()
            .filter(factor::Column::UserId.eq(user))
            .count(&stack.db)
            .await
            .expect("count factors");
        let codes = recovery_code::Entity::find()
            .filter(recovery_code::Column::UserId.eq(user))
            .count(&stack.db)
            .await
            .expect("count codes");
        (factors, codes)
    };
    assert_eq!(left().await, (1, 10));
    stack
        .identity
        .gql(
            "mutation($id: ID!) { deleteUser(id: $id) }",
            json!({ "id": user }),
            Some(&stack.admin()),
        )
        .await
        .data();
    // identity hands the deletion over to auth after its own commit.
    for _ in 0..100 {
        if left().await == (0, 0) {
            stack.assert_audited("auth.factor.dropped").await;
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "the deleted user's factors are still there: {:?}",
        left().await
    );
}

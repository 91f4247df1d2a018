//! Passkeys through the auth subgraph, with a software authenticator, on SQLite and Postgres:
//! registration, a passkey as the second factor, passwordless sign-in, step-up, and what is
//! refused (a cloned authenticator, another origin, a ceremony answered twice).

mod common;

use common::{Stack, passkey::SoftPasskey};
use keygraph_kernel::testing::{Answer, Backend, jwt_claims};
use serde_json::{Value, json};

keygraph_kernel::on_both_backends!(
    a_passkey_is_added_and_then_completes_sign_in,
    a_passkey_signs_in_without_a_password,
    a_cloned_authenticator_another_origin_and_a_replay_are_refused,
    a_passkey_steps_up,
);

/// The origin the default configuration allows (the router's).
const ORIGIN: &str = "http://localhost:4000";

const LOGIN: &str = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { \
    __typename ... on AuthPayload { accessToken refreshToken } \
    ... on SecondFactorChallenge { challenge methods passkey { ceremonyId options } } } }";
const COMPLETE: &str = "mutation($c: String!, $p: SecondFactorInput!) { completeLogin(challenge: $c, proof: $p) { accessToken } }";
const SIGN_IN: &str = "mutation { beginPasskeySignIn { ceremonyId options expiresAt } }";
const FINISH_SIGN_IN: &str = "mutation($c: ID!, $k: JSON!) { finishPasskeySignIn(ceremonyId: $c, credential: $k) { accessToken user { id } } }";

async fn login(stack: &Stack, email: &str) -> Value {
    stack.login_as(LOGIN, email).await
}

/// A user with a passkey added in their first session: the passkey, that session's tokens
/// (from before it was added) and the recovery codes.
async fn with_passkey(stack: &Stack, email: &str, synced: bool) -> (SoftPasskey, Value) {
    stack.register(email).await;
    let first = login(stack, email).await;
    let access = first["accessToken"].as_str().expect("token");
    let begun = stack
        .auth
        .gql(
            "mutation { beginPasskeyRegistration(name: \"Laptop\") { ceremonyId options expiresAt } }",
            json!({}),
            Some(access),
        )
        .await;
    let begun = begun.data()["beginPasskeyRegistration"].clone();
    let options = &begun["options"];
    assert_eq!(options["publicKey"]["rp"]["id"], "localhost");
    assert_eq!(
        options["publicKey"]["authenticatorSelection"]["residentKey"], "required",
        "discoverable, for passwordless sign-in"
    );
    let (passkey, credential) = if synced {
        SoftPasskey::create_synced(options, ORIGIN)
    } else {
        SoftPasskey::create(options, ORIGIN)
    };
    let finish = "mutation($c: ID!, $k: JSON!) { finishPasskeyRegistration(ceremonyId: $c, credential: $k) { factor { kind name } recoveryCodes } }";
    stack
        .auth
        .gql(
            finish,
            json!({ "c": begun["ceremonyId"], "k": { "id": "not a credential" } }),
            Some(access),
        )
        .await
        .expect_error("BAD_USER_INPUT", "not a WebAuthn credential");
    let finished = stack
        .auth
        .gql(
            finish,
            json!({ "c": begun["ceremonyId"], "k": credential }),
            Some(access),
        )
        .await;
    let finished = finished.data()["finishPasskeyRegistration"].clone();
    assert_eq!(finished["factor"]["kind"], "PASSKEY");
    assert_eq!(finished["factor"]["name"], "Laptop");
    assert_eq!(finished["recoveryCodes"].as_array().map(Vec::len), Some(10));
    (passkey, first)
}

async fn a_passkey_is_added_and_then_completes_sign_in(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let (mut passkey, _) = with_passkey(&stack, "ada@example.com", false).await;
    let challenge = login(&stack, "ada@example.com").await;
    assert_eq!(challenge["__typename"], "SecondFactorChallenge");
    assert_eq!(challenge["methods"], json!(["PASSKEY", "RECOVERY_CODE"]));
    let request = &challenge["passkey"];
    let answer = passkey.get(&request["options"]);
    let signed = stack
        .auth
        .gql(
            COMPLETE,
            json!({ "c": challenge["challenge"], "p": { "passkey": { "ceremonyId": request["ceremonyId"], "credential": answer } } }),
            None,
        )
        .await;
    let access = signed.data()["completeLogin"]["accessToken"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_eq!(jwt_claims(&access)["amr"], json!(["pwd", "hwk", "mfa"]));
    for action in ["auth.factor.enrolled", "auth.factor.verified"] {
        stack.assert_audited(action).await;
    }
}

async fn a_passkey_signs_in_without_a_password(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let (mut passkey, first) = with_passkey(&stack, "grace@example.com", true).await;
    let begun = stack.auth.gql(SIGN_IN, json!({}), None).await;
    let begun = begun.data()["beginPasskeySignIn"].clone();
    assert_eq!(
        begun["options"]["publicKey"]["allowCredentials"],
        json!([]),
        "the passkey says who signs in"
    );
    let answer = passkey.get(&begun["options"]);
    let signed = stack
        .auth
        .gql(
            FINISH_SIGN_IN,
            json!({ "c": begun["ceremonyId"], "k": answer }),
            None,
        )
        .await;
    let signed = signed.data()["finishPasskeySignIn"].clone();
    let access = signed["accessToken"].as_str().expect("token");
    // A synced passkey is a software-held key.
    assert_eq!(jwt_claims(access)["amr"], json!(["swk", "mfa"]));
    assert_eq!(
        jwt_claims(access)["sub"],
        jwt_claims(first["accessToken"].as_str().expect("token"))["sub"]
    );
    stack.me(access).await.data();
}

async fn a_cloned_authenticator_another_origin_and_a_replay_are_refused(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let (mut passkey, _) = with_passkey(&stack, "linus@example.com", false).await;
    let sign_in = |answer: Value, ceremony: Value| {
        let stack = &stack;
        async move {
            stack
                .auth
                .gql(FINISH_SIGN_IN, json!({ "c": ceremony, "k": answer }), None)
                .await
        }
    };
    let begin = || async {
        stack.auth.gql(SIGN_IN, json!({}), None).await.data()["beginPasskeySignIn"].clone()
    };
    // Used once, then copied: both copies now have counter 1.
    let first = begin().await;
    let answer = passkey.get(&first["options"]);
    sign_in(answer.clone(), first["ceremonyId"].clone())
        .await
        .data();
    // The same answer again: the ceremony is spent.
    sign_in(answer, first["ceremonyId"].clone())
        .await
        .expect_error("UNAUTHENTICATED", "already used");
    let mut clone = passkey.clone();
    let second = begin().await;
    sign_in(
        passkey.get(&second["options"]),
        second["ceremonyId"].clone(),
    )
    .await
    .data();
    // The clone's counter (2) is not above the one last seen (2).
    let third = begin().await;
    let refused: Answer = sign_in(clone.get(&third["options"]), third["ceremonyId"].clone()).await;
    refused.expect_error("BAD_USER_INPUT", "may have be compromised");
    // An answer made on another origin (a phishing page) does not verify.
    let mut phished = passkey.clone();
    phished.origin = "http://localhost:6666".into();
    let fourth = begin().await;
    sign_in(
        phished.get(&fourth["options"]),
        fourth["ceremonyId"].clone(),
    )
    .await
    .expect_error("BAD_USER_INPUT", "origin does not match");
    let actions = stack.audit_actions().await;
    assert!(
        actions
            .iter()
            .filter(|a| *a == "auth.factor.failed")
            .count()
            >= 2,
        "{actions:?}"
    );
}

async fn a_passkey_steps_up(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let (mut passkey, first) = with_passkey(&stack, "barbara@example.com", false).await;
    // The session from before the passkey, refreshed: a password sign-in only.
    let weak = stack
        .refresh(first["refreshToken"].as_str().expect("refresh"))
        .await
        .access;
    stack
        .auth
        .gql(
            "mutation { regenerateRecoveryCodes }",
            json!({}),
            Some(&weak),
        )
        .await
        .expect_error("STEP_UP_REQUIRED", "stepUp");
    let begun = stack
        .auth
        .gql(
            "mutation { beginPasskeyStepUp { ceremonyId options } }",
            json!({}),
            Some(&weak),
        )
        .await;
    let begun = begun.data()["beginPasskeyStepUp"].clone();
    let answer = passkey.get(&begun["options"]);
    let stepped = stack
        .auth
        .gql(
            "mutation($p: SecondFactorInput!) { stepUp(proof: $p) { accessToken } }",
            json!({ "p": { "passkey": { "ceremonyId": begun["ceremonyId"], "credential": answer } } }),
            Some(&weak),
        )
        .await;
    let strong = stepped.data()["stepUp"]["accessToken"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_eq!(jwt_claims(&strong)["amr"], json!(["pwd", "hwk", "mfa"]));
    stack
        .auth
        .gql(
            "mutation { regenerateRecoveryCodes }",
            json!({}),
            Some(&strong),
        )
        .await
        .data();
}

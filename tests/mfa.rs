//! Multi-factor sign-in end to end through the router: enrol an authenticator, sign out, sign
//! in with the password and then a code, step up for a sensitive change, and a recovery code
//! that works once. Through the `keygraph` binary on SQLite files, and on Postgres when
//! `TEST_DATABASE_URL` is set.

mod common;
mod harness;

#[path = "../subgraphs/auth/tests/common/authenticator.rs"]
mod authenticator;
#[path = "../subgraphs/auth/tests/common/passkey.rs"]
mod passkey;

use authenticator::App;
use harness::{ADMIN_EMAIL, ADMIN_PASSWORD, Stack, Topology, data};
use keygraph_kernel::testing::{Backend, jwt_claims};
use passkey::SoftPasskey;
use serde_json::{Value, json};

keygraph_kernel::on_both_backends!(
    a_user_enrols_signs_in_with_a_code_and_steps_up,
    a_passkey_alone_signs_in_through_the_router,
);

const LOGIN: &str = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { \
    __typename ... on AuthPayload { accessToken refreshToken } \
    ... on SecondFactorChallenge { challenge methods } } }";
const COMPLETE: &str = "mutation($c: String!, $p: SecondFactorInput!) { completeLogin(challenge: $c, proof: $p) { accessToken refreshToken user { email } } }";

fn code(answer: &Value) -> &str {
    answer["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error: {answer}"))
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key}: {value}"))
}

async fn login(stack: &Stack) -> Value {
    let answer = stack
        .gql(
            LOGIN,
            json!({ "e": ADMIN_EMAIL, "p": ADMIN_PASSWORD }),
            None,
        )
        .await;
    data(&answer)["login"].clone()
}

async fn a_user_enrols_signs_in_with_a_code_and_steps_up(backend: Backend) {
    let Some(stack) = Stack::start(backend, Topology::Embedded).await else {
        return;
    };
    // Two sessions signed in with the password alone.
    let first = login(&stack).await;
    assert_eq!(first["__typename"], "AuthPayload", "{first}");
    let access = text(&first, "accessToken").to_owned();
    let other = login(&stack).await;

    // Enrol an authenticator.
    let begun = stack
        .gql(
            "mutation { beginTotpEnrolment(name: \"Phone\") { factorId secret } }",
            json!({}),
            Some(&access),
        )
        .await;
    let enrolment = data(&begun)["beginTotpEnrolment"].clone();
    let mut app = App::new(text(&enrolment, "secret"));
    let confirmed = stack
        .gql(
            "mutation($f: ID!, $c: String!) { confirmTotpEnrolment(factorId: $f, code: $c) { factor { name } recoveryCodes } }",
            json!({ "f": enrolment["factorId"], "c": app.code().await }),
            Some(&access),
        )
        .await;
    let recovery: Vec<String> = data(&confirmed)["confirmTotpEnrolment"]["recoveryCodes"]
        .as_array()
        .expect("recovery codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    assert_eq!(recovery.len(), 10);

    // Sign out, then in again: the password answers a challenge, the code completes it.
    let out = stack
        .gql("mutation { logout }", json!({}), Some(&access))
        .await;
    assert_eq!(data(&out)["logout"], true);
    let challenged = login(&stack).await;
    assert_eq!(challenged["__typename"], "SecondFactorChallenge");
    let wrong = stack
        .gql(
            COMPLETE,
            json!({ "c": challenged["challenge"], "p": { "totpCode": app.wrong_code() } }),
            None,
        )
        .await;
    assert_eq!(code(&wrong), "BAD_USER_INPUT", "{wrong}");
    let signed = stack
        .gql(
            COMPLETE,
            json!({ "c": challenged["challenge"], "p": { "totpCode": app.code().await } }),
            None,
        )
        .await;
    let signed = data(&signed)["completeLogin"].clone();
    assert_eq!(signed["user"]["email"], ADMIN_EMAIL);
    let strong = text(&signed, "accessToken").to_owned();
    assert_eq!(jwt_claims(&strong)["amr"], json!(["pwd", "otp", "mfa"]));

    // The session from before the enrolment, refreshed, is a password sign-in only: a
    // sensitive change asks it to step up.
    let refreshed = stack
        .gql(
            "mutation($r: String!) { refresh(refreshToken: $r) { accessToken } }",
            json!({ "r": other["refreshToken"] }),
            None,
        )
        .await;
    let weak = text(&data(&refreshed)["refresh"], "accessToken").to_owned();
    let change = "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }";
    let new_password = "a different passphrase entirely";
    let variables = json!({ "c": ADMIN_PASSWORD, "n": new_password });
    let refused = stack.gql(change, variables.clone(), Some(&weak)).await;
    assert_eq!(code(&refused), "STEP_UP_REQUIRED", "{refused}");
    let removal = stack
        .gql("{ secondFactors { id } }", json!({}), Some(&weak))
        .await;
    let factor = data(&removal)["secondFactors"][0]["id"].clone();
    let refused = stack
        .gql(
            "mutation($id: ID!) { removeSecondFactor(id: $id) }",
            json!({ "id": factor }),
            Some(&weak),
        )
        .await;
    assert_eq!(code(&refused), "STEP_UP_REQUIRED", "{refused}");

    // A recovery code signs in once.
    for attempt in 0..2 {
        let challenged = login(&stack).await;
        let answer = stack
            .gql(
                COMPLETE,
                json!({ "c": challenged["challenge"], "p": { "recoveryCode": recovery[0] } }),
                None,
            )
            .await;
        if attempt == 0 {
            data(&answer);
        } else {
            assert_eq!(code(&answer), "BAD_USER_INPUT", "{answer}");
        }
    }

    // Stepped up with a code, the old session may change the password.
    let stepped = stack
        .gql(
            "mutation($p: SecondFactorInput!) { stepUp(proof: $p) { accessToken } }",
            json!({ "p": { "totpCode": app.code().await } }),
            Some(&weak),
        )
        .await;
    let stepped = text(&data(&stepped)["stepUp"], "accessToken").to_owned();
    let changed = stack.gql(change, variables, Some(&stepped)).await;
    assert_eq!(data(&changed)["changePassword"], true);
}

async fn a_passkey_alone_signs_in_through_the_router(backend: Backend) {
    let Some(stack) = Stack::start(backend, Topology::Embedded).await else {
        return;
    };
    let first = login(&stack).await;
    let access = text(&first, "accessToken").to_owned();
    let begun = stack
        .gql(
            "mutation { beginPasskeyRegistration { ceremonyId options } }",
            json!({}),
            Some(&access),
        )
        .await;
    let begun = data(&begun)["beginPasskeyRegistration"].clone();
    let (mut passkey, credential) = SoftPasskey::create(&begun["options"], "http://localhost:4000");
    let finished = stack
        .gql(
            "mutation($c: ID!, $k: JSON!) { finishPasskeyRegistration(ceremonyId: $c, credential: $k) { factor { kind } } }",
            json!({ "c": begun["ceremonyId"], "k": credential }),
            Some(&access),
        )
        .await;
    assert_eq!(
        data(&finished)["finishPasskeyRegistration"]["factor"]["kind"],
        "PASSKEY"
    );
    let out = stack
        .gql("mutation { logout }", json!({}), Some(&access))
        .await;
    assert_eq!(data(&out)["logout"], true);

    // No email, no password: the passkey says who signs in.
    let begun = stack
        .gql(
            "mutation { beginPasskeySignIn { ceremonyId options } }",
            json!({}),
            None,
        )
        .await;
    let begun = data(&begun)["beginPasskeySignIn"].clone();
    let signed = stack
        .gql(
            "mutation($c: ID!, $k: JSON!) { finishPasskeySignIn(ceremonyId: $c, credential: $k) { accessToken user { email } } }",
            json!({ "c": begun["ceremonyId"], "k": passkey.get(&begun["options"]) }),
            None,
        )
        .await;
    let signed = data(&signed)["finishPasskeySignIn"].clone();
    assert_eq!(signed["user"]["email"], ADMIN_EMAIL);
    let token = text(&signed, "accessToken");
    assert_eq!(jwt_claims(token)["amr"], json!(["hwk", "mfa"]));
    // A passkey sign-in counts for sensitive changes.
    let changed = stack
        .gql(
            "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }",
            json!({ "c": ADMIN_PASSWORD, "n": "a different passphrase entirely" }),
            Some(token),
        )
        .await;
    assert_eq!(data(&changed)["changePassword"], true);
}

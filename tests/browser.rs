//! Passkeys in a real browser: Debian's Chromium, driven by playwright-core with a DevTools
//! virtual authenticator, opens a small sign-in page (tests/browser/passkey.html) that calls
//! the router. It signs in with the password, adds a passkey, and signs in again with the
//! passkey alone: the browser's own WebAuthn JSON against the relying party's checks.
//!
//! Runs when `TEST_CHROMIUM` names a Chromium and tests/browser/node_modules is installed
//! (`.ci/run` installs both); skipped otherwise.

mod common;
mod harness;

use std::process::Command;

use harness::{ADMIN_EMAIL, ADMIN_PASSWORD, Stack, Topology};
use keygraph_kernel::testing::Backend;
use serde_json::{Value, json};

const PAGE: &str = include_str!("browser/passkey.html");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_adds_a_passkey_and_signs_in_with_it() {
    let Some(chromium) = std::env::var_os("TEST_CHROMIUM") else {
        eprintln!("skipped: TEST_CHROMIUM is not set (.ci/run installs Chromium and sets it)");
        return;
    };
    let runner = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    assert!(
        std::path::Path::new(runner)
            .join("node_modules/playwright-core")
            .exists(),
        "TEST_CHROMIUM is set but playwright-core is not installed: run `npm ci --prefix tests/browser`"
    );
    // The page, on an origin of its own that passkeys are allowed for.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("page port");
    let page_port = listener.local_addr().expect("page address").port();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|| async { axum::response::Html(PAGE) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let page_origin = format!("http://localhost:{page_port}");
    let origins = format!("[\"{page_origin}\"]");
    let Some(stack) = Stack::start_with(
        Backend::Sqlite,
        Topology::Embedded,
        &[("KEYGRAPH__AUTH__MFA__PASSKEYS__ORIGINS", &origins)],
    )
    .await
    else {
        return;
    };
    let output = tokio::task::spawn_blocking({
        let graphql = stack.graphql.clone();
        move || {
            Command::new("node")
                .current_dir(runner)
                .env("TEST_CHROMIUM", chromium)
                .args([
                    "run.mjs",
                    &format!("{page_origin}/"),
                    &graphql,
                    ADMIN_EMAIL,
                    ADMIN_PASSWORD,
                ])
                .output()
                .expect("node runs")
        }
    })
    .await
    .expect("the browser run");
    assert!(
        output.status.success(),
        "the browser run failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_slice(&output.stdout).expect("the page's JSON");
    assert_eq!(
        result,
        json!({
            "kind": "PASSKEY",
            "name": "This browser",
            "email": ADMIN_EMAIL,
            "amr": ["hwk", "mfa"],
            "resident": [true],
        })
    );
}

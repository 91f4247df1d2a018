//! Who may ask what at the router, over the four test subgraphs: `@requiresScopes`, refused
//! tokens and the status codes of refusals, CORS for browsers, and the client's token,
//! request id and trace context forwarded to the subgraphs.

mod common;

use common::Federation;
use serde_json::json;

#[tokio::test]
async fn requires_scopes_is_enforced_at_the_router() {
    let fed = Federation::start().await;
    let query = "{ topProducts(first: 1) { name cost } }";
    let response = fed.query(query, json!({})).await;
    assert_eq!(response["data"], json!(null));
    assert_eq!(
        response["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{response}"
    );
    let user = uuid_v7();
    let without = fed.signer.token(user, &["identity.user.read"]);
    let answer = fed.query_as(query, &without).await;
    answer.expect_error("FORBIDDEN", "billing.read");
    let with = fed.signer.token(user, &["billing.*"]);
    let answer = fed.query_as(query, &with).await;
    assert_eq!(
        answer.data(),
        &json!({ "topProducts": [{ "name": "Table", "cost": 400 }] })
    );
    // A token that is refused (stale, ended, forged) does not sink the request: what needs no
    // token runs, and what needs one says why the token was refused.
    let answer = fed
        .query_as("{ topProducts(first: 1) { name } }", "not-a-token")
        .await;
    assert_eq!(
        answer.data(),
        &json!({ "topProducts": [{ "name": "Table" }] })
    );
    let answer = fed.query_as(query, "not-a-token").await;
    answer.expect_error("UNAUTHENTICATED", "the access token sent was refused");
    assert_eq!(answer.0["errors"][0]["extensions"]["reason"], "malformed");
    let mut claims = fed.signer.claims(user, &["billing.*"]);
    claims.exp = claims.iat - 120;
    let expired = fed.signer.sign(&claims);
    let answer = fed.query_as(query, &expired).await;
    assert_eq!(
        answer.0["errors"][0]["extensions"]["reason"], "expired",
        "{}",
        answer.0
    );
}

/// Access refusals are request errors (nothing ran): 200 for `application/json`, 401 or 403
/// for `application/graphql-response+json`, as the GraphQL over HTTP spec has it; and never
/// a 401 for a stale token on an operation that needs none.
#[tokio::test]
async fn access_refusals_follow_graphql_over_http_status_codes() {
    let fed = Federation::start().await;
    let url = format!("{}/graphql", fed.router.base);
    let post = |query: &'static str, token: Option<String>, accept: &'static str| {
        let mut request = fed
            .router
            .http
            .post(&url)
            .header("accept", accept)
            .json(&json!({ "query": query }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let guarded = "{ topProducts(first: 1) { cost } }";
    let reader = fed.signer.token(uuid_v7(), &["identity.user.read"]);
    for (token, graphql_response, json) in [
        (None, 401, 200),
        (Some("stale".to_owned()), 401, 200),
        (Some(reader), 403, 200),
    ] {
        let response = post(guarded, token.clone(), "application/graphql-response+json")
            .await
            .expect("request");
        assert_eq!(response.status(), graphql_response, "{token:?}");
        let body: serde_json::Value = response.json().await.expect("json");
        assert!(body.get("data").is_none(), "nothing ran: {body}");
        let response = post(guarded, token.clone(), "application/json")
            .await
            .expect("request");
        assert_eq!(response.status(), json, "{token:?}");
    }
    let response = post(
        "{ topProducts(first: 1) { name } }",
        Some("stale".to_owned()),
        "application/graphql-response+json",
    )
    .await
    .expect("request");
    assert_eq!(response.status(), 200);
}

/// Browsers: preflights are answered (never 405); in development any localhost origin is
/// allowed, other origins only when configured; in production only configured ones.
#[tokio::test]
async fn cors_allows_localhost_in_development_and_answers_preflights() {
    async fn preflight(base: &str, origin: &str) -> reqwest::Response {
        reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, format!("{base}/graphql"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type, authorization",
            )
            .send()
            .await
            .expect("preflight")
    }
    let allowed = |response: &reqwest::Response| {
        response
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let development = Federation::start_with(|config| {
        config.router.cors.allowed_origins = vec!["https://app.example.com".into()];
    })
    .await;
    let base = &development.router.base;
    for origin in [
        "http://localhost:5173",
        "http://127.0.0.1:3000",
        "http://[::1]:8080",
        "http://localhost",
        "https://app.example.com",
    ] {
        let response = preflight(base, origin).await;
        assert!(
            response.status().is_success(),
            "{origin}: {}",
            response.status()
        );
        assert_eq!(allowed(&response).as_deref(), Some(origin));
        let methods = response
            .headers()
            .get("access-control-allow-methods")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(methods.contains("POST"), "{methods}");
    }
    for origin in [
        "https://evil.example",
        "http://localhost.evil.example",
        "http://localhost:5173.evil.example",
        "https://localhost:5173",
    ] {
        let response = preflight(base, origin).await;
        assert!(
            response.status().is_success(),
            "{origin}: {}",
            response.status()
        );
        assert_eq!(allowed(&response), None, "{origin}");
    }
    let response = development
        .router
        .http
        .post(format!("{base}/graphql"))
        .header("origin", "http://localhost:5173")
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .expect("request");
    assert_eq!(allowed(&response).as_deref(), Some("http://localhost:5173"));

    let production = Federation::start_with(|config| {
        config.router.cors.allow_localhost = Some(false);
    })
    .await;
    let response = preflight(&production.router.base, "http://localhost:5173").await;
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(allowed(&response), None);
}

fn uuid_v7() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

#[tokio::test]
async fn authorization_request_id_and_traceparent_reach_the_subgraphs() {
    let fed = Federation::start().await;
    let token = fed.signer.token(uuid_v7(), &[]);
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = fed
        .router
        .http
        .post(format!("{}/graphql", fed.router.base))
        .bearer_auth(&token)
        .header("x-request-id", "req-abc-123")
        .header("traceparent", traceparent)
        .json(&json!({ "query": "{ latestReviews { author { name } } }" }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    // Both the root fetch (reviews) and the entity fetch (accounts) carried them.
    for subgraph in ["reviews", "accounts"] {
        let headers = fed.subgraphs[subgraph]
            .last_headers
            .lock()
            .expect("headers")
            .clone();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(
            header("authorization"),
            Some(format!("Bearer {token}")),
            "{subgraph}"
        );
        assert_eq!(
            header("x-request-id").as_deref(),
            Some("req-abc-123"),
            "{subgraph}"
        );
        assert_eq!(
            header("traceparent").as_deref(),
            Some(traceparent),
            "{subgraph}"
        );
    }
}

//! The running identity service over real HTTP, on SQLite and on Postgres: its health
//! endpoints, mutations refused over GET, and its tables in its own Postgres schema.

mod common;

use common::TestService;
use keygraph_kernel::testing::Backend;
use sea_orm::ConnectionTrait;
use serde_json::json;

keygraph_kernel::on_both_backends!(
    schema_lives_in_its_own_postgres_schema,
    mutations_are_refused_over_get,
);

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

//! Serving a subgraph's GraphQL over HTTP: the caller's token is verified, mutations over GET
//! are refused, and the request's metadata reaches the resolvers.

use async_graphql::{
    Context, EmptySubscription, ID, ObjectType, Request, SDLExportOptions, Schema, SchemaBuilder,
    SubscriptionType,
    parser::types::{DocumentOperations, OperationType},
};
use async_graphql_axum::GraphQLResponse;
use axum::{
    Extension, Json,
    extract::State,
    http::{HeaderMap, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{MethodRouter, post},
};

use async_graphql::parser::types::ExecutableDocument;
use std::sync::Arc;
use uuid::Uuid;

use crate::{
    cache::{BoundedCache, operation_key},
    error::{ApiError, ApiResult},
    guard::Authentication,
    http::RequestMeta,
    token::{TokenError, TokenVerifier},
};

/// A subgraph's schema: Federation v2 on, and limits on query depth and complexity.
pub fn subgraph_schema<Q, M>(
    query: Q,
    mutation: M,
    max_depth: usize,
    max_complexity: usize,
) -> SchemaBuilder<Q, M, EmptySubscription>
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
{
    Schema::build(query, mutation, EmptySubscription)
        .enable_federation()
        .limit_depth(max_depth)
        .limit_complexity(max_complexity)
}

/// The SDL a subgraph serves as `_service { sdl }` (what `schema/<service>.graphql` holds).
pub fn subgraph_sdl<Q, M>(query: Q, mutation: M) -> String
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
{
    Schema::build(query, mutation, EmptySubscription)
        .enable_federation()
        .finish()
        .sdl_with_options(SDLExportOptions::new().federation())
}

/// How many parsed documents a subgraph keeps.
const DOCUMENTS_KEPT: usize = 512;

/// Parsed documents by their text. async-graphql parses every request anew, and its parser
/// is a large part of a cheap request's CPU; clients (the router above all) send the same few
/// documents again and again.
pub struct Documents(BoundedCache<ExecutableDocument>);

impl Default for Documents {
    fn default() -> Self {
        Self(BoundedCache::new(DOCUMENTS_KEPT))
    }
}

impl Documents {
    /// Gives `request` its parsed document: a copy of the kept one, or parsed now and kept.
    /// A document that does not parse is left for the executor to report.
    fn attach(&self, request: &mut Request) {
        let key = operation_key(&request.query, None);
        if let Some(document) = self.0.get(&key) {
            request.set_parsed_query(ExecutableDocument::clone(&document));
        } else if let Ok(document) = request.parsed_query() {
            self.0.insert(key, Arc::new(document.clone()));
        }
    }
}

/// Executes `request` against `schema` with the caller's [`Authentication`] and `meta`.
pub async fn execute<Q, M, S>(
    schema: &Schema<Q, M, S>,
    documents: &Documents,
    verifier: &TokenVerifier,
    method: Method,
    headers: &HeaderMap,
    meta: RequestMeta,
    mut request: Request,
) -> Response
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    documents.attach(&mut request);
    // GET must be safe: a link or an <img> must never change state (GraphQL over HTTP).
    if method == Method::GET && selects_mutation(&mut request) {
        let body = serde_json::json!({ "errors": [{
            "message": "mutations must be sent with POST",
            "extensions": { "code": "BAD_USER_INPUT" },
        }] });
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "POST")],
            Json(body),
        )
            .into_response();
    }
    let authentication = authenticate(verifier, headers).await;
    GraphQLResponse::from(
        schema
            .execute(request.data(authentication).data(meta))
            .await,
    )
    .into_response()
}

/// `POST` and `GET` for a subgraph's `/graphql` route: [`execute`] with the caller's token.
pub fn endpoint<Q, M, S>(schema: Schema<Q, M, S>, verifier: TokenVerifier) -> MethodRouter
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    /// What every request of the route shares.
    type Served<Q, M, S> = (Schema<Q, M, S>, Arc<Documents>, TokenVerifier);

    async fn handle<Q, M, S>(
        State((schema, documents, verifier)): State<Served<Q, M, S>>,
        Extension(meta): Extension<RequestMeta>,
        method: Method,
        headers: HeaderMap,
        request: async_graphql_axum::GraphQLRequest,
    ) -> Response
    where
        Q: ObjectType + 'static,
        M: ObjectType + 'static,
        S: SubscriptionType + 'static,
    {
        execute(
            &schema,
            &documents,
            &verifier,
            method,
            &headers,
            meta,
            request.into_inner(),
        )
        .await
    }
    post(handle::<Q, M, S>).get(handle::<Q, M, S>).with_state((
        schema,
        Arc::new(Documents::default()),
        verifier,
    ))
}

/// Reads `Authorization: Bearer …`; a refused token is remembered with its reason, so
/// operations that need no token still work and those that do say why it was refused.
pub async fn authenticate(verifier: &TokenVerifier, headers: &HeaderMap) -> Authentication {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Authentication::Anonymous;
    };
    let token = value.to_str().ok().and_then(|v| {
        v.strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
    });
    match token {
        Some(token) => match verifier.verify(token.trim()).await {
            Ok(principal) => Authentication::Authenticated(principal),
            Err(reason) => Authentication::Invalid(reason),
        },
        None => Authentication::Invalid(TokenError::Malformed(
            "the Authorization header must be `Bearer <token>`".into(),
        )),
    }
}

/// Whether the operation the request would run is a mutation. Unparsable documents and
/// ambiguous selections are left to the executor, which reports them.
fn selects_mutation(request: &mut Request) -> bool {
    let name = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else {
        return false;
    };
    let operation = match (&document.operations, name) {
        (DocumentOperations::Single(op), _) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name.as_str()),
        (DocumentOperations::Multiple(_), None) => None,
    };
    operation.is_some_and(|op| op.node.ty == OperationType::Mutation)
}

/// The request's metadata (id, client address) as [`execute`] attached it; empty otherwise.
pub fn request_meta<'a>(ctx: &'a Context<'_>) -> &'a RequestMeta {
    static NONE: std::sync::OnceLock<RequestMeta> = std::sync::OnceLock::new();
    ctx.data_opt::<RequestMeta>()
        .unwrap_or_else(|| NONE.get_or_init(RequestMeta::default))
}

/// An `ID` argument that must be a UUID; `what` names it in the error ("user", "role").
pub fn parse_id(field: &str, what: &str, id: &ID) -> ApiResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| {
        ApiError::bad_input(
            field,
            format!("`{}` is not a {what} id (a UUID)", id.as_str()),
        )
    })
}

#[cfg(test)]
mod tests {
    use async_graphql::{EmptyMutation, EmptySubscription, Object};

    use super::*;

    struct Query;

    #[Object]
    impl Query {
        async fn greeting(&self, name: String) -> String {
            format!("hello {name}")
        }
    }

    #[tokio::test]
    async fn a_repeated_document_is_parsed_once_and_answers_the_same() {
        let schema = Schema::new(Query, EmptyMutation, EmptySubscription);
        let documents = Documents::default();
        let query = r#"query($n: String!) { greeting(name: $n) }"#;
        for name in ["ada", "grace"] {
            let mut request = Request::new(query).variables(async_graphql::Variables::from_json(
                serde_json::json!({ "n": name }),
            ));
            documents.attach(&mut request);
            let response = schema.execute(request).await;
            assert!(response.errors.is_empty(), "{:?}", response.errors);
            assert_eq!(
                response.data.into_json().expect("json"),
                serde_json::json!({ "greeting": format!("hello {name}") })
            );
        }
        assert_eq!(documents.0.len(), 1);
    }

    #[tokio::test]
    async fn a_document_that_does_not_parse_is_reported_and_not_kept() {
        let schema = Schema::new(Query, EmptyMutation, EmptySubscription);
        let documents = Documents::default();
        let mut request = Request::new("{ greeting(name: ");
        documents.attach(&mut request);
        let response = schema.execute(request).await;
        assert_eq!(response.errors.len(), 1);
        assert!(
            response.errors[0].message.contains("expected"),
            "{}",
            response.errors[0].message
        );
        assert!(documents.0.is_empty());
    }
}

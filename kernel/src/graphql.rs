//! Serving a subgraph's GraphQL over HTTP: the body is read within the body limit, the
//! document is held to the subgraph's limits before async-graphql validates it, the caller's
//! token is verified, mutations over GET are refused, and the request's metadata reaches the
//! resolvers.

use async_graphql::{
    Context, EmptySubscription, ErrorExtensionValues, ID, ObjectType, Request, SDLExportOptions,
    Schema, SchemaBuilder, ServerError, SubscriptionType,
    parser::types::{DocumentOperations, OperationType},
};
use async_graphql_axum::GraphQLResponse;
use axum::{
    Extension, Json,
    body::Bytes,
    extract::{FromRequest, State, rejection::BytesRejection},
    http::{HeaderMap, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{MethodRouter, post},
};

use async_graphql::parser::types::ExecutableDocument;
use std::sync::Arc;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::{
    cache::{BoundedCache, operation_key},
    error::{ApiError, ApiResult, ErrorCode},
    guard::Authentication,
    http::{BodyLimit, RequestMeta},
    limits::{LimitExceeded, Limits},
    token::{TokenError, TokenVerifier},
};

/// A subgraph's schema: Federation v2 on, and async-graphql's own depth and complexity limits
/// set to `limits` (its complexity is one per field, as [`Limits::max_fields`] counts). The
/// same limits are checked, fragments inlined, before async-graphql sees a document
/// ([`Documents`]): its own checks walk every fragment spread again.
pub fn subgraph_schema<Q, M>(
    query: Q,
    mutation: M,
    limits: &Limits,
) -> SchemaBuilder<Q, M, EmptySubscription>
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
{
    Schema::build(query, mutation, EmptySubscription)
        .enable_federation()
        .extension(RootFieldSpans)
        .limit_depth(saturating_usize(limits.max_depth))
        .limit_complexity(saturating_usize(limits.max_fields))
        .limit_directives(saturating_usize(limits.max_directives))
}

fn saturating_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
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

/// Parsed documents by their text, each held to the subgraph's [`Limits`] once. async-graphql
/// parses every request anew, and its parser is a large part of a cheap request's CPU;
/// clients (the router above all) send the same few documents again and again. A document
/// that does not parse or is over a limit is kept with its error, so a repeat costs a lookup.
pub struct Documents {
    limits: Limits,
    introspection: bool,
    kept: BoundedCache<Result<ExecutableDocument, ServerError>>,
}

impl Documents {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            introspection: true,
            kept: BoundedCache::new(DOCUMENTS_KEPT),
        }
    }

    /// Whether documents selecting `__schema` or `__type` run (the `introspection` setting).
    pub fn with_introspection(mut self, introspection: bool) -> Self {
        self.introspection = introspection;
        self
    }

    /// Gives `request` its parsed document (a copy of the kept one, or parsed and measured now
    /// and kept), or the error that refuses it.
    fn attach(&self, request: &mut Request) -> Result<(), ServerError> {
        let key = operation_key(&request.query, None);
        let checked = match self.kept.get(&key) {
            Some(checked) => checked,
            None => {
                let checked = Arc::new(self.check(&request.query));
                self.kept.insert(key, checked.clone());
                checked
            }
        };
        match &*checked {
            Ok(document) => {
                request.set_parsed_query(document.clone());
                Ok(())
            }
            Err(error) => Err(error.clone()),
        }
    }

    fn check(&self, query: &str) -> Result<ExecutableDocument, ServerError> {
        let document = async_graphql::parser::parse_query(query).map_err(ServerError::from)?;
        self.limits
            .check(&document)
            .map_err(|refused| limit_error(&refused))?;
        if !self.introspection && selects_introspection(&document) {
            let mut error = ServerError::new(INTROSPECTION_DISABLED_MESSAGE, None);
            let mut extensions = ErrorExtensionValues::default();
            extensions.set("code", ErrorCode::IntrospectionDisabled.as_str());
            error.extensions = Some(extensions);
            return Err(error);
        }
        Ok(document)
    }
}

/// What the error says that refuses an operation because it introspects and introspection is
/// off ([`ErrorCode::IntrospectionDisabled`]).
pub const INTROSPECTION_DISABLED_MESSAGE: &str =
    "introspection (__schema, __type) is turned off here (the `introspection` setting)";

/// Whether any selection of the document, fragments included, is `__schema` or `__type`.
fn selects_introspection(document: &ExecutableDocument) -> bool {
    use async_graphql::parser::types::{Selection, SelectionSet};
    fn walk(set: &SelectionSet) -> bool {
        set.items.iter().any(|item| match &item.node {
            Selection::Field(field) => {
                matches!(field.node.name.node.as_str(), "__schema" | "__type")
                    || walk(&field.node.selection_set.node)
            }
            Selection::InlineFragment(fragment) => walk(&fragment.node.selection_set.node),
            Selection::FragmentSpread(_) => false,
        })
    }
    document
        .operations
        .iter()
        .any(|(_, op)| walk(&op.node.selection_set.node))
        || document
            .fragments
            .values()
            .any(|fragment| walk(&fragment.node.selection_set.node))
}

/// The GraphQL error that refuses a document over a limit.
fn limit_error(refused: &LimitExceeded) -> ServerError {
    let mut error = ServerError::new(refused.to_string(), None);
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", ErrorCode::OperationLimitExceeded.as_str());
    extensions.set("limit", refused.limit());
    extensions.set("max", refused.max());
    error.extensions = Some(extensions);
    error
}

/// A subgraph's GraphQL request, from the query string of a GET or the JSON body of a POST.
/// The body is read within `http.body_limit_bytes` (async-graphql-axum's extractor reads a
/// body whole, whatever its size); what cannot be read is answered as a GraphQL error.
/// A POST must say `Content-Type: application/json`: `text/plain` and form posts are what a
/// browser sends cross-site without asking (no CORS preflight), so they are refused (415).
pub struct GraphqlRequest(pub Request);

/// Whether a POST's `Content-Type` is JSON (`application/json`, or GraphQL over HTTP's
/// `application/graphql-response+json`), parameters such as `charset` aside.
pub fn is_json_body(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence.eq_ignore_ascii_case("application/graphql-response+json")
}

/// The message of the 415 answer to a POST that is not JSON.
pub const JSON_BODY_REQUIRED: &str = "send the request as `Content-Type: application/json`";

impl<S: Send + Sync> FromRequest<S> for GraphqlRequest {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        if req.method() == Method::GET {
            let query = req.uri().query().unwrap_or_default();
            return async_graphql::http::parse_query_string(query)
                .map(Self)
                .map_err(|e| {
                    request_refusal(
                        StatusCode::BAD_REQUEST,
                        format!("the query string is not a GraphQL request: {e}"),
                    )
                });
        }
        if !is_json_body(req.headers()) {
            return Err(request_refusal(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                JSON_BODY_REQUIRED.to_owned(),
            ));
        }
        let limit = req.extensions().get::<BodyLimit>().copied();
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| body_refusal(&rejection, limit))?;
        serde_json::from_slice::<Request>(&body)
            .map(Self)
            .map_err(|e| {
                request_refusal(
                    StatusCode::BAD_REQUEST,
                    format!("the body is not a GraphQL request in JSON: {e}"),
                )
            })
    }
}

/// The answer to a request whose body could not be read: 413 when it is over `limit`.
pub fn body_refusal(rejection: &BytesRejection, limit: Option<BodyLimit>) -> Response {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        let limit = limit.map_or_else(String::new, |BodyLimit(n)| format!(" of {n} bytes"));
        return request_refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than the limit{limit} (http.body_limit_bytes)"),
        );
    }
    request_refusal(
        StatusCode::BAD_REQUEST,
        format!("the request body could not be read: {rejection}"),
    )
}

/// A request that could not be read, answered as GraphQL errors with `BAD_REQUEST`.
fn request_refusal(status: StatusCode, message: String) -> Response {
    let body = serde_json::json!({ "errors": [{
        "message": message,
        "extensions": { "code": ErrorCode::BadRequest.as_str() },
    }] });
    (status, Json(body)).into_response()
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
    if let Err(error) = documents.attach(&mut request) {
        return GraphQLResponse::from(async_graphql::Response::from_errors(vec![error]))
            .into_response();
    }
    // GET must be safe: a link or an <img> must never change state (GraphQL over HTTP).
    if method == Method::GET && selects_mutation(&mut request) {
        let body = serde_json::json!({ "errors": [{
            "message": "mutations must be sent with POST",
            "extensions": { "code": ErrorCode::BadUserInput.as_str() },
        }] });
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "POST")],
            Json(body),
        )
            .into_response();
    }
    let authentication = authenticate(verifier, headers).await;
    let kind = if selects_mutation(&mut request) {
        "mutation"
    } else {
        "query"
    };
    let span = tracing::info_span!(
        "graphql execute",
        otel.name = crate::telemetry::operation_span_name(kind, request.operation_name.as_deref()),
        graphql.operation.type = kind,
        graphql.operation.name = request.operation_name.as_deref(),
    );
    let service = meta.service;
    let response = schema
        .execute(request.data(authentication).data(meta))
        .instrument(span)
        .await;
    crate::metrics::Metrics::of(service).graphql_operation(
        kind,
        response.errors.iter().map(|error| {
            match error.extensions.as_ref().and_then(|e| e.get("code")) {
                Some(async_graphql::Value::String(code)) => Some(code.as_str()),
                Some(async_graphql::Value::Enum(code)) => Some(code.as_str()),
                _ => None,
            }
        }),
    );
    GraphQLResponse::from(response).into_response()
}

/// A span for each root field (queries, mutations and `_entities`): where a subgraph's
/// resolvers load and change things. Fields below them read what those loaded, or go
/// through loaders whose statements have spans of their own.
pub struct RootFieldSpans;

impl async_graphql::extensions::ExtensionFactory for RootFieldSpans {
    fn create(&self) -> Arc<dyn async_graphql::extensions::Extension> {
        Arc::new(RootFieldSpans)
    }
}

#[async_trait::async_trait]
impl async_graphql::extensions::Extension for RootFieldSpans {
    async fn resolve(
        &self,
        ctx: &async_graphql::extensions::ExtensionContext<'_>,
        info: async_graphql::extensions::ResolveInfo<'_>,
        next: async_graphql::extensions::NextResolve<'_>,
    ) -> async_graphql::ServerResult<Option<async_graphql::Value>> {
        if info.path_node.parent.is_some() || info.is_for_introspection {
            return next.run(ctx, info).await;
        }
        let span = tracing::info_span!(
            "graphql resolve",
            otel.name = %format!("{}.{}", info.parent_type, info.name),
            graphql.field.name = info.name,
            graphql.field.type = info.return_type,
        );
        next.run(ctx, info).instrument(span).await
    }
}

/// `POST` and `GET` for a subgraph's `/graphql` route: [`execute`] with the caller's token,
/// documents held to their limits and the introspection setting.
pub fn endpoint<Q, M, S>(
    schema: Schema<Q, M, S>,
    documents: Documents,
    verifier: TokenVerifier,
) -> MethodRouter
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
        GraphqlRequest(request): GraphqlRequest,
    ) -> Response
    where
        Q: ObjectType + 'static,
        M: ObjectType + 'static,
        S: SubscriptionType + 'static,
    {
        execute(
            &schema, &documents, &verifier, method, &headers, meta, request,
        )
        .await
    }
    post(handle::<Q, M, S>).get(handle::<Q, M, S>).with_state((
        schema,
        Arc::new(documents),
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

    const LIMITS: Limits = Limits {
        max_depth: 5,
        max_fields: 50,
        max_aliases: 5,
        max_directives: 5,
    };

    #[tokio::test]
    async fn a_repeated_document_is_parsed_once_and_answers_the_same() {
        let schema = Schema::new(Query, EmptyMutation, EmptySubscription);
        let documents = Documents::new(LIMITS);
        let query = r#"query($n: String!) { greeting(name: $n) }"#;
        for name in ["ada", "grace"] {
            let mut request = Request::new(query).variables(async_graphql::Variables::from_json(
                serde_json::json!({ "n": name }),
            ));
            documents.attach(&mut request).expect("within the limits");
            let response = schema.execute(request).await;
            assert!(response.errors.is_empty(), "{:?}", response.errors);
            assert_eq!(
                response.data.into_json().expect("json"),
                serde_json::json!({ "greeting": format!("hello {name}") })
            );
        }
        assert_eq!(documents.kept.len(), 1);
    }

    #[test]
    fn a_document_that_does_not_parse_is_refused_with_its_syntax_error_and_kept() {
        let documents = Documents::new(LIMITS);
        for _ in 0..2 {
            let error = documents
                .attach(&mut Request::new("{ greeting(name: "))
                .expect_err("does not parse");
            assert!(error.message.contains("expected"), "{}", error.message);
            assert!(!error.locations.is_empty());
        }
        assert_eq!(documents.kept.len(), 1);
    }

    #[test]
    fn introspection_is_refused_when_turned_off_wherever_the_document_hides_it() {
        let off = Documents::new(LIMITS).with_introspection(false);
        for query in [
            "{ __schema { types { name } } }",
            "query { ...F } fragment F on Query { __type(name: \"Query\") { name } }",
            "{ ... on Query { __schema { queryType { name } } } }",
        ] {
            let error = off
                .attach(&mut Request::new(query))
                .expect_err("introspection is off");
            assert_eq!(error.message, INTROSPECTION_DISABLED_MESSAGE);
            let extensions = serde_json::to_value(&error.extensions).expect("json");
            assert_eq!(
                extensions,
                serde_json::json!({ "code": "INTROSPECTION_DISABLED" })
            );
            assert!(
                Documents::new(LIMITS)
                    .attach(&mut Request::new(query))
                    .is_ok()
            );
        }
        off.attach(&mut Request::new("{ __typename greeting(name: \"x\") }"))
            .expect("__typename is no introspection");
    }

    #[test]
    fn a_document_over_a_limit_is_refused_with_the_limit_named() {
        let documents = Documents::new(LIMITS);
        let query = crate::testing::fragment_fan(8, "greeting(name: \"x\")");
        let error = documents
            .attach(&mut Request::new(query))
            .expect_err("256 fields");
        assert_eq!(
            error.message,
            "the operation selects 256 fields once its fragments are inlined; at most 50 are accepted"
        );
        let extensions = serde_json::to_value(&error.extensions).expect("json");
        assert_eq!(
            extensions,
            serde_json::json!({ "code": "OPERATION_LIMIT_EXCEEDED", "limit": "max_fields", "max": 50 })
        );
    }
}

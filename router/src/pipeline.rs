//! One request's way through the router once it is read: the operation's span, its
//! preparation (parse, limits, validation, plan: cached), the GET-mutation refusal, the
//! token check, rate limits, the access check, variable coercion and introspection, the plan
//! run, the response written from the merged data, and a session nobody received ended.
//! Identical queries in flight can share one answer ([`ClientRequestKey`]).

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keygraph_kernel::ErrorCode;
use keygraph_kernel::cache::{OperationKey, operation_key};
use keygraph_kernel::counters::Unavailable;
use keygraph_kernel::guard::Authentication;
use keygraph_kernel::http::RequestMeta;
use serde_json::{Map, Value as Json, json};
use tracing::Instrument as _;

use crate::answer::{Answer, Answered};
use crate::edge::{GraphqlRequest, Refusal, header_string, wants_graphql_response};
use crate::execute::{Forwarded, PlanRun};
use crate::graph::Graph;
use crate::operation::OperationKind;
use crate::plan::PlanError;
use crate::server::RouterState;

/// What makes two client requests the same: the operation, the variables as sent, the headers
/// passed on to subgraphs (the token above all), and the media type asked for.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClientRequestKey {
    operation: OperationKey,
    variables: Vec<u8>,
    authorization: Option<String>,
    traceparent: Option<String>,
    request_id: Option<String>,
    graphql_response: bool,
}

/// [`execute_in_span`] inside the operation's span (named like `query Me`, as OpenTelemetry's
/// GraphQL conventions have it).
pub(crate) async fn execute(
    state: &Arc<RouterState>,
    request: GraphqlRequest,
    over_get: bool,
    headers: &HeaderMap,
    meta: &RequestMeta,
) -> Response {
    let span = tracing::info_span!(
        "graphql operation",
        otel.name = tracing::field::Empty,
        graphql.operation.name = tracing::field::Empty,
        graphql.operation.type = tracing::field::Empty,
    );
    if let Some(name) = &request.operation_name {
        span.record("graphql.operation.name", name.as_str());
    }
    execute_in_span(state, request, over_get, headers, meta, &span)
        .instrument(span.clone())
        .await
}

async fn execute_in_span(
    state: &Arc<RouterState>,
    request: GraphqlRequest,
    over_get: bool,
    headers: &HeaderMap,
    meta: &RequestMeta,
    span: &tracing::Span,
) -> Response {
    let Some(graph) = state.graph() else {
        return Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ServiceUnavailable,
            "the router has no supergraph yet (subgraphs not reachable); retry shortly",
        )
        .into_response();
    };
    let key = operation_key(&request.query, request.operation_name.as_deref());
    let preparation = graph
        .prepare_off_thread(key, &request.query, request.operation_name.as_deref())
        .await;
    // Documents that cannot run are limited as queries: refusing them costs a lookup.
    let kind = preparation.kind.unwrap_or(OperationKind::Query);
    span.record("graphql.operation.type", kind.as_str());
    if keygraph_kernel::telemetry::traces_enabled() {
        span.record(
            "otel.name",
            keygraph_kernel::telemetry::operation_span_name(
                kind.as_str(),
                request.operation_name.as_deref(),
            ),
        );
    }
    if over_get && kind == OperationKind::Mutation {
        let mut response = Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::BadRequest,
            "mutations are only accepted over POST",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let authentication = match &state.edge.verifier {
        None => Authentication::Anonymous,
        Some(verifier) => keygraph_kernel::graphql::authenticate(verifier, headers).await,
    };
    if let Err(refusal) = state
        .rate_limit(meta.client_addr, authentication.principal(), kind)
        .await
    {
        return refusal.into_response();
    }
    let graphql_response = wants_graphql_response(headers);
    let call = Call {
        forwarded: forwarded(state, headers, meta),
        state: state.clone(),
        graph,
        preparation,
        variables: request.variables,
        authentication,
        graphql_response,
    };
    let answered = match (&state.client_inflight, call.preparation.kind) {
        (Some(inflight), Some(OperationKind::Query)) => {
            let forwarded = &call.forwarded;
            let key = ClientRequestKey {
                operation: key,
                variables: serde_json::to_vec(&call.variables).unwrap_or_default(),
                authorization: forwarded.authorization.clone(),
                traceparent: forwarded.traceparent.clone(),
                request_id: forwarded
                    .request_id_from_client
                    .then(|| forwarded.request_id.clone()),
                graphql_response,
            };
            inflight.run(key, || call.answer()).await
        }
        _ => call.answer().await,
    };
    answered.into_response(&state.metrics, kind)
}

impl RouterState {
    /// Counts the request against its client address's limit and its user's, for its kind;
    /// the first limit reached refuses it with the seconds to wait.
    async fn rate_limit(
        &self,
        address: Option<std::net::IpAddr>,
        user: Option<&keygraph_kernel::token::Principal>,
        kind: OperationKind,
    ) -> Result<(), Refusal> {
        let rate = self.config.rate_limit;
        let window = Duration::from_secs(rate.window_secs);
        let (name, per_address, per_user) = match kind {
            OperationKind::Mutation => (
                "mutation",
                rate.per_address.mutation,
                rate.per_user.mutation,
            ),
            OperationKind::Query | OperationKind::Subscription => {
                ("query", rate.per_address.query, rate.per_user.query)
            }
        };
        let mut checks = Vec::with_capacity(2);
        if let Some(address) = address {
            checks.push((
                format!("rate:address:{address}:{name}"),
                per_address,
                "this address",
            ));
        }
        if let Some(user) = user {
            checks.push((
                format!("rate:user:{}:{name}", user.user_id),
                per_user,
                "this user",
            ));
        }
        for (key, max, whose) in checks {
            match self.edge.counters.hit(&key, max, window).await {
                Ok(Ok(())) => {}
                Ok(Err(wait)) => {
                    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
                    let mut refusal = Refusal::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        ErrorCode::RateLimited,
                        format!("too many {name} requests from {whose}; retry in {seconds}s"),
                    );
                    refusal.retry_after = Some(seconds);
                    return Err(refusal);
                }
                Err(Unavailable) => {
                    return Err(Refusal::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        ErrorCode::ServiceUnavailable,
                        "rate limits cannot be counted right now (Redis does not answer); retry shortly",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A prepared request, owning what it needs, so identical requests in flight can share its
/// answer.
struct Call {
    state: Arc<RouterState>,
    graph: Arc<Graph>,
    preparation: Arc<crate::plan::Preparation>,
    variables: Map<String, Json>,
    /// The headers passed on to every subgraph request.
    forwarded: Forwarded,
    /// What the `Authorization` header proved. The header itself is passed on to subgraphs
    /// whatever it proved: they come to the same verdict, and fields needing no token run.
    authentication: Authentication,
    graphql_response: bool,
}

/// What a request passes on to subgraphs: its token, request id and trace context, and the
/// client address with the router's proof.
fn forwarded(state: &RouterState, headers: &HeaderMap, meta: &RequestMeta) -> Forwarded {
    let request_id_from_client =
        header_string(headers, "x-request-id").is_some_and(|id| id == meta.request_id);
    Forwarded {
        authorization: header_string(headers, "authorization"),
        request_id: meta.request_id.clone(),
        request_id_from_client,
        traceparent: header_string(headers, "traceparent"),
        client_address: state
            .edge
            .address_proof
            .as_ref()
            .zip(meta.client_addr)
            .map(|(proof, address)| proof.state(address)),
    }
}

impl Call {
    async fn answer(self) -> Answered {
        let (state, graph) = (&self.state, &self.graph);
        let respond = |answer| Answered::new(self.graphql_response, answer);
        let prepared = match &self.preparation.outcome {
            Ok(prepared) => prepared,
            Err(err @ (PlanError::Invalid(_) | PlanError::Refused(_))) => {
                return respond(Answer::RequestError(err.to_errors()));
            }
            Err(err) => return respond(Answer::NoData(err.to_errors())),
        };
        let variables = match prepared
            .operation
            .coerce_variables(&graph.types, self.variables.clone())
        {
            Ok(variables) => variables,
            Err(errors) => return respond(Answer::RequestError(errors)),
        };
        if prepared.operation.introspection.is_some() && !state.config.introspection {
            return respond(Answer::RequestError(vec![json!({
                "message": keygraph_kernel::graphql::INTROSPECTION_DISABLED_MESSAGE,
                "extensions": { "code": ErrorCode::IntrospectionDisabled.as_str() },
            })]));
        }
        if let Err(err) = prepared.check_access(&self.authentication) {
            let status = match err {
                PlanError::Forbidden(_) => StatusCode::FORBIDDEN,
                _ => StatusCode::UNAUTHORIZED,
            };
            return respond(Answer::AccessRefused(status, err.to_errors()));
        }
        let run = PlanRun {
            graph: graph.clone(),
            client: crate::execute::SubgraphClient {
                http: state.http.clone(),
                metrics: state.metrics.clone(),
                inflight: state.subgraph_inflight.clone(),
            },
            forwarded: self.forwarded.clone(),
            is_query: prepared.operation.kind == OperationKind::Query,
        };
        let introspection = async {
            match &prepared.operation.introspection {
                Some(document) => {
                    Some(crate::api_schema::introspect(&graph.api, document, &variables).await)
                }
                None => None,
            }
        };
        let executing = tracing::info_span!("graphql execute");
        let (mut outcome, introspection) = tokio::join!(
            run.execute(&prepared.plan, &variables)
                .instrument(executing),
            introspection
        );
        let issued = outcome.issued.take();
        let response_plan = prepared.response_plan(&graph.types, &variables);
        let projected = crate::project::project(&crate::project::Input {
            types: &graph.types,
            plan: &response_plan,
            data: &outcome.data,
            sources: &outcome.sources,
            reported: &outcome.errors,
            introspection: introspection.as_ref().map(|(answers, _)| answers),
            size_hint: outcome.received,
        });
        if let Some((service, issued)) = issued {
            let delivered = |token: &str| memchr::memmem::find(&projected.body, token.as_bytes());
            if delivered(&issued.access).is_none() && delivered(&issued.refresh).is_none() {
                end_undelivered_session(state, graph, &service, &issued);
            }
        }
        let mut errors = outcome.errors;
        if let Some((_, introspection_errors)) = introspection {
            errors.extend(introspection_errors);
        }
        errors.extend(projected.errors);
        respond(Answer::Data(projected.body, errors))
    }
}

/// A subgraph signed someone in during this request, but neither token reached the client
/// (the field holding them failed, or was not selected): the session is ended with the
/// issuing subgraph's `logout`, acting with the access token, so no session is left that
/// nobody can use. Runs in the background; a failure is logged.
fn end_undelivered_session(
    state: &Arc<RouterState>,
    graph: &Graph,
    service: &str,
    issued: &keygraph_kernel::token::IssuedTokens,
) {
    let Some(endpoint) = graph.endpoint(service).cloned() else {
        return;
    };
    let http = state.http.clone();
    let (service, bearer) = (service.to_owned(), format!("Bearer {}", issued.access));
    tokio::spawn(async move {
        let ended = http
            .post(endpoint.url)
            .timeout(endpoint.timeout)
            .header(header::AUTHORIZATION, bearer)
            .json(&json!({ "query": "mutation { logout }" }))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        match ended {
            Ok(_) => tracing::info!(
                service,
                "a session was opened but its tokens never reached the client; it was ended"
            ),
            Err(error) => tracing::warn!(
                service,
                %error,
                "a session was opened but its tokens never reached the client, and ending it failed"
            ),
        }
    });
}

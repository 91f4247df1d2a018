//! Logs and traces.
//!
//! Logs: text or JSON lines, filtered by `log.filter` (or `RUST_LOG`), coloured only on a
//! terminal. Traces: when `telemetry.endpoint` is set, spans go over OTLP (HTTP/protobuf or
//! gRPC) to that endpoint, each service under its own `service.name`.
//!
//! One subscriber serves the whole process. Each span is exported by the tracer of the
//! service it was started in: requests and background tasks run [`in_service`], which marks
//! the thread while the service's work is polled. So the embedded default, five services in
//! one process, still reports five services, exactly as the separate processes of the
//! compose stack do. W3C trace context crosses every hop as a `traceparent` header
//! ([`join_trace`], [`traceparent`]), in process as over HTTP.
//!
//! What spans carry is chosen where they are made: names, kinds, ids, tables, statuses;
//! never a password, a token, a header value or a statement's parameters.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Mutex, OnceLock},
    time::Duration,
};

use axum::http::HeaderMap;
use opentelemetry::{
    Context, KeyValue,
    propagation::TextMapPropagator as _,
    trace::{TraceContextExt as _, TracerProvider as _},
};
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider},
};
use tracing::Dispatch;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{
    EnvFilter, Layer, Registry, filter::FilterExt as _, fmt, layer::SubscriberExt as _,
};

use crate::config::{ConfigError, LogConfig, LogFormat, OtlpProtocol, TelemetryConfig};

/// The span of a request a service serves: one of the two spans that may start a trace.
pub const REQUEST_SPAN: &str = "request";
/// The span of an outbox batch on its way to audit: the other one.
pub const RELAY_SPAN: &str = "outbox relay";

/// Whether the exporter takes a span: the roots above, and any other span only inside an
/// exported one. So polling (revocation lists, an empty outbox, health probes) makes no
/// traces of its own.
fn exported_as_root(metadata: &tracing::Metadata<'_>) -> bool {
    !metadata.is_span() || matches!(metadata.name(), REQUEST_SPAN | RELAY_SPAN)
}

/// What [`init`] set up, for the per-service dispatches made later.
struct Installed {
    log_directives: String,
    format: LogFormat,
    ansi: bool,
    /// `None`: traces are off.
    traces: Option<Traces>,
}

struct Traces {
    config: TelemetryConfig,
    /// The process's tokio runtime: the OTLP exporters run on it.
    runtime: tokio::runtime::Handle,
    tracers: std::sync::RwLock<HashMap<&'static str, SdkTracer>>,
    /// For work outside any service (and a service whose exporter could not be made): made
    /// at [`init`], so a bad exporter setting fails start-up.
    process_tracer: SdkTracer,
    providers: Mutex<Vec<SdkTracerProvider>>,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Installs the global subscriber (logs) and, when `telemetry.endpoint` is set, prepares the
/// exporters of traces. `RUST_LOG`, when set, takes precedence over `log.filter`. A second
/// call (tests) keeps what the first installed. Call it inside the tokio runtime.
pub fn init(log: &LogConfig, telemetry: &TelemetryConfig) -> Result<(), ConfigError> {
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| log.filter.clone());
    log_filter(&directives)?;
    // Colours only for a person at a terminal: never into files, pipes or log collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let traces = match (&telemetry.endpoint, tokio::runtime::Handle::try_current()) {
        (Some(_), Ok(runtime)) => Some(Traces::new(telemetry, runtime)?),
        (Some(_), Err(_)) => {
            return Err(ConfigError::Invalid {
                path: "telemetry.endpoint".into(),
                message: "traces need the tokio runtime, and telemetry was set up outside it"
                    .into(),
            });
        }
        (None, _) => None,
    };
    let installed = Installed {
        log_directives: directives,
        format: log.format,
        ansi,
        traces,
    };
    let global = installed.dispatch()?;
    if INSTALLED.set(installed).is_ok() {
        // Also routes `log` records into tracing. Err only when a subscriber is already
        // installed (tests), which is fine.
        let _ = tracing_subscriber::util::SubscriberInitExt::try_init(global);
    }
    Ok(())
}

fn log_filter(directives: &str) -> Result<EnvFilter, ConfigError> {
    EnvFilter::try_new(directives).map_err(|e| ConfigError::Invalid {
        path: "log.filter".into(),
        message: format!("`{directives}` is not a valid filter: {e}"),
    })
}

impl Installed {
    /// The log layer, and (when traces are on) the OpenTelemetry layer.
    fn dispatch(&self) -> Result<Dispatch, ConfigError> {
        let logs = fmt::layer().with_target(true).with_ansi(self.ansi);
        let logs: Box<dyn Layer<Registry> + Send + Sync> = match self.format {
            LogFormat::Json => logs
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .boxed(),
            LogFormat::Text => logs.fmt_fields(WithoutOtelFields).boxed(),
        };
        // Of the spans, log lines carry only the request's (its request_id and trace_id):
        // the others are for the exporter alone, and cost nothing while traces are off.
        let logs = logs.with_filter(log_filter(&self.log_directives)?.and(
            tracing_subscriber::filter::filter_fn(|metadata| {
                !metadata.is_span() || metadata.name() == REQUEST_SPAN
            }),
        ));
        let spans = match &self.traces {
            Some(traces) => {
                let filter = EnvFilter::try_new(&traces.config.filter).map_err(|e| {
                    ConfigError::Invalid {
                        path: "telemetry.filter".into(),
                        message: e.to_string(),
                    }
                })?;
                let inside_a_trace =
                    tracing_subscriber::filter::dynamic_filter_fn(|metadata, context| {
                        exported_as_root(metadata) || context.lookup_current().is_some()
                    });
                Some(
                    tracing_opentelemetry::layer()
                        .with_tracer(ServiceTracer)
                        .with_location(false)
                        .with_threads(false)
                        .with_filter(filter.and(inside_a_trace)),
                )
            }
            None => None,
        };
        Ok(Dispatch::new(Registry::default().with(logs).with(spans)))
    }
}

thread_local! {
    /// The service whose work this thread is doing right now (see [`in_service`]).
    static CURRENT_SERVICE: std::cell::Cell<Option<&'static str>> =
        const { std::cell::Cell::new(None) };
}

/// Marks the thread as working for a service until dropped; restores the previous mark.
struct ServiceMark(Option<&'static str>);

impl ServiceMark {
    fn set(service: &'static str) -> Self {
        Self(CURRENT_SERVICE.replace(Some(service)))
    }
}

impl Drop for ServiceMark {
    fn drop(&mut self) {
        CURRENT_SERVICE.set(self.0);
    }
}

/// The service whose work the thread is doing, if any.
pub fn current_service() -> Option<&'static str> {
    CURRENT_SERVICE.get()
}

/// Runs `work` (sync) as `service`'s: spans started in it are that service's.
pub fn service_scope<T>(service: Option<&'static str>, work: impl FnOnce() -> T) -> T {
    let _mark = service.map(ServiceMark::set);
    work()
}

/// The tracer of whatever service the thread works for: spans start in one (a request,
/// a background task) and are exported under its name.
#[derive(Debug)]
struct ServiceTracer;

impl opentelemetry::trace::Tracer for ServiceTracer {
    type Span = opentelemetry_sdk::trace::Span;

    fn build_with_context(
        &self,
        builder: opentelemetry::trace::SpanBuilder,
        parent_cx: &Context,
    ) -> Self::Span {
        match INSTALLED.get().and_then(|i| i.traces.as_ref()) {
            Some(traces) => traces
                .tracer(current_service())
                .build_with_context(builder, parent_cx),
            // Unreachable: the layer exists only when traces are on. A span nobody exports.
            None => SdkTracerProvider::default()
                .tracer(PROCESS)
                .build_with_context(builder, parent_cx),
        }
    }
}

/// The `service.name` of spans started outside any service.
const PROCESS: &str = "keygraph";

impl Traces {
    fn new(config: &TelemetryConfig, runtime: tokio::runtime::Handle) -> Result<Self, ConfigError> {
        let mut traces = Self {
            config: config.clone(),
            runtime,
            tracers: std::sync::RwLock::default(),
            process_tracer: SdkTracerProvider::default().tracer(PROCESS),
            providers: Mutex::default(),
        };
        traces.process_tracer = traces.provider(PROCESS)?.tracer(PROCESS);
        Ok(traces)
    }

    /// `service`'s tracer, made (with its exporter) the first time; the process's outside
    /// any service, or when the service's exporter cannot be made (said once).
    fn tracer(&self, service: Option<&'static str>) -> SdkTracer {
        let Some(service) = service else {
            return self.process_tracer.clone();
        };
        if let Some(tracer) = self
            .tracers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(service)
        {
            return tracer.clone();
        }
        let mut tracers = self
            .tracers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tracers
            .entry(service)
            .or_insert_with(|| match self.provider(service) {
                Ok(provider) => provider.tracer(PROCESS),
                Err(err) => {
                    eprintln!("traces of {service} go out as {PROCESS}'s: {err}");
                    self.process_tracer.clone()
                }
            })
            .clone()
    }

    /// A tracer provider exporting as `service`, kept so [`shutdown`] can flush it.
    fn provider(&self, service: &str) -> Result<SdkTracerProvider, ConfigError> {
        let config = &self.config;
        let invalid = |message: String| ConfigError::Invalid {
            path: "telemetry".into(),
            message,
        };
        let endpoint = config
            .endpoint
            .as_deref()
            .ok_or_else(|| invalid("no endpoint".into()))?
            .trim_end_matches('/');
        let timeout = Duration::from_secs(config.export_timeout_secs);
        let exporter = {
            // The tonic channel and our HTTP client both need the runtime's context.
            let _entered = self.runtime.enter();
            use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
            match config.protocol {
                OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_endpoint(format!("{endpoint}/v1/traces"))
                    .with_timeout(timeout)
                    .with_http_client(OtlpHttpClient::new(self.runtime.clone(), timeout)?)
                    .build(),
                OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint)
                    .with_timeout(timeout)
                    .build(),
            }
            .map_err(|e| invalid(format!("cannot export to {endpoint}: {e}")))?
        };
        let mut attributes = vec![KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))];
        attributes.extend(
            config
                .resource_attributes
                .iter()
                .map(|(key, value)| KeyValue::new(key.clone(), value.clone())),
        );
        let resource = Resource::builder_empty()
            .with_service_name(config.service_names.of(service).to_owned())
            .with_attributes(attributes)
            .build();
        let batches = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(Duration::from_millis(config.batch_delay_ms))
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(batches)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sampling_ratio,
            ))))
            .with_resource(resource)
            .build();
        self.providers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(provider.clone());
        Ok(provider)
    }
}

/// Runs `work` as part of `service`: spans started while it is polled are that service's.
pub async fn in_service<T>(service: &'static str, work: impl Future<Output = T>) -> T {
    if !traces_enabled() {
        return work.await;
    }
    let mut work = Box::pin(work);
    let out = std::future::poll_fn(|cx| {
        let _mark = ServiceMark::set(service);
        work.as_mut().poll(cx)
    })
    .await;
    // Spans still open in it close as the service's too.
    let _mark = ServiceMark::set(service);
    drop(work);
    out
}

/// For tasks a service spawns: they stay that service's work.
pub trait InThisService: Future + Sized {
    /// `in_service` with the service the thread works for now (if any).
    fn in_this_service(self) -> impl Future<Output = Self::Output> {
        let service = current_service();
        async move {
            match service {
                Some(service) => in_service(service, self).await,
                None => self.await,
            }
        }
    }
}

impl<F: Future> InThisService for F {}

/// The name of an operation's span, as OpenTelemetry's GraphQL conventions have it:
/// `query Me`, or just `mutation` for an anonymous one.
pub fn operation_span_name(kind: &str, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{kind} {name}"),
        None => kind.to_owned(),
    }
}

/// Whether spans are exported at all.
pub fn traces_enabled() -> bool {
    INSTALLED.get().is_some_and(|i| i.traces.is_some())
}

/// The OpenTelemetry identity (trace and span id) of `span`.
fn span_context(span: &tracing::Span) -> opentelemetry::trace::SpanContext {
    span.context().span().span_context().clone()
}

/// Makes `span` a child of the trace the request `headers` carry, when traces are on, and
/// returns the request's trace id (the exported one, or the `traceparent`'s when traces are
/// off) for its log lines.
pub fn join_trace(span: &tracing::Span, headers: &HeaderMap) -> Option<String> {
    if !traces_enabled() {
        return headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::http::trace_id_of)
            .map(str::to_owned);
    }
    let parent =
        TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    // Err: the span is disabled (filtered out); it then has no trace to join.
    let _ = span.set_parent(parent);
    let joined = span_context(span);
    joined.is_valid().then(|| joined.trace_id().to_string())
}

/// The `traceparent` that continues the trace of `span` in a call it makes, when traces are
/// on and the span is part of one.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    if !traces_enabled() {
        return None;
    }
    let current = span_context(span);
    current.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            current.trace_id(),
            current.span_id(),
            current.trace_flags().to_u8()
        )
    })
}

/// Sends what is still buffered and stops the exporters (at the end of the process).
pub async fn shutdown() {
    let Some(traces) = INSTALLED.get().and_then(|i| i.traces.as_ref()) else {
        return;
    };
    let providers: Vec<_> = traces
        .providers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .drain(..)
        .collect();
    // Flushing blocks until the exporters answer: off the async workers, which they need.
    let flushed = tokio::task::spawn_blocking(move || {
        for provider in providers {
            if let Err(err) = provider.shutdown() {
                eprintln!("traces: the last spans were not sent: {err}");
            }
        }
    })
    .await;
    if flushed.is_err() {
        eprintln!("traces: flushing the last spans failed");
    }
}

/// OTLP/HTTP through the reqwest client the services already use. The batch processor
/// exports from its own thread, outside the runtime; each export is spawned onto it.
#[derive(Debug)]
struct OtlpHttpClient {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl OtlpHttpClient {
    fn new(runtime: tokio::runtime::Handle, timeout: Duration) -> Result<Self, ConfigError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| ConfigError::Invalid {
                path: "telemetry.endpoint".into(),
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Self { http, runtime })
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OtlpHttpClient {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<bytes::Bytes>,
    ) -> Result<opentelemetry_http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let http = self.http.clone();
        let exchange = async move {
            let (parts, body) = request.into_parts();
            let url = parts.uri.to_string();
            let response = http
                .request(parts.method, url)
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let mut answer = opentelemetry_http::Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                *headers = response.headers().clone();
            }
            let body = response.bytes().await?;
            Ok::<_, opentelemetry_http::HttpError>(answer.body(body)?)
        };
        self.runtime.spawn(exchange).await?
    }
}

/// Text log fields without the `otel.*` ones (span names and kinds for the exporter, noise
/// on every line of a request).
struct WithoutOtelFields;

impl<'writer> fmt::FormatFields<'writer> for WithoutOtelFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: fmt::format::Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visitor = FieldWriter {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct FieldWriter<'writer> {
    writer: fmt::format::Writer<'writer>,
    first: bool,
    result: std::fmt::Result,
}

impl tracing::field::Visit for FieldWriter<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let name = field.name();
        if self.result.is_err() || name.starts_with("otel.") || name.starts_with("log.") {
            return;
        }
        let separator = if self.first { "" } else { " " };
        self.first = false;
        self.result = if name == "message" {
            write!(self.writer, "{separator}{value:?}")
        } else {
            write!(self.writer, "{separator}{name}={value:?}")
        };
    }
}

//! The `keygraph` launcher: every service in one process (no subcommand), or one service.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use keygraph_kernel::{
    config::Config, http::Shutdown, internal::LocalServices, secrets, telemetry,
};

#[derive(Parser)]
#[command(
    name = "keygraph",
    version,
    about = "Users, logins, roles, permissions and audit as one federated GraphQL API"
)]
struct Cli {
    /// YAML file overriding config/default.yaml (only the keys you change).
    #[arg(long, global = true, env = "KEYGRAPH_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the identity subgraph alone (users, credentials, email verification, password reset).
    Identity,
    /// Run the authz subgraph alone (roles, permissions, grants, checks).
    Authz,
    /// Run the auth subgraph alone (sign-in, tokens, sessions, signing keys).
    Auth,
    /// Run the audit subgraph alone (the tamper-evident event log), or work on its log.
    Audit {
        #[command(subcommand)]
        action: Option<AuditCommand>,
    },
    /// Run the federation router alone (the single GraphQL endpoint, composing the subgraphs).
    Router,
    /// Compose the subgraphs' SDL into a supergraph and write it (default schema/supergraph.graphql).
    Compose {
        /// Where to write the supergraph SDL; `-` for standard output.
        #[arg(long, default_value = "schema/supergraph.graphql")]
        out: PathBuf,
    },
    /// Print the query plan the router makes for an operation (JSON), without running it.
    Plan {
        /// The operation, or `@FILE` to read it from a file.
        query: String,
        /// The supergraph to plan against.
        #[arg(long, default_value = "schema/supergraph.graphql")]
        supergraph: PathBuf,
        /// Which operation of the document, when it holds several.
        #[arg(long)]
        operation_name: Option<String>,
    },
    /// Exit 0 when URL answers 2xx within 3 s (a container health check; images have no curl).
    Probe {
        /// e.g. http://127.0.0.1:4001/health/ready
        url: String,
    },
    /// Print a subgraph's SDL (as served at `_service { sdl }`).
    Sdl {
        /// Which subgraph: identity, authz, auth or audit.
        service: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Write the log as NDJSON (a header, then events and the checkpoints that sign them),
    /// after signing a checkpoint of its head.
    Export {
        /// Where to write it; `-` for standard output.
        #[arg(long, default_value = "-")]
        out: PathBuf,
        /// First sequence to export (default: the oldest event kept).
        #[arg(long)]
        from: Option<i64>,
        /// Last sequence to export (default: the newest).
        #[arg(long)]
        to: Option<i64>,
    },
    /// Check an export offline: every event's hash, every link, every checkpoint's signature.
    /// Exits 1 at the first break, naming it.
    Verify {
        /// The export (NDJSON from `keygraph audit export`).
        file: PathBuf,
        /// A trusted public key: base64url of the raw Ed25519 key, or a file holding the
        /// audit service's /.well-known/audit-keys.json. Repeat for several.
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
    },
}

/// mimalloc instead of glibc's malloc: request handling allocates many small, short-lived
/// buffers across threads, which glibc serves with per-arena locks and consolidation passes
/// (about a tenth of the CPU a sign-in spends outside hashing) and keeps fragmented arenas
/// per thread. The login bench uses it too, to measure what this binary runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("keygraph: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    keygraph_kernel::process::prefer_small_pages();
    let cli = Cli::parse();
    if let Some(Command::Probe { url }) = &cli.command {
        return probe(url).await;
    }
    let config = Config::load(cli.config.as_deref())?;
    telemetry::init(&config.log, &config.telemetry)?;
    // Services that keep files in data_dir hold its lock while they run.
    let _lock = match &cli.command {
        None => Some(lock_data_dir(&config, "keygraph")?),
        Some(Command::Identity) => Some(lock_data_dir(&config, "identity")?),
        Some(Command::Authz) => Some(lock_data_dir(&config, "authz")?),
        Some(Command::Auth) => Some(lock_data_dir(&config, "auth")?),
        Some(Command::Audit { action: None }) => Some(lock_data_dir(&config, "audit")?),
        _ => None,
    };
    let result = run_command(cli.command, &config).await;
    // Spans still buffered go out before the process ends.
    telemetry::shutdown().await;
    result
}

async fn run_command(command: Option<Command>, config: &Config) -> anyhow::Result<()> {
    match command {
        Some(Command::Sdl { service }) => {
            match service.as_str() {
                "identity" => print!("{}", keygraph_identity::schema::sdl()),
                "authz" => print!("{}", keygraph_authz::schema::sdl()),
                "auth" => print!("{}", keygraph_auth::schema::sdl()),
                "audit" => print!("{}", keygraph_audit::schema::sdl()),
                other => {
                    anyhow::bail!("unknown subgraph `{other}`; known: identity, authz, auth, audit")
                }
            }
            Ok(())
        }
        Some(Command::Probe { .. }) => Ok(()),
        Some(Command::Compose { out }) => {
            let sdl = compose_supergraph(config)?;
            if out.as_os_str() == "-" {
                print!("{sdl}");
            } else {
                std::fs::write(&out, sdl)
                    .with_context(|| format!("cannot write {}", out.display()))?;
                eprintln!("wrote {}", out.display());
            }
            Ok(())
        }
        Some(Command::Plan {
            query,
            supergraph,
            operation_name,
        }) => {
            let query = match query.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read the operation from {file}"))?,
                None => query,
            };
            let sdl = std::fs::read_to_string(&supergraph)
                .with_context(|| format!("cannot read {}", supergraph.display()))?;
            let options = keygraph_router::plan::GraphOptions::from(&config.router);
            let graph = keygraph_router::plan::Graph::new(sdl, &options)
                .map_err(|e| anyhow::anyhow!("{}: {e}", supergraph.display()))?;
            let plan = graph
                .plan_json(&query, operation_name.as_deref())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{plan:#}");
            Ok(())
        }
        Some(Command::Router) => Service::Router.run_alone(config).await,
        Some(Command::Identity) => Service::Identity.run_alone(config).await,
        Some(Command::Authz) => Service::Authz.run_alone(config).await,
        Some(Command::Auth) => Service::Auth.run_alone(config).await,
        Some(Command::Audit { action: None }) => Service::Audit.run_alone(config).await,
        Some(Command::Audit {
            action: Some(action),
        }) => audit_command(config, action).await,
        None => run_all(config).await,
    }
}

/// The embedded default: every service that exists, in this process, each on its own
/// loopback port and (unless configured otherwise) its own SQLite file under `data_dir`.
/// Their internal calls to each other stay in the process; the router reaches the subgraphs
/// over HTTP, as it would anywhere else.
/// When one service fails, the others are stopped too and the error is reported.
async fn run_all(config: &Config) -> anyhow::Result<()> {
    let token = secrets::internal_token(config)?;
    let (trigger, shutdown) = Shutdown::on_signals();
    // The services call each other's internal endpoints in process, not over loopback HTTP.
    let local = LocalServices::default();
    tracing::info!(
        identity = %format!("http://{}/graphql", config.identity.listen),
        authz = %format!("http://{}/graphql", config.authz.listen),
        auth = %format!("http://{}/graphql", config.auth.listen),
        audit = %format!("http://{}/graphql", config.audit.listen),
        "starting Keygraph (all services in one process)"
    );
    let graph_url = format!("http://{}/graphql", config.router.listen);
    let stop_all = |result: anyhow::Result<()>, service: &str| {
        if result.is_err() {
            trigger.trigger();
        }
        result.with_context(|| format!("{service} service"))
    };
    let run = |service: Service| {
        let shutdown = shutdown.clone();
        let token = token.clone();
        let local = local.clone();
        async move {
            let result = service.run(config, &token, &local, shutdown).await;
            stop_all(result, service.name())
        }
    };
    tokio::spawn(announce_when_ready(
        config.clone(),
        graph_url.clone(),
        local.clone(),
        shutdown.clone(),
    ));
    let (identity, authz, auth, audit, router) = tokio::join!(
        run(Service::Identity),
        run(Service::Authz),
        run(Service::Auth),
        run(Service::Audit),
        run(Service::Router)
    );
    identity.and(authz).and(auth).and(audit).and(router)
}

/// The services: the embedded default runs them all, a subcommand one.
#[derive(Clone, Copy)]
enum Service {
    Identity,
    Authz,
    Auth,
    Audit,
    Router,
}

impl Service {
    /// Runs this service until `shutdown`; its internal calls to services registered in
    /// `local` stay in this process.
    async fn run(
        self,
        config: &Config,
        token: &str,
        local: &LocalServices,
        shutdown: Shutdown,
    ) -> anyhow::Result<()> {
        // Its start-up, background work and spans are this service's (see telemetry).
        telemetry::in_service(self.name(), async move {
            match self {
                Service::Identity => keygraph_identity::run(config, token, local, shutdown).await,
                Service::Authz => keygraph_authz::run(config, token, local, shutdown).await,
                Service::Auth => keygraph_auth::run(config, token, local, shutdown).await,
                Service::Audit => keygraph_audit::run(config, token, local, shutdown).await,
                Service::Router => keygraph_router::run(config, token, local, shutdown).await,
            }
        })
        .await
    }

    /// Runs this service alone in its process until a signal: its internal calls go over
    /// HTTP.
    async fn run_alone(self, config: &Config) -> anyhow::Result<()> {
        let token = secrets::internal_token(config)?;
        self.run(
            config,
            &token,
            &LocalServices::default(),
            Shutdown::on_signals().1,
        )
        .await
    }

    fn name(self) -> &'static str {
        match self {
            Service::Identity => "identity",
            Service::Authz => "authz",
            Service::Auth => "auth",
            Service::Audit => "audit",
            Service::Router => "router",
        }
    }
}

/// The supergraph of this build's subgraphs, at the URLs the router config names.
fn compose_supergraph(config: &Config) -> anyhow::Result<String> {
    let sdls = [
        ("identity", keygraph_identity::schema::sdl()),
        ("authz", keygraph_authz::schema::sdl()),
        ("auth", keygraph_auth::schema::sdl()),
        ("audit", keygraph_audit::schema::sdl()),
    ];
    let subgraphs = sdls
        .into_iter()
        .map(|(name, sdl)| {
            let url = config
                .router
                .subgraphs
                .get(name)
                .map(|s| s.url.clone())
                .with_context(|| format!("router.subgraphs has no `{name}`"))?;
            Ok(keygraph_router::supergraph::SubgraphSdl {
                name: name.to_owned(),
                url,
                sdl,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (sdl, warnings) = keygraph_router::supergraph::compose(&subgraphs)?;
    for warning in warnings {
        tracing::warn!(%warning, "composition warning");
    }
    Ok(sdl)
}

/// `keygraph audit export|verify`: needs the audit database (export) or nothing but the
/// file and the public key (verify); neither serves anything.
async fn audit_command(config: &Config, action: AuditCommand) -> anyhow::Result<()> {
    match action {
        AuditCommand::Export { out, from, to } => {
            for (flag, value) in [("--from", from), ("--to", to)] {
                anyhow::ensure!(
                    value.is_none_or(|n| n >= 1),
                    "{flag} is a sequence number: 1 or more"
                );
            }
            if let (Some(from), Some(to)) = (from, to) {
                anyhow::ensure!(from <= to, "--to ({to}) must not be below --from ({from})");
            }
            let audit = keygraph_audit::open(config).await?;
            let summary = if out.as_os_str() == "-" {
                let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
                keygraph_audit::export::export(&audit, from, to, &mut stdout).await?
            } else {
                // Written beside the target and renamed into place: never a half-written export.
                let dir = out
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new("."));
                let mut file = tempfile::NamedTempFile::new_in(dir)
                    .with_context(|| format!("cannot write in {}", dir.display()))?;
                let summary = {
                    let mut writer = std::io::BufWriter::new(file.as_file_mut());
                    keygraph_audit::export::export(&audit, from, to, &mut writer).await?
                };
                file.persist(&out)
                    .with_context(|| format!("cannot write {}", out.display()))?;
                summary
            };
            eprintln!(
                "exported {} events and {} checkpoints",
                summary.events, summary.checkpoints
            );
            Ok(())
        }
        AuditCommand::Verify { file, keys } => {
            let keys = keygraph_audit::export::trusted_keys(&keys)?;
            let reader = std::fs::File::open(&file)
                .with_context(|| format!("cannot open {}", file.display()))?;
            let report = keygraph_audit::export::verify(std::io::BufReader::new(reader), keys)?;
            match &report.first_break {
                None => {
                    println!(
                        "valid: {} events ({}), {} checkpoints, signed through {}",
                        report.events_checked,
                        match (report.from, report.to) {
                            (Some(from), Some(to)) => format!("sequence {from} to {to}"),
                            _ => "none".to_owned(),
                        },
                        report.checkpoints_checked,
                        report
                            .signed_through
                            .map_or("nothing".to_owned(), |s| format!("sequence {s}"))
                    );
                    Ok(())
                }
                Some(found) => anyhow::bail!(
                    "{}: the log is broken at sequence {}{} ({:?}): {}",
                    file.display(),
                    found.sequence,
                    found
                        .event_id
                        .map(|id| format!(", event {id}"))
                        .unwrap_or_default(),
                    found.kind,
                    found.message
                ),
            }
        }
    }
}

/// `keygraph probe URL`: a health check that needs no config and no curl.
async fn probe(url: &str) -> anyhow::Result<()> {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(std::time::Duration::from_secs(3))
        .send()
        .await
        .with_context(|| format!("{url} does not answer"))?;
    anyhow::ensure!(
        response.status().is_success(),
        "{url} answered {}",
        response.status()
    );
    Ok(())
}

/// Says once this process's router serves the graph: where to point a browser and how to
/// sign in. Readiness is asked in process, of the router this process bound (another
/// instance on the same port does not count), and nothing is said once `shutdown` fires (a
/// service could not start).
async fn announce_when_ready(
    config: Config,
    graph_url: String,
    local: LocalServices,
    shutdown: Shutdown,
) {
    let started = std::time::Instant::now();
    let ready = async {
        for _ in 0..600 {
            if local.is_ready(config.router.listen).await {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        false
    };
    let ready = tokio::select! {
        ready = ready => ready,
        () = shutdown.wait() => return,
    };
    if !ready {
        tracing::warn!(
            router = %config.router.listen,
            "the router is not ready after a minute; see the errors above"
        );
        return;
    }
    let admin = config.identity.first_admin.email.as_deref();
    let how = match (admin, &config.identity.first_admin.password) {
        (Some(_), Some(_)) => "with the configured first-admin password",
        (Some(_), None) => "with the password printed at first start",
        (None, _) => "after registering (no first admin is configured)",
    };
    tracing::info!(
        graphiql = %graph_url,
        admin = admin.unwrap_or("-"),
        ready_in_ms = started.elapsed().as_millis() as u64,
        "Keygraph is ready: open the graphiql URL in a browser and sign in {how} using the login mutation"
    );
}

/// Holds `<data_dir>/<name>.lock` for the life of the process, so a second instance on the
/// same data says so and stops instead of sharing SQLite files and generated secrets.
fn lock_data_dir(config: &Config, name: &str) -> anyhow::Result<std::fs::File> {
    keygraph_kernel::files::create_private_dir(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let path = config.data_dir.join(format!("{name}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another Keygraph instance is using {} (it holds {}); stop it, or give this one its own data_dir",
            config.data_dir.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

//! The `keygraph` launcher: every service in one process (no subcommand), or one service.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use keygraph_kernel::{config::Config, http::Shutdown, secrets, telemetry};

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
    /// Print a subgraph's SDL (as served at `_service { sdl }`).
    Sdl {
        /// Which subgraph: identity.
        service: String,
    },
}

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
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    telemetry::init(&config.log)?;
    match cli.command {
        Some(Command::Sdl { service }) => {
            match service.as_str() {
                "identity" => print!("{}", keygraph_identity::schema::sdl()),
                other => anyhow::bail!("unknown subgraph `{other}`; known: identity"),
            }
            Ok(())
        }
        Some(Command::Identity) => {
            let token = secrets::internal_token(&config)?;
            keygraph_identity::run(&config, &token, Shutdown::on_signals()).await
        }
        None => run_all(&config).await,
    }
}

/// The embedded default: every service that exists, in this process, on SQLite files under
/// `data_dir` unless configured otherwise.
async fn run_all(config: &Config) -> anyhow::Result<()> {
    let token = secrets::internal_token(config)?;
    let shutdown = Shutdown::on_signals();
    tracing::info!(
        graphql = %format!("http://{}/graphql", config.identity.listen),
        "starting Keygraph (all services in one process)"
    );
    keygraph_identity::run(config, &token, shutdown)
        .await
        .context("identity service")
}

//! Runs the Directory API stand-in in the foreground for the demo and for manual testing,
//! until SIGTERM or SIGINT. Each request is logged in one line to stderr, without headers, so
//! the token never appears in the log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use y360_testkit::directory::{DirectoryStandIn, Layout, StandInConfig};

#[derive(Parser)]
#[command(about = "Stand-in for the Yandex 360 Directory API call that uploads user portraits")]
struct Cli {
    /// Address and port to listen on.
    #[arg(
        long,
        env = "DIRECTORY_STANDIN_LISTEN",
        default_value = "127.0.0.1:8360"
    )]
    listen: SocketAddr,

    /// Organization id that exists. Requests for any other id get 404.
    #[arg(long, env = "DIRECTORY_STANDIN_ORG_ID")]
    org_id: u64,

    /// OAuth token that requests must carry. Prefer --token-file, which keeps the token out of
    /// the process list.
    #[arg(
        long,
        env = "DIRECTORY_STANDIN_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    token: Option<String>,

    /// File whose content (surrounding whitespace removed) is the OAuth token.
    #[arg(long, env = "DIRECTORY_STANDIN_TOKEN_FILE")]
    token_file: Option<PathBuf>,

    /// Path layout: cloud is /directory/v1/org/..., on-prem is /v1/api360/directory/org/...
    #[arg(
        long,
        env = "DIRECTORY_STANDIN_LAYOUT",
        value_enum,
        default_value = "cloud"
    )]
    layout: Layout,

    /// Path prefix in front of the layout's path, such as /api.
    #[arg(long, env = "DIRECTORY_STANDIN_PATH_PREFIX", default_value = "")]
    path_prefix: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    y360_testkit::init_logging();

    let cli = Cli::parse();
    let token = resolve_token(cli.token, cli.token_file.as_deref())?;
    let config = StandInConfig {
        listen: cli.listen,
        layout: cli.layout,
        path_prefix: cli.path_prefix,
        ..StandInConfig::new(cli.org_id, token)
    };
    run(config).await
}

fn resolve_token(token: Option<String>, token_file: Option<&Path>) -> Result<String> {
    let token = match (token, token_file) {
        (Some(token), _) => token,
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("failed to read the token file {}", path.display()))?
            .trim()
            .to_owned(),
        (None, None) => bail!("missing token: pass --token or --token-file"),
    };
    if token.is_empty() {
        bail!("invalid token: it is empty");
    }
    Ok(token)
}

async fn run(config: StandInConfig) -> Result<()> {
    let mut terminate =
        signal(SignalKind::terminate()).context("failed to install the SIGTERM handler")?;
    let mut interrupt =
        signal(SignalKind::interrupt()).context("failed to install the SIGINT handler")?;

    let org_id = config.org_id;
    let stand_in = DirectoryStandIn::start(config).await?;
    tracing::info!(
        api_url = %stand_in.base_url(),
        org_id,
        control = %format!("http://{}/_standin/requests", stand_in.addr()),
        "Directory stand-in is running; send SIGTERM or SIGINT to stop it"
    );

    tokio::select! {
        _ = terminate.recv() => tracing::info!("received SIGTERM, stopping"),
        _ = interrupt.recv() => tracing::info!("received SIGINT, stopping"),
    }
    drop(stand_in);
    Ok(())
}

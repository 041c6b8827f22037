//! Serves the files of one directory over HTTP for the demo and for manual testing, until
//! SIGTERM or SIGINT. Each file is read again on every request, so replacing a file changes
//! what the next request gets.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use y360_testkit::images::{ImageServer, ImageServerConfig};

#[derive(Parser)]
#[command(about = "Serves every file in a directory at /<file name>, with ETag and Last-Modified")]
struct Cli {
    /// Address and port to listen on.
    #[arg(long, env = "IMAGE_SERVER_LISTEN", default_value = "127.0.0.1:8361")]
    listen: SocketAddr,

    /// Directory to serve. The content type comes from each file's extension.
    #[arg(long, env = "IMAGE_SERVER_DIR")]
    dir: PathBuf,
}

#[tokio::main]
async fn main() -> Result<()> {
    y360_testkit::init_logging();

    let cli = Cli::parse();
    if !cli.dir.is_dir() {
        bail!("invalid --dir {}: not a directory", cli.dir.display());
    }
    run(ImageServerConfig {
        listen: cli.listen,
        dir: Some(cli.dir),
    })
    .await
}

async fn run(config: ImageServerConfig) -> Result<()> {
    let mut terminate =
        signal(SignalKind::terminate()).context("failed to install the SIGTERM handler")?;
    let mut interrupt =
        signal(SignalKind::interrupt()).context("failed to install the SIGINT handler")?;

    let server = ImageServer::start_with(config).await?;
    tracing::info!(
        url = %server.url("/"),
        "image server is running; send SIGTERM or SIGINT to stop it"
    );

    tokio::select! {
        _ = terminate.recv() => tracing::info!("received SIGTERM, stopping"),
        _ = interrupt.recv() => tracing::info!("received SIGINT, stopping"),
    }
    drop(server);
    Ok(())
}

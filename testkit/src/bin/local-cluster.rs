//! Runs a local control plane (etcd and kube-apiserver) in the foreground for the demo and
//! for manual testing, until SIGTERM or SIGINT.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use y360_testkit::cluster::LocalCluster;

#[derive(Parser)]
#[command(
    about = "Local Kubernetes control plane (etcd and kube-apiserver) for tests and the demo"
)]
struct Cli {
    #[command(subcommand)]
    command: CliCommand,
}

#[derive(Subcommand)]
enum CliCommand {
    /// Start a control plane and keep it running until SIGTERM or SIGINT.
    Up {
        /// Path to write the admin kubeconfig to, with mode 0600. The file is left in place on
        /// exit, pointing at a server that no longer runs.
        #[arg(long)]
        kubeconfig: PathBuf,

        /// File to create once the control plane is ready. It is removed on exit.
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    y360_testkit::init_logging();

    match Cli::parse().command {
        CliCommand::Up {
            kubeconfig,
            ready_file,
        } => run_up(&kubeconfig, ready_file.as_deref()).await,
    }
}

async fn run_up(kubeconfig: &Path, ready_file: Option<&Path>) -> Result<()> {
    // Register the handlers before the slow start, so a signal during it is not lost.
    let mut terminate =
        signal(SignalKind::terminate()).context("failed to install the SIGTERM handler")?;
    let mut interrupt =
        signal(SignalKind::interrupt()).context("failed to install the SIGINT handler")?;

    let cluster = LocalCluster::start().await?;
    // fs::copy also copies the source's mode 0600, which keeps the admin key private.
    std::fs::copy(cluster.kubeconfig_path(), kubeconfig)
        .with_context(|| format!("failed to write kubeconfig {}", kubeconfig.display()))?;
    if let Some(path) = ready_file {
        std::fs::write(path, b"")
            .with_context(|| format!("failed to create ready file {}", path.display()))?;
    }
    tracing::info!(
        server = %cluster.server_url(),
        kubeconfig = %kubeconfig.display(),
        apiserver_log = %cluster.apiserver_log_path().display(),
        etcd_log = %cluster.etcd_log_path().display(),
        "control plane is running; send SIGTERM or SIGINT to stop it"
    );

    tokio::select! {
        _ = terminate.recv() => tracing::info!("received SIGTERM, stopping the control plane"),
        _ = interrupt.recv() => tracing::info!("received SIGINT, stopping the control plane"),
    }
    shut_down(cluster, ready_file).await;
    Ok(())
}

async fn shut_down(cluster: LocalCluster, ready_file: Option<&Path>) {
    let peak = cluster.peak_rss();
    tracing::info!(
        kube_apiserver_peak_rss_kib = peak.kube_apiserver_kib,
        etcd_peak_rss_kib = peak.etcd_kib,
        "peak memory use"
    );

    cluster.stop().await;
    if let Some(path) = ready_file
        && let Err(error) = std::fs::remove_file(path)
    {
        tracing::warn!(path = %path.display(), %error, "failed to remove the ready file");
    }
    tracing::info!("control plane stopped");
}

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use tokio::sync::watch;

use y360_avatar_operator::cli::{Cli, Command, RunArgs};
use y360_avatar_operator::controller::{self, Hooks, Shutdown};
use y360_avatar_operator::metrics::Metrics;
use y360_avatar_operator::{admin, crd, install_crypto_provider, leader, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", crd::render_all()?);
            Ok(())
        }
        Command::Run(args) => run(*args).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init_logging(args.log_format, &args.log)?;
    install_crypto_provider();
    let client = kube::Client::try_default().await.context(
        "failed to configure the Kubernetes client from kubeconfig or the in-cluster environment",
    )?;

    let shutdown = controller::shutdown_on_signal();
    let hooks = Hooks {
        metrics: Metrics::new(),
        shutdown: shutdown.clone(),
        ready: Arc::new(watch::channel(false).0),
    };
    let admin = admin::serve(
        args.admin_address,
        hooks.metrics.clone(),
        hooks.ready.subscribe(),
        shutdown.clone(),
    );
    let admin = tokio::spawn(admin);

    let timeout = Duration::from_secs(args.shutdown_timeout_seconds);
    let result =
        bounded_by_shutdown(run_controllers(client, &args, hooks), shutdown, timeout).await;
    admin.abort();
    result
}

async fn run_controllers(client: kube::Client, args: &RunArgs, hooks: Hooks) -> anyhow::Result<()> {
    let settings = args.settings();
    let options = args.run_options();
    if !args.leader_election {
        return controller::run_with(client, settings, options, hooks).await;
    }
    let lease = args.lease_settings();
    let shutdown = hooks.shutdown.clone();
    let ready = hooks.ready.clone();
    let controllers_client = client.clone();
    let work = move |stop: Shutdown| {
        let hooks = Hooks {
            shutdown: stop,
            ..hooks
        };
        controller::run_with(controllers_client, settings, options, hooks)
    };
    leader::run_as_leader(client, lease, shutdown, ready, work).await
}

/// Runs `work` to completion, but gives up `timeout` after shutdown was requested, so that a
/// hung request cannot keep the process alive.
async fn bounded_by_shutdown(
    work: impl std::future::Future<Output = anyhow::Result<()>>,
    mut shutdown: Shutdown,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
        tokio::time::sleep(timeout).await;
    };
    tokio::select! {
        result = work => result,
        _ = deadline => {
            tracing::warn!(timeout_seconds = timeout.as_secs(), "shutdown timed out, abandoning in-flight reconciles");
            Ok(())
        }
    }
}

use anyhow::Context as _;
use clap::Parser;

use y360_avatar_operator::cli::{Cli, Command, RunArgs};
use y360_avatar_operator::controller::{self, RunOptions};
use y360_avatar_operator::{crd, install_crypto_provider, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", crd::render_all()?);
            Ok(())
        }
        Command::Run(args) => run(args).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init_logging(args.log_format, &args.log)?;
    install_crypto_provider();
    let client = kube::Client::try_default().await.context(
        "failed to configure the Kubernetes client from kubeconfig or the in-cluster environment",
    )?;
    let options = RunOptions {
        concurrency: args.concurrency,
        namespace: args.namespace.clone(),
    };
    controller::run(client, args.settings(), options).await
}

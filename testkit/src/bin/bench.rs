//! Scale benchmark of the operator: starts a local control plane for each object count, runs
//! the release operator binary against a Directory API stand-in, and prints markdown tables
//! with a PASS or FAIL per target. `make bench` builds the operator and runs this; see
//! BENCHMARKS.md for the scenarios and the results.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tracing_subscriber::EnvFilter;
use y360_testkit::bench::{
    self, BenchConfig, BenchEnv, ChurnPlan, NoisePlan, Report, ThrottlePlan,
};
use y360_testkit::cluster::LocalCluster;

/// Returns the workspace root, the parent of this crate's directory.
fn workspace() -> PathBuf {
    let testkit = Path::new(env!("CARGO_MANIFEST_DIR"));
    testkit.parent().unwrap_or(testkit).to_path_buf()
}

#[derive(Debug, Parser)]
#[command(
    about = "Measures the operator at scale on a local control plane and prints markdown tables"
)]
struct Cli {
    /// Numbers of UserAvatars, comma-separated. Each runs on a fresh control plane.
    #[arg(long = "n", value_delimiter = ',', default_value = "1000")]
    objects: Vec<usize>,

    /// Size of each image, in KiB.
    #[arg(long, default_value_t = 64)]
    image_kib: usize,

    /// Delay the Directory API stand-in adds to every upload, in milliseconds.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,

    /// `--concurrency` of the operator.
    #[arg(long, default_value_t = 8)]
    concurrency: u16,

    /// `--upload-rate-limit` of the throttle scenario, in uploads per second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,

    /// Length of the throttle scenario: it uploads rate x this many seconds of fresh objects.
    #[arg(long, default_value_t = 30)]
    throttle_seconds: u64,

    /// Length of the churn scenario, in minutes; 0 skips it.
    #[arg(long, default_value_t = 3.0)]
    churn_minutes: f64,

    /// Percentage of the images changed per minute during churn.
    #[arg(long, default_value_t = 1.0)]
    churn_percent: f64,

    /// Total size of the unrelated ConfigMaps and Secrets of the noise scenario, in GiB; 0
    /// skips it.
    #[arg(long, default_value_t = 1.0)]
    noise_gib: f64,

    /// Size of each noise object, in KiB.
    #[arg(long, default_value_t = 900)]
    noise_object_kib: usize,

    /// Seconds to watch the idle operator for requests after the warm restart.
    #[arg(long, default_value_t = 20)]
    quiet_seconds: u64,

    /// Objects created at once during setup.
    #[arg(long, default_value_t = 32)]
    create_in_flight: usize,

    /// Namespace of the UserAvatars.
    #[arg(long, default_value = "bench")]
    namespace: String,

    /// Scenarios to skip, comma-separated: churn, noise, memory (the memory breakdown),
    /// throttle. Cold start and warm restart always run.
    #[arg(long, value_delimiter = ',')]
    skip: Vec<Skippable>,

    /// Operator binary to measure.
    #[arg(long, default_value_os_t = workspace().join("target/release/y360-avatar-operator"))]
    operator: PathBuf,

    /// Directory for the operator logs.
    #[arg(long, default_value_os_t = workspace().join("target/bench"))]
    log_dir: PathBuf,

    /// Also write the markdown report to this file.
    #[arg(long)]
    output: Option<PathBuf>,

    /// Exit with status 1 when an invariant check fails (timing and memory targets never
    /// change the exit status).
    #[arg(long)]
    check_invariants: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Skippable {
    Churn,
    Noise,
    Memory,
    Throttle,
}

impl Cli {
    fn config(&self, objects: usize) -> BenchConfig {
        let skip = |scenario| self.skip.contains(&scenario);
        let churn = (!skip(Skippable::Churn) && self.churn_minutes > 0.0)
            .then(|| ChurnPlan::from_rate(objects, self.churn_percent, self.churn_minutes));
        let noise = (!skip(Skippable::Noise) && self.noise_gib > 0.0).then(|| NoisePlan {
            total_bytes: (self.noise_gib * (1u64 << 30) as f64) as u64,
            object_bytes: self.noise_object_kib * 1024,
        });
        let throttle = (!skip(Skippable::Throttle) && self.rate > 0.0).then(|| ThrottlePlan {
            objects: ((self.rate * self.throttle_seconds as f64).round() as usize).max(1),
            rate: self.rate,
        });
        BenchConfig {
            namespace: self.namespace.clone(),
            objects,
            image_bytes: self.image_kib * 1024,
            latency: Duration::from_millis(self.latency_ms),
            concurrency: self.concurrency,
            create_in_flight: self.create_in_flight,
            quiet: Duration::from_secs(self.quiet_seconds),
            churn,
            noise,
            throttle,
            memory_breakdown: !skip(Skippable::Memory),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,y360_testkit::directory=warn,kube=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();

    let cli = Cli::parse();
    match run(&cli).await {
        Ok(passed) if passed || !cli.check_invariants => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("bench failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every object count and returns whether all invariants held and no run stopped early.
async fn run(cli: &Cli) -> Result<bool> {
    anyhow::ensure!(
        cli.operator.is_file(),
        "operator binary not found at {}; build it with `cargo build --release` or pass --operator",
        cli.operator.display()
    );
    std::fs::create_dir_all(&cli.log_dir)
        .with_context(|| format!("failed to create {}", cli.log_dir.display()))?;

    let mut out = header(cli);
    emit(cli, &out, false)?;
    let mut passed = true;
    for &objects in &cli.objects {
        let started = Instant::now();
        let mut report = run_on_fresh_cluster(cli, objects).await?;
        let run_time = started.elapsed().as_secs_f64();
        let note = format!("Run time from control-plane start to stop: {run_time:.0} s.");
        report.notes.push(note);
        passed &= report.error.is_none() && report.failed_invariants().is_empty();
        let section = report.to_markdown();
        emit(cli, &section, true)?;
        out.push_str(&section);
    }
    Ok(passed)
}

async fn run_on_fresh_cluster(cli: &Cli, objects: usize) -> Result<Report> {
    // The control plane's processes die with the thread that started them, so it is started
    // here, on the main thread, and not in a spawned task.
    let cluster = LocalCluster::start().await?;
    let crds = workspace().join("crds/crds.yaml");
    bench::install_crds(|| cluster.kubectl(), &crds)?;
    let kubeconfig = Kubeconfig::from_yaml(&cluster.kubeconfig_yaml())?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    let env = BenchEnv {
        client: kube::Client::try_from(config)?,
        kubeconfig: cluster.kubeconfig_path().to_path_buf(),
        operator_binary: cli.operator.clone(),
        log_dir: cli.log_dir.clone(),
    };

    let mut report = bench::run(&env, &cli.config(objects)).await;
    let peak = cluster.peak_rss();
    let mut table = bench::Table::new(
        "Control plane peak RSS (VmHWM) over the run",
        &["process", "peak RSS"],
    );
    for (name, kib) in [
        ("kube-apiserver", peak.kube_apiserver_kib),
        ("etcd", peak.etcd_kib),
    ] {
        let value = kib.map_or_else(
            || "unknown".to_owned(),
            |kib| format!("{:.0} MiB", kib as f64 / 1024.0),
        );
        table.row(&[name.to_owned(), value]);
    }
    report.tables.push(table);
    cluster.stop().await;
    Ok(report)
}

/// Describes the machine and the settings, for the top of the report.
fn header(cli: &Cli) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: u64 = meminfo
        .lines()
        .find(|line| line.starts_with("MemTotal:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    let command: Vec<String> = std::env::args().collect();
    let git = |args: &[&str]| {
        let output = std::process::Command::new("git")
            .arg("-C")
            .arg(workspace())
            .args(args)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        output.status.success().then_some(text)
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain", "--", "src", "Cargo.toml"])
        .is_some_and(|changes| !changes.is_empty());
    let source = if dirty {
        format!("commit {commit}, with uncommitted changes in src/ or Cargo.toml")
    } else {
        format!("commit {commit}")
    };
    format!(
        "## Benchmark run\n\n- command: `{}`\n- machine: {cores} cores, {:.1} GiB memory\n- \
         operator: `{}` built from {source}\n- images {} KiB, stand-in latency {} ms, operator --concurrency {}\n\n",
        command.join(" "),
        memory_kib as f64 / 1048576.0,
        cli.operator.display(),
        cli.image_kib,
        cli.latency_ms,
        cli.concurrency,
    )
}

/// Prints a part of the report to stdout and, with --output, writes it to the file.
fn emit(cli: &Cli, text: &str, append: bool) -> Result<()> {
    print!("{text}");
    std::io::stdout().flush()?;
    if let Some(path) = &cli.output {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(path)
            .with_context(|| format!("failed to open {}", path.display()))?;
        file.write_all(text.as_bytes())?;
    }
    Ok(())
}

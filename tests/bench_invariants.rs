//! Runs the scale benchmark (`testkit/src/bench`) with 200 UserAvatars on a control plane of
//! its own, with the debug operator binary as a separate process, and asserts only the
//! invariants: request counts that must hold on any machine. Timings, rates and memory are
//! not asserted; `make bench` measures them.

use std::path::Path;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use y360_testkit::bench::{self, BenchConfig, BenchEnv, Check, ChurnPlan, Report};
use y360_testkit::cluster::LocalCluster;

fn config() -> BenchConfig {
    BenchConfig {
        namespace: "bench".into(),
        objects: 200,
        image_bytes: 16 * 1024,
        latency: Duration::from_millis(20),
        concurrency: 8,
        create_in_flight: 16,
        quiet: Duration::from_secs(5),
        churn: Some(ChurnPlan {
            changes: 10,
            duration: Duration::from_secs(5),
        }),
        noise: None,
        throttle: None,
        memory_breakdown: false,
    }
}

/// Returns the check whose target starts with `prefix`, failing the test when there is none.
fn check<'a>(report: &'a Report, prefix: &str) -> &'a Check {
    let found = report.checks.iter().find(|c| c.target.starts_with(prefix));
    found.unwrap_or_else(|| {
        panic!(
            "no check {prefix:?} in the report:\n{}",
            report.to_markdown()
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_invariants_hold() {
    y360_avatar_operator::install_crypto_provider();
    // Started on the test's own thread, which the control plane's processes are tied to.
    let cluster = LocalCluster::start().await.expect("local control plane");
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/crds.yaml");
    bench::install_crds(|| cluster.kubectl(), &crds).expect("install CRDs");
    let kubeconfig = Kubeconfig::from_yaml(&cluster.kubeconfig_yaml()).unwrap();
    let client_config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap();
    let log_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bench-invariants-{}", std::process::id()));
    std::fs::create_dir_all(&log_dir).unwrap();
    let env = BenchEnv {
        client: kube::Client::try_from(client_config).unwrap(),
        kubeconfig: cluster.kubeconfig_path().to_path_buf(),
        operator_binary: env!("CARGO_BIN_EXE_y360-avatar-operator").into(),
        log_dir,
    };

    let report = bench::run(&env, &config()).await;
    println!("{}", report.to_markdown());

    assert_eq!(report.error, None, "the benchmark stopped early");
    let invariants = [
        "cold start: exactly 1 upload per object",
        "warm restart: 0 uploads",
        "warm restart: 0 status writes",
        "warm restart: at most 1 ConfigMap read per object",
        "steady state",
        "churn: uploads per content change exactly 1.00",
    ];
    for prefix in invariants {
        let check = check(&report, prefix);
        assert!(check.invariant, "{prefix:?} is not marked as an invariant");
        assert!(
            check.passed,
            "{}: measured {}",
            check.target, check.measured
        );
    }
    cluster.stop().await;
}

//! Scale benchmark of the operator against a real control plane.
//!
//! The operator runs as a separate process, so its peak RSS and CPU time can be read from
//! /proc, against a Directory API stand-in in this process. The scenarios are cold start,
//! warm restart, churn, noise, a memory breakdown and throttle; [`run`] measures them in that
//! order and returns markdown tables plus a check per target. `src/bin/bench.rs` is the
//! command-line entry point, and `tests/bench_invariants.rs` runs a small configuration.

mod images;
mod metrics;
mod objects;
mod operator;
mod report;
mod scenarios;
mod tracker;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};

pub use images::{content_hash, png_image};
pub use metrics::{ApiRequests, OperatorCounters};
pub use operator::{ProcessStats, read_process_stats};
pub use report::{Check, Report, Table};
pub use scenarios::run;

/// Sizes and rates of one benchmark run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Namespace of the UserAvatars; the throttle scenario uses `<namespace>-throttle`.
    pub namespace: String,
    /// Number of UserAvatars, each with its own ConfigMap and Directory user.
    pub objects: usize,
    /// Size of each image in bytes.
    pub image_bytes: usize,
    /// Delay the stand-in adds to every upload.
    pub latency: Duration,
    /// `--concurrency` of the operator.
    pub concurrency: u16,
    /// Objects created at once while setting up.
    pub create_in_flight: usize,
    /// Time to watch a settled operator for requests it should not send.
    pub quiet: Duration,
    /// Content changes of the churn scenario, or `None` to skip it.
    pub churn: Option<ChurnPlan>,
    /// Unrelated objects of the noise scenario, or `None` to skip it.
    pub noise: Option<NoisePlan>,
    /// Rate-limited cold start of the throttle scenario, or `None` to skip it.
    pub throttle: Option<ThrottlePlan>,
    /// Whether to restart the operator in variations that show what its memory is spent on.
    pub memory_breakdown: bool,
}

/// Image changes spread evenly over a duration, each on a different object.
#[derive(Clone, Copy, Debug)]
pub struct ChurnPlan {
    pub changes: usize,
    pub duration: Duration,
}

impl ChurnPlan {
    /// Changes `percent_per_minute` percent of `objects` per minute for `minutes`, at least
    /// one change and at most one per object.
    pub fn from_rate(objects: usize, percent_per_minute: f64, minutes: f64) -> Self {
        let changes = (objects as f64 * percent_per_minute / 100.0 * minutes).round() as usize;
        Self {
            changes: changes.clamp(1, objects.max(1)),
            duration: Duration::from_secs_f64(minutes * 60.0),
        }
    }
}

/// ConfigMaps and Secrets in other namespaces that the operator should not pay for.
#[derive(Clone, Copy, Debug)]
pub struct NoisePlan {
    pub total_bytes: u64,
    pub object_bytes: usize,
}

/// A fresh set of UserAvatars uploaded under `--upload-rate-limit`.
#[derive(Clone, Copy, Debug)]
pub struct ThrottlePlan {
    pub objects: usize,
    /// Uploads per second.
    pub rate: f64,
}

/// The cluster and the programs a run uses.
pub struct BenchEnv {
    /// Client with the admin identity, which may also read kube-apiserver's `/metrics`.
    pub client: kube::Client,
    /// Admin kubeconfig that the operator process is given.
    pub kubeconfig: PathBuf,
    /// The `y360-avatar-operator` binary.
    pub operator_binary: PathBuf,
    /// Directory for the operator logs, one file per operator process.
    pub log_dir: PathBuf,
}

/// Applies a CRD file with `kubectl` (as returned by `LocalCluster::kubectl`) and waits until
/// every CRD is Established.
pub fn install_crds(mut kubectl: impl FnMut() -> Command, crds: &Path) -> Result<()> {
    let crds = crds.to_string_lossy();
    let steps: [&[&str]; 2] = [
        &["apply", "--server-side", "-f", &crds],
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "--all",
        ],
    ];
    for args in steps {
        let output = kubectl().args(args).output()?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            bail!("kubectl {} failed: {stderr}", args.join(" "));
        }
    }
    Ok(())
}

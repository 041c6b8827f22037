//! The operator under test, run as a separate process so that its memory and CPU time can be
//! read from /proc.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

use super::metrics::OperatorCounters;

/// Time the operator gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// Timeout of one scrape of the operator's `/metrics`.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// Flags of one operator run that vary between scenarios.
#[derive(Clone, Debug)]
pub struct OperatorArgs {
    /// Namespace to watch, or every namespace when `None`.
    pub namespace: Option<String>,
    pub concurrency: u16,
    /// `--upload-rate-limit` in uploads per second; `None` for no limit.
    pub upload_rate_limit: Option<f64>,
    /// Extra environment variables, such as glibc malloc tunables.
    pub env: Vec<(String, String)>,
}

/// Memory and CPU use of a running process, from /proc.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessStats {
    /// Peak resident set size (VmHWM), in KiB.
    pub peak_rss_kib: u64,
    /// Current resident set size (VmRSS), in KiB.
    pub rss_kib: u64,
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
}

/// A running `y360-avatar-operator run` process. Dropping it kills the process.
pub struct OperatorProcess {
    child: Child,
    pid: u32,
    metrics_url: String,
    readyz_url: String,
    log_path: PathBuf,
    /// Time just before the process was spawned.
    pub started: Instant,
}

impl OperatorProcess {
    /// Starts the operator binary with a kubeconfig, an admin server on a free loopback port,
    /// and `--allow-http --allow-url-network 127.0.0.0/8` so that loopback servers work.
    /// Its output replaces the content of `log_path`.
    pub fn spawn(
        binary: &Path,
        kubeconfig: &Path,
        args: &OperatorArgs,
        log_path: &Path,
    ) -> Result<Self> {
        let admin = free_loopback_address()?;
        let mut command = Command::new(binary);
        command
            .arg("run")
            .args(["--allow-http", "--allow-url-network", "127.0.0.0/8"])
            .arg(format!("--admin-address={admin}"))
            .arg(format!("--concurrency={}", args.concurrency));
        if let Some(namespace) = &args.namespace {
            command.arg(format!("--namespace={namespace}"));
        }
        if let Some(rate) = args.upload_rate_limit {
            command.arg(format!("--upload-rate-limit={rate}"));
        }

        // Only the local cluster's kubeconfig may be used, and no proxy, so no request can
        // leave this machine.
        for (name, _) in std::env::vars_os() {
            let name_text = name.to_string_lossy().to_ascii_uppercase();
            let inherited = name_text.starts_with("Y360_")
                || name_text.starts_with("KUBERNETES_")
                || name_text.ends_with("_PROXY");
            if inherited {
                command.env_remove(&name);
            }
        }
        let log = File::create(log_path)
            .with_context(|| format!("failed to create the operator log {}", log_path.display()))?;
        command.envs(args.env.iter().map(|(name, value)| (name, value)));
        command
            .env("KUBECONFIG", kubeconfig)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);

        let started = Instant::now();
        let child = command
            .spawn()
            .with_context(|| format!("failed to start the operator {}", binary.display()))?;
        let pid = child.id().context("the operator exited at once")?;
        tracing::info!(pid, ?args, log = %log_path.display(), "operator started");
        Ok(Self {
            child,
            pid,
            metrics_url: format!("http://{admin}/metrics"),
            readyz_url: format!("http://{admin}/readyz"),
            log_path: log_path.to_path_buf(),
            started,
        })
    }

    /// Scrapes the operator's counters. Fails while its admin server is not listening yet.
    pub async fn counters(&self, http: &reqwest::Client) -> Result<OperatorCounters> {
        let response = http
            .get(&self.metrics_url)
            .timeout(SCRAPE_TIMEOUT)
            .send()
            .await
            .with_context(|| format!("failed to scrape {}", self.metrics_url))?;
        let response = response.error_for_status()?;
        Ok(OperatorCounters::from_text(&response.text().await?))
    }

    /// Polls `/readyz` every 50 ms until it returns 200, which the operator does once its
    /// watch caches are synced, and returns that moment. Fails when the process exits or
    /// `timeout` passes.
    pub async fn wait_until_ready(
        &mut self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            let response = http
                .get(&self.readyz_url)
                .timeout(SCRAPE_TIMEOUT)
                .send()
                .await;
            if response.is_ok_and(|r| r.status().is_success()) {
                return Ok(Instant::now());
            }
            if Instant::now() >= deadline {
                bail!("the operator did not report ready on /readyz within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls the counters every 50 ms until `done` holds, and returns them with the time at
    /// which they were read. Fails when the process exits or `timeout` passes.
    pub async fn wait_for_counters(
        &mut self,
        http: &reqwest::Client,
        condition: &str,
        timeout: Duration,
        done: impl Fn(&OperatorCounters) -> bool,
    ) -> Result<(OperatorCounters, Instant)> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            if let Ok(counters) = self.counters(http).await {
                if done(&counters) {
                    return Ok((counters, Instant::now()));
                }
                if Instant::now() >= deadline {
                    bail!(
                        "timed out after {timeout:?} waiting for {condition}; last counters: {counters:?}"
                    );
                }
            } else if Instant::now() >= deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {condition}; /metrics never responded"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the reconcile and upload counters stay unchanged for `quiet`, at most
    /// `timeout`, and returns the last counters.
    pub async fn wait_until_idle(
        &mut self,
        http: &reqwest::Client,
        quiet: Duration,
        timeout: Duration,
    ) -> Result<OperatorCounters> {
        let deadline = Instant::now() + timeout;
        let mut last = self.counters(http).await?;
        let mut unchanged_since = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            self.check_running()?;
            let counters = self.counters(http).await?;
            let busy = counters.reconciles != last.reconciles
                || counters.upload_attempts != last.upload_attempts;
            if busy {
                unchanged_since = Instant::now();
                last = counters;
            } else if unchanged_since.elapsed() >= quiet {
                return Ok(counters);
            }
            if Instant::now() >= deadline {
                bail!("the operator was still busy after {timeout:?}; last counters: {counters:?}");
            }
        }
    }

    /// Reads the peak and current RSS and the CPU time of the process from /proc.
    pub fn stats(&self) -> Result<ProcessStats> {
        read_process_stats(self.pid)
    }

    /// Fails with the end of the operator log when the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "the operator exited with {status}; its log {} ends with:\n{}",
                self.log_path.display(),
                log_tail(&self.log_path, 30)
            );
        }
        Ok(())
    }

    /// Sends SIGTERM and waits for the process to exit, killing it after 30 s.
    pub async fn stop(mut self) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = libc::pid_t::try_from(self.pid).context("pid out of range")?;
        // SAFETY: kill(2) has no memory-safety preconditions, and the child is not reaped yet,
        // so its pid still names it.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        match tokio::time::timeout(STOP_GRACE, self.child.wait()).await {
            Ok(status) => {
                tracing::info!(pid = self.pid, status = %status?, "operator stopped");
            }
            Err(_) => {
                tracing::warn!(
                    pid = self.pid,
                    "operator did not exit within 30 s of SIGTERM, killing it"
                );
                self.child.kill().await?;
            }
        }
        Ok(())
    }
}

/// Reads VmHWM and VmRSS from /proc/PID/status and utime plus stime from /proc/PID/stat.
pub fn read_process_stats(pid: u32) -> Result<ProcessStats> {
    let status_path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&status_path)
        .with_context(|| format!("failed to read {status_path}"))?;
    let kib = |field: &str| -> Result<u64> {
        let line = status.lines().find(|line| line.starts_with(field));
        let value = line.and_then(|line| line.split_whitespace().nth(1));
        let value = value.with_context(|| format!("{field} missing from {status_path}"))?;
        Ok(value.parse()?)
    };
    let peak_rss_kib = kib("VmHWM:")?;
    let rss_kib = kib("VmRSS:")?;

    let stat_path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&stat_path)
        .with_context(|| format!("failed to read {stat_path}"))?;
    // The command name in brackets may contain spaces, so fields are counted after it. utime
    // and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("unexpected format of {stat_path}"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> Result<u64> {
        let field = fields
            .get(index)
            .context("too few fields in /proc/PID/stat")?;
        Ok(field.parse()?)
    };
    let total_ticks = ticks(11)? + ticks(12)?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks_per_second = if ticks_per_second > 0 {
        ticks_per_second as f64
    } else {
        100.0
    };
    Ok(ProcessStats {
        peak_rss_kib,
        rss_kib,
        cpu_seconds: total_ticks as f64 / ticks_per_second,
    })
}

fn free_loopback_address() -> Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("failed to bind 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr()?)
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process_stats() {
        let stats = read_process_stats(std::process::id()).unwrap();
        assert!(stats.peak_rss_kib >= stats.rss_kib);
        assert!(stats.rss_kib > 0);
    }
}

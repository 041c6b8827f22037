//! Child processes of a local control plane: spawning with logs to a file, stopping, and
//! making sure they never outlive the process that started them.

use std::ffi::OsString;
use std::fs::{self, File};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Time a process gets to exit after SIGTERM before it is killed with SIGKILL.
const TERMINATE_GRACE: Duration = Duration::from_secs(10);

/// Lines of a log file quoted in startup errors.
const LOG_TAIL_LINES: usize = 40;

/// A running etcd or kube-apiserver, with stdout and stderr appended to one log file.
///
/// The process runs in its own process group, so a Ctrl-C in a terminal signals only the
/// parent, which decides how to stop its children. Dropping the value kills the group with
/// SIGKILL and reaps the process.
pub(crate) struct ChildProcess {
    name: &'static str,
    child: Child,
    exit_status: Option<ExitStatus>,
    log_path: PathBuf,
}

impl ChildProcess {
    /// Starts `program` with `args`, appending its output to `log_path`.
    pub(crate) fn spawn(
        name: &'static str,
        program: &Path,
        args: &[OsString],
        log_path: &Path,
    ) -> Result<ChildProcess> {
        let log = open_log(log_path)?;
        let log_for_stderr = log
            .try_clone()
            .with_context(|| format!("failed to duplicate the handle of {}", log_path.display()))?;

        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_for_stderr)
            .process_group(0);
        die_with_parent(&mut command);

        let child = command
            .spawn()
            .with_context(|| format!("failed to start {name} from {}", program.display()))?;
        tracing::debug!(name, pid = child.id(), log = %log_path.display(), "started process");
        Ok(ChildProcess {
            name,
            child,
            exit_status: None,
            log_path: log_path.to_path_buf(),
        })
    }

    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Returns the exit status if the process has exited, without blocking.
    pub(crate) fn try_exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit_status.is_none() {
            self.exit_status = self.child.try_wait().ok().flatten();
        }
        self.exit_status
    }

    /// Sends SIGTERM to the process group, waits up to 10 s for the process to exit, then
    /// sends SIGKILL.
    pub(crate) async fn terminate(&mut self) {
        if self.try_exit_status().is_some() {
            return;
        }
        self.signal_group(libc::SIGTERM);

        let deadline = Instant::now() + TERMINATE_GRACE;
        while Instant::now() < deadline {
            if self.try_exit_status().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::warn!(
            name = self.name,
            pid = self.pid(),
            "process did not exit within 10 s of SIGTERM, sending SIGKILL"
        );
        self.kill_and_reap();
    }

    /// Sends SIGKILL to the process group and waits for the process to exit.
    pub(crate) fn kill_and_reap(&mut self) {
        if self.try_exit_status().is_some() {
            return;
        }
        self.signal_group(libc::SIGKILL);
        match self.child.wait() {
            Ok(status) => self.exit_status = Some(status),
            Err(error) => {
                tracing::warn!(name = self.name, pid = self.pid(), %error, "failed to reap process")
            }
        }
    }

    /// Sends `signal` to the process group. The caller makes sure the process has not been
    /// reaped yet, because until then its pid, and so its group id, cannot be reused.
    fn signal_group(&self, signal: libc::c_int) {
        let group = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) has no memory-safety preconditions.
        let result = unsafe { libc::kill(-group, signal) };
        if result != 0 {
            let error = std::io::Error::last_os_error();
            let name = self.name;
            tracing::warn!(name, group, signal, %error, "failed to signal process group");
        }
    }

    /// Reads the peak resident set size (VmHWM) from /proc, in KiB.
    pub(crate) fn peak_rss_kib(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    pub(crate) fn log_tail(&self) -> String {
        log_tail(&self.log_path, LOG_TAIL_LINES)
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

fn open_log(path: &Path) -> Result<File> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("failed to open log file {}", path.display()))
}

/// Makes the kernel send SIGKILL to the child when the thread that spawned it exits, so a
/// test process killed by a timeout or a signal leaves no etcd or kube-apiserver behind.
///
/// NOTE: PR_SET_PDEATHSIG fires when the spawning *thread* exits, not the whole process. A
/// control plane must therefore be started from a thread that lives as long as it is used,
/// such as a test's own thread or a tokio worker thread, not from `spawn_blocking`.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    let parent_pid = std::process::id();
    let set_death_signal = move || {
        // SAFETY: prctl and getppid are async-signal-safe and this closure does not allocate.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // The parent may have died between fork and prctl, and then no signal would come.
        if unsafe { libc::getppid() } as u32 != parent_pid {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(())
    };
    // SAFETY: the closure only calls async-signal-safe functions (see above).
    unsafe {
        command.pre_exec(set_death_signal);
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

/// Returns a TCP port that was free on 127.0.0.1 a moment ago.
///
/// The port is released before the caller's child binds it, so another process can take it
/// in between. Callers retry with new ports when a child fails with "address already in use".
pub(crate) fn free_loopback_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("failed to bind 127.0.0.1:0 to find a free port")?;
    let address = listener
        .local_addr()
        .context("failed to read the bound local address")?;
    Ok(address.port())
}

/// Returns the last `lines` lines of a log file, or a note that it could not be read.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => return format!("(failed to read {}: {error})", path.display()),
    };
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}

/// Reports whether a log shows that the process could not bind its port.
pub(crate) fn log_shows_port_clash(path: &Path) -> bool {
    fs::read_to_string(path).is_ok_and(|text| text.contains("address already in use"))
}

//! A real local Kubernetes control plane, etcd plus kube-apiserver, for tests and the demo.
//!
//! There is no controller-manager, scheduler or kubelet. So owner-reference garbage
//! collection does not happen, deleted namespaces stay `Terminating`, service-account tokens
//! are not created, and Pods never run. Give every test its own namespace.

mod pki;
mod process;

use std::ffi::OsString;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use self::pki::{Pki, PkiFiles};
use self::process::{ChildProcess, free_loopback_port, log_shows_port_clash};

/// Environment variable naming the directory that contains `etcd`, `kube-apiserver` and
/// `kubectl`.
/// When it is unset, [`binaries_dir`] runs the build script instead.
pub const BIN_DIR_ENV: &str = "Y360_K8S_BIN_DIR";

/// Build script that caches the control-plane binaries, relative to the workspace root.
const BUILD_SCRIPT: &str = "hack/control-plane/build.sh";

const ETCD_READY_TIMEOUT: Duration = Duration::from_secs(30);
const APISERVER_READY_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Start attempts with fresh ports when etcd or kube-apiserver reports "address already in
/// use" (another process took the port between our probe and the child's bind).
const PORT_ATTEMPTS: usize = 3;

/// A running etcd and kube-apiserver on free loopback ports, with their own CAs and a
/// temporary directory for data, certificates and logs.
///
/// Dropping the value kills both processes with SIGKILL and removes the directory. Prefer
/// [`LocalCluster::stop`], which lets them shut down cleanly.
pub struct LocalCluster {
    // Field order is drop order: kube-apiserver, then etcd, then the directory they use.
    apiserver: ChildProcess,
    etcd: ChildProcess,
    dir: TempDir,
    binaries: Binaries,
    pki: Pki,
    apiserver_port: u16,
    apiserver_args: Vec<OsString>,
    client: reqwest::Client,
    kubeconfig_path: PathBuf,
    kubeconfig_yaml: String,
}

/// Peak resident set sizes (VmHWM from /proc) of the two control-plane processes, in KiB.
/// `None` where /proc could not be read, for example after the process exited.
#[derive(Clone, Copy, Debug)]
pub struct PeakRss {
    pub kube_apiserver_kib: Option<u64>,
    pub etcd_kib: Option<u64>,
}

impl LocalCluster {
    /// Starts etcd and kube-apiserver on free loopback ports and waits until `/readyz`
    /// returns 200 and namespace `default` exists.
    ///
    /// Finds the binaries with [`binaries_dir`], which may build them first.
    pub async fn start() -> Result<LocalCluster> {
        let started = Instant::now();
        let bin_dir = tokio::task::spawn_blocking(binaries_dir)
            .await
            .context("the task that locates the control-plane binaries panicked")??;
        let binaries = Binaries::in_dir(&bin_dir)?;
        let mut dir = tempfile::Builder::new()
            .prefix("y360-cluster-")
            .tempdir()
            .context("failed to create a temporary directory for the control plane")?;

        // Keep the logs on disk if the start fails, so that the caller can read all of them.
        dir.disable_cleanup(true);
        let dir_path = dir.path().to_path_buf();
        let mut cluster = Self::start_in(binaries, dir).await.with_context(|| {
            format!(
                "local control plane failed to start; its logs are kept in {}",
                dir_path.display()
            )
        })?;
        cluster.dir.disable_cleanup(false);
        tracing::info!(
            server = %cluster.server_url(),
            directory = %cluster.dir.path().display(),
            elapsed_ms = started.elapsed().as_millis(),
            "local control plane is ready"
        );
        Ok(cluster)
    }

    async fn start_in(binaries: Binaries, dir: TempDir) -> Result<LocalCluster> {
        let pki = Pki::generate()?;
        let pki_files = pki.write_files(dir.path())?;
        let client = build_client(&pki)?;

        let (etcd, etcd_port) = start_etcd(&binaries.etcd, dir.path(), &client).await?;
        let (apiserver, apiserver_port, apiserver_args) = start_apiserver(
            &binaries.kube_apiserver,
            dir.path(),
            etcd_port,
            &pki_files,
            &client,
        )
        .await?;

        let server_url = loopback_https_url(apiserver_port);
        let kubeconfig_yaml =
            pki::render_kubeconfig(&server_url, &pki.serving_ca_pem(), &pki.admin);
        let kubeconfig_path = dir.path().join("admin.kubeconfig");
        pki::write_file(&kubeconfig_path, &kubeconfig_yaml)?;

        Ok(LocalCluster {
            apiserver,
            etcd,
            dir,
            binaries,
            pki,
            apiserver_port,
            apiserver_args,
            client,
            kubeconfig_path,
            kubeconfig_yaml,
        })
    }

    /// Path of the admin kubeconfig (client certificate CN=admin, O=system:masters, with the
    /// serving CA embedded). The file is removed with the cluster.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// Contents of the admin kubeconfig.
    pub fn kubeconfig_yaml(&self) -> String {
        self.kubeconfig_yaml.clone()
    }

    /// URL of kube-apiserver, `https://127.0.0.1:PORT`.
    pub fn server_url(&self) -> String {
        loopback_https_url(self.apiserver_port)
    }

    /// Creates a `kubectl` command preset with the admin kubeconfig.
    pub fn kubectl(&self) -> Command {
        self.kubectl_with(&self.kubeconfig_path)
    }

    /// Creates a `kubectl` command preset with `kubeconfig`, for example one written from
    /// [`LocalCluster::kubeconfig_for`]. Its discovery cache is in the cluster's directory, so
    /// kubectl never reuses discovery data from an earlier cluster on the same port.
    pub fn kubectl_with(&self, kubeconfig: &Path) -> Command {
        let mut command = Command::new(&self.binaries.kubectl);
        command
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("kubectl-cache"));
        command
    }

    /// Renders a kubeconfig for another identity: a client certificate with CN=`user` and one
    /// O per group, signed by the cluster's client CA. Kubernetes adds `system:authenticated`
    /// itself.
    ///
    /// NOTE: at most two groups are supported, because rcgen keeps one value per subject
    /// attribute type (see `pki::client_cert_params`); more groups return an error.
    pub fn kubeconfig_for(&self, user: &str, groups: &[&str]) -> Result<String> {
        let credentials = self.pki.issue_client(user, groups)?;
        Ok(pki::render_kubeconfig(
            &self.server_url(),
            &self.pki.serving_ca_pem(),
            &credentials,
        ))
    }

    /// Stops kube-apiserver (SIGTERM, then SIGKILL after 10 s) and starts it again with the
    /// same port, etcd and certificates, then waits until it is ready.
    pub async fn restart_apiserver(&mut self) -> Result<()> {
        self.apiserver.terminate().await;

        let log_path = self.apiserver.log_path().to_path_buf();
        self.apiserver = ChildProcess::spawn(
            "kube-apiserver",
            &self.binaries.kube_apiserver,
            &self.apiserver_args,
            &log_path,
        )?;
        wait_for_apiserver(&mut self.apiserver, &self.client, self.apiserver_port).await
    }

    /// Stops kube-apiserver, then etcd, each with SIGTERM and a 10 s grace period, and removes
    /// the temporary directory.
    pub async fn stop(mut self) {
        self.apiserver.terminate().await;
        self.etcd.terminate().await;
    }

    /// Path of the kube-apiserver log (stdout and stderr, appended across restarts). The file
    /// is removed with the cluster.
    pub fn apiserver_log_path(&self) -> &Path {
        self.apiserver.log_path()
    }

    /// Path of the etcd log. The file is removed with the cluster.
    pub fn etcd_log_path(&self) -> &Path {
        self.etcd.log_path()
    }

    /// Reads the peak memory use of kube-apiserver and etcd so far. After
    /// [`LocalCluster::restart_apiserver`] it covers only the new kube-apiserver process.
    pub fn peak_rss(&self) -> PeakRss {
        PeakRss {
            kube_apiserver_kib: self.apiserver.peak_rss_kib(),
            etcd_kib: self.etcd.peak_rss_kib(),
        }
    }
}

fn loopback_https_url(port: u16) -> String {
    format!("https://127.0.0.1:{port}")
}

/// Paths of the three control-plane binaries.
struct Binaries {
    etcd: PathBuf,
    kube_apiserver: PathBuf,
    kubectl: PathBuf,
}

impl Binaries {
    fn in_dir(dir: &Path) -> Result<Binaries> {
        let find = |name: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            if !path.is_file() {
                bail!(
                    "{name} not found at {}; set {BIN_DIR_ENV} to a directory that contains etcd, \
                     kube-apiserver and kubectl, or unset it so that {BUILD_SCRIPT} builds them",
                    path.display()
                );
            }
            Ok(path)
        };
        Ok(Binaries {
            etcd: find("etcd")?,
            kube_apiserver: find("kube-apiserver")?,
            kubectl: find("kubectl")?,
        })
    }
}

/// Finds the directory that contains `etcd`, `kube-apiserver` and `kubectl`.
///
/// Uses the directory named by `Y360_K8S_BIN_DIR` if it is set. Otherwise runs
/// `hack/control-plane/build.sh`, which builds the binaries into a cache on first use (tens of
/// minutes) and prints the directory. After the script succeeds, later calls in the same process
/// reuse its directory. Its progress messages go to this process's stderr.
pub fn binaries_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        return Ok(PathBuf::from(dir));
    }

    // A Mutex rather than a OnceLock so that a failed build is retried by the next caller,
    // while parallel tests still wait for one build instead of starting their own.
    static BUILT_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built_dir = BUILT_DIR.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(dir) = built_dir.as_ref() {
        return Ok(dir.clone());
    }
    let dir = run_build_script(&find_build_script()?)?;
    *built_dir = Some(dir.clone());
    Ok(dir)
}

/// Looks for the build script in the workspace this crate was compiled in, then in the
/// current directory and each of its parents.
fn find_build_script() -> Result<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf);
    let current = std::env::current_dir().ok();
    let ancestors = current
        .iter()
        .flat_map(|dir| dir.ancestors().map(Path::to_path_buf));

    workspace
        .into_iter()
        .chain(ancestors)
        .map(|root| root.join(BUILD_SCRIPT))
        .find(|script| script.is_file())
        .with_context(|| {
            format!(
                "{BUILD_SCRIPT} not found next to {} or above the current directory; \
                 set {BIN_DIR_ENV} to a directory that contains etcd, kube-apiserver and kubectl",
                env!("CARGO_MANIFEST_DIR")
            )
        })
}

/// Runs the build script and returns the directory named on the last line of its stdout.
fn run_build_script(script: &Path) -> Result<PathBuf> {
    let output = Command::new("bash")
        .arg(script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("failed to run {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed with {}; its messages are on stderr above",
            script.display(),
            output.status
        );
    }

    let stdout = String::from_utf8_lossy(&output.stdout);
    let last_line = stdout.lines().map(str::trim).rfind(|line| !line.is_empty());
    let dir = last_line
        .with_context(|| format!("{} printed no directory on stdout", script.display()))?;
    Ok(PathBuf::from(dir))
}

/// Builds an HTTP client that trusts only the cluster's serving CA and presents the admin
/// client certificate. It also serves plain-HTTP probes of etcd.
fn build_client(pki: &Pki) -> Result<reqwest::Client> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(pki.serving_ca_der()))
        .context("failed to add the serving CA to the root store")?;
    let admin_cert = CertificateDer::from(pki.admin.cert_der.clone());
    let admin_key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.admin.key_der.clone()));

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("failed to select TLS versions")?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![admin_cert], admin_key)
        .context("failed to load the admin client certificate")?;

    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .timeout(PROBE_TIMEOUT)
        .build()
        .context("failed to build the HTTP client for readiness probes")
}

/// Starts etcd on fresh ports until it binds them, and waits until it is healthy.
async fn start_etcd(
    binary: &Path,
    dir: &Path,
    client: &reqwest::Client,
) -> Result<(ChildProcess, u16)> {
    let log_path = dir.join("etcd.log");
    let log_path = log_path.as_path();
    retry_on_port_clash("etcd", log_path, || async move {
        let client_port = free_loopback_port()?;
        let peer_port = free_loopback_port()?;
        // A failed attempt may have left member data that names its old peer port.
        let data_dir = dir.join("etcd-data");
        let _ = std::fs::remove_dir_all(&data_dir);
        let args = etcd_args(&data_dir, client_port, peer_port);
        let mut etcd = ChildProcess::spawn("etcd", binary, &args, log_path)?;

        let health_url = format!("http://127.0.0.1:{client_port}/health");
        let condition = format!("GET {health_url} to return 200");
        wait_until(&mut etcd, ETCD_READY_TIMEOUT, &condition, || {
            http_ok(client, &health_url)
        })
        .await?;
        Ok((etcd, client_port))
    })
    .await
}

fn etcd_args(data_dir: &Path, client_port: u16, peer_port: u16) -> Vec<OsString> {
    let client_url = format!("http://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    vec![
        "--name=default".into(),
        path_flag("--data-dir", data_dir),
        format!("--listen-client-urls={client_url}").into(),
        format!("--advertise-client-urls={client_url}").into(),
        format!("--listen-peer-urls={peer_url}").into(),
        format!("--initial-advertise-peer-urls={peer_url}").into(),
        format!("--initial-cluster=default={peer_url}").into(),
        // Test data does not need to survive a crash, so skip fsync to keep writes fast.
        "--unsafe-no-fsync".into(),
        // etcd's default 2 GiB backend quota is too small for the scale benchmark: 10,000
        // images of 64 KiB, 1 GiB of unrelated objects and their uncompacted revisions. 8 GiB
        // is the largest quota etcd recommends. The file grows only as data is written.
        "--quota-backend-bytes=8589934592".into(),
    ]
}

/// Starts kube-apiserver on a fresh port until it binds it, and waits until it is ready.
/// Returns the process, its port and the arguments it was started with.
async fn start_apiserver(
    binary: &Path,
    dir: &Path,
    etcd_port: u16,
    pki_files: &PkiFiles,
    client: &reqwest::Client,
) -> Result<(ChildProcess, u16, Vec<OsString>)> {
    let log_path = dir.join("kube-apiserver.log");
    let log_path = log_path.as_path();
    retry_on_port_clash("kube-apiserver", log_path, || async move {
        let port = free_loopback_port()?;
        let args = apiserver_args(port, etcd_port, pki_files);
        let mut apiserver = ChildProcess::spawn("kube-apiserver", binary, &args, log_path)?;
        wait_for_apiserver(&mut apiserver, client, port).await?;
        Ok((apiserver, port, args))
    })
    .await
}

fn apiserver_args(port: u16, etcd_port: u16, files: &PkiFiles) -> Vec<OsString> {
    vec![
        format!("--etcd-servers=http://127.0.0.1:{etcd_port}").into(),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={port}").into(),
        path_flag("--tls-cert-file", &files.serving_cert),
        path_flag("--tls-private-key-file", &files.serving_key),
        path_flag("--client-ca-file", &files.client_ca),
        format!("--service-account-issuer={}/", loopback_https_url(port)).into(),
        path_flag(
            "--service-account-key-file",
            &files.service_account_public_key,
        ),
        path_flag(
            "--service-account-signing-key-file",
            &files.service_account_private_key,
        ),
        "--service-cluster-ip-range=10.0.0.0/24".into(),
        "--authorization-mode=RBAC".into(),
        "--allow-privileged=true".into(),
        // Without a controller-manager no namespace gets a `default` ServiceAccount, and this
        // plugin would reject every Pod that relies on it.
        "--disable-admission-plugins=ServiceAccount".into(),
        // The default reconciler publishes 127.0.0.1 as the endpoint of the `kubernetes`
        // Service, which validation rejects as a loopback address, so it logs an error every
        // 10 s (seen with v1.36.3).
        "--endpoint-reconciler-type=none".into(),
    ]
}

fn path_flag(flag: &str, path: &Path) -> OsString {
    let mut argument = OsString::from(format!("{flag}="));
    argument.push(path);
    argument
}

/// Waits until kube-apiserver returns 200 for `/readyz` and namespace `default` exists.
async fn wait_for_apiserver(
    apiserver: &mut ChildProcess,
    client: &reqwest::Client,
    port: u16,
) -> Result<()> {
    let base = loopback_https_url(port);
    let readyz = format!("{base}/readyz");
    let default_namespace = format!("{base}/api/v1/namespaces/default");
    let condition = format!("GET {readyz} to return 200 and namespace default to exist");

    let (readyz, default_namespace) = (readyz.as_str(), default_namespace.as_str());
    let probe =
        || async move { http_ok(client, readyz).await && http_ok(client, default_namespace).await };
    wait_until(apiserver, APISERVER_READY_TIMEOUT, &condition, probe).await
}

async fn http_ok(client: &reqwest::Client, url: &str) -> bool {
    match client.get(url).send().await {
        Ok(response) => response.status() == reqwest::StatusCode::OK,
        Err(_) => false,
    }
}

/// Polls `probe` until it returns true. Fails with the end of the process log if the
/// process exits first or `timeout` passes. `condition` describes the probe in messages.
async fn wait_until<P, F>(
    process: &mut ChildProcess,
    timeout: Duration,
    condition: &str,
    mut probe: P,
) -> Result<()>
where
    P: FnMut() -> F,
    F: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = process.try_exit_status() {
            let reason = format!("it exited with {status} while waiting for {condition}");
            bail!("{}", startup_failure(process, &reason));
        }
        if probe().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let reason = format!("timed out after {timeout:?} waiting for {condition}");
            bail!("{}", startup_failure(process, &reason));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn startup_failure(process: &ChildProcess, reason: &str) -> String {
    format!(
        "{} did not become ready: {reason}. Its log {} ends with:\n{}",
        process.name(),
        process.log_path().display(),
        process.log_tail()
    )
}

/// Runs `attempt` up to three times, starting each time with an empty log, and retries only
/// when the log shows that the process could not bind a port.
async fn retry_on_port_clash<T, A, F>(name: &str, log_path: &Path, mut attempt: A) -> Result<T>
where
    A: FnMut() -> F,
    F: Future<Output = Result<T>>,
{
    let mut attempt_number = 1;
    loop {
        // The file may not exist yet, which is fine.
        let _ = std::fs::remove_file(log_path);
        let error = match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if attempt_number == PORT_ATTEMPTS || !log_shows_port_clash(log_path) {
            return Err(error);
        }
        tracing::warn!(
            name,
            attempt_number,
            "port was taken before the process bound it, retrying with new ports"
        );
        attempt_number += 1;
    }
}

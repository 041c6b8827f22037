//! Command-line interface. Every flag of `run` can also be set through the environment
//! variable named in its help.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;

use crate::controller::RunOptions;
use crate::directory::Timeouts;
use crate::leader::LeaseSettings;
use crate::rate_limit::UploadLimiter;
use crate::reconcile::Settings;
use crate::source::{FetchLimits, UrlPolicy};

#[derive(Debug, Parser)]
#[command(
    name = "y360-avatar-operator",
    version,
    about = "Keeps Yandex 360 user portraits in step with UserAvatar resources"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
    /// Run the controllers with the current kubeconfig or the in-cluster configuration.
    Run(Box<RunArgs>),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Largest image accepted, in bytes, from a ConfigMap or a URL.
    #[arg(long, env = "Y360_MAX_IMAGE_BYTES", default_value_t = 1024 * 1024)]
    pub max_image_bytes: usize,

    /// Namespaces to watch, comma-separated. Without it the operator watches all namespaces.
    #[arg(
        long = "namespace",
        env = "Y360_WATCH_NAMESPACE",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,

    /// Label selector that UserAvatars must match, such as `shard=a`, to split objects between
    /// several installations. Without it every UserAvatar is handled.
    #[arg(long, env = "Y360_LABEL_SELECTOR")]
    pub label_selector: Option<String>,

    /// Address of the admin HTTP server that serves /livez, /readyz and /metrics.
    #[arg(long, env = "Y360_ADMIN_ADDRESS", default_value = "0.0.0.0:8080")]
    pub admin_address: SocketAddr,

    /// Run the controllers only while this replica holds the leader Lease.
    #[arg(long, env = "Y360_LEADER_ELECTION")]
    pub leader_election: bool,

    /// Namespace of the leader Lease. Defaults to the pod's namespace (POD_NAMESPACE), else
    /// `default`.
    #[arg(long, env = "Y360_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// Name of the leader Lease.
    #[arg(
        long,
        env = "Y360_LEADER_ELECTION_LEASE_NAME",
        default_value = "y360-avatar-operator"
    )]
    pub leader_election_lease_name: String,

    /// Seconds the leader Lease stays valid without renewal.
    #[arg(long, env = "Y360_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,

    /// Seconds before the Lease expires at which the leader renews it.
    #[arg(long, env = "Y360_LEASE_GRACE_SECONDS", default_value_t = 5)]
    pub lease_grace_seconds: u64,

    /// Seconds to wait for in-flight reconciles after SIGTERM before abandoning them. An
    /// abandoned upload writes no status, so the next start checks that object again.
    #[arg(long, env = "Y360_SHUTDOWN_TIMEOUT_SECONDS", default_value_t = 20)]
    pub shutdown_timeout_seconds: u64,

    /// Maximum number of UserAvatars reconciled at once.
    #[arg(long, env = "Y360_CONCURRENCY", default_value_t = 8)]
    pub concurrency: u16,

    /// Allow `http://` image URLs. Without it only `https://` URLs are fetched.
    #[arg(long, env = "Y360_ALLOW_HTTP")]
    pub allow_http: bool,

    /// Network (CIDR) that image URLs may resolve to although it is internal, such as
    /// 10.0.0.0/8. Repeat the flag or separate entries with commas.
    #[arg(
        long = "allow-url-network",
        env = "Y360_ALLOW_URL_NETWORKS",
        value_delimiter = ','
    )]
    pub allowed_url_networks: Vec<IpNet>,

    /// Maximum number of redirects followed when fetching an image URL.
    #[arg(long, env = "Y360_MAX_REDIRECTS", default_value_t = 5)]
    pub max_redirects: usize,

    /// Connect timeout of image fetches and Directory API requests, in seconds.
    #[arg(long, env = "Y360_CONNECT_TIMEOUT_SECONDS", default_value_t = 10)]
    pub connect_timeout_seconds: u64,

    /// Maximum pause between two reads of an image response body, in seconds.
    #[arg(long, env = "Y360_READ_TIMEOUT_SECONDS", default_value_t = 30)]
    pub read_timeout_seconds: u64,

    /// Total time limit of one image fetch or Directory API request, in seconds.
    #[arg(long, env = "Y360_REQUEST_TIMEOUT_SECONDS", default_value_t = 60)]
    pub request_timeout_seconds: u64,

    /// Maximum Directory API uploads per second across all namespaces; 0 for no limit. The
    /// Directory API documents no rate limit, so the default sets none.
    #[arg(long, env = "Y360_UPLOAD_RATE_LIMIT", default_value_t = 0.0)]
    pub upload_rate_limit: f64,

    /// Uploads that may be sent at once before the rate limit applies.
    #[arg(long, env = "Y360_UPLOAD_BURST", default_value_t = 1)]
    pub upload_burst: u32,

    /// How often each DirectoryConnection's token Secret is read again, in seconds. Secrets
    /// are not watched, so a rotated token is noticed within this time.
    #[arg(long, env = "Y360_TOKEN_RECHECK_SECONDS", default_value_t = 30)]
    pub token_recheck_seconds: u64,

    /// Log format.
    #[arg(long, env = "Y360_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter in the tracing EnvFilter syntax, such as `info` or
    /// `info,y360_avatar_operator=debug`.
    #[arg(long, env = "Y360_LOG", default_value = "info")]
    pub log: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl RunArgs {
    /// Builds the controller options from the flags.
    pub fn run_options(&self) -> RunOptions {
        RunOptions {
            concurrency: self.concurrency,
            namespaces: self.namespaces.clone(),
            label_selector: self.label_selector.clone(),
        }
    }

    /// Builds the Lease settings from the flags and the pod's environment.
    pub fn lease_settings(&self) -> LeaseSettings {
        let pod_namespace = std::env::var("POD_NAMESPACE").ok();
        let namespace = self.leader_election_namespace.clone().or(pod_namespace);
        let identity = std::env::var("POD_NAME").unwrap_or_else(|_| default_identity());
        LeaseSettings {
            namespace: namespace.unwrap_or_else(|| "default".to_owned()),
            name: self.leader_election_lease_name.clone(),
            identity,
            duration_seconds: self.lease_duration_seconds,
            grace_seconds: self.lease_grace_seconds,
        }
    }

    /// Builds the reconciler settings from the flags.
    pub fn settings(&self) -> Settings {
        let connect = Duration::from_secs(self.connect_timeout_seconds);
        let total = Duration::from_secs(self.request_timeout_seconds);
        Settings {
            max_image_bytes: self.max_image_bytes,
            url_policy: UrlPolicy {
                allow_http: self.allow_http,
                allowed_networks: self.allowed_url_networks.clone(),
            },
            fetch_limits: FetchLimits {
                max_bytes: self.max_image_bytes,
                max_redirects: self.max_redirects,
                connect_timeout: connect,
                read_timeout: Duration::from_secs(self.read_timeout_seconds),
                total_timeout: total,
            },
            directory_timeouts: Timeouts { connect, total },
            api_error_requeue: crate::controller::API_ERROR_REQUEUE,
            token_recheck_interval: Duration::from_secs(self.token_recheck_seconds),
            upload_limiter: UploadLimiter::new(self.upload_rate_limit, self.upload_burst),
        }
    }
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}

//! Prometheus metrics. Labels take values from fixed sets (results, reasons, HTTP status
//! codes), never object names, so the number of series stays bounded.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::reflector::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::crd::UserAvatar;
use crate::status::READY;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadyLabels {
    ready: &'static str,
}

/// Operator metrics, shared by every scope.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_duration: Family<ResultLabels, Histogram>,
    uploads: Family<ResultLabels, Counter>,
    directory_requests: Family<StatusLabels, Counter>,
    bytes_fetched: Family<SourceLabels, Counter>,
    avatars: Family<ReadyLabels, Gauge>,
    avatar_stores: Mutex<Vec<Store<UserAvatar>>>,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("y360_avatar_operator");
        let reconciles = Family::default();
        registry.register(
            "reconciles",
            "UserAvatar reconciles by result",
            reconciles.clone(),
        );
        let reconcile_duration = Family::<ResultLabels, Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        let help = "Duration of UserAvatar reconciles in seconds, by result";
        registry.register(
            "reconcile_duration_seconds",
            help,
            reconcile_duration.clone(),
        );

        let uploads = Family::default();
        let help = "Upload attempts by result: uploaded, or the failure reason";
        registry.register("uploads", help, uploads.clone());
        let directory_requests = Family::default();
        let help = "Directory API requests by HTTP status code, or `error` without a response";
        registry.register("directory_requests", help, directory_requests.clone());
        let bytes_fetched = Family::default();
        let help = "Image bytes read from sources, by source kind";
        registry.register("source_bytes", help, bytes_fetched.clone());
        let avatars = Family::default();
        registry.register(
            "useravatars",
            "UserAvatars by Ready condition status",
            avatars.clone(),
        );

        Arc::new(Self {
            registry,
            reconciles,
            reconcile_duration,
            uploads,
            directory_requests,
            bytes_fetched,
            avatars,
            avatar_stores: Mutex::default(),
        })
    }

    /// Counts one reconcile and its duration. `result` is a fixed reason name.
    pub fn observe_reconcile(&self, result: &'static str, duration: Duration) {
        let labels = ResultLabels { result };
        self.reconciles.get_or_create(&labels).inc();
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(duration.as_secs_f64());
    }

    /// Counts one upload attempt. `result` is `Uploaded` or a failure reason name.
    pub fn observe_upload(&self, result: &'static str) {
        self.uploads.get_or_create(&ResultLabels { result }).inc();
    }

    /// Counts one Directory API request by its HTTP status, `None` when no response came.
    pub fn observe_directory_request(&self, status: Option<u16>) {
        let status = status.map_or_else(|| "error".to_owned(), |code| code.to_string());
        self.directory_requests
            .get_or_create(&StatusLabels { status })
            .inc();
    }

    /// Adds bytes read from a source: `config_map` or `url`.
    pub fn observe_bytes(&self, source: &'static str, bytes: usize) {
        self.bytes_fetched
            .get_or_create(&SourceLabels { source })
            .inc_by(bytes as u64);
    }

    /// Adds a UserAvatar cache whose objects are counted by Ready state at each scrape.
    pub fn watch_avatars(&self, store: Store<UserAvatar>) {
        self.avatar_stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(store);
    }

    /// Renders all metrics in the Prometheus text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        self.count_avatars();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    fn count_avatars(&self) {
        let mut counts = [0i64; 3];
        let stores = self.avatar_stores.lock().unwrap_or_else(|p| p.into_inner());
        for avatar in stores.iter().flat_map(|store| store.state()) {
            counts[ready_index(&avatar)] += 1;
        }
        for (index, ready) in ["true", "false", "unknown"].into_iter().enumerate() {
            self.avatars
                .get_or_create(&ReadyLabels { ready })
                .set(counts[index]);
        }
    }
}

fn ready_index(avatar: &UserAvatar) -> usize {
    let conditions = avatar
        .status
        .as_ref()
        .map(|status| status.conditions.as_slice());
    let ready = conditions
        .unwrap_or_default()
        .iter()
        .find(|c| c.type_ == READY);
    match ready.map(|condition| condition.status.as_str()) {
        Some("True") => 0,
        Some("False") => 1,
        _ => 2,
    }
}

//! Reconcilers and the state they share.

mod attempt;
pub mod avatar;
pub mod connection;
mod memory;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::crd::{DirectoryConnection, UserAvatar};
use crate::directory::{DirectoryClient, Timeouts};
use crate::metrics::Metrics;
use crate::rate_limit::UploadLimiter;
use crate::source::{FetchLimits, UrlFetcher, UrlPolicy};
use crate::usage::UsageIndex;

pub use memory::Memory;

/// Field manager of every status write.
pub const FIELD_MANAGER: &str = "y360-avatar-operator";

/// Operator settings that reconcilers read.
#[derive(Clone, Debug)]
pub struct Settings {
    pub max_image_bytes: usize,
    pub url_policy: UrlPolicy,
    pub fetch_limits: FetchLimits,
    pub directory_timeouts: Timeouts,
    /// Delay before retrying after a failed Kubernetes API call.
    pub api_error_requeue: Duration,
    /// Shared cap on the rate of Directory API uploads; `None` for no cap.
    pub upload_limiter: Option<UploadLimiter>,
    /// How often each DirectoryConnection's token Secret is read again. Secrets are not
    /// watched, so a new, fixed or rotated token is noticed within this time.
    pub token_recheck_interval: Duration,
}

/// Failure of a reconcile. Failures of the image, the source or the Directory API
/// are not errors here: they are written to status. These are failures to talk to the
/// Kubernetes API about the object itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("object has no namespace")]
    MissingNamespace,

    #[error("failed to write status")]
    PatchStatus(#[source] kube::Error),

    #[error("watch caches stopped before they were ready")]
    CachesStopped,
}

impl Error {
    /// Returns a fixed name for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingNamespace => "MissingNamespace",
            Self::PatchStatus(_) => "PatchStatus",
            Self::CachesStopped => "CachesStopped",
        }
    }
}

/// Watch caches of one scope.
pub struct Caches {
    pub avatars: Store<UserAvatar>,
    /// Index of the UserAvatars that use each ConfigMap and DirectoryConnection.
    pub usage: UsageIndex,
    pub connections: Store<DirectoryConnection>,
    pub config_maps: Store<PartialObjectMeta<ConfigMap>>,
}

/// State shared by all reconciles of one scope.
pub struct Context {
    pub client: Client,
    pub directory: DirectoryClient,
    pub fetcher: UrlFetcher,
    pub recorder: Recorder,
    pub caches: Caches,
    pub settings: Settings,
    pub memory: Memory,
    /// Sends UserAvatars to reconcile when something they use changed outside their watches.
    pub dependents: UnboundedSender<ObjectRef<UserAvatar>>,
    pub metrics: Arc<Metrics>,
    /// Last seen resourceVersion of each connection's token Secret, `None` while it is missing.
    pub token_versions: Mutex<HashMap<ObjectRef<DirectoryConnection>, Option<String>>>,
    caches_ready: tokio::sync::watch::Receiver<bool>,
}

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        caches: Caches,
        dependents: UnboundedSender<ObjectRef<UserAvatar>>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, reqwest::Error> {
        let directory = DirectoryClient::new(settings.directory_timeouts)?;
        let fetcher = UrlFetcher::new(settings.url_policy.clone(), settings.fetch_limits)?;
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let recorder = Recorder::new(client.clone(), reporter);
        let memory = Memory::default();
        let caches_ready = watch_caches(caches.connections.clone(), caches.config_maps.clone());
        Ok(Arc::new(Self {
            client,
            directory,
            fetcher,
            recorder,
            caches,
            settings,
            memory,
            dependents,
            metrics,
            token_versions: Mutex::default(),
            caches_ready,
        }))
    }

    /// Waits until the connection and ConfigMap caches hold a full list, so that a missing
    /// entry means the object does not exist.
    pub async fn wait_for_caches(&self) -> Result<(), Error> {
        let mut ready = self.caches_ready.clone();
        let result = ready.wait_for(|ready| *ready).await;
        result.map(|_| ()).map_err(|_| Error::CachesStopped)
    }
}

/// Returns a flag that turns true once both caches are ready. `Store::wait_until_ready` wakes
/// only one of several concurrent waiters, so one task waits on it and many reconciles wait
/// on the flag.
fn watch_caches(
    connections: Store<DirectoryConnection>,
    config_maps: Store<PartialObjectMeta<ConfigMap>>,
) -> tokio::sync::watch::Receiver<bool> {
    let (sender, receiver) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let connections_ready = connections.wait_until_ready().await.is_ok();
        let config_maps_ready = config_maps.wait_until_ready().await.is_ok();
        if connections_ready && config_maps_ready {
            let _ = sender.send(true);
        }
    });
    receiver
}

/// Writes `status` to the object's status subresource with server-side apply under the
/// operator's field manager.
async fn apply_status<K>(
    ctx: &Context,
    object: &K,
    status: &impl serde::Serialize,
) -> Result<(), Error>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let namespace = object
        .meta()
        .namespace
        .as_deref()
        .ok_or(Error::MissingNamespace)?;
    let api: kube::Api<K> = kube::Api::namespaced(ctx.client.clone(), namespace);
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let params = kube::api::PatchParams::apply(FIELD_MANAGER).force();
    let name = object.meta().name.as_deref().unwrap_or_default();
    api.patch_status(name, &params, &kube::api::Patch::Apply(&patch))
        .await
        .map_err(Error::PatchStatus)?;
    Ok(())
}

//! Wiring: watches, caches and the two controllers for each watched scope, run until shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::crd::{DirectoryConnection, UserAvatar};
use crate::metrics::Metrics;
use crate::reconcile::{self, Caches, Context, Error, Settings};
use crate::retry::jittered;
use crate::usage::UsageIndex;
use crate::watches::{self, WatchBackoff};

/// Default delay before retrying after a failed Kubernetes API call.
pub const API_ERROR_REQUEUE: Duration = Duration::from_secs(5);

/// Controller options that do not reach the reconcilers.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Maximum number of UserAvatars reconciled at once in each namespace scope.
    pub concurrency: u16,
    /// Namespaces to watch; all namespaces when empty.
    pub namespaces: Vec<String>,
    /// Label selector that UserAvatars must match, to shard them between installations.
    pub label_selector: Option<String>,
}

/// Receiver that turns true when the controllers should stop taking new work.
pub type Shutdown = watch::Receiver<bool>;

/// Returns a shutdown flag that turns true on SIGTERM or Ctrl-C.
pub fn shutdown_on_signal() -> Shutdown {
    let (sender, receiver) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        let _ = sender.send(true);
    });
    receiver
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut terminate) = signal(SignalKind::terminate()) else {
            let _ = ctrl_c.await;
            return;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// State the controllers share with the process around them.
#[derive(Clone)]
pub struct Hooks {
    pub metrics: Arc<Metrics>,
    /// Turns true when the controllers should stop taking new work.
    pub shutdown: Shutdown,
    /// Set to true once the watch caches of every scope are synced.
    pub ready: Arc<watch::Sender<bool>>,
}

impl Hooks {
    /// Returns hooks with fresh metrics that stop the controllers on SIGTERM or Ctrl-C.
    pub fn with_signal() -> Self {
        Self {
            metrics: Metrics::new(),
            shutdown: shutdown_on_signal(),
            ready: Arc::new(watch::channel(false).0),
        }
    }
}

/// Runs the controllers until SIGTERM or Ctrl-C; see [`run_with`].
pub async fn run(client: Client, settings: Settings, options: RunOptions) -> anyhow::Result<()> {
    run_with(client, settings, options, Hooks::with_signal()).await
}

/// Runs the controllers of every scope until `hooks.shutdown` turns true and in-flight
/// reconciles have finished.
pub async fn run_with(
    client: Client,
    settings: Settings,
    options: RunOptions,
    hooks: Hooks,
) -> anyhow::Result<()> {
    let scopes: Vec<Option<String>> = if options.namespaces.is_empty() {
        vec![None]
    } else {
        options.namespaces.iter().cloned().map(Some).collect()
    };
    let unsynced = Arc::new(AtomicUsize::new(scopes.len()));
    let mut runs = Vec::new();
    for namespace in scopes {
        let scope = Scope {
            client: client.clone(),
            namespace,
            options: options.clone(),
        };
        runs.push(scope.run(settings.clone(), hooks.clone(), unsynced.clone()));
    }
    tracing::info!(scopes = runs.len(), "controllers starting");
    for result in futures::future::join_all(runs).await {
        result?;
    }
    tracing::info!("controllers stopped");
    Ok(())
}

/// The controllers of one namespace, or of all namespaces.
struct Scope {
    client: Client,
    namespace: Option<String>,
    options: RunOptions,
}

impl Scope {
    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match &self.namespace {
            Some(namespace) => Api::namespaced(self.client.clone(), namespace),
            None => Api::all(self.client.clone()),
        }
    }

    async fn run(
        self,
        settings: Settings,
        hooks: Hooks,
        unsynced: Arc<AtomicUsize>,
    ) -> anyhow::Result<()> {
        let shutdown = hooks.shutdown.clone();
        let (connections, connection_writer) = reflector::store();
        let connection_events = watcher(
            self.api::<DirectoryConnection>(),
            watcher::Config::default(),
        )
        .backoff(WatchBackoff::default())
        .reflect(connection_writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());

        let (config_maps, config_map_writer) = reflector::store();
        let config_map_events = watcher(
            self.api::<PartialObjectMeta<ConfigMap>>(),
            watcher::Config::default(),
        )
        .backoff(WatchBackoff::default())
        .modify(|meta| meta.metadata.managed_fields = None)
        .reflect(config_map_writer)
        .touched_objects();

        let (avatars, avatar_writer) = reflector::store();
        let (dependents, dependent_triggers) = mpsc::unbounded();
        let usage = UsageIndex::default();
        let caches = Caches {
            avatars,
            usage: usage.clone(),
            connections,
            config_maps,
        };
        hooks.metrics.watch_avatars(caches.avatars.clone());
        let metrics = hooks.metrics.clone();
        let ctx = Context::new(self.client.clone(), settings, caches, dependents, metrics)?;
        report_ready(ctx.clone(), hooks.ready, unsynced);

        let avatar_events = self
            .avatar_events(ctx.recorder.clone(), usage)
            .reflect(avatar_writer)
            .applied_objects()
            .predicate_filter(watches::spec_or_reupload_request, Default::default());

        let triggers = AvatarTriggers {
            connection_events,
            config_map_events,
            dependent_triggers,
        };
        let avatars =
            self.avatar_controller(avatar_events, triggers, ctx.clone(), shutdown.clone());
        let connections = self.connection_controller(ctx, shutdown);
        tokio::join!(avatars, connections);
        Ok(())
    }

    /// Watches UserAvatars and keeps the usage index up to date from the same events.
    fn avatar_events(
        &self,
        recorder: kube::runtime::events::Recorder,
        usage: UsageIndex,
    ) -> impl Stream<Item = Result<watcher::Event<UserAvatar>, watcher::Error>> + Send + 'static
    {
        let mut config = watcher::Config::default().any_semantic();
        if let Some(selector) = &self.options.label_selector {
            config = config.labels(selector);
        }
        let namespace = self.namespace.as_deref();
        let events = watches::typed_avatar_events(self.client.clone(), namespace, config, recorder);
        events.inspect(move |event| {
            if let Ok(event) = event {
                usage.apply(event);
            }
        })
    }

    async fn avatar_controller<A, C, M>(
        &self,
        avatar_events: A,
        triggers: AvatarTriggers<C, M>,
        ctx: Arc<Context>,
        shutdown: Shutdown,
    ) where
        A: Stream<Item = Result<UserAvatar, watcher::Error>> + Send + 'static,
        C: Stream<Item = Result<DirectoryConnection, watcher::Error>> + Send + 'static,
        M: Stream<Item = Result<PartialObjectMeta<ConfigMap>, watcher::Error>> + Send + 'static,
    {
        let by_config_map = ctx.caches.usage.clone();
        let by_connection = ctx.caches.usage.clone();
        let config = controller::Config::default().concurrency(self.options.concurrency);
        Controller::for_stream(avatar_events, ctx.caches.avatars.clone())
            .with_config(config)
            .trigger_backoff(WatchBackoff::default())
            .watches_stream(triggers.config_map_events, move |meta| {
                watches::users_of_config_map(&by_config_map, &meta)
            })
            .watches_stream(triggers.connection_events, move |connection| {
                watches::users_of_connection(&by_connection, &connection)
            })
            .reconcile_on(triggers.dependent_triggers)
            .graceful_shutdown_on(wait_for(shutdown))
            .run(reconcile::avatar::reconcile, avatar_error_policy, ctx)
            .for_each(|result| async move { log_result("UserAvatar", result) })
            .await;
    }

    async fn connection_controller(&self, ctx: Arc<Context>, shutdown: Shutdown) {
        Controller::new(
            self.api::<DirectoryConnection>(),
            watcher::Config::default().any_semantic(),
        )
        .trigger_backoff(WatchBackoff::default())
        .graceful_shutdown_on(wait_for(shutdown))
        .run(
            reconcile::connection::reconcile,
            connection_error_policy,
            ctx,
        )
        .for_each(|result| async move { log_result("DirectoryConnection", result) })
        .await;
    }
}

/// Marks the process ready once the caches of this scope, and of all others, are synced.
fn report_ready(ctx: Arc<Context>, ready: Arc<watch::Sender<bool>>, unsynced: Arc<AtomicUsize>) {
    tokio::spawn(async move {
        if ctx.wait_for_caches().await.is_err() {
            return;
        }
        if unsynced.fetch_sub(1, Ordering::AcqRel) == 1 {
            tracing::info!("watch caches synced");
            let _ = ready.send(true);
        }
    });
}

/// Streams that make UserAvatars reconcile besides their own changes.
struct AvatarTriggers<C, M> {
    connection_events: C,
    config_map_events: M,
    dependent_triggers: mpsc::UnboundedReceiver<ObjectRef<UserAvatar>>,
}

async fn wait_for(mut shutdown: Shutdown) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn avatar_error_policy(_avatar: Arc<UserAvatar>, error: &Error, ctx: Arc<Context>) -> Action {
    let reason = error.reason();
    tracing::warn!(
        reason,
        error = error as &dyn std::error::Error,
        "UserAvatar reconcile failed"
    );
    Action::requeue(jittered(ctx.settings.api_error_requeue))
}

fn connection_error_policy(
    _connection: Arc<DirectoryConnection>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let reason = error.reason();
    let error = error as &dyn std::error::Error;
    tracing::warn!(reason, error, "DirectoryConnection reconcile failed");
    Action::requeue(jittered(ctx.settings.api_error_requeue))
}

fn log_result<K, E: std::error::Error + 'static>(
    kind: &str,
    result: Result<(ObjectRef<K>, Action), E>,
) where
    K: kube::Resource,
    K::DynamicType: std::fmt::Debug,
{
    match result {
        Ok((object, _)) => tracing::trace!(kind, object = %object, "reconciled"),
        Err(error) => {
            let error = &error as &dyn std::error::Error;
            tracing::debug!(kind, error, "controller reported an error");
        }
    }
}

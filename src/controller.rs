//! Wiring: watches, caches and the two controllers, run until a shutdown signal.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Api, Client, ResourceExt};

use crate::crd::{DirectoryConnection, UserAvatar};
use crate::reconcile::{self, Context, Error, Settings};
use crate::retry::jittered;

/// Controller options that do not reach the reconcilers.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Maximum number of UserAvatars reconciled at once.
    pub concurrency: u16,
    /// Namespace to watch; all namespaces when `None`.
    pub namespace: Option<String>,
}

fn scoped_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// Runs both controllers until SIGTERM or Ctrl-C.
pub async fn run(client: Client, settings: Settings, options: RunOptions) -> anyhow::Result<()> {
    let namespace = options.namespace.as_deref();
    let (connections, connection_writer) = reflector::store();
    let connection_events = watcher(
        scoped_api::<DirectoryConnection>(&client, namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(connection_writer)
    .applied_objects()
    .predicate_filter(predicates::generation, Default::default());

    let (config_maps, config_map_writer) = reflector::store();
    let config_map_events = watcher(
        scoped_api::<PartialObjectMeta<ConfigMap>>(&client, namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|meta| meta.metadata.managed_fields = None)
    .reflect(config_map_writer)
    .touched_objects();

    let ctx = Context::new(client.clone(), settings, connections, config_maps)?;
    let avatars = avatar_controller(
        client.clone(),
        namespace,
        options.concurrency,
        connection_events,
        config_map_events,
        ctx.clone(),
    );
    let connections = connection_controller(client, namespace, ctx);
    tracing::info!("controllers started");
    tokio::join!(avatars, connections);
    tracing::info!("controllers stopped");
    Ok(())
}

async fn avatar_controller(
    client: Client,
    namespace: Option<&str>,
    concurrency: u16,
    connection_events: impl Stream<Item = Result<DirectoryConnection, watcher::Error>> + Send + 'static,
    config_map_events: impl Stream<Item = Result<PartialObjectMeta<ConfigMap>, watcher::Error>>
    + Send
    + 'static,
    ctx: Arc<Context>,
) {
    let (avatars, avatar_writer) = reflector::store();
    let avatar_events = watcher(
        scoped_api::<UserAvatar>(&client, namespace),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .reflect(avatar_writer)
    .applied_objects()
    .predicate_filter(predicates::generation, Default::default());

    let by_config_map = avatars.clone();
    let by_connection = avatars.clone();
    Controller::for_stream(avatar_events, avatars)
        .with_config(controller::Config::default().concurrency(concurrency))
        .watches_stream(config_map_events, move |meta| {
            users_of_config_map(&by_config_map, &meta)
        })
        .watches_stream(connection_events, move |conn| {
            users_of_connection(&by_connection, &conn)
        })
        .shutdown_on_signal()
        .run(reconcile::avatar::reconcile, avatar_error_policy, ctx)
        .for_each(|result| async move { log_result("UserAvatar", result) })
        .await;
}

async fn connection_controller(client: Client, namespace: Option<&str>, ctx: Arc<Context>) {
    let api = scoped_api::<DirectoryConnection>(&client, namespace);
    Controller::new(api, watcher::Config::default().any_semantic())
        .shutdown_on_signal()
        .run(
            reconcile::connection::reconcile,
            connection_error_policy,
            ctx,
        )
        .for_each(|result| async move { log_result("DirectoryConnection", result) })
        .await;
}

fn users_of_config_map(
    avatars: &Store<UserAvatar>,
    meta: &PartialObjectMeta<ConfigMap>,
) -> Vec<ObjectRef<UserAvatar>> {
    let namespace = meta.namespace();
    let name = meta.name_any();
    let uses = |avatar: &UserAvatar| {
        avatar.namespace() == namespace
            && avatar
                .spec
                .source
                .config_map
                .as_ref()
                .is_some_and(|source| source.name == name)
    };
    avatars
        .state()
        .iter()
        .filter(|avatar| uses(avatar))
        .map(|avatar| ObjectRef::from_obj(avatar.as_ref()))
        .collect()
}

fn users_of_connection(
    avatars: &Store<UserAvatar>,
    connection: &DirectoryConnection,
) -> Vec<ObjectRef<UserAvatar>> {
    let namespace = connection.namespace();
    let name = connection.name_any();
    let uses = |avatar: &UserAvatar| {
        avatar.namespace() == namespace && avatar.spec.connection_ref.name == name
    };
    avatars
        .state()
        .iter()
        .filter(|avatar| uses(avatar))
        .map(|avatar| ObjectRef::from_obj(avatar.as_ref()))
        .collect()
}

fn avatar_error_policy(_avatar: Arc<UserAvatar>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(
        reason = error.reason(),
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
    tracing::warn!(
        reason = error.reason(),
        error = error as &dyn std::error::Error,
        "DirectoryConnection reconcile failed"
    );
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
        Err(error) => tracing::debug!(
            kind,
            error = &error as &dyn std::error::Error,
            "controller reported an error"
        ),
    }
}

/// Default delay before retrying after a failed Kubernetes API call.
pub const API_ERROR_REQUEUE: Duration = Duration::from_secs(5);

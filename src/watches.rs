//! Watch streams and the mappings from changed objects to the UserAvatars that use them.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::core::{ApiResource, DynamicObject, PartialObjectMeta};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::utils::Backoff;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use crate::crd::{DirectoryConnection, UserAvatar, UserAvatarSpec};
use crate::usage::UsageIndex;

/// Backoff of the watch streams after an error: 0.5 s doubling to 5 s, with jitter, reset
/// after a success. kube-runtime's default grows to 30 s and resets only after two quiet
/// minutes, which delays picking up changes by up to a minute after an API server restart.
#[derive(Clone, Debug)]
pub struct WatchBackoff {
    next: Duration,
}

const WATCH_BACKOFF_MIN: Duration = Duration::from_millis(500);
const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(5);

impl Default for WatchBackoff {
    fn default() -> Self {
        Self {
            next: WATCH_BACKOFF_MIN,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (self.next * 2).min(WATCH_BACKOFF_MAX);
        Some(crate::retry::jittered(delay))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = WATCH_BACKOFF_MIN;
    }
}

/// Annotation that requests one upload of the current image even when its hash is unchanged.
/// Any new value requests another; the handled value is echoed in `status.lastHandledReupload`.
pub const REUPLOAD_ANNOTATION: &str = "y360-avatar-operator.dev/reupload";

/// Watches UserAvatars as untyped objects and converts each one on its own, so that an object
/// that does not match the Rust type is reported and skipped instead of failing the whole
/// list and stopping the watch for every other object.
pub fn typed_avatar_events(
    client: Client,
    namespace: Option<&str>,
    config: watcher::Config,
    recorder: Recorder,
) -> impl Stream<Item = Result<watcher::Event<UserAvatar>, watcher::Error>> + Send + 'static {
    let resource = ApiResource::erase::<UserAvatar>(&());
    let api: Api<DynamicObject> = match namespace {
        Some(namespace) => Api::namespaced_with(client, namespace, &resource),
        None => Api::all_with(client, &resource),
    };
    watcher(api, config)
        .default_backoff()
        .filter_map(move |event| {
            let recorder = recorder.clone();
            async move {
                match event {
                    Ok(event) => convert_event(event, &recorder).await.map(Ok),
                    Err(error) => Some(Err(error)),
                }
            }
        })
}

async fn convert_event(
    event: watcher::Event<DynamicObject>,
    recorder: &Recorder,
) -> Option<watcher::Event<UserAvatar>> {
    use watcher::Event::*;
    Some(match event {
        Apply(object) => Apply(parse_avatar(object, recorder).await?),
        InitApply(object) => InitApply(parse_avatar(object, recorder).await?),
        Delete(object) => Delete(deleted_avatar(object)),
        Init => Init,
        InitDone => InitDone,
    })
}

async fn parse_avatar(mut object: DynamicObject, recorder: &Recorder) -> Option<UserAvatar> {
    // The operator never reads managedFields, and they are about half of each cached object.
    object.metadata.managed_fields = None;
    let reference = object_reference(&object);
    match object.try_parse::<UserAvatar>() {
        Ok(avatar) => Some(avatar),
        Err(error) => {
            let message = format!("UserAvatar does not match its schema and is skipped: {error}");
            let object = reference.name.as_deref().unwrap_or_default();
            let namespace = reference.namespace.as_deref().unwrap_or_default();
            tracing::warn!(object, namespace, %error, "skipped a malformed UserAvatar");
            publish_malformed(recorder, &reference, message).await;
            None
        }
    }
}

/// Converts a deleted object, falling back to its metadata alone so that the cache drops it
/// even when its last version did not match the schema.
fn deleted_avatar(object: DynamicObject) -> UserAvatar {
    let metadata = object.metadata.clone();
    object
        .try_parse::<UserAvatar>()
        .unwrap_or_else(|_| UserAvatar {
            metadata,
            spec: UserAvatarSpec::default(),
            status: None,
        })
}

fn object_reference(object: &DynamicObject) -> k8s_openapi::api::core::v1::ObjectReference {
    let mut reference = object.object_ref(&ApiResource::erase::<UserAvatar>(&()));
    reference.resource_version = None;
    reference
}

async fn publish_malformed(
    recorder: &Recorder,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    message: String,
) {
    let event = Event {
        type_: EventType::Warning,
        reason: "InvalidSpec".into(),
        note: Some(message),
        action: "Parse".into(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, reference).await {
        let error = &error as &dyn std::error::Error;
        tracing::warn!(error, "failed to publish Event");
    }
}

/// Hashes what should make a UserAvatar reconcile: its generation (the spec) and the value of
/// the re-upload annotation. Status writes change neither.
pub fn spec_or_reupload_request(avatar: &UserAvatar) -> Option<u64> {
    let mut hasher = DefaultHasher::new();
    avatar.metadata.generation.hash(&mut hasher);
    reupload_request(avatar).hash(&mut hasher);
    Some(hasher.finish())
}

/// Returns the value of the re-upload annotation, if set and not empty.
pub fn reupload_request(avatar: &UserAvatar) -> Option<&str> {
    let value = avatar.annotations().get(REUPLOAD_ANNOTATION)?;
    Some(value.as_str()).filter(|value| !value.is_empty())
}

/// Returns the UserAvatars that read the given ConfigMap.
pub fn users_of_config_map(
    usage: &UsageIndex,
    meta: &PartialObjectMeta<ConfigMap>,
) -> Vec<ObjectRef<UserAvatar>> {
    let namespace = meta.namespace().unwrap_or_default();
    usage.users_of_config_map(&namespace, &meta.name_any())
}

/// Returns the UserAvatars that upload through the given DirectoryConnection.
pub fn users_of_connection(
    usage: &UsageIndex,
    connection: &DirectoryConnection,
) -> Vec<ObjectRef<UserAvatar>> {
    let namespace = connection.namespace().unwrap_or_default();
    usage.users_of_connection(&namespace, &connection.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_backoff_doubles_to_cap_and_resets() {
        let mut backoff = WatchBackoff::default();
        let delays: Vec<Duration> = (0..6).map(|_| backoff.next().unwrap()).collect();
        assert!(delays[0] <= WATCH_BACKOFF_MIN, "{delays:?}");
        assert!(delays[5] <= WATCH_BACKOFF_MAX, "{delays:?}");
        assert!(delays[5] >= WATCH_BACKOFF_MAX.mul_f64(0.8), "{delays:?}");
        backoff.reset();
        assert!(backoff.next().unwrap() <= WATCH_BACKOFF_MIN);
    }
}

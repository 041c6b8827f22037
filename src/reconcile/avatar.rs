//! Reconcile of one UserAvatar: resolve the connection, read the source, validate the image,
//! upload it when its hash or target changed, and record the outcome in status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::{Context, Error, FIELD_MANAGER};
use crate::crd::{DirectoryConnection, UploadTarget, UserAvatar, UserAvatarStatus};
use crate::credentials::read_token;
use crate::directory::Endpoint;
use crate::image::{Image, InvalidImage};
use crate::reason::{Failure, Reason};
use crate::retry::{jittered, retry_delay};
use crate::source::{Fetched, SourceError, read_config_map_key};
use crate::status::{Outcome, Upload, next_status};

/// Source bytes, or the finding that the source did not change since the last upload.
enum SourceRead {
    Unchanged {
        version: Option<String>,
    },
    Bytes {
        bytes: Vec<u8>,
        version: Option<String>,
    },
}

/// Reconciles one UserAvatar and returns when to look at it again.
pub async fn reconcile(avatar: Arc<UserAvatar>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.wait_for_caches().await?;
    let namespace = avatar.namespace().ok_or(Error::MissingNamespace)?;
    let uid = avatar.uid().unwrap_or_default();

    let outcome = match evaluate(&avatar, &namespace, &uid, &ctx).await {
        Ok(outcome) => outcome,
        Err(failure) => Outcome::Failed(failure),
    };
    let current = avatar.status.clone().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = next_status(&current, avatar.metadata.generation, &outcome, &now);
    if status != current {
        patch_status(&avatar, &namespace, &status, &ctx).await?;
    }

    report(&avatar, &current, &outcome, &ctx).await;
    Ok(next_action(&avatar, &uid, &outcome, &ctx))
}

async fn evaluate(
    avatar: &UserAvatar,
    namespace: &str,
    uid: &str,
    ctx: &Context,
) -> Result<Outcome, Failure> {
    if avatar.spec.suspend {
        return Ok(Outcome::Suspended);
    }
    let connection = find_connection(avatar, namespace, ctx)?;
    let target = UploadTarget {
        connection: connection.name_any(),
        org_id: connection.spec.org_id,
        user_id: avatar.spec.user_id.clone(),
    };

    let (bytes, version) = match read_source(avatar, namespace, &target, ctx).await? {
        SourceRead::Unchanged { version } => {
            return Ok(Outcome::UpToDate {
                target,
                source_version: version,
            });
        }
        SourceRead::Bytes { bytes, version } => (bytes, version),
    };
    let image = Image::validate(bytes, ctx.settings.max_image_bytes).map_err(invalid_image)?;
    if let Some(outcome) = already_uploaded(avatar, uid, &image.hash, &target, &version, ctx) {
        return Ok(outcome);
    }
    upload(
        avatar,
        namespace,
        uid,
        &connection,
        target,
        image,
        version,
        ctx,
    )
    .await
}

fn find_connection(
    avatar: &UserAvatar,
    namespace: &str,
    ctx: &Context,
) -> Result<Arc<DirectoryConnection>, Failure> {
    let name = &avatar.spec.connection_ref.name;
    let key = ObjectRef::new(name).within(namespace);
    ctx.connections.get(&key).ok_or_else(|| {
        let message = format!("DirectoryConnection {name:?} not found in namespace {namespace:?}");
        Failure::new(Reason::ConnectionNotFound, message)
    })
}

/// Returns whether the last recorded upload used the same target and left no error, so that
/// an unchanged source version means an unchanged image.
fn is_settled(status: Option<&UserAvatarStatus>, target: &UploadTarget) -> bool {
    status.is_some_and(|status| {
        status.content_hash.is_some()
            && status.uploaded_to.as_ref() == Some(target)
            && status.last_error.is_empty()
    })
}

async fn read_source(
    avatar: &UserAvatar,
    namespace: &str,
    target: &UploadTarget,
    ctx: &Context,
) -> Result<SourceRead, Failure> {
    let status = avatar.status.as_ref();
    let settled_version = status
        .filter(|_| is_settled(status, target))
        .and_then(|status| status.source_version.clone());

    if let Some(url) = &avatar.spec.source.url {
        let fetched = ctx.fetcher.fetch(url, settled_version.as_deref()).await;
        return match fetched.map_err(|error| error.to_failure())? {
            Fetched::NotModified => Ok(SourceRead::Unchanged {
                version: settled_version,
            }),
            Fetched::Body { bytes, validator } => Ok(SourceRead::Bytes {
                bytes,
                version: validator,
            }),
        };
    }
    let Some(source) = &avatar.spec.source.config_map else {
        return Err(Failure::new(
            Reason::InvalidSpec,
            "source must set exactly one of configMap and url",
        ));
    };

    let key = ObjectRef::new(&source.name).within(namespace);
    let Some(meta) = ctx.config_maps.get(&key) else {
        let missing = SourceError::ConfigMapNotFound {
            name: source.name.clone(),
        };
        return Err(missing.to_failure());
    };
    if meta.metadata.resource_version.is_some() && meta.metadata.resource_version == settled_version
    {
        return Ok(SourceRead::Unchanged {
            version: settled_version,
        });
    }

    let api = Api::namespaced(ctx.client.clone(), namespace);
    let read = read_config_map_key(&api, &source.name, &source.key).await;
    let read = read.map_err(|error| error.to_failure())?;
    Ok(SourceRead::Bytes {
        bytes: read.bytes,
        version: read.resource_version,
    })
}

fn invalid_image(error: InvalidImage) -> Failure {
    let reason = match error {
        InvalidImage::Empty => Reason::EmptyImage,
        InvalidImage::UnsupportedFormat { .. } => Reason::UnsupportedImageFormat,
        InvalidImage::Truncated { .. } => Reason::TruncatedImage,
        InvalidImage::TooLarge { .. } => Reason::SourceTooLarge,
    };
    Failure::new(reason, error.to_string())
}

/// Returns the outcome when `hash` already went to `target`, as recorded in status or, when
/// the object is older than the last status write, in this process's memory.
fn already_uploaded(
    avatar: &UserAvatar,
    uid: &str,
    hash: &str,
    target: &UploadTarget,
    version: &Option<String>,
    ctx: &Context,
) -> Option<Outcome> {
    let status = avatar.status.as_ref();
    let recorded = status.is_some_and(|status| {
        status.content_hash.as_deref() == Some(hash) && status.uploaded_to.as_ref() == Some(target)
    });
    if recorded {
        let target = target.clone();
        let source_version = version.clone();
        return Some(Outcome::UpToDate {
            target,
            source_version,
        });
    }
    let mut earlier = ctx.memory.uploaded(uid, hash, target)?;
    earlier.source_version = version.clone();
    Some(Outcome::UploadedEarlier(earlier))
}

#[allow(clippy::too_many_arguments)]
async fn upload(
    avatar: &UserAvatar,
    namespace: &str,
    uid: &str,
    connection: &DirectoryConnection,
    target: UploadTarget,
    image: Image,
    source_version: Option<String>,
    ctx: &Context,
) -> Result<Outcome, Failure> {
    let credentials = read_token(&ctx.client, namespace, &connection.spec.token_secret_ref).await?;
    let fingerprint = upload_fingerprint(avatar, connection, &image, &credentials.secret_version);
    if let Some(failure) = ctx
        .memory
        .blocked_failure(uid, &fingerprint, Instant::now())
    {
        tracing::debug!(reason = %failure.reason, "upload skipped: the same request failed before");
        return Err(failure);
    }
    ctx.memory.begin_attempt(uid, fingerprint);

    let endpoint = Endpoint {
        api_url: connection.spec.api_url.clone(),
        layout: connection.spec.path_layout,
        org_id: connection.spec.org_id,
    };
    let result = ctx
        .directory
        .upload_avatar(&endpoint, &target.user_id, &credentials.token, &image)
        .await;
    match result {
        Ok(uploaded) => {
            let upload = Upload {
                url: uploaded.url,
                content_type: image.content_type().to_owned(),
                content_hash: image.hash,
                target,
                source_version,
                time: Time(k8s_openapi::jiff::Timestamp::now()),
            };
            ctx.memory.record_upload(uid, &upload);
            Ok(Outcome::Uploaded(upload))
        }
        Err(error) => {
            tracing::debug!(
                error = &error as &dyn std::error::Error,
                "Directory API request failed"
            );
            Err(error.to_failure())
        }
    }
}

/// Identifies the inputs of an upload. A failed upload is sent again early only when one of
/// them changes: the image, the UserAvatar spec, the connection spec or the token Secret.
fn upload_fingerprint(
    avatar: &UserAvatar,
    connection: &DirectoryConnection,
    image: &Image,
    secret_version: &str,
) -> String {
    format!(
        "{}|{:?}|{}|{:?}|{}",
        image.hash,
        avatar.metadata.generation,
        connection.uid().unwrap_or_default(),
        connection.metadata.generation,
        secret_version,
    )
}

async fn patch_status(
    avatar: &UserAvatar,
    namespace: &str,
    status: &UserAvatarStatus,
    ctx: &Context,
) -> Result<(), Error> {
    let api: Api<UserAvatar> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = json!({
        "apiVersion": UserAvatar::api_version(&()),
        "kind": UserAvatar::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(&avatar.name_any(), &params, &Patch::Apply(&patch))
        .await
        .map_err(Error::PatchStatus)?;
    Ok(())
}

/// Logs the outcome and publishes an Event for each upload and each new failure.
async fn report(avatar: &UserAvatar, current: &UserAvatarStatus, outcome: &Outcome, ctx: &Context) {
    let event = match outcome {
        Outcome::Uploaded(upload) => {
            tracing::info!(hash = %upload.content_hash, user = %upload.target.user_id, org = upload.target.org_id, "uploaded avatar");
            let note = format!(
                "uploaded {} to user {} in organization {}",
                upload.content_hash, upload.target.user_id, upload.target.org_id
            );
            Event {
                type_: EventType::Normal,
                reason: Reason::Uploaded.as_str().into(),
                note: Some(note),
                action: "Upload".into(),
                secondary: None,
            }
        }
        Outcome::Failed(failure) if failure.message != current.last_error => {
            tracing::warn!(reason = %failure.reason, message = %failure.message, "reconcile failed");
            let reason = failure.reason.as_str().into();
            Event {
                type_: EventType::Warning,
                reason,
                note: Some(failure.message.clone()),
                action: "Reconcile".into(),
                secondary: None,
            }
        }
        Outcome::Failed(failure) => {
            tracing::debug!(reason = %failure.reason, "reconcile failed again with the same error");
            return;
        }
        Outcome::Suspended | Outcome::UpToDate { .. } | Outcome::UploadedEarlier(_) => return,
    };
    let reference = avatar.object_ref(&());
    if let Err(error) = ctx.recorder.publish(&event, &reference).await {
        tracing::warn!(
            error = &error as &dyn std::error::Error,
            "failed to publish Event"
        );
    }
}

fn next_action(avatar: &UserAvatar, uid: &str, outcome: &Outcome, ctx: &Context) -> Action {
    let Outcome::Failed(failure) = outcome else {
        ctx.memory.record_success(uid);
        return Action::requeue(jittered(interval(avatar)));
    };
    let interval = interval(avatar);
    let delay_for = |attempt| retry_delay(failure, attempt, interval);
    Action::requeue(
        ctx.memory
            .record_failure(uid, failure, Instant::now(), delay_for),
    )
}

/// Returns `spec.interval`, or one hour when it cannot be parsed.
pub fn interval(avatar: &UserAvatar) -> Duration {
    let parsed = avatar.spec.interval.parse::<kube::core::Duration>();
    parsed
        .map(Duration::from)
        .unwrap_or(Duration::from_secs(3600))
}

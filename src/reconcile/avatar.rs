//! Reconcile of one UserAvatar: resolve the connection, read the source, validate the image,
//! upload it when its hash or target changed, and record the outcome in status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};

use super::attempt::Attempt;
use super::{Context, Error, apply_status};
use crate::crd::{UserAvatar, UserAvatarStatus};
use crate::reason::Reason;
use crate::retry::{jittered, retry_delay};
use crate::status::{Outcome, next_status};

/// Reconciles one UserAvatar and returns when to look at it again.
pub async fn reconcile(avatar: Arc<UserAvatar>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.wait_for_caches().await?;
    let started = Instant::now();
    let result = reconcile_inner(&avatar, &ctx).await;
    let result_name = match &result {
        Ok((outcome, _)) => outcome.result_name(),
        Err(_) => Reason::KubernetesApiError.as_str(),
    };
    ctx.metrics
        .observe_reconcile(result_name, started.elapsed());
    result.map(|(_, action)| action)
}

async fn reconcile_inner(avatar: &UserAvatar, ctx: &Context) -> Result<(Outcome, Action), Error> {
    let namespace = avatar.namespace().ok_or(Error::MissingNamespace)?;
    let uid = avatar.uid().unwrap_or_default();

    let attempt = Attempt {
        avatar,
        namespace: &namespace,
        uid: &uid,
        ctx,
    };
    let outcome = match attempt.evaluate().await {
        Ok(outcome) => outcome,
        Err(failure) => Outcome::Failed(failure),
    };
    let current = avatar.status.clone().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = next_status(&current, avatar.metadata.generation, &outcome, &now);
    if status != current {
        apply_status(ctx, avatar, &status).await?;
    }

    report(avatar, &current, &outcome, ctx).await;
    let action = next_action(avatar, &uid, &outcome, ctx);
    Ok((outcome, action))
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

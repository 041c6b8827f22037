//! Pure construction of UserAvatar status from the outcome of one reconcile. Fields change only
//! when something happened, so a no-op reconcile produces an identical status and no write.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{UploadTarget, UserAvatarStatus};
use crate::reason::{Failure, Reason, Recovery};

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// Result of one reconcile.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// `spec.suspend` is true.
    Suspended,
    /// The uploaded image already matches the source. `source_version` is the version the
    /// source was read at, when it was read.
    UpToDate {
        target: UploadTarget,
        source_version: Option<String>,
    },
    /// The image was uploaded now.
    Uploaded(Upload),
    /// The image was uploaded by an earlier reconcile whose status write the watch has not
    /// delivered yet. The status is rebuilt from that upload.
    UploadedEarlier(Upload),
    /// The attempt failed.
    Failed(Failure),
}

impl Outcome {
    /// Returns a fixed name for logs and metrics.
    pub fn result_name(&self) -> &'static str {
        match self {
            Self::Suspended => Reason::Suspended.as_str(),
            Self::UpToDate { .. } | Self::UploadedEarlier(_) => Reason::UpToDate.as_str(),
            Self::Uploaded(_) => Reason::Uploaded.as_str(),
            Self::Failed(failure) => failure.reason.as_str(),
        }
    }
}

/// A successful upload.
#[derive(Clone, Debug, PartialEq)]
pub struct Upload {
    pub url: String,
    pub content_hash: String,
    pub content_type: String,
    pub target: UploadTarget,
    pub source_version: Option<String>,
    /// Value of the re-upload annotation that this upload handled.
    pub reupload_request: Option<String>,
    pub time: Time,
}

/// Builds the next status from the current one.
pub fn next_status(
    current: &UserAvatarStatus,
    generation: Option<i64>,
    outcome: &Outcome,
    now: &Time,
) -> UserAvatarStatus {
    // A restored upload keeps the times it was first written with, so the write is identical.
    let now = match outcome {
        Outcome::UploadedEarlier(upload) => &upload.time,
        _ => now,
    };
    let mut status = current.clone();
    status.observed_generation = generation;
    match outcome {
        Outcome::Suspended => mark_suspended(&mut status),
        Outcome::UpToDate {
            target,
            source_version,
        } => mark_up_to_date(&mut status, target, source_version.as_ref()),
        Outcome::Uploaded(upload) | Outcome::UploadedEarlier(upload) => {
            record_upload(&mut status, upload)
        }
        Outcome::Failed(failure) => record_failure(&mut status, failure),
    }
    stamp_conditions(&mut status.conditions, generation, now);
    status
}

fn mark_suspended(status: &mut UserAvatarStatus) {
    let message = "spec.suspend is true, so nothing is uploaded until it is set to false";
    set_condition(
        &mut status.conditions,
        READY,
        false,
        Reason::Suspended,
        message,
    );
    remove_condition(&mut status.conditions, RECONCILING);
    remove_condition(&mut status.conditions, STALLED);
}

fn mark_up_to_date(status: &mut UserAvatarStatus, target: &UploadTarget, version: Option<&String>) {
    if let Some(version) = version {
        status.source_version = Some(version.clone());
    }
    status.last_error.clear();
    let message = ready_message(status.short_hash.as_deref().unwrap_or("?"), target);
    mark_ready(&mut status.conditions, &message);
}

fn record_upload(status: &mut UserAvatarStatus, upload: &Upload) {
    status.url = Some(upload.url.clone());
    status.short_hash = Some(short_hash(&upload.content_hash));
    status.content_hash = Some(upload.content_hash.clone());
    status.content_type = Some(upload.content_type.clone());
    status.uploaded_to = Some(upload.target.clone());
    status.last_upload_time = Some(upload.time.clone());
    status.source_version = upload.source_version.clone();
    if upload.reupload_request.is_some() {
        status.last_handled_reupload = upload.reupload_request.clone();
    }
    status.last_error.clear();

    let message = ready_message(&short_hash(&upload.content_hash), &upload.target);
    mark_ready(&mut status.conditions, &message);
}

fn record_failure(status: &mut UserAvatarStatus, failure: &Failure) {
    status.last_error = failure.message.clone();
    let conditions = &mut status.conditions;
    set_condition(conditions, READY, false, failure.reason, &failure.message);
    match failure.reason.recovery() {
        Recovery::Retry => {
            set_condition(
                conditions,
                RECONCILING,
                true,
                failure.reason,
                "retrying with backoff",
            );
            remove_condition(conditions, STALLED);
        }
        Recovery::AwaitChange => {
            let message =
                "waiting for a change to the spec, the source, the connection or the token";
            set_condition(conditions, STALLED, true, failure.reason, message);
            remove_condition(conditions, RECONCILING);
        }
    }
}

fn mark_ready(conditions: &mut Vec<Condition>, message: &str) {
    set_condition(conditions, READY, true, Reason::UpToDate, message);
    remove_condition(conditions, RECONCILING);
    remove_condition(conditions, STALLED);
}

fn ready_message(short_hash: &str, target: &UploadTarget) -> String {
    format!(
        "image {short_hash} is the portrait of user {} in organization {}",
        target.user_id, target.org_id
    )
}

/// Returns the first 12 hex digits of a `sha256:<hex>` hash.
pub fn short_hash(content_hash: &str) -> String {
    let hex = content_hash.strip_prefix("sha256:").unwrap_or(content_hash);
    hex.chars().take(12).collect()
}

/// Sets a condition's status, reason and message. The transition time is filled in by
/// `stamp_conditions` and kept while the status stays the same.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: Reason,
    message: &str,
) {
    let status = if status { "True" } else { "False" }.to_owned();
    let existing = conditions
        .iter_mut()
        .find(|condition| condition.type_ == type_);
    let Some(condition) = existing else {
        conditions.push(Condition {
            type_: type_.to_owned(),
            status,
            reason: reason.as_str().to_owned(),
            message: message.to_owned(),
            last_transition_time: Time(Default::default()),
            observed_generation: None,
        });
        return;
    };
    if condition.status != status {
        condition.last_transition_time = Time(Default::default());
    }
    condition.status = status;
    condition.reason = reason.as_str().to_owned();
    condition.message = message.to_owned();
}

fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|condition| condition.type_ != type_);
}

/// Gives conditions that changed status the current time, and all of them the generation.
pub fn stamp_conditions(conditions: &mut [Condition], generation: Option<i64>, now: &Time) {
    let unset = Time(Default::default());
    for condition in conditions {
        if condition.last_transition_time == unset {
            condition.last_transition_time = now.clone();
        }
        condition.observed_generation = generation;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> UploadTarget {
        UploadTarget {
            connection: "default".into(),
            org_id: 42,
            user_id: "1130000000000001".into(),
        }
    }

    fn upload() -> Outcome {
        Outcome::Uploaded(Upload {
            url: "https://avatars.example.test/a".into(),
            content_hash: "sha256:0123456789abcdef0123".into(),
            content_type: "image/png".into(),
            target: target(),
            source_version: Some("17".into()),
            reupload_request: None,
            time: time(100),
        })
    }

    fn time(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    fn ready(status: &UserAvatarStatus) -> &Condition {
        status.conditions.iter().find(|c| c.type_ == READY).unwrap()
    }

    #[test]
    fn upload_fills_status() {
        let status = next_status(&Default::default(), Some(3), &upload(), &time(100));
        assert_eq!(
            status.url.as_deref(),
            Some("https://avatars.example.test/a")
        );
        assert_eq!(status.short_hash.as_deref(), Some("0123456789ab"));
        assert_eq!(status.uploaded_to, Some(target()));
        assert_eq!(status.last_upload_time, Some(time(100)));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(ready(&status).status, "True");
        assert_eq!(ready(&status).reason, "UpToDate");
    }

    #[test]
    fn earlier_upload_restores_stale_status() {
        let fresh = next_status(&Default::default(), Some(3), &upload(), &time(100));
        let Outcome::Uploaded(record) = upload() else {
            unreachable!()
        };
        let outcome = Outcome::UploadedEarlier(record);
        let restored = next_status(&Default::default(), Some(3), &outcome, &time(400));
        assert_eq!(restored.url, fresh.url);
        assert_eq!(restored.last_upload_time, fresh.last_upload_time);
        assert_eq!(restored.conditions, fresh.conditions);
    }

    #[test]
    fn up_to_date_after_upload_changes_nothing() {
        let uploaded = next_status(&Default::default(), Some(3), &upload(), &time(100));
        let outcome = Outcome::UpToDate {
            target: target(),
            source_version: Some("17".into()),
        };
        let again = next_status(&uploaded, Some(3), &outcome, &time(500));
        assert_eq!(again, uploaded);
    }

    #[test]
    fn repeated_failure_changes_nothing() {
        let failure = Outcome::Failed(Failure::new(Reason::Unauthorized, "rejected"));
        let first = next_status(&Default::default(), Some(1), &failure, &time(100));
        let second = next_status(&first, Some(1), &failure, &time(900));
        assert_eq!(second, first);
    }

    #[test]
    fn failure_keeps_last_upload_and_sets_stalled() {
        let uploaded = next_status(&Default::default(), Some(1), &upload(), &time(100));
        let failure = Outcome::Failed(Failure::new(Reason::Unauthorized, "rejected"));
        let failed = next_status(&uploaded, Some(1), &failure, &time(200));
        assert_eq!(failed.url, uploaded.url);
        assert_eq!(failed.last_error, "rejected");
        assert_eq!(ready(&failed).status, "False");
        assert_eq!(ready(&failed).last_transition_time, time(200));
        let stalled = failed.conditions.iter().find(|c| c.type_ == STALLED);
        assert_eq!(stalled.map(|c| c.status.as_str()), Some("True"));
    }

    #[test]
    fn transient_failure_sets_reconciling() {
        let failure = Failure::new(
            Reason::DirectoryUnavailable,
            "Directory API failed (HTTP 500)",
        );
        let status = next_status(
            &Default::default(),
            Some(1),
            &Outcome::Failed(failure),
            &time(1),
        );
        let types: Vec<&str> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY, RECONCILING]);
    }

    #[test]
    fn recovery_clears_error_and_extra_conditions() {
        let failure = Outcome::Failed(Failure::new(Reason::SourceNotFound, "missing"));
        let failed = next_status(&Default::default(), Some(1), &failure, &time(1));
        let recovered = next_status(&failed, Some(1), &upload(), &time(2));
        assert_eq!(recovered.last_error, "");
        assert_eq!(recovered.conditions.len(), 1);
        assert_eq!(ready(&recovered).last_transition_time, time(2));
    }
}

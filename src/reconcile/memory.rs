//! What the operator remembers about each UserAvatar between reconciles, in memory only.
//! Status is the durable record. This memory closes the gap until the watch delivers the status
//! just written, and contains retry timing that must not be written to status.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::crd::UploadTarget;
use crate::reason::Failure;
use crate::status::Upload;

/// Per-object memory, keyed by the object's uid.
// NOTE: entries of deleted objects stay until the process restarts, a few hundred bytes each.
#[derive(Default)]
pub struct Memory {
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Clone, Default)]
struct Entry {
    last_upload: Option<Upload>,
    failures: u32,
    blocked: Option<Blocked>,
    /// Fingerprint of an upload sent in the reconcile under way.
    attempt: Option<String>,
}

/// An upload that failed and must not be sent again before `until` unless its inputs change.
#[derive(Clone)]
struct Blocked {
    fingerprint: String,
    until: Instant,
    failure: Failure,
}

impl Memory {
    fn with<T>(&self, uid: &str, f: impl FnOnce(&mut Entry) -> T) -> T {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(entries.entry(uid.to_owned()).or_default())
    }

    /// Returns the last upload of this process if it sent `hash` to `target`.
    pub fn uploaded(&self, uid: &str, hash: &str, target: &UploadTarget) -> Option<Upload> {
        self.with(uid, |entry| {
            let upload = entry.last_upload.as_ref()?;
            let same = upload.content_hash == hash && upload.target == *target;
            same.then(|| upload.clone())
        })
    }

    /// Records a successful upload.
    pub fn record_upload(&self, uid: &str, upload: &Upload) {
        self.with(uid, |entry| entry.last_upload = Some(upload.clone()));
    }

    /// Resets the failure count after a reconcile that found nothing wrong.
    pub fn record_success(&self, uid: &str) {
        self.with(uid, |entry| {
            entry.failures = 0;
            entry.blocked = None;
            entry.attempt = None;
        });
    }

    /// Notes that an upload with `fingerprint` is about to be sent.
    pub fn begin_attempt(&self, uid: &str, fingerprint: String) {
        self.with(uid, |entry| entry.attempt = Some(fingerprint));
    }

    /// Returns the failure of an earlier upload with the same inputs while it is blocked.
    pub fn blocked_failure(&self, uid: &str, fingerprint: &str, now: Instant) -> Option<Failure> {
        self.with(uid, |entry| {
            let blocked = entry.blocked.as_ref()?;
            let applies = blocked.fingerprint == fingerprint && now < blocked.until;
            applies.then(|| blocked.failure.clone())
        })
    }

    /// Records a failed reconcile and returns how long to wait before the next one.
    /// `delay_for` maps the number of failures in a row to a delay. An upload attempted in
    /// this reconcile is blocked for that long; a reconcile that skipped a blocked upload
    /// waits out the block without counting another failure.
    pub fn record_failure(
        &self,
        uid: &str,
        failure: &Failure,
        now: Instant,
        delay_for: impl FnOnce(u32) -> Duration,
    ) -> Duration {
        self.with(uid, |entry| {
            let attempt = entry.attempt.take();
            let waiting = entry.blocked.as_ref().filter(|blocked| {
                attempt.is_none() && now < blocked.until && blocked.failure == *failure
            });
            if let Some(blocked) = waiting {
                return blocked.until - now;
            }
            entry.failures = entry.failures.saturating_add(1);
            let delay = delay_for(entry.failures);
            if let Some(fingerprint) = attempt {
                let failure = failure.clone();
                entry.blocked = Some(Blocked {
                    fingerprint,
                    until: now + delay,
                    failure,
                });
            }
            delay
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reason::Reason;

    fn failure() -> Failure {
        Failure::new(Reason::Unauthorized, "rejected")
    }

    #[test]
    fn failed_attempt_blocks_same_inputs() {
        let memory = Memory::default();
        let now = Instant::now();
        memory.begin_attempt("u", "fp".into());
        let delay = memory.record_failure("u", &failure(), now, |_| Duration::from_secs(60));
        assert_eq!(delay, Duration::from_secs(60));
        assert_eq!(memory.blocked_failure("u", "fp", now), Some(failure()));
        assert_eq!(memory.blocked_failure("u", "other", now), None);
    }

    #[test]
    fn block_expires() {
        let memory = Memory::default();
        let now = Instant::now();
        memory.begin_attempt("u", "fp".into());
        memory.record_failure("u", &failure(), now, |_| Duration::from_secs(60));
        let later = now + Duration::from_secs(61);
        assert_eq!(memory.blocked_failure("u", "fp", later), None);
    }

    #[test]
    fn skipped_upload_waits_out_block_without_counting() {
        let memory = Memory::default();
        let now = Instant::now();
        memory.begin_attempt("u", "fp".into());
        memory.record_failure("u", &failure(), now, |n| {
            Duration::from_secs(60 * u64::from(n))
        });
        let later = now + Duration::from_secs(10);
        let delay = memory.record_failure("u", &failure(), later, |n| {
            Duration::from_secs(60 * u64::from(n))
        });
        assert_eq!(delay, Duration::from_secs(50));
    }

    #[test]
    fn failures_in_a_row_are_counted() {
        let memory = Memory::default();
        let now = Instant::now();
        let mut counts = Vec::new();
        for _ in 0..3 {
            memory.begin_attempt("u", "fp".into());
            memory.record_failure("u", &failure(), now, |n| {
                counts.push(n);
                Duration::ZERO
            });
        }
        assert_eq!(counts, [1, 2, 3]);
    }
}

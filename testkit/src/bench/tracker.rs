//! A watch on the UserAvatars of one namespace that records when each object became Ready
//! with a given content hash, as seen by a client other than the operator.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures_util::StreamExt;
use kube::api::DynamicObject;
use kube::runtime::watcher;
use kube::runtime::{WatchStreamExt, watcher::Event};
use kube::{Api, Client, ResourceExt};
use tokio::task::JoinHandle;

use super::objects::avatar_resource;

/// Ready state and content hash of one UserAvatar, as the watch last saw them.
#[derive(Clone, Debug)]
struct AvatarView {
    ready: bool,
    content_hash: Option<String>,
    /// When `ready` or `content_hash` last changed, as seen by this watch.
    changed_at: Instant,
}

#[derive(Default)]
struct TrackerState {
    synced: bool,
    avatars: HashMap<String, AvatarView>,
    /// Last watch error; the watch retries with backoff.
    error: Option<String>,
}

/// Running watch. Dropping it stops the watch.
pub struct Tracker {
    state: Arc<Mutex<TrackerState>>,
    task: JoinHandle<()>,
}

impl Tracker {
    /// Starts watching the UserAvatars of `namespace` and waits until the initial list is in.
    pub async fn start(client: Client, namespace: &str) -> Result<Self> {
        let api: Api<DynamicObject> = Api::namespaced_with(client, namespace, &avatar_resource());
        let state = Arc::new(Mutex::new(TrackerState::default()));
        let task = tokio::spawn(watch(api, state.clone()));
        let tracker = Self { state, task };

        let deadline = Instant::now() + Duration::from_secs(120);
        while !tracker.lock().synced {
            if Instant::now() >= deadline {
                bail!("the UserAvatar watch did not finish its initial list within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(tracker)
    }

    fn lock(&self) -> MutexGuard<'_, TrackerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns when the object became Ready with `hash`, or `None` if it is not in that state.
    pub fn ready_since(&self, name: &str, hash: &str) -> Option<Instant> {
        let state = self.lock();
        let view = state.avatars.get(name)?;
        let matches = view.ready && view.content_hash.as_deref() == Some(hash);
        matches.then_some(view.changed_at)
    }

    /// Polls every 100 ms until every `(name, hash)` pair is Ready with that hash, and returns
    /// the moment the last of them got there. Fails after `timeout` with a count of the
    /// objects still missing.
    pub async fn wait_all_ready(
        &self,
        expected: &[(String, String)],
        timeout: Duration,
    ) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let (missing, last) = self.progress(expected);
            if missing == 0 {
                return Ok(last.unwrap_or_else(Instant::now));
            }
            if Instant::now() >= deadline {
                let total = expected.len();
                let error = self.lock().error.clone();
                let error = error.map(|e| format!("; last watch error: {e}"));
                bail!(
                    "timed out after {timeout:?}: {missing} of {total} UserAvatars are not Ready \
                     with the expected contentHash{}",
                    error.unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Counts the pairs that are not Ready with their hash yet, and returns the latest moment
    /// at which one of the others got there.
    fn progress(&self, expected: &[(String, String)]) -> (usize, Option<Instant>) {
        let state = self.lock();
        let mut missing = 0;
        let mut last = None;
        for (name, hash) in expected {
            let view = state.avatars.get(name);
            let done = view.filter(|v| v.ready && v.content_hash.as_deref() == Some(hash));
            match done {
                Some(view) => last = last.max(Some(view.changed_at)),
                None => missing += 1,
            }
        }
        (missing, last)
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn watch(api: Api<DynamicObject>, state: Arc<Mutex<TrackerState>>) {
    let config = watcher::Config::default();
    let mut events = watcher(api, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            Ok(Event::Apply(object) | Event::InitApply(object)) => {
                update(&mut state, &object);
            }
            Ok(Event::Delete(object)) => {
                state.avatars.remove(&object.name_any());
            }
            Ok(Event::Init) => {}
            Ok(Event::InitDone) => state.synced = true,
            Err(error) => {
                tracing::warn!(%error, "UserAvatar watch failed, retrying");
                state.error = Some(error.to_string());
            }
        }
    }
}

fn update(state: &mut TrackerState, object: &DynamicObject) {
    state.error = None;
    let status = object.data.get("status");
    let content_hash = status
        .and_then(|status| status.get("contentHash"))
        .and_then(|hash| hash.as_str())
        .map(str::to_owned);
    let conditions = status.and_then(|status| status.get("conditions"));
    let conditions = conditions.and_then(|c| c.as_array());
    let ready = conditions.into_iter().flatten().any(|condition| {
        condition.get("type").and_then(|t| t.as_str()) == Some("Ready")
            && condition.get("status").and_then(|s| s.as_str()) == Some("True")
    });

    let name = object.name_any();
    let unchanged = state
        .avatars
        .get(&name)
        .is_some_and(|view| view.ready == ready && view.content_hash == content_hash);
    if !unchanged {
        let view = AvatarView {
            ready,
            content_hash,
            changed_at: Instant::now(),
        };
        state.avatars.insert(name, view);
    }
}

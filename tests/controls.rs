//! Control knobs and runtime behaviour on a real control plane: the re-upload annotation,
//! suspend, deletion, token rotation, malformed objects, metrics and leader election.

mod support;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;
use tokio::sync::watch;
use y360_avatar_operator::controller::{self, Hooks, RunOptions};
use y360_avatar_operator::crd::UserAvatar;
use y360_avatar_operator::leader::{self, LeaseSettings};
use y360_avatar_operator::metrics::Metrics;
use y360_testkit::directory::Reply;

use support::{Harness, TOKEN, example_image, sha256, test_settings};

const ALICE: &str = "1130000000000001";
const BOB: &str = "1130000000000002";

async fn annotate(harness: &Harness, name: &str, value: &str) {
    let patch = json!({ "metadata": { "annotations": {
        "y360-avatar-operator.dev/reupload": value,
    } } });
    let api = harness.api::<UserAvatar>();
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

async fn set_suspend(harness: &Harness, name: &str, suspend: bool) {
    let patch = json!({ "spec": { "suspend": suspend } });
    let api = harness.api::<UserAvatar>();
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

async fn converged_alice(name: &str) -> Harness {
    let mut harness = Harness::new(name).await;
    harness
        .put_config_map("portraits", &[("face", &example_image("alice.png"))])
        .await;
    harness
        .create_config_map_avatar("alice", ALICE, "portraits", "face")
        .await;
    harness.start_operator();
    harness.wait_for_ready("alice", "True", "UpToDate").await;
    harness
}

#[tokio::test]
async fn reupload_annotation_uploads_once_more() {
    let harness = converged_alice("reupload").await;

    annotate(&harness, "alice", "2026-12-04T10:00:00Z").await;
    let handled = |a: &UserAvatar| {
        let status = a.status.as_ref().unwrap();
        status.last_handled_reupload.as_deref() == Some("2026-12-04T10:00:00Z")
    };
    harness.wait_for("alice", "re-uploaded", handled).await;
    assert_eq!(harness.directory.uploads_for(ALICE), 2);

    // The same value again is already handled; a label change also triggers nothing.
    annotate(&harness, "alice", "2026-12-04T10:00:00Z").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(harness.directory.uploads_for(ALICE), 2);
    let last = harness.directory.requests().pop().unwrap();
    assert_eq!(last.body, example_image("alice.png"));
}

#[tokio::test]
async fn suspended_avatar_uploads_nothing() {
    let mut harness = Harness::new("suspend").await;
    harness
        .put_config_map("portraits", &[("face", &example_image("alice.png"))])
        .await;
    let spec = json!({
        "userId": ALICE,
        "suspend": true,
        "source": { "configMap": { "name": "portraits", "key": "face" } },
    });
    harness.apply_avatar("alice", spec).await;
    harness.start_operator();

    harness.wait_for_ready("alice", "False", "Suspended").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(harness.directory.requests().len(), 0);

    set_suspend(&harness, "alice", false).await;
    harness.wait_for_ready("alice", "True", "UpToDate").await;
    assert_eq!(harness.directory.uploads_for(ALICE), 1);
}

#[tokio::test]
async fn deleting_suspended_avatar_works() {
    let mut harness = Harness::new("delete-suspended").await;
    let spec = json!({
        "userId": ALICE,
        "suspend": true,
        "source": { "url": "https://images.example.com/alice.png" },
    });
    harness.apply_avatar("alice", spec).await;
    harness.start_operator();
    harness.wait_for_ready("alice", "False", "Suspended").await;

    let api = harness.api::<UserAvatar>();
    api.delete("alice", &DeleteParams::default()).await.unwrap();
    let gone = tokio::time::timeout(Duration::from_secs(10), async {
        while api.get_opt("alice").await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert!(
        gone.await.is_ok(),
        "suspended UserAvatar was not deleted within 10 s"
    );
}

#[tokio::test]
async fn recreated_avatar_converges_again() {
    let harness = converged_alice("recreate").await;
    let api = harness.api::<UserAvatar>();
    api.delete("alice", &DeleteParams::default()).await.unwrap();
    while api.get_opt("alice").await.unwrap().is_some() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    harness
        .create_config_map_avatar("alice", ALICE, "portraits", "face")
        .await;
    let avatar = harness.wait_for_ready("alice", "True", "UpToDate").await;
    let hash = avatar.status.unwrap().content_hash;
    assert_eq!(hash, Some(sha256(&example_image("alice.png"))));
    // The new object has no status, so the image is sent once more and only once.
    assert_eq!(harness.directory.uploads_for(ALICE), 2);
}

#[tokio::test]
async fn rotated_token_retries_failed_upload() {
    let mut harness = Harness::new("rotation").await;
    let secret = json!({ "stringData": { "token": "y0_expired-token" } });
    let params = PatchParams::default();
    let secrets = harness.api::<Secret>();
    secrets
        .patch("directory-token", &params, &Patch::Merge(&secret))
        .await
        .unwrap();
    harness
        .put_config_map("portraits", &[("face", &example_image("alice.png"))])
        .await;
    harness
        .create_config_map_avatar("alice", ALICE, "portraits", "face")
        .await;
    harness.start_operator();
    harness
        .wait_for_ready("alice", "False", "Unauthorized")
        .await;
    assert_eq!(harness.directory.request_count_for(ALICE), 1);

    let rotated = json!({ "stringData": { "token": TOKEN } });
    secrets
        .patch("directory-token", &params, &Patch::Merge(&rotated))
        .await
        .unwrap();
    harness.wait_for_ready("alice", "True", "UpToDate").await;
    assert_eq!(harness.directory.request_count_for(ALICE), 2);
    assert_eq!(harness.directory.uploads_for(ALICE), 1);
}

#[tokio::test]
async fn metrics_count_uploads_and_requests() {
    let harness = Harness::new("metrics").await;
    harness
        .put_config_map("portraits", &[("face", &example_image("alice.png"))])
        .await;
    harness
        .create_config_map_avatar("alice", ALICE, "portraits", "face")
        .await;
    harness.directory.respond_to_user(BOB, Reply::Status(403));
    harness
        .create_config_map_avatar("bob", BOB, "portraits", "face")
        .await;

    let metrics = Metrics::new();
    let (stop, shutdown) = watch::channel(false);
    let ready = Arc::new(watch::channel(false).0);
    let hooks = Hooks {
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
        ready: ready.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_url = format!("http://{}", listener.local_addr().unwrap());
    let admin = y360_avatar_operator::admin::serve_on(
        listener,
        metrics.clone(),
        ready.subscribe(),
        shutdown.clone(),
    );
    let admin = tokio::spawn(admin);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let scrape = |path: &'static str| {
        let request = http.get(format!("{admin_url}{path}")).send();
        async move {
            let response = request.await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(scrape("/livez").await.0, 200);
    let options = RunOptions {
        concurrency: 2,
        namespaces: vec![harness.namespace.clone()],
        ..Default::default()
    };
    let client = harness.client.clone();
    let operator = tokio::spawn(controller::run_with(
        client,
        test_settings(),
        options,
        hooks,
    ));

    harness.wait_for_ready("alice", "True", "UpToDate").await;
    harness.wait_for_ready("bob", "False", "Forbidden").await;
    assert!(
        *ready.subscribe().borrow(),
        "not ready after the caches synced"
    );
    let text = metrics.encode().unwrap();
    let expected = [
        "y360_avatar_operator_uploads_total{result=\"Uploaded\"} 1",
        "y360_avatar_operator_uploads_total{result=\"Forbidden\"} 1",
        "y360_avatar_operator_directory_requests_total{status=\"200\"} 1",
        "y360_avatar_operator_directory_requests_total{status=\"403\"} 1",
        "y360_avatar_operator_useravatars{ready=\"true\"} 1",
        "y360_avatar_operator_useravatars{ready=\"false\"} 1",
        "y360_avatar_operator_reconciles_total{result=\"Uploaded\"} 1",
    ];
    for line in expected {
        assert!(text.contains(line), "metrics lack {line:?}:\n{text}");
    }
    assert!(!text.contains("alice"), "metrics name an object:\n{text}");
    stop.send(true).unwrap();
    operator.await.unwrap().unwrap();
    admin.await.unwrap().unwrap();
}

fn lease(harness: &Harness, identity: &str) -> LeaseSettings {
    LeaseSettings {
        namespace: harness.namespace.clone(),
        name: "y360-avatar-operator".into(),
        identity: identity.into(),
        duration_seconds: 4,
        grace_seconds: 1,
    }
}

fn start_replica(harness: &Harness, identity: &str) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let client = harness.client.clone();
    let lease = lease(harness, identity);
    let namespace = harness.namespace.clone();
    tokio::spawn(async move {
        let (_stop, shutdown) = watch::channel(false);
        let ready = Arc::new(watch::channel(false).0);
        let hooks = Hooks {
            metrics: Metrics::new(),
            shutdown: shutdown.clone(),
            ready: ready.clone(),
        };
        let options = RunOptions {
            concurrency: 2,
            namespaces: vec![namespace],
            ..Default::default()
        };
        let controllers_client = client.clone();
        let work = move |stop| {
            let hooks = Hooks {
                shutdown: stop,
                ..hooks
            };
            controller::run_with(controllers_client, test_settings(), options, hooks)
        };
        leader::run_as_leader(client, lease, shutdown, ready, work).await
    })
}

#[tokio::test]
async fn two_replicas_upload_once_and_fail_over() {
    let harness = Harness::new("leader").await;
    harness
        .put_config_map("portraits", &[("face", &example_image("alice.png"))])
        .await;
    let users: Vec<String> = (0..4).map(|i| format!("11300000000002{i:02}")).collect();
    for (i, user) in users.iter().enumerate() {
        harness
            .create_config_map_avatar(&format!("user-{i}"), user, "portraits", "face")
            .await;
    }
    let first = start_replica(&harness, "replica-a");
    let second = start_replica(&harness, "replica-b");
    for i in 0..users.len() {
        harness
            .wait_for_ready(&format!("user-{i}"), "True", "UpToDate")
            .await;
    }

    let lease_api = harness.api::<k8s_openapi::api::coordination::v1::Lease>();
    let holder = |lease: k8s_openapi::api::coordination::v1::Lease| {
        lease
            .spec
            .and_then(|spec| spec.holder_identity)
            .unwrap_or_default()
    };
    let leader = holder(lease_api.get("y360-avatar-operator").await.unwrap());
    let (killed, survivor) = if leader == "replica-a" {
        (first, second)
    } else {
        (second, first)
    };
    killed.abort();
    let _ = killed.await;

    // The survivor takes over once the Lease expires and uploads a new object exactly once.
    let started = tokio::time::Instant::now();
    harness
        .create_config_map_avatar("late", "1130000000000299", "portraits", "face")
        .await;
    harness.wait_for_ready("late", "True", "UpToDate").await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    let new_leader = holder(lease_api.get("y360-avatar-operator").await.unwrap());
    assert_ne!(new_leader, leader);

    for user in users.iter().chain([&"1130000000000299".to_owned()]) {
        assert_eq!(harness.directory.uploads_for(user), 1, "user {user}");
    }
    survivor.abort();
}

#[tokio::test]
async fn url_recheck_is_conditional() {
    let mut harness = Harness::new("url-etag").await;
    harness
        .images
        .put("/carol.png", example_image("carol.png"), "image/png");
    let url = harness.images.url("/carol.png");
    harness.create_url_avatar("carol", BOB, &url).await;
    harness.start_operator();
    let first = harness.wait_for_ready("carol", "True", "UpToDate").await;
    let validator = first.status.unwrap().source_version;
    assert!(
        validator.is_some(),
        "no ETag recorded in status.sourceVersion"
    );

    // A spec change makes the operator look at the URL again.
    let patch = json!({ "spec": { "interval": "2h" } });
    let api = harness.api::<UserAvatar>();
    api.patch("carol", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let generation = api.get("carol").await.unwrap().metadata.generation;
    let observed = |a: &UserAvatar| a.status.as_ref().unwrap().observed_generation == generation;
    harness
        .wait_for("carol", "observed the new generation", observed)
        .await;

    let fetches = harness.images.requests_to("/carol.png");
    assert_eq!(fetches.len(), 2);
    assert_eq!(fetches[1].header("if-none-match"), validator.as_deref());
    assert_eq!(harness.directory.uploads_for(BOB), 1);
}

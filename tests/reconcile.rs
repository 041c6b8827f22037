//! End-to-end reconcile tests on a real kube-apiserver with the Directory API stand-in.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use y360_testkit::directory::Reply;

use support::{Harness, TOKEN, example_image, ready_condition, sha256};

const ALICE: &str = "1130000000000001";
const BOB: &str = "1130000000000002";

async fn config_map_version(harness: &Harness, name: &str) -> String {
    let config_map = harness.api::<ConfigMap>().get(name).await.unwrap();
    config_map.metadata.resource_version.unwrap()
}

async fn label_config_map(harness: &Harness, name: &str, value: &str) {
    let patch = json!({ "metadata": { "labels": { "touched": value } } });
    let params = PatchParams::default();
    let api = harness.api::<ConfigMap>();
    api.patch(name, &params, &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test]
async fn config_map_image_is_uploaded_once() {
    let mut harness = Harness::new("upload-once").await;
    let png = example_image("alice.png");
    harness
        .put_config_map("portraits", &[("alice.png", &png)])
        .await;
    harness
        .create_config_map_avatar("alice", ALICE, "portraits", "alice.png")
        .await;
    harness.start_operator();

    let avatar = harness.wait_for_ready("alice", "True", "UpToDate").await;
    let status = avatar.status.unwrap();
    let uploads: Vec<_> = harness
        .directory
        .requests()
        .into_iter()
        .filter(|r| r.status == Some(200))
        .collect();
    assert_eq!(uploads.len(), 1);
    let request = &uploads[0];
    assert_eq!(request.method, "PUT");
    assert_eq!(
        request.path,
        format!("/directory/v1/org/4242/users/{ALICE}/avatar")
    );
    assert_eq!(request.body, png);
    assert_eq!(
        request.header("authorization"),
        Some(format!("OAuth {TOKEN}").as_str())
    );
    assert_eq!(request.header("content-type"), Some("image/png"));
    assert_eq!(status.content_hash, Some(sha256(&png)));
    assert_eq!(
        status.url,
        Some(y360_testkit::directory::portrait_url(4242, ALICE, &png))
    );
    assert_eq!(status.last_error, "");
    assert!(status.last_upload_time.is_some());
}

#[tokio::test]
async fn unchanged_image_is_not_uploaded_again() {
    let mut harness = Harness::new("no-reupload").await;
    let png = example_image("alice.png");
    harness
        .put_config_map("portraits", &[("alice.png", &png)])
        .await;
    harness
        .create_config_map_avatar("alice", ALICE, "portraits", "alice.png")
        .await;
    harness.start_operator();
    let first = harness.wait_for_ready("alice", "True", "UpToDate").await;

    // A ConfigMap change that leaves the key alone makes the operator read and hash it again.
    label_config_map(&harness, "portraits", "one").await;
    let version = config_map_version(&harness, "portraits").await;
    harness
        .wait_for("alice", "re-read", |a| {
            a.status.as_ref().unwrap().source_version.as_ref() == Some(&version)
        })
        .await;

    harness.stop_operator().await;
    harness.start_operator();
    label_config_map(&harness, "portraits", "two").await;
    let version = config_map_version(&harness, "portraits").await;
    let last = harness
        .wait_for("alice", "re-read after restart", |a| {
            a.status.as_ref().unwrap().source_version.as_ref() == Some(&version)
        })
        .await;

    assert_eq!(harness.directory.uploads_for(ALICE), 1);
    let first_status = first.status.unwrap();
    let last_status = last.status.unwrap();
    assert_eq!(last_status.last_upload_time, first_status.last_upload_time);
    assert_eq!(last_status.conditions, first_status.conditions);
}

#[tokio::test]
async fn edited_key_is_uploaded_again() {
    let mut harness = Harness::new("edit-key").await;
    harness
        .put_config_map("portraits", &[("face", &example_image("alice.png"))])
        .await;
    harness
        .create_config_map_avatar("alice", ALICE, "portraits", "face")
        .await;
    harness.start_operator();
    harness.wait_for_ready("alice", "True", "UpToDate").await;

    let jpeg = example_image("bob.jpg");
    harness
        .put_config_map("portraits", &[("face", &jpeg)])
        .await;
    let hash = sha256(&jpeg);
    let avatar = harness
        .wait_for("alice", "re-uploaded", |a| {
            a.status.as_ref().unwrap().content_hash.as_ref() == Some(&hash)
        })
        .await;

    assert_eq!(harness.directory.uploads_for(ALICE), 2);
    let last = harness.directory.requests().pop().unwrap();
    assert_eq!(last.body, jpeg);
    assert_eq!(last.header("content-type"), Some("image/jpeg"));
    assert_eq!(
        avatar.status.unwrap().content_type.as_deref(),
        Some("image/jpeg")
    );
}

#[tokio::test]
async fn edit_to_other_key_uploads_nothing() {
    let mut harness = Harness::new("other-key").await;
    let alice = example_image("alice.png");
    harness
        .put_config_map(
            "portraits",
            &[("alice", &alice), ("bob", &example_image("bob.jpg"))],
        )
        .await;
    harness
        .create_config_map_avatar("alice", ALICE, "portraits", "alice")
        .await;
    harness.start_operator();
    harness.wait_for_ready("alice", "True", "UpToDate").await;

    harness
        .put_config_map(
            "portraits",
            &[("alice", &alice), ("bob", &example_image("carol.png"))],
        )
        .await;
    let version = config_map_version(&harness, "portraits").await;
    harness
        .wait_for("alice", "re-read", |a| {
            a.status.as_ref().unwrap().source_version.as_ref() == Some(&version)
        })
        .await;

    assert_eq!(harness.directory.uploads_for(ALICE), 1);
}

#[tokio::test]
async fn url_source_is_uploaded() {
    let mut harness = Harness::new("url-source").await;
    let png = example_image("carol.png");
    harness.images.put("/carol.png", png.clone(), "image/png");
    let url = harness.images.url("/carol.png");
    harness.create_url_avatar("carol", BOB, &url).await;
    harness.start_operator();

    let avatar = harness.wait_for_ready("carol", "True", "UpToDate").await;
    assert_eq!(harness.directory.uploads_for(BOB), 1);
    assert_eq!(harness.directory.requests()[0].body, png);
    assert_eq!(avatar.status.unwrap().content_hash, Some(sha256(&png)));
    let fetches = harness.images.requests_to("/carol.png");
    assert_eq!(fetches.len(), 1);
    assert_eq!(fetches[0].header("authorization"), None);
}

#[tokio::test]
async fn missing_config_map_recovers_once_created() {
    let mut harness = Harness::new("missing-cm").await;
    harness
        .create_config_map_avatar("alice", ALICE, "later", "face")
        .await;
    harness.start_operator();

    let avatar = harness
        .wait_for_ready("alice", "False", "SourceNotFound")
        .await;
    let condition = ready_condition(&avatar).unwrap();
    assert_eq!(condition.message, "ConfigMap \"later\" not found");
    assert_eq!(
        avatar.status.unwrap().last_error,
        "ConfigMap \"later\" not found"
    );
    assert_eq!(harness.directory.requests().len(), 0);

    let created = tokio::time::Instant::now();
    harness
        .put_config_map("later", &[("face", &example_image("alice.png"))])
        .await;
    harness.wait_for_ready("alice", "True", "UpToDate").await;
    assert!(
        created.elapsed() < Duration::from_secs(10),
        "took {:?}",
        created.elapsed()
    );
    assert_eq!(harness.directory.uploads_for(ALICE), 1);
}

#[tokio::test]
async fn directory_errors_land_in_status_without_hot_loop() {
    let mut harness = Harness::new("api-errors").await;
    let cases = [
        ("unauthorized", "1130000000000401", 401, "Unauthorized"),
        ("forbidden", "1130000000000403", 403, "Forbidden"),
        ("missing-user", "1130000000000404", 404, "UserNotFound"),
        (
            "server-error",
            "1130000000000500",
            500,
            "DirectoryUnavailable",
        ),
    ];
    harness
        .put_config_map("portraits", &[("face", &example_image("alice.png"))])
        .await;
    for (name, user, status, _) in cases {
        harness
            .directory
            .respond_to_user(user, Reply::Status(status));
        harness
            .create_config_map_avatar(name, user, "portraits", "face")
            .await;
    }
    harness.start_operator();

    for (name, _, status, reason) in cases {
        let avatar = harness.wait_for_ready(name, "False", reason).await;
        let last_error = avatar.status.unwrap().last_error;
        assert!(
            last_error.contains(&format!("HTTP {status}")),
            "{name}: {last_error}"
        );
        assert!(!last_error.contains(TOKEN), "{name}: {last_error}");
    }
    tokio::time::sleep(Duration::from_secs(5)).await;

    for (name, user, status, _) in cases {
        let requests = harness.directory.request_count_for(user);
        if status == 500 {
            // Backoff of about 1 s, 2 s and 4 s allows at most four tries in these seconds.
            assert!((2..=4).contains(&requests), "{name}: {requests} requests");
        } else {
            assert_eq!(requests, 1, "{name}");
        }
    }
}

#[tokio::test]
async fn avatars_sharing_a_config_map_each_get_complete_status() {
    let mut harness = Harness::new("shared-cm").await;
    let png = example_image("alice.png");
    let jpeg = example_image("bob.jpg");
    harness
        .put_config_map("portraits", &[("png", &png), ("jpeg", &jpeg)])
        .await;
    let users: Vec<(String, String)> = (0..6)
        .map(|i| (format!("user-{i}"), format!("11300000000001{i:02}")))
        .collect();
    for (i, (name, user)) in users.iter().enumerate() {
        let key = if i % 2 == 0 { "png" } else { "jpeg" };
        harness
            .create_config_map_avatar(name, user, "portraits", key)
            .await;
    }
    harness.start_operator();

    for (i, (name, user)) in users.iter().enumerate() {
        let avatar = harness.wait_for_ready(name, "True", "UpToDate").await;
        let status = avatar.status.unwrap();
        let bytes = if i % 2 == 0 { &png } else { &jpeg };
        assert_eq!(status.content_hash, Some(sha256(bytes)), "{name}");
        assert!(status.url.is_some(), "{name} has no url");
        assert!(
            status.last_upload_time.is_some(),
            "{name} has no upload time"
        );
        assert_eq!(harness.directory.uploads_for(user), 1, "{name}");
    }
}

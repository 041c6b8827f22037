//! Fault tests on a control plane of their own: kube-apiserver restarts while the operator
//! runs, and the operator is killed in the middle of an upload. After each fault every
//! UserAvatar must converge, with at most one upload more than its image changes need.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use kube::Client;
use y360_testkit::cluster::LocalCluster;
use y360_testkit::directory::{DirectoryStandIn, Reply};

use support::{Harness, client_from_kubeconfig, example_image, install_crds, ready_is, sha256};

/// UserAvatar name, user id and ConfigMap key of each object.
const AVATARS: [(&str, &str, &str); 4] = [
    ("fault-a", "1130000000000011", "a"),
    ("fault-b", "1130000000000012", "b"),
    ("fault-c", "1130000000000013", "c"),
    ("fault-d", "1130000000000014", "d"),
];

/// How long the stand-in delays the upload during which the operator is killed.
const HELD_UPLOAD: Duration = Duration::from_secs(4);

/// Time after convergence in which a late duplicate upload would still show up.
const QUIET_PERIOD: Duration = Duration::from_secs(3);

/// Time to converge after a fault, counted from when kube-apiserver responds again. The
/// operator's watches use kube-runtime 5's default backoff: a base that doubles from 800 ms
/// to a 30 s cap, plus 0-100% jitter, reset only after 120 s without errors. So one wait can
/// last 60 s, and the errors of the outage, a 503 while the server starts and the 410 Expired
/// that makes each watch re-list can add up to two or three such waits.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(150);

#[tokio::test(flavor = "current_thread")]
async fn apiserver_restart_and_operator_kill() {
    // The control-plane processes get SIGKILL when the thread that spawned them exits, so the
    // cluster is started, restarted and stopped on this test's own thread.
    y360_avatar_operator::install_crypto_provider();
    let mut cluster = LocalCluster::start()
        .await
        .expect("the local control plane did not start");
    install_crds(&cluster).expect("failed to install the CRDs");
    let client = client_from_kubeconfig(&cluster.kubeconfig_yaml()).await;
    let mut harness = Harness::with_client("faults", client.clone()).await;

    let mut images: BTreeMap<&str, Vec<u8>> = BTreeMap::from([
        ("a", example_image("alice.png")),
        ("b", example_image("carol.png")),
        ("c", example_image("bob.jpg")),
        ("d", example_image("alice-v2.png")),
    ]);
    put_images(&harness, &images).await;
    for (name, user, key) in AVATARS {
        harness
            .create_config_map_avatar(name, user, "portraits", key)
            .await;
    }
    harness.start_operator();
    let mut needed: BTreeMap<&str, usize> = AVATARS.iter().map(|(name, ..)| (*name, 1)).collect();
    wait_until_converged(&harness, &images, "after the first sync").await;
    check_uploads(&harness.directory, &needed, "after the first sync");

    cluster
        .restart_apiserver()
        .await
        .expect("kube-apiserver did not restart");
    wait_for_apiserver(&client).await;
    images.insert("a", example_image("alice-v2.png"));
    put_images(&harness, &images).await;
    *needed.get_mut("fault-a").unwrap() += 1;
    wait_until_converged(&harness, &images, "after the kube-apiserver restart").await;
    tokio::time::sleep(QUIET_PERIOD).await;
    check_uploads(
        &harness.directory,
        &needed,
        "after the kube-apiserver restart",
    );

    let (_, user_b, _) = AVATARS[1];
    harness
        .directory
        .respond_to_user_once(user_b, Reply::Delay(HELD_UPLOAD));
    images.insert("b", example_image("alice.png"));
    put_images(&harness, &images).await;
    *needed.get_mut("fault-b").unwrap() += 1;
    wait_for_upload_in_flight(&harness.directory, user_b).await;
    harness.stop_operator().await;
    let killed = tokio::time::Instant::now();
    harness.start_operator();
    wait_until_converged(&harness, &images, "after the operator restart").await;
    // A held upload that the stand-in completes after the kill would count from then on.
    // NOTE: axum drops the stand-in's handler when the operator's connection closes, so the
    // held request never gets a response and is not counted as an upload.
    tokio::time::sleep_until(killed + HELD_UPLOAD + QUIET_PERIOD).await;
    check_uploads(
        &harness.directory,
        &needed,
        "after the operator was killed mid-upload",
    );

    drop(harness);
    cluster.stop().await;
}

async fn put_images(harness: &Harness, images: &BTreeMap<&str, Vec<u8>>) {
    let keys: Vec<(&str, &[u8])> = images
        .iter()
        .map(|(key, bytes)| (*key, bytes.as_slice()))
        .collect();
    harness.put_config_map("portraits", &keys).await;
}

/// Waits until every UserAvatar is Ready with the hash of its current image, and prints how
/// long that took.
async fn wait_until_converged(harness: &Harness, images: &BTreeMap<&str, Vec<u8>>, phase: &str) {
    let started = tokio::time::Instant::now();
    let deadline = started + CONVERGE_TIMEOUT;
    for (name, _, key) in AVATARS {
        let hash = sha256(&images[key]);
        loop {
            let avatar = harness.avatar(name).await;
            let status = avatar.status.as_ref();
            let uploaded = status.and_then(|s| s.content_hash.as_ref());
            if ready_is(&avatar, "True", "UpToDate") && uploaded == Some(&hash) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} was not Ready with {hash} within {CONVERGE_TIMEOUT:?}; last status: \
                 {status:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("all UserAvatars converged {phase} in {seconds:.1} s");
}

/// Checks that each object was uploaded at least as often as its image changes need, and at
/// most once more.
fn check_uploads(directory: &DirectoryStandIn, needed: &BTreeMap<&str, usize>, phase: &str) {
    for (name, user, _) in AVATARS {
        let uploads = directory.uploads_for(user);
        let needed = needed[name];
        assert!(
            uploads >= needed,
            "{name} {phase}: {uploads} uploads, expected at least {needed}"
        );
        assert!(
            uploads <= needed + 1,
            "{name} {phase}: {uploads} uploads, expected at most {}",
            needed + 1
        );
    }
}

/// Waits until kube-apiserver responds to this client again.
async fn wait_for_apiserver(client: &Client) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while client.apiserver_version().await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "kube-apiserver did not respond within 30 s of its restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the stand-in has received an upload for `user` and not yet responded.
async fn wait_for_upload_in_flight(directory: &DirectoryStandIn, user: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let requests = directory.requests();
        let in_flight = requests
            .iter()
            .any(|r| r.user_id.as_deref() == Some(user) && r.status.is_none());
        if in_flight {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no upload for user {user} reached the stand-in within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

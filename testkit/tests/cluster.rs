//! Starts a real etcd and kube-apiserver. Fails, rather than skips, when they cannot start.

use std::process::{Command, Output};
use std::time::Instant;

use y360_testkit::cluster::LocalCluster;

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|error| panic!("failed to run {command:?}: {error}"))
}

fn describe(output: &Output) -> String {
    format!(
        "exit status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

async fn start_cluster() -> LocalCluster {
    let started = Instant::now();
    let cluster = LocalCluster::start()
        .await
        .unwrap_or_else(|error| panic!("control plane failed to start: {error:#}"));
    eprintln!(
        "control plane ready in {} ms at {}",
        started.elapsed().as_millis(),
        cluster.server_url()
    );
    cluster
}

#[tokio::test]
async fn cluster_serves_kubectl_and_survives_restart() {
    let mut cluster = start_cluster().await;

    let output = run(cluster
        .kubectl()
        .args(["get", "namespace", "default", "-o", "name"]));
    assert!(
        output.status.success(),
        "kubectl get namespace default failed: {}",
        describe(&output)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "namespace/default"
    );

    let output = run(cluster
        .kubectl()
        .args(["create", "namespace", "kept-across-restart"]));
    assert!(
        output.status.success(),
        "kubectl create namespace failed: {}",
        describe(&output)
    );

    let restarted = Instant::now();
    cluster
        .restart_apiserver()
        .await
        .expect("kube-apiserver failed to restart");
    eprintln!(
        "kube-apiserver restarted in {} ms",
        restarted.elapsed().as_millis()
    );

    let output =
        run(cluster
            .kubectl()
            .args(["get", "namespace", "kept-across-restart", "-o", "name"]));
    assert!(
        output.status.success(),
        "namespace lost across the restart: {}",
        describe(&output)
    );

    let peak = cluster.peak_rss();
    eprintln!(
        "peak RSS: kube-apiserver {:?} KiB, etcd {:?} KiB",
        peak.kube_apiserver_kib, peak.etcd_kib
    );
    cluster.stop().await;
}

#[tokio::test]
async fn cluster_enforces_rbac_for_other_users() {
    let cluster = start_cluster().await;
    let directory = tempfile::tempdir().expect("failed to create a temporary directory");
    let kubeconfig = directory.path().join("alice.kubeconfig");
    let yaml = cluster
        .kubeconfig_for("alice", &[])
        .expect("failed to issue a kubeconfig for alice");
    std::fs::write(&kubeconfig, yaml).expect("failed to write alice's kubeconfig");

    let output = run(cluster
        .kubectl_with(&kubeconfig)
        .args(["get", "namespaces"]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "alice listed namespaces: {}",
        describe(&output)
    );
    assert!(
        stderr.contains("Forbidden"),
        "expected Forbidden: {}",
        describe(&output)
    );
    assert!(
        stderr.contains("\"alice\""),
        "error does not name user alice: {}",
        describe(&output)
    );

    let output =
        run(cluster
            .kubectl()
            .args(["auth", "can-i", "list", "namespaces", "--as", "alice"]));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "no",
        "{}",
        describe(&output)
    );
    cluster.stop().await;
}

#[tokio::test]
async fn cluster_reads_two_groups_from_client_certificate() {
    let cluster = start_cluster().await;
    let directory = tempfile::tempdir().expect("failed to create a temporary directory");
    let kubeconfig = directory.path().join("operator.kubeconfig");
    let user = "system:serviceaccount:demo:operator";
    let groups = ["system:serviceaccounts", "system:serviceaccounts:demo"];
    let yaml = cluster
        .kubeconfig_for(user, &groups)
        .expect("failed to issue a kubeconfig");
    std::fs::write(&kubeconfig, yaml).expect("failed to write the kubeconfig");

    let output = run(cluster
        .kubectl_with(&kubeconfig)
        .args(["auth", "whoami", "-o", "json"]));
    assert!(
        output.status.success(),
        "kubectl auth whoami failed: {}",
        describe(&output)
    );
    let review: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("whoami printed invalid JSON");
    let user_info = &review["status"]["userInfo"];
    assert_eq!(user_info["username"], user);
    let reported: Vec<&str> = user_info["groups"]
        .as_array()
        .expect("groups missing")
        .iter()
        .filter_map(|g| g.as_str())
        .collect();
    assert!(reported.contains(&groups[0]), "groups: {reported:?}");
    assert!(reported.contains(&groups[1]), "groups: {reported:?}");
    cluster.stop().await;
}

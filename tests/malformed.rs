//! A UserAvatar that does not match the operator's type is skipped and reported, and the
//! watch keeps serving the other objects. The strict CRD schema rejects such objects, so this
//! binary runs its own control plane with a permissive copy of the CRD, as a cluster with an
//! older or hand-edited CRD would have.

mod support;

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::CustomResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use y360_avatar_operator::crd::{DirectoryConnection, UserAvatar};
use y360_testkit::cluster::LocalCluster;

use support::{Harness, client_from_kubeconfig, example_image};

const ALICE: &str = "1130000000000001";

fn permissive(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        let schema = JSONSchemaProps {
            type_: Some("object".into()),
            x_kubernetes_preserve_unknown_fields: Some(true),
            ..Default::default()
        };
        version.schema.as_mut().unwrap().open_api_v3_schema = Some(schema);
        version.additional_printer_columns = None;
    }
    crd
}

async fn install_permissive_crds(client: &kube::Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("y360-tests").force();
    for crd in [permissive(UserAvatar::crd()), DirectoryConnection::crd()] {
        let name = crd.metadata.name.clone().unwrap();
        api.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .unwrap();
        let established = kube::runtime::conditions::is_crd_established();
        let wait = kube::runtime::wait::await_condition(api.clone(), &name, established);
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .unwrap()
            .unwrap();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn malformed_avatar_is_skipped_and_reported() {
    let cluster = LocalCluster::start().await.expect("local control plane");
    let client = client_from_kubeconfig(&cluster.kubeconfig_yaml()).await;
    install_permissive_crds(&client).await;
    let mut harness = Harness::with_client("malformed", client).await;
    harness
        .put_config_map("portraits", &[("face", &example_image("alice.png"))])
        .await;

    // A user id written as a YAML number: the type wants a string of digits.
    let broken = json!({
        "userId": 1130000000000002u64,
        "source": { "configMap": { "name": "portraits", "key": "face" } },
    });
    harness.apply_avatar("broken", broken).await;
    harness
        .create_config_map_avatar("alice", ALICE, "portraits", "face")
        .await;
    harness.start_operator();

    harness.wait_for_ready("alice", "True", "UpToDate").await;
    assert_eq!(harness.directory.requests().len(), 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let reported = loop {
        let events = harness.events().await;
        let found = events.iter().any(|event| {
            let regarding = event.regarding.as_ref().and_then(|r| r.name.as_deref());
            event.reason.as_deref() == Some("InvalidSpec") && regarding == Some("broken")
        });
        if found || tokio::time::Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        reported,
        "no InvalidSpec Event for the malformed UserAvatar"
    );

    // Objects created after the malformed one are still picked up by the watch.
    harness
        .create_config_map_avatar("later", "1130000000000003", "portraits", "face")
        .await;
    harness.wait_for_ready("later", "True", "UpToDate").await;
    harness.stop_operator().await;
    cluster.stop().await;
}

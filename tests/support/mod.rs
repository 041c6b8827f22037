//! Test harness: one real control plane per test binary, a namespace, a Directory API
//! stand-in, an image server and the operator running in-process for each test.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::json;
use tokio::task::JoinHandle;

use y360_avatar_operator::controller::{self, RunOptions};
use y360_avatar_operator::crd::UserAvatar;
use y360_avatar_operator::directory::Timeouts;
use y360_avatar_operator::reconcile::Settings;
use y360_avatar_operator::source::{FetchLimits, UrlPolicy};
use y360_testkit::cluster::LocalCluster;
use y360_testkit::directory::{DirectoryStandIn, StandInConfig};
use y360_testkit::images::ImageServer;

pub const ORG_ID: u64 = 4242;
pub const TOKEN: &str = "y0_test-token-7f3c9a";
pub const WAIT: Duration = Duration::from_secs(30);

struct SharedCluster {
    kubeconfig_yaml: String,
}

// NOTE: the shared cluster is never dropped, so its temporary directory (y360-cluster-* in the
// system temp folder) stays behind after each test binary; its processes die with the binary.
static CLUSTER: OnceLock<Result<SharedCluster, String>> = OnceLock::new();

/// Starts the shared control plane once and installs the CRDs from `crds/`. The cluster lives
/// on a thread of its own for the whole test run, because its processes are tied to the
/// thread that started them.
fn shared_cluster() -> &'static SharedCluster {
    let result = CLUSTER.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let runtime = runtime.expect("failed to build the cluster runtime");
            runtime.block_on(async move {
                match start_cluster().await {
                    Ok(cluster) => {
                        let shared = SharedCluster {
                            kubeconfig_yaml: cluster.kubeconfig_yaml(),
                        };
                        let _ = sender.send(Ok(shared));
                        std::future::pending::<()>().await;
                        drop(cluster);
                    }
                    Err(error) => {
                        let _ = sender.send(Err(format!("{error:#}")));
                    }
                }
            });
        });
        receiver
            .recv()
            .unwrap_or_else(|_| Err("cluster thread exited".into()))
    });
    match result {
        Ok(cluster) => cluster,
        Err(error) => panic!("the local control plane did not start: {error}"),
    }
}

async fn start_cluster() -> anyhow::Result<LocalCluster> {
    let cluster = LocalCluster::start().await?;
    install_crds(&cluster)?;
    Ok(cluster)
}

/// Applies `crds/crds.yaml` with the cluster's kubectl and waits until every CRD is
/// Established.
pub fn install_crds(cluster: &LocalCluster) -> anyhow::Result<()> {
    let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/crds.yaml");
    run_kubectl(cluster, &["apply", "--server-side", "-f", crds])?;
    let wait = [
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd",
        "--all",
    ];
    run_kubectl(cluster, &wait)
}

fn run_kubectl(cluster: &LocalCluster, args: &[&str]) -> anyhow::Result<()> {
    let output = cluster.kubectl().args(args).output()?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        anyhow::bail!("kubectl {} failed: {stderr}", args.join(" "));
    }
    Ok(())
}

/// Returns a client for the shared control plane.
pub async fn client() -> Client {
    let yaml = shared_cluster().kubeconfig_yaml.clone();
    client_from_kubeconfig(&yaml).await
}

/// Returns a client for the cluster that a kubeconfig names.
pub async fn client_from_kubeconfig(yaml: &str) -> Client {
    let kubeconfig = Kubeconfig::from_yaml(yaml).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("client config");
    Client::try_from(config).expect("client")
}

/// Installs a log subscriber once, at the level `RUST_LOG` names (debug for the operator
/// when unset).
pub fn init_logging() {
    let filter =
        std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,y360_avatar_operator=debug".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// One test's world: its namespace, stand-in, image server and operator.
pub struct Harness {
    pub client: Client,
    pub namespace: String,
    pub directory: DirectoryStandIn,
    pub images: ImageServer,
    operator: Option<JoinHandle<()>>,
}

impl Harness {
    /// Creates a namespace with a token Secret and a DirectoryConnection named `default`
    /// that points at a fresh stand-in. The operator is not started yet.
    pub async fn new(name: &str) -> Harness {
        init_logging();
        y360_avatar_operator::install_crypto_provider();
        let client = client().await;
        Harness::with_client(name, client).await
    }

    /// Creates the same world as [`Harness::new`] on the cluster that `client` talks to, for
    /// a test binary that runs a control plane of its own.
    pub async fn with_client(name: &str, client: Client) -> Harness {
        init_logging();
        y360_avatar_operator::install_crypto_provider();
        let namespace = format!("{name}-{}", std::process::id());
        create_namespace(&client, &namespace).await;

        let directory = DirectoryStandIn::start(StandInConfig::new(ORG_ID, TOKEN))
            .await
            .unwrap();
        let images = ImageServer::start().await.unwrap();
        let harness = Harness {
            client,
            namespace,
            directory,
            images,
            operator: None,
        };
        harness.create_token_secret("directory-token", TOKEN).await;
        let api_url = harness.directory.base_url();
        harness
            .create_connection("default", &api_url, "directory-token")
            .await;
        harness
    }

    /// Starts the operator in this process, watching only this test's namespace.
    pub fn start_operator(&mut self) {
        self.start_operator_with(test_settings());
    }

    /// Starts the operator in this process with the given settings, watching only this
    /// test's namespace.
    pub fn start_operator_with(&mut self, settings: Settings) {
        let options = RunOptions {
            concurrency: 4,
            namespaces: vec![self.namespace.clone()],
            label_selector: None,
        };
        let client = self.client.clone();
        self.operator = Some(tokio::spawn(async move {
            controller::run(client, settings, options)
                .await
                .expect("operator failed");
        }));
    }

    /// Stops the operator, as a crash would: in-flight work is dropped.
    pub async fn stop_operator(&mut self) {
        if let Some(handle) = self.operator.take() {
            handle.abort();
            let _ = handle.await;
        }
    }

    pub async fn create_token_secret(&self, name: &str, token: &str) {
        self.create_secret(name, "token", token).await;
    }

    /// Creates a Secret with one key.
    pub async fn create_secret(&self, name: &str, key: &str, value: &str) {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": { "name": name },
            "stringData": { key: value },
        }))
        .unwrap();
        self.api::<Secret>()
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }

    pub async fn create_connection(&self, name: &str, api_url: &str, secret: &str) {
        let connection = json!({
            "apiVersion": "y360-avatar-operator.dev/v1alpha1",
            "kind": "DirectoryConnection",
            "metadata": { "name": name },
            "spec": {
                "orgId": ORG_ID,
                "apiUrl": api_url,
                "tokenSecretRef": { "name": secret, "key": "token" },
            },
        });
        self.apply_dynamic("directoryconnections", name, connection)
            .await;
    }

    /// Creates or replaces a ConfigMap whose `binaryData` holds the given keys.
    pub async fn put_config_map(&self, name: &str, keys: &[(&str, &[u8])]) {
        let binary: BTreeMap<String, ByteString> = keys
            .iter()
            .map(|(key, bytes)| (key.to_string(), ByteString(bytes.to_vec())))
            .collect();
        let config_map = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            binary_data: Some(binary),
            ..Default::default()
        };
        let params = PatchParams::apply("y360-tests").force();
        let api = self.api::<ConfigMap>();
        api.patch(name, &params, &Patch::Apply(&config_map))
            .await
            .unwrap();
    }

    /// Creates a UserAvatar with a ConfigMap key source.
    pub async fn create_config_map_avatar(
        &self,
        name: &str,
        user_id: &str,
        config_map: &str,
        key: &str,
    ) {
        let spec = json!({
            "userId": user_id,
            "source": { "configMap": { "name": config_map, "key": key } },
        });
        self.apply_avatar(name, spec).await;
    }

    /// Creates a UserAvatar with a URL source.
    pub async fn create_url_avatar(&self, name: &str, user_id: &str, url: &str) {
        let spec = json!({ "userId": user_id, "source": { "url": url } });
        self.apply_avatar(name, spec).await;
    }

    pub async fn apply_avatar(&self, name: &str, spec: serde_json::Value) {
        let avatar = json!({
            "apiVersion": "y360-avatar-operator.dev/v1alpha1",
            "kind": "UserAvatar",
            "metadata": { "name": name },
            "spec": spec,
        });
        self.apply_dynamic("useravatars", name, avatar).await;
    }

    async fn apply_dynamic(&self, plural: &str, name: &str, object: serde_json::Value) {
        let kind = object["kind"].as_str().unwrap().to_owned();
        let gvk = kube::core::GroupVersionKind::gvk("y360-avatar-operator.dev", "v1alpha1", &kind);
        let resource = kube::core::ApiResource::from_gvk_with_plural(&gvk, plural);
        let api: Api<kube::core::DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, &resource);
        let params = PatchParams::apply("y360-tests").force();
        api.patch(name, &params, &Patch::Apply(&object))
            .await
            .unwrap();
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub async fn avatar(&self, name: &str) -> UserAvatar {
        self.api::<UserAvatar>().get(name).await.unwrap()
    }

    /// Lists every UserAvatar in the namespace.
    pub async fn avatars(&self) -> Vec<UserAvatar> {
        let list = self.api::<UserAvatar>().list(&ListParams::default()).await;
        list.unwrap().items
    }

    /// Lists every `events.k8s.io/v1` Event in the namespace.
    pub async fn events(&self) -> Vec<Event> {
        let list = self.api::<Event>().list(&ListParams::default()).await;
        list.unwrap().items
    }

    /// Polls the UserAvatar until `done` holds, and fails the test with the last object seen
    /// after `WAIT`.
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&UserAvatar) -> bool,
    ) -> UserAvatar {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let avatar = self.avatar(name).await;
            if done(&avatar) {
                return avatar;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "UserAvatar {name} never became {what}; last status: {:#?}",
                    avatar.status
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the Ready condition has the given status and reason.
    pub async fn wait_for_ready(&self, name: &str, status: &str, reason: &str) -> UserAvatar {
        let what = format!("Ready={status} ({reason})");
        self.wait_for(name, &what, |avatar| ready_is(avatar, status, reason))
            .await
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(handle) = self.operator.take() {
            handle.abort();
        }
    }
}

/// Returns whether the Ready condition has the given status and reason.
pub fn ready_is(avatar: &UserAvatar, status: &str, reason: &str) -> bool {
    ready_condition(avatar).is_some_and(|c| c.status == status && c.reason == reason)
}

pub fn ready_condition(
    avatar: &UserAvatar,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    condition(avatar, "Ready")
}

/// Returns the condition of the given type, if the status has one.
pub fn condition(
    avatar: &UserAvatar,
    type_: &str,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    let status = avatar.status.as_ref()?;
    status.conditions.iter().find(|c| c.type_ == type_).cloned()
}

async fn create_namespace(client: &Client, name: &str) {
    let namespace: Namespace =
        serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap();
    let api: Api<Namespace> = Api::all(client.clone());
    api.create(&PostParams::default(), &namespace)
        .await
        .unwrap();
}

/// Operator settings for tests: http and loopback URLs are allowed, and timeouts are short.
pub fn test_settings() -> Settings {
    let connect = Duration::from_secs(2);
    let total = Duration::from_secs(5);
    Settings {
        max_image_bytes: 1024 * 1024,
        url_policy: UrlPolicy {
            allow_http: true,
            allowed_networks: vec!["127.0.0.0/8".parse().unwrap()],
        },
        fetch_limits: FetchLimits {
            max_bytes: 1024 * 1024,
            max_redirects: 3,
            connect_timeout: connect,
            read_timeout: total,
            total_timeout: total,
        },
        directory_timeouts: Timeouts { connect, total },
        api_error_requeue: Duration::from_secs(1),
        token_recheck_interval: Duration::from_secs(1),
        upload_limiter: None,
    }
}

/// Reads an example image from `examples/images/`.
pub fn example_image(name: &str) -> Vec<u8> {
    let path = format!("{}/examples/images/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|error| panic!("failed to read {path}: {error}"))
}

/// Returns `sha256:<hex>` of the bytes.
pub fn sha256(bytes: &[u8]) -> String {
    y360_avatar_operator::image::content_hash(bytes)
}

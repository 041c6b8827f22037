//! Creation and change of the objects the benchmark measures: UserAvatars with one ConfigMap
//! each, their DirectoryConnection, and unrelated objects that only add load.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::{StreamExt, TryStreamExt, stream};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::PostParams;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ObjectMeta, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use super::images::{content_hash, filler_bytes, png_image};

/// Organization id of the benchmark's DirectoryConnection and stand-in.
pub const ORG_ID: u64 = 4242;
/// Token that the stand-in accepts. It is a test value, not a credential.
pub const TOKEN: &str = "y0_bench-token";
/// Key of the image in each ConfigMap.
pub const IMAGE_KEY: &str = "portrait.png";
/// Field manager of every object the benchmark writes.
const FIELD_MANAGER: &str = "y360-bench";
/// Attempts of one create or patch that fails with a retryable error.
const ATTEMPTS: u32 = 3;

/// Returns the API resource of UserAvatar.
pub fn avatar_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("y360-avatar-operator.dev", "v1alpha1", "UserAvatar");
    ApiResource::from_gvk_with_plural(&gvk, "useravatars")
}

fn connection_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk(
        "y360-avatar-operator.dev",
        "v1alpha1",
        "DirectoryConnection",
    );
    ApiResource::from_gvk_with_plural(&gvk, "directoryconnections")
}

/// Name of the UserAvatar with index `index`.
pub fn avatar_name(index: usize) -> String {
    format!("user-{index:05}")
}

/// Name of the ConfigMap that contains the image of UserAvatar `index`.
pub fn config_map_name(index: usize) -> String {
    format!("portrait-{index:05}")
}

/// Directory user id of UserAvatar `index`: digits only, as the API requires.
pub fn user_id(index: usize) -> String {
    format!("{}", 1_130_000_000_000_000u64 + index as u64)
}

/// Seed of the image of object `index` at `version`, distinct for each pair and set.
pub fn image_seed(set: u64, index: usize, version: u64) -> u64 {
    (set << 48) | ((index as u64) << 16) | version
}

/// Creates a namespace, or does nothing when it exists.
pub async fn ensure_namespace(client: &Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&post_params(), &namespace).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(error) => Err(error).with_context(|| format!("failed to create namespace {name}")),
    }
}

/// Creates the token Secret `directory-token` and the DirectoryConnection `default` that
/// sends uploads to `api_url`.
pub async fn create_connection(client: &Client, namespace: &str, api_url: &str) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("directory-token".into()),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([("token".to_owned(), TOKEN.to_owned())])),
        ..Default::default()
    };
    secrets
        .create(&post_params(), &secret)
        .await
        .context("failed to create the token Secret")?;

    let resource = connection_resource();
    let connections: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &resource);
    let connection = DynamicObject::new("default", &resource).data(json!({
        "spec": {
            "orgId": ORG_ID,
            "apiUrl": api_url,
            "tokenSecretRef": { "name": "directory-token", "key": "token" },
        }
    }));
    connections
        .create(&post_params(), &connection)
        .await
        .context("failed to create the DirectoryConnection")?;
    Ok(())
}

/// Creates UserAvatars `0..count`, each with its own ConfigMap holding a distinct PNG of
/// `image_bytes` bytes, with at most `in_flight` objects being created at once. Returns the
/// content hash of each image, by index.
pub async fn create_avatars(
    client: &Client,
    namespace: &str,
    set: u64,
    count: usize,
    image_bytes: usize,
    in_flight: usize,
) -> Result<Vec<String>> {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let avatars: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &avatar_resource());
    let create_one = |index: usize| {
        let config_maps = config_maps.clone();
        let avatars = avatars.clone();
        async move {
            let image = png_image(image_seed(set, index, 0), image_bytes);
            let hash = content_hash(&image);
            let config_map = image_config_map(&config_map_name(index), image);
            let params = post_params();
            retry(|| config_maps.create(&params, &config_map))
                .await
                .with_context(|| {
                    format!("failed to create ConfigMap {}", config_map_name(index))
                })?;
            let avatar = DynamicObject::new(&avatar_name(index), &avatar_resource()).data(json!({
                "spec": {
                    "userId": user_id(index),
                    "source": { "configMap": { "name": config_map_name(index), "key": IMAGE_KEY } },
                }
            }));
            retry(|| avatars.create(&params, &avatar))
                .await
                .with_context(|| format!("failed to create UserAvatar {}", avatar_name(index)))?;
            anyhow::Ok((index, hash))
        }
    };
    let mut hashes: Vec<(usize, String)> = stream::iter(0..count)
        .map(create_one)
        .buffer_unordered(in_flight.max(1))
        .try_collect()
        .await?;
    hashes.sort_unstable();
    Ok(hashes.into_iter().map(|(_, hash)| hash).collect())
}

/// Replaces the image of object `index` with a new one, with a JSON merge patch (one PATCH
/// request). Returns the new content hash.
pub async fn replace_image(
    client: &Client,
    namespace: &str,
    set: u64,
    index: usize,
    version: u64,
    image_bytes: usize,
) -> Result<String> {
    let image = png_image(image_seed(set, index, version), image_bytes);
    let hash = content_hash(&image);
    let patch = json!({ "binaryData": { IMAGE_KEY: ByteString(image) } });
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let name = config_map_name(index);
    config_maps
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("failed to replace the image in ConfigMap {name}"))?;
    Ok(hash)
}

/// Removes `metadata.managedFields` from UserAvatars `0..count`. A merge patch that sets the
/// list to one empty entry clears it, as the Kubernetes server-side apply documentation
/// describes, and later writes by other field managers add their entries again.
pub async fn strip_managed_fields(
    client: &Client,
    namespace: &str,
    count: usize,
    in_flight: usize,
) -> Result<()> {
    let avatars: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &avatar_resource());
    let patch = json!({ "metadata": { "managedFields": [{}] } });
    let strip_one = |index: usize| {
        let avatars = avatars.clone();
        let patch = &patch;
        async move {
            let name = avatar_name(index);
            let params = PatchParams::default();
            let patch = Patch::Merge(patch);
            retry(|| avatars.patch(&name, &params, &patch))
                .await
                .with_context(|| format!("failed to strip managedFields of UserAvatar {name}"))
        }
    };
    stream::iter(0..count)
        .map(strip_one)
        .buffer_unordered(in_flight.max(1))
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// Counts and total size of the objects that [`create_noise`] created.
#[derive(Clone, Copy, Debug, Default)]
pub struct Noise {
    pub config_maps: usize,
    pub secrets: usize,
    pub bytes: u64,
}

/// Creates ConfigMaps and Secrets of `object_bytes` each, alternately, until they hold
/// `total_bytes`, spread over the namespaces `noise-0` to `noise-3`.
pub async fn create_noise(
    client: &Client,
    total_bytes: u64,
    object_bytes: usize,
    in_flight: usize,
) -> Result<Noise> {
    let namespaces: Vec<String> = (0..4).map(|i| format!("noise-{i}")).collect();
    for namespace in &namespaces {
        ensure_namespace(client, namespace).await?;
    }
    let count = total_bytes.div_ceil(object_bytes.max(1) as u64) as usize;
    let create_one = |index: usize| {
        let namespace = &namespaces[index % namespaces.len()];
        let name = format!("noise-{index:05}");
        let data = BTreeMap::from([(
            "blob".to_owned(),
            ByteString(filler_bytes(index as u64, object_bytes)),
        )]);
        let metadata = ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        };
        let client = client.clone();
        let params = post_params();
        async move {
            if index.is_multiple_of(2) {
                let api: Api<ConfigMap> = Api::namespaced(client, namespace);
                let object = ConfigMap {
                    metadata,
                    binary_data: Some(data),
                    ..Default::default()
                };
                retry(|| api.create(&params, &object)).await?;
            } else {
                let api: Api<Secret> = Api::namespaced(client, namespace);
                let object = Secret {
                    metadata,
                    data: Some(data),
                    ..Default::default()
                };
                retry(|| api.create(&params, &object)).await?;
            }
            anyhow::Ok(())
        }
    };
    stream::iter(0..count)
        .map(create_one)
        .buffer_unordered(in_flight.max(1))
        .try_collect::<Vec<()>>()
        .await
        .context("failed to create the noise objects")?;
    Ok(Noise {
        config_maps: count.div_ceil(2),
        secrets: count / 2,
        bytes: count as u64 * object_bytes as u64,
    })
}

fn image_config_map(name: &str, image: Vec<u8>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        binary_data: Some(BTreeMap::from([(IMAGE_KEY.to_owned(), ByteString(image))])),
        ..Default::default()
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    }
}

/// Runs a request up to three times, one second apart, while it fails with 429, 5xx or a
/// transport error. Other errors, such as 409, are returned at once.
async fn retry<T, F, Fut>(mut request: F) -> kube::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = kube::Result<T>>,
{
    let mut attempt = 1;
    loop {
        let error = match request().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let retryable = match &error {
            kube::Error::Api(status) => status.code == 429 || status.code >= 500,
            kube::Error::HyperError(_) | kube::Error::Service(_) => true,
            _ => false,
        };
        if !retryable || attempt == ATTEMPTS {
            return Err(error);
        }
        tracing::warn!(attempt, %error, "request failed, retrying in 1 s");
        attempt += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

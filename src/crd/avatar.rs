// The derive attributes repeat keys such as `type_` once per printer column, which clippy
// mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Desired portrait of one Yandex 360 user.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "y360-avatar-operator.dev",
    version = "v1alpha1",
    kind = "UserAvatar",
    namespaced,
    status = "UserAvatarStatus",
    shortname = "ua",
    shortname = "avatar",
    category = "y360",
    doc = "UserAvatar declares the portrait of one Yandex 360 user and where its image comes from.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "User", type_ = "string", json_path = ".spec.userId"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url"),
    printcolumn(
        name = "Hash",
        type_ = "string",
        json_path = ".status.shortHash",
        priority = 1
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct UserAvatarSpec {
    /// DirectoryConnection in the same namespace that names the organization to upload to.
    #[serde(default)]
    pub connection_ref: ConnectionReference,

    /// Yandex 360 user id: a string of digits. Write it quoted in YAML, because ids exceed
    /// 2^53 and a number loses digits.
    #[schemars(regex(pattern = r"^[0-9]{1,20}$"))]
    pub user_id: String,

    /// Source of the image bytes: exactly one of `configMap` and `url`.
    pub source: ImageSource,

    /// How often a `url` source is fetched again to look for a new image, as a duration such
    /// as `30m` or `1h`. At least one minute. Defaults to one hour.
    #[serde(default = "default_interval")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')")
        .message("interval must be a duration of at least 1m, such as 30m or 1h"))]
    pub interval: String,

    /// When true, the operator uploads nothing for this object until it is set back to false.
    #[serde(default)]
    pub suspend: bool,
}

/// Reference to a DirectoryConnection in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ConnectionReference {
    /// Name of the DirectoryConnection. Defaults to `default`.
    #[serde(default = "default_connection_name")]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Source of the image bytes. Exactly one field is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.configMap) != has(self.url)")
    .message("source must set exactly one of configMap and url"))]
pub struct ImageSource {
    /// A key of a ConfigMap in the same namespace. Put the image in `binaryData`: a key in
    /// `data` is read as UTF-8 text, which a PNG or JPEG file never is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapKeySource>,

    /// An http or https URL that serves the image bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/?#]+')")
        .message("url must start with http:// or https:// followed by a host"))]
    #[schemars(length(max = 2048))]
    pub url: Option<String>,
}

/// Reference to one key of a ConfigMap in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ConfigMapKeySource {
    /// Name of the ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Key in the ConfigMap's `binaryData` or `data`.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Observed state of a UserAvatar.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserAvatarStatus {
    /// Generation of the spec that this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Link to the portrait that the Directory API returned for the last upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,

    /// `sha256:<hex>` of the image bytes last uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,

    /// First 12 hex digits of contentHash, for `kubectl get -o wide`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_hash: Option<String>,

    /// Media type of the image bytes last uploaded: `image/png` or `image/jpeg`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,

    /// Connection, organization and user that the last upload went to. A change of any of them
    /// uploads the image again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_to: Option<UploadTarget>,

    /// Time of the last successful upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_upload_time: Option<Time>,

    /// Message of the last failed attempt. Empty when the last attempt succeeded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_error: String,

    /// Version of the source that contentHash was computed from: the ConfigMap's
    /// resourceVersion for a `configMap` source. An unchanged version is not read again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_version: Option<String>,

    /// Value of the `y360-avatar-operator.dev/reupload` annotation that the last upload
    /// handled. Setting the annotation to a new value uploads the current image once more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reupload: Option<String>,

    /// `Ready` is True when the current image is uploaded. Its reason gives the cause when it is not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Destination of an upload.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UploadTarget {
    /// Name of the DirectoryConnection used.
    pub connection: String,

    /// Organization id.
    pub org_id: u64,

    /// User id.
    pub user_id: String,
}

impl Default for ConnectionReference {
    fn default() -> Self {
        Self {
            name: default_connection_name(),
        }
    }
}

fn default_connection_name() -> String {
    "default".to_owned()
}

fn default_interval() -> String {
    "1h".to_owned()
}

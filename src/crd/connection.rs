// The derive attributes repeat keys such as `type_` once per printer column, which clippy
// mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Default base URL of the Directory API.
pub const DEFAULT_API_URL: &str = "https://api360.yandex.net";

/// How to reach one Yandex 360 organization: its id, the API base URL and the Secret that contains
/// an OAuth token with the `directory:write_users` scope.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "y360-avatar-operator.dev",
    version = "v1alpha1",
    kind = "DirectoryConnection",
    namespaced,
    status = "DirectoryConnectionStatus",
    shortname = "dirconn",
    category = "y360",
    doc = "DirectoryConnection names a Yandex 360 organization and the Secret holding its OAuth token.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Org", type_ = "integer", json_path = ".spec.orgId"),
    printcolumn(
        name = "API",
        type_ = "string",
        json_path = ".spec.apiUrl",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryConnectionSpec {
    /// Numeric id of the Yandex 360 organization.
    #[schemars(range(min = 1))]
    pub org_id: u64,

    /// Base URL of the Directory API, without a trailing slash. The operator appends
    /// `/directory/v1/org/{orgId}/users/{userId}/avatar`. For an on-premises installation set
    /// `pathLayout: OnPremises`, which appends `/v1/api360/directory/org/...` instead.
    #[serde(default = "default_api_url")]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/?#]+(/[^?#]*)?$') && !self.endsWith('/')")
        .message("apiUrl must be an http or https URL without a query, fragment or trailing slash"))]
    pub api_url: String,

    /// Path layout under apiUrl: `Cloud` (the default, `/directory/v1/org/...`) or `OnPremises`
    /// (`/v1/api360/directory/org/...`).
    #[serde(default)]
    pub path_layout: PathLayout,

    /// Secret in the same namespace and the key in it that contains the OAuth token.
    pub token_secret_ref: SecretKeyReference,
}

/// Path layout of the Directory API under the base URL.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PathLayout {
    /// `{apiUrl}/directory/v1/org/{orgId}/users/{userId}/avatar`.
    #[default]
    Cloud,
    /// `{apiUrl}/v1/api360/directory/org/{orgId}/users/{userId}/avatar`.
    OnPremises,
}

/// Reference to one key of a Secret in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SecretKeyReference {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Key in the Secret's data whose value is the token.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Observed state of a DirectoryConnection.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryConnectionStatus {
    /// Generation of the spec that this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready` is True when the token Secret and key exist and hold a usable token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

fn default_api_url() -> String {
    DEFAULT_API_URL.to_owned()
}

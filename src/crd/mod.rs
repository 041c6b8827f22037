//! Custom resources served by the operator and the shared status types they use.

mod avatar;
mod connection;

pub use avatar::{
    ConfigMapKeySource, ConnectionReference, ImageSource, UploadTarget, UserAvatar, UserAvatarSpec,
    UserAvatarStatus,
};
pub use connection::{
    DEFAULT_API_URL, DirectoryConnection, DirectoryConnectionSpec, DirectoryConnectionStatus,
    PathLayout, SecretKeyReference,
};

use kube::CustomResourceExt;

/// API group of every custom resource in this crate.
pub const GROUP: &str = "y360-avatar-operator.dev";

/// Renders every CustomResourceDefinition as one multi-document YAML stream.
pub fn render_all() -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string_multiple(&[UserAvatar::crd(), DirectoryConnection::crd()])
}

//! Kubernetes operator that uploads the portraits declared in `UserAvatar` resources to the
//! Yandex 360 Directory.

pub mod crd;
pub mod directory;
pub mod image;
pub mod reason;
pub mod source;

/// Installs ring as the process-wide TLS crypto provider. reqwest is built without a provider
/// of its own, and kube already links ring, so both clients share it.
pub fn install_crypto_provider() {
    // An Err means a provider is installed already, which is what this function ensures.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
pub mod admin;
pub mod cli;
pub mod controller;
pub mod credentials;
pub mod leader;
pub mod metrics;
pub mod rate_limit;
pub mod reconcile;
pub mod retry;
pub mod status;
pub mod telemetry;
pub mod usage;
pub mod watches;

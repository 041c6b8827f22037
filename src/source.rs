//! Reading image bytes from a ConfigMap key or an http(s) URL.

mod config_map;
mod url_fetch;

pub use config_map::{ConfigMapBytes, read_config_map_key};
pub use url_fetch::{FetchLimits, Fetched, UrlFetcher, UrlPolicy};

use crate::reason::{Failure, Reason};

/// Failure to read the image bytes.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("ConfigMap {name:?} not found")]
    ConfigMapNotFound { name: String },

    #[error("key {key:?} not found in ConfigMap {name:?}")]
    KeyNotFound { name: String, key: String },

    #[error("failed to read ConfigMap {name:?}")]
    ReadConfigMap {
        name: String,
        #[source]
        source: kube::Error,
    },

    #[error("URL {url} is not allowed: {reason}")]
    UrlForbidden { url: String, reason: String },

    #[error("fetching {url} timed out")]
    TimedOut { url: String },

    #[error("fetching {url} failed: {reason}")]
    Unreachable { url: String, reason: String },

    #[error("{url} answered HTTP {status}")]
    HttpStatus {
        url: String,
        status: u16,
        retry_after_secs: Option<u64>,
    },

    #[error("{url} sent more than the limit of {max} bytes")]
    TooLarge { url: String, max: usize },
}

impl SourceError {
    /// Maps the error to the failure shown in status.
    pub fn to_failure(&self) -> Failure {
        let reason = match self {
            Self::ConfigMapNotFound { .. } => Reason::SourceNotFound,
            Self::KeyNotFound { .. } => Reason::SourceKeyNotFound,
            Self::ReadConfigMap { .. } => Reason::KubernetesApiError,
            Self::UrlForbidden { .. } => Reason::UrlForbidden,
            Self::TimedOut { .. } => Reason::SourceTimedOut,
            Self::Unreachable { .. } => Reason::SourceUnreachable,
            Self::HttpStatus { status, .. } => http_status_reason(*status),
            Self::TooLarge { .. } => Reason::SourceTooLarge,
        };
        let mut failure = Failure::new(reason, self.to_string());
        if let Self::HttpStatus {
            retry_after_secs, ..
        } = self
        {
            failure.retry_after_secs = *retry_after_secs;
        }
        failure
    }
}

fn http_status_reason(status: u16) -> Reason {
    match status {
        404 | 410 => Reason::SourceNotFound,
        400..=499 if status != 408 && status != 429 => Reason::SourceNotFound,
        _ => Reason::SourceUnreachable,
    }
}

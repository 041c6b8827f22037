//! Fixed failure and success reasons. Each one is used unchanged as a condition reason, an
//! Event reason and a metric label, so the set stays small and never contains object names.

/// Cause of a UserAvatar being up to date or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    UpToDate,
    Uploaded,
    Suspended,
    InvalidSpec,
    ConnectionNotFound,
    CredentialsNotFound,
    CredentialsInvalid,
    SourceNotFound,
    SourceKeyNotFound,
    SourceTooLarge,
    SourceUnreachable,
    SourceTimedOut,
    UrlForbidden,
    UnsupportedImageFormat,
    EmptyImage,
    TruncatedImage,
    BadRequest,
    Unauthorized,
    Forbidden,
    UserNotFound,
    RateLimited,
    DirectoryUnavailable,
    KubernetesApiError,
}

/// Recovery path of a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Retrying the same request may succeed: back off and try again.
    Retry,
    /// Only a change to the spec, the source, the connection or the token can clear it.
    AwaitChange,
}

impl Reason {
    /// Returns the CamelCase name used for conditions, Events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UpToDate => "UpToDate",
            Self::Uploaded => "Uploaded",
            Self::Suspended => "Suspended",
            Self::InvalidSpec => "InvalidSpec",
            Self::ConnectionNotFound => "ConnectionNotFound",
            Self::CredentialsNotFound => "CredentialsNotFound",
            Self::CredentialsInvalid => "CredentialsInvalid",
            Self::SourceNotFound => "SourceNotFound",
            Self::SourceKeyNotFound => "SourceKeyNotFound",
            Self::SourceTooLarge => "SourceTooLarge",
            Self::SourceUnreachable => "SourceUnreachable",
            Self::SourceTimedOut => "SourceTimedOut",
            Self::UrlForbidden => "UrlForbidden",
            Self::UnsupportedImageFormat => "UnsupportedImageFormat",
            Self::EmptyImage => "EmptyImage",
            Self::TruncatedImage => "TruncatedImage",
            Self::BadRequest => "BadRequest",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden => "Forbidden",
            Self::UserNotFound => "UserNotFound",
            Self::RateLimited => "RateLimited",
            Self::DirectoryUnavailable => "DirectoryUnavailable",
            Self::KubernetesApiError => "KubernetesApiError",
        }
    }

    /// Returns how a failure with this reason clears.
    pub fn recovery(self) -> Recovery {
        match self {
            Self::SourceUnreachable
            | Self::SourceTimedOut
            | Self::RateLimited
            | Self::DirectoryUnavailable
            | Self::KubernetesApiError => Recovery::Retry,
            _ => Recovery::AwaitChange,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure as it is shown to users: a fixed reason and a stable message that contains no
/// timestamps, request ids, tokens or upstream response bodies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: Reason,
    pub message: String,
    /// Delay the remote side asked for with `Retry-After`, in seconds.
    pub retry_after_secs: Option<u64>,
}

impl Failure {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            retry_after_secs: None,
        }
    }
}

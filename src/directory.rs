//! Client for the Yandex 360 Directory API call that sets a user's portrait.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use serde::Deserialize;
use url::Url;

use crate::crd::PathLayout;
use crate::image::Image;
use crate::reason::{Failure, Reason};

/// Failure of an upload.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("invalid Directory API URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: &'static str },

    #[error("the OAuth token is not a valid HTTP header value")]
    InvalidToken,

    #[error("Directory API request timed out")]
    TimedOut,

    #[error("Directory API request failed: {0}")]
    Request(#[source] reqwest::Error),

    #[error("Directory API answered HTTP {status} (code {code:?}): {message}")]
    Api {
        status: u16,
        code: Option<i64>,
        message: String,
        retry_after_secs: Option<u64>,
    },

    #[error("Directory API answered HTTP 200 without a url field")]
    MissingUrl,
}

/// A successful upload.
#[derive(Debug, Deserialize)]
pub struct Uploaded {
    pub url: String,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    code: Option<i64>,
    #[serde(default)]
    message: String,
}

/// Location of one organization's Directory API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub api_url: String,
    pub layout: PathLayout,
    pub org_id: u64,
}

/// An OAuth token that never appears in Debug output.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    fn header_value(&self) -> Option<HeaderValue> {
        let mut value = HeaderValue::from_str(&format!("OAuth {}", self.0)).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Timeouts of Directory API requests.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    pub total: Duration,
}

/// Sends portraits to the Directory API. Follows no redirects, so the token is never sent to
/// another host.
#[derive(Clone)]
pub struct DirectoryClient {
    http: reqwest::Client,
}

impl DirectoryClient {
    pub fn new(timeouts: Timeouts) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.total)
            .user_agent(concat!("y360-avatar-operator/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http })
    }

    /// Uploads the image as the portrait of `user_id` with
    /// `PUT .../org/{orgId}/users/{userId}/avatar` and returns the URL the API sends back.
    pub async fn upload_avatar(
        &self,
        endpoint: &Endpoint,
        user_id: &str,
        token: &Token,
        image: &Image,
    ) -> Result<Uploaded, DirectoryError> {
        let url = avatar_url(endpoint, user_id)?;
        let authorization = token.header_value().ok_or(DirectoryError::InvalidToken)?;

        let request = self
            .http
            .put(url)
            .header(AUTHORIZATION, authorization)
            .header(CONTENT_TYPE, image.content_type())
            .body(image.bytes.clone());
        let response = request.send().await.map_err(request_error)?;
        read_response(response).await
    }
}

/// Builds the avatar URL, percent-encoding each path segment.
pub fn avatar_url(endpoint: &Endpoint, user_id: &str) -> Result<Url, DirectoryError> {
    let invalid = |reason| DirectoryError::InvalidUrl {
        url: endpoint.api_url.clone(),
        reason,
    };
    let mut url = Url::parse(&endpoint.api_url).map_err(|_| invalid("not a valid URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme is not http or https"));
    }

    let org = endpoint.org_id.to_string();
    let prefix: &[&str] = match endpoint.layout {
        PathLayout::Cloud => &["directory", "v1", "org"],
        PathLayout::OnPremises => &["v1", "api360", "directory", "org"],
    };
    let mut segments = url
        .path_segments_mut()
        .map_err(|_| invalid("the URL cannot have a path"))?;
    segments.pop_if_empty().extend(prefix);
    segments.extend([org.as_str(), "users", user_id, "avatar"]);
    drop(segments);
    Ok(url)
}

fn request_error(error: reqwest::Error) -> DirectoryError {
    if error.is_timeout() {
        DirectoryError::TimedOut
    } else {
        DirectoryError::Request(error.without_url())
    }
}

async fn read_response(response: reqwest::Response) -> Result<Uploaded, DirectoryError> {
    let status = response.status().as_u16();
    let retry_after_secs = retry_after_secs(response.headers().get(RETRY_AFTER));
    let body = response.bytes().await.map_err(request_error)?;

    if status == 200 {
        let uploaded: Uploaded =
            serde_json::from_slice(&body).map_err(|_| DirectoryError::MissingUrl)?;
        return Ok(uploaded);
    }
    let parsed: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
    Err(DirectoryError::Api {
        status,
        code: parsed.code,
        message: parsed.message,
        retry_after_secs,
    })
}

/// Reads `Retry-After` given in seconds.
// NOTE: the HTTP-date form of Retry-After is ignored and the normal backoff applies instead.
fn retry_after_secs(value: Option<&HeaderValue>) -> Option<u64> {
    value?.to_str().ok()?.trim().parse().ok()
}

impl DirectoryError {
    /// Returns the HTTP status of the response, when one came.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            Self::MissingUrl => Some(200),
            _ => None,
        }
    }

    /// Maps the error to the failure shown in status. The message leaves out the upstream
    /// text, which may change between identical failures.
    pub fn to_failure(&self) -> Failure {
        let (reason, message) = match self {
            Self::InvalidUrl { .. } => (Reason::InvalidSpec, self.to_string()),
            Self::InvalidToken => (Reason::CredentialsInvalid, self.to_string()),
            Self::TimedOut => (Reason::DirectoryUnavailable, self.to_string()),
            Self::Request(_) => (
                Reason::DirectoryUnavailable,
                "Directory API is unreachable".into(),
            ),
            Self::MissingUrl => (Reason::DirectoryUnavailable, self.to_string()),
            Self::Api { status, .. } => api_failure(*status),
        };
        let mut failure = Failure::new(reason, message);
        if let Self::Api {
            retry_after_secs, ..
        } = self
        {
            failure.retry_after_secs = *retry_after_secs;
        }
        failure
    }
}

fn api_failure(status: u16) -> (Reason, String) {
    let (reason, what) = match status {
        400 => (Reason::BadRequest, "rejected the request as invalid"),
        401 => (
            Reason::Unauthorized,
            "rejected the token: it is missing, invalid or expired",
        ),
        403 => (
            Reason::Forbidden,
            "denied access: the token lacks the directory:write_users scope or the user cannot be changed",
        ),
        404 => (
            Reason::UserNotFound,
            "did not find the organization or the user",
        ),
        429 => (Reason::RateLimited, "is rate limiting requests"),
        _ => (Reason::DirectoryUnavailable, "failed"),
    };
    (reason, format!("Directory API {what} (HTTP {status})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(api_url: &str, layout: PathLayout) -> Endpoint {
        Endpoint {
            api_url: api_url.into(),
            layout,
            org_id: 42,
        }
    }

    #[test]
    fn avatar_url_uses_cloud_layout() {
        let url = avatar_url(
            &endpoint("https://api360.example.test", PathLayout::Cloud),
            "7",
        );
        let expected = "https://api360.example.test/directory/v1/org/42/users/7/avatar";
        assert_eq!(url.unwrap().as_str(), expected);
    }

    #[test]
    fn avatar_url_keeps_path_prefix_on_premises() {
        let base = "https://cloud-api.corp.test/gateway";
        let url = avatar_url(&endpoint(base, PathLayout::OnPremises), "7").unwrap();
        let expected =
            "https://cloud-api.corp.test/gateway/v1/api360/directory/org/42/users/7/avatar";
        assert_eq!(url.as_str(), expected);
    }

    #[test]
    fn avatar_url_percent_encodes_user_id() {
        let url = avatar_url(&endpoint("https://h.test", PathLayout::Cloud), "1/../x").unwrap();
        assert_eq!(url.path(), "/directory/v1/org/42/users/1%2F..%2Fx/avatar");
    }

    #[test]
    fn avatar_url_rejects_other_schemes() {
        let err = avatar_url(&endpoint("ftp://h.test", PathLayout::Cloud), "7").unwrap_err();
        assert!(matches!(err, DirectoryError::InvalidUrl { .. }), "{err:?}");
    }

    #[test]
    fn token_debug_is_redacted() {
        let token = Token::new("secret-value".into());
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
    }

    #[test]
    fn api_statuses_map_to_reasons() {
        let cases = [
            (400, Reason::BadRequest),
            (401, Reason::Unauthorized),
            (403, Reason::Forbidden),
            (404, Reason::UserNotFound),
            (429, Reason::RateLimited),
            (500, Reason::DirectoryUnavailable),
            (503, Reason::DirectoryUnavailable),
        ];
        for (status, reason) in cases {
            assert_eq!(api_failure(status).0, reason, "HTTP {status}");
        }
    }

    #[test]
    fn retry_after_reads_seconds() {
        assert_eq!(
            retry_after_secs(Some(&HeaderValue::from_static(" 30 "))),
            Some(30)
        );
        let date = HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(retry_after_secs(Some(&date)), None);
    }
}

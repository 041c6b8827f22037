use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_LENGTH, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use url::Url;

use super::SourceError;

/// Policy for the URLs that may be fetched. Addresses inside the cluster or the host (loopback, private,
/// link-local including the cloud metadata address, carrier-grade NAT, IPv6 unique-local) are
/// refused unless `allowed_networks` names them.
#[derive(Clone, Debug, Default)]
pub struct UrlPolicy {
    pub allow_http: bool,
    pub allowed_networks: Vec<IpNet>,
}

/// Size, redirect and time limits of one fetch.
#[derive(Clone, Copy, Debug)]
pub struct FetchLimits {
    pub max_bytes: usize,
    pub max_redirects: usize,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub total_timeout: Duration,
}

/// Result of a fetch that may be conditional.
pub enum Fetched {
    /// The server confirmed that the validators still match.
    NotModified,
    /// New bytes and the validator to send next time (`ETag`, else `Last-Modified`).
    Body {
        bytes: Vec<u8>,
        validator: Option<String>,
    },
}

/// Fetches URL sources. Sends no credentials, decompresses nothing, and connects only to
/// addresses that pass the policy, on the first request and on every redirect.
#[derive(Clone)]
pub struct UrlFetcher {
    http: reqwest::Client,
    policy: Arc<UrlPolicy>,
    max_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Forbidden(String);

impl UrlFetcher {
    pub fn new(policy: UrlPolicy, limits: FetchLimits) -> Result<Self, reqwest::Error> {
        let policy = Arc::new(policy);
        let http = reqwest::Client::builder()
            .dns_resolver(GuardedResolver {
                policy: policy.clone(),
            })
            .redirect(redirect_policy(policy.clone(), limits.max_redirects))
            .connect_timeout(limits.connect_timeout)
            .read_timeout(limits.read_timeout)
            .timeout(limits.total_timeout)
            .user_agent(concat!("y360-avatar-operator/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let max_bytes = limits.max_bytes;
        Ok(Self {
            http,
            policy,
            max_bytes,
        })
    }

    /// Fetches `url`, sending `validator` as `If-None-Match` (an ETag) or `If-Modified-Since`.
    pub async fn fetch(
        &self,
        raw_url: &str,
        validator: Option<&str>,
    ) -> Result<Fetched, SourceError> {
        let url = Url::parse(raw_url).map_err(|_| SourceError::UrlForbidden {
            url: redact(raw_url),
            reason: "not a valid URL".into(),
        })?;
        let shown = redact(url.as_str());
        self.policy
            .check_url(&url)
            .map_err(|reason| SourceError::UrlForbidden {
                url: shown.clone(),
                reason,
            })?;

        let request = with_validator(self.http.get(url), validator);
        let response = request
            .send()
            .await
            .map_err(|error| fetch_error(&shown, error))?;
        self.read_body(&shown, response).await
    }

    async fn read_body(
        &self,
        shown: &str,
        response: reqwest::Response,
    ) -> Result<Fetched, SourceError> {
        let status = response.status().as_u16();
        if status == 304 {
            return Ok(Fetched::NotModified);
        }
        if status != 200 {
            let retry_after_secs = header_str(&response, reqwest::header::RETRY_AFTER)
                .and_then(|value| value.trim().parse().ok());
            return Err(SourceError::HttpStatus {
                url: shown.into(),
                status,
                retry_after_secs,
            });
        }

        let too_large = || SourceError::TooLarge {
            url: shown.into(),
            max: self.max_bytes,
        };
        let declared = header_str(&response, CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.max_bytes as u64) {
            return Err(too_large());
        }
        let validator =
            header_str(&response, ETAG).or_else(|| header_str(&response, LAST_MODIFIED));

        let mut bytes = Vec::with_capacity(declared.unwrap_or(0) as usize);
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| fetch_error(shown, error))?;
            if bytes.len() + chunk.len() > self.max_bytes {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Fetched::Body { bytes, validator })
    }
}

fn with_validator(
    request: reqwest::RequestBuilder,
    validator: Option<&str>,
) -> reqwest::RequestBuilder {
    match validator {
        Some(etag) if etag.starts_with('"') || etag.starts_with("W/") => {
            request.header(IF_NONE_MATCH, etag)
        }
        Some(date) => request.header(IF_MODIFIED_SINCE, date),
        None => request,
    }
}

fn header_str(response: &reqwest::Response, name: reqwest::header::HeaderName) -> Option<String> {
    Some(response.headers().get(name)?.to_str().ok()?.to_owned())
}

fn fetch_error(shown: &str, error: reqwest::Error) -> SourceError {
    if let Some(forbidden) = find_source::<Forbidden>(&error) {
        return SourceError::UrlForbidden {
            url: shown.into(),
            reason: forbidden.0.clone(),
        };
    }
    if error.is_timeout() {
        return SourceError::TimedOut { url: shown.into() };
    }
    let reason = if error.is_connect() {
        "the connection failed"
    } else if error.is_redirect() {
        "too many redirects"
    } else if error.is_body() || error.is_decode() {
        "the response body was cut off"
    } else {
        "the request failed"
    };
    SourceError::Unreachable {
        url: shown.into(),
        reason: reason.into(),
    }
}

fn find_source<'a, T: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        current = error.source();
    }
    None
}

/// Returns the URL without userinfo, query and fragment, for messages and logs.
pub fn redact(raw: &str) -> String {
    let Ok(mut url) = Url::parse(raw) else {
        return "<invalid URL>".into();
    };
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

impl UrlPolicy {
    /// Checks the scheme and, for a host given as an IP address, the address itself. Host
    /// names are checked after resolution by the resolver.
    pub fn check_url(&self, url: &Url) -> Result<(), String> {
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => {
                return Err(
                    "http is disabled; use https or start the operator with --allow-http".into(),
                );
            }
            other => return Err(format!("scheme {other} is not http or https")),
        }
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => Ok(()),
            None => Err("the URL has no host".into()),
        }
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        if self.is_allowed(ip) {
            Ok(())
        } else {
            Err(format!(
                "address {ip} is internal; allow it with --allow-url-network"
            ))
        }
    }

    /// Returns whether the operator may connect to `ip`.
    pub fn is_allowed(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if self
            .allowed_networks
            .iter()
            .any(|network| network.contains(&ip))
        {
            return true;
        }
        !is_internal(ip)
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let cgnat = v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64;
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.octets()[0] == 0
                || cgnat
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

struct GuardedResolver {
    policy: Arc<UrlPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|addr| policy.is_allowed(addr.ip()))
                .collect();
            if allowed.is_empty() && !resolved.is_empty() {
                let message = format!(
                    "{host} resolves only to internal addresses; allow them with --allow-url-network"
                );
                return Err(
                    Box::new(Forbidden(message)) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

fn redirect_policy(policy: Arc<UrlPolicy>, max_redirects: usize) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > max_redirects {
            return attempt.error(Forbidden(format!("more than {max_redirects} redirects")));
        }
        match policy.check_url(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(reason) => attempt.error(Forbidden(format!("redirect refused: {reason}"))),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> UrlPolicy {
        UrlPolicy {
            allow_http: false,
            allowed_networks: Vec::new(),
        }
    }

    #[test]
    fn internal_addresses_are_refused() {
        let internal = [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ];
        for address in internal {
            let ip: IpAddr = address.parse().unwrap();
            assert!(!policy().is_allowed(ip), "{address} should be refused");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for address in ["93.184.216.34", "2a02:6b8::1", "100.128.0.1"] {
            let ip: IpAddr = address.parse().unwrap();
            assert!(policy().is_allowed(ip), "{address} should be allowed");
        }
    }

    #[test]
    fn allowlist_admits_internal_network() {
        let policy = UrlPolicy {
            allow_http: false,
            allowed_networks: vec!["127.0.0.0/8".parse().unwrap()],
        };
        assert!(policy.is_allowed("127.0.0.1".parse().unwrap()));
        assert!(!policy.is_allowed("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn http_needs_allow_http() {
        let url = Url::parse("http://images.example.test/a.png").unwrap();
        assert!(policy().check_url(&url).is_err());
        let permissive = UrlPolicy {
            allow_http: true,
            ..policy()
        };
        assert!(permissive.check_url(&url).is_ok());
    }

    #[test]
    fn ip_literal_host_is_checked() {
        let url = Url::parse("https://169.254.169.254/latest/meta-data").unwrap();
        let err = policy().check_url(&url).unwrap_err();
        assert!(err.contains("169.254.169.254"), "{err}");
    }

    #[test]
    fn redact_drops_userinfo_and_query() {
        let shown = redact("https://user:pass@images.example.test/a.png?sig=abc#frag");
        assert_eq!(shown, "https://images.example.test/a.png");
    }
}

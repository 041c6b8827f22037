//! Loopback stand-in for the Yandex 360 Directory API call that sets a user's portrait.
//!
//! The server follows the public contract of
//! `PUT {apiUrl}/directory/v1/org/{orgId}/users/{userId}/avatar`: an `Authorization: OAuth
//! <token>` header, a `Content-Type` of `image/png` or `image/jpeg` that matches the bytes, and
//! the raw image as the body. A 200 carries `{"url": ...}`, and every error status carries
//! `{"code", "message", "details": [{"@type", "reason"}]}` with gRPC-style codes. It records
//! every request, rejected ones included, and can be scripted to fail per user. Routes under
//! `/_standin/` expose the records to other processes and never count as API requests.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{any, get};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Host name used in the portrait URLs returned on success. `.test` is reserved by RFC 2606,
/// so the URLs never point at a real host.
pub const AVATAR_HOST: &str = "avatars.example.test";

const ERROR_INFO_TYPE: &str = "type.googleapis.com/google.rpc.ErrorInfo";
const PNG_SIGNATURE: &[u8] = &[0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];
const JPEG_SIGNATURE: &[u8] = &[0xFF, 0xD8, 0xFF];

/// Path layout of the avatar call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// `{prefix}/directory/v1/org/{orgId}/users/{userId}/avatar`, as on `api360.yandex.net`.
    #[default]
    Cloud,
    /// `{prefix}/v1/api360/directory/org/{orgId}/users/{userId}/avatar`, as on on-premises
    /// `cloud-api.<domain>` installations.
    #[value(name = "on-prem")]
    OnPremises,
}

impl Layout {
    /// Returns the avatar path below the prefix, with `{org_id}` and `{user_id}` placeholders.
    fn route_template(self) -> &'static str {
        match self {
            Layout::Cloud => "/directory/v1/org/{org_id}/users/{user_id}/avatar",
            Layout::OnPremises => "/v1/api360/directory/org/{org_id}/users/{user_id}/avatar",
        }
    }

    /// Builds the avatar path for one organization and user, without the prefix.
    pub fn avatar_path(self, org_id: u64, user_id: &str) -> String {
        self.route_template()
            .replace("{org_id}", &org_id.to_string())
            .replace("{user_id}", user_id)
    }
}

/// Settings for [`DirectoryStandIn::start`].
#[derive(Clone)]
pub struct StandInConfig {
    /// Address to bind. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// The only organization id that exists. Requests for any other id get 404.
    pub org_id: u64,
    /// OAuth token that the `Authorization` header must carry.
    pub token: String,
    /// Path layout of the avatar call.
    pub layout: Layout,
    /// Path prefix before the layout's path, such as `/api`. Empty by default.
    pub path_prefix: String,
    /// Delay added before responding to every PUT on the avatar path, to model the service
    /// time of the real API. Zero by default.
    pub latency: Duration,
}

impl StandInConfig {
    /// Creates a config that binds a free loopback port and uses the cloud layout.
    pub fn new(org_id: u64, token: impl Into<String>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            org_id,
            token: token.into(),
            layout: Layout::Cloud,
            path_prefix: String::new(),
            latency: Duration::ZERO,
        }
    }
}

impl fmt::Debug for StandInConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandInConfig")
            .field("listen", &self.listen)
            .field("org_id", &self.org_id)
            .field("token", &"<redacted>")
            .field("layout", &self.layout)
            .field("path_prefix", &self.path_prefix)
            .field("latency", &self.latency)
            .finish()
    }
}

/// Scripted response to requests about one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Validates the request and responds as the real API does.
    Normal,
    /// Responds with this status and the error body, without validating the request. Meant
    /// for error statuses, although a 2xx code also gets the error body.
    Status(u16),
    /// Like `Status`, plus a `Retry-After` header with this many seconds.
    StatusWithRetryAfter(u16, u64),
    /// Waits this long, then responds as `Normal`.
    Delay(Duration),
    /// Sends no response while the stand-in runs. Dropping the stand-in ends the wait with a
    /// 503 response.
    Hang,
}

/// One request that reached the API routes, in arrival order.
#[derive(Clone, Debug, Serialize)]
pub struct RecordedRequest {
    /// Arrival number, starting at 0. [`DirectoryStandIn::clear`] does not reset it.
    pub id: u64,
    /// Wall-clock time at which the request body was fully read, before any latency or
    /// scripted delay.
    pub received_at: SystemTime,
    pub method: String,
    /// Request path without the query string.
    pub path: String,
    /// The `orgId` path segment as sent, or `None` when the path did not match the avatar call.
    pub org_id: Option<String>,
    /// The `userId` path segment as sent, or `None` when the path did not match the avatar call.
    pub user_id: Option<String>,
    /// Every header in the order received, with lowercase names. Values that are not UTF-8
    /// are converted lossily.
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
    /// `sha256:<hex>` of the body.
    pub body_sha256: String,
    #[serde(skip)]
    pub body: Vec<u8>,
    /// Response status, or `None` while the response is still pending.
    pub status: Option<u16>,
}

impl RecordedRequest {
    /// Returns the first value of a header, matching the name case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Replaces the credentials in `Authorization` headers, keeping the scheme.
    fn redact_credentials(mut self) -> Self {
        for (name, value) in &mut self.headers {
            if name == "authorization" {
                let scheme = value.split(' ').next().unwrap_or_default();
                *value = format!("{scheme} <redacted>");
            }
        }
        self
    }

    fn is_upload_by(&self, user_id: &str) -> bool {
        self.is_successful_upload() && self.is_about(user_id)
    }

    fn is_successful_upload(&self) -> bool {
        self.method == "PUT" && self.status == Some(200) && self.user_id.is_some()
    }

    fn is_about(&self, user_id: &str) -> bool {
        self.user_id.as_deref() == Some(user_id)
    }
}

/// Running stand-in. Dropping it stops the server and releases hanging requests.
pub struct DirectoryStandIn {
    shared: Arc<Shared>,
    addr: SocketAddr,
    layout: Layout,
    path_prefix: String,
    org_id: u64,
    shutdown: watch::Sender<bool>,
}

impl DirectoryStandIn {
    /// Binds `config.listen` and serves the API in a background tokio task.
    pub async fn start(config: StandInConfig) -> anyhow::Result<Self> {
        let path_prefix = normalize_prefix(&config.path_prefix)?;
        let listener = TcpListener::bind(config.listen).await.with_context(|| {
            format!("failed to bind the Directory stand-in to {}", config.listen)
        })?;
        let addr = listener.local_addr()?;

        let (shutdown, stopped) = watch::channel(false);
        let shared = Arc::new(Shared::new(&config, stopped.clone()));
        let router = build_router(shared.clone(), config.layout, &path_prefix);
        tokio::spawn(serve(listener, router, stopped));

        tracing::info!(
            %addr,
            layout = ?config.layout,
            prefix = %path_prefix,
            "Directory stand-in started"
        );
        Ok(Self {
            shared,
            addr,
            layout: config.layout,
            path_prefix,
            org_id: config.org_id,
            shutdown,
        })
    }

    /// Returns the bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Returns `http://127.0.0.1:PORT` followed by the path prefix: the `apiUrl` to configure.
    pub fn base_url(&self) -> String {
        format!("http://{}{}", self.addr, self.path_prefix)
    }

    /// Returns the full avatar URL for a user in the configured organization.
    pub fn avatar_url(&self, user_id: &str) -> String {
        let path = self.layout.avatar_path(self.org_id, user_id);
        format!("{}{path}", self.base_url())
    }

    /// Returns every recorded request, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Counts the PUT requests for this user that got a 200 response.
    pub fn uploads_for(&self, user_id: &str) -> usize {
        let state = self.shared.lock();
        state
            .requests
            .iter()
            .filter(|r| r.is_upload_by(user_id))
            .count()
    }

    /// Counts the PUT requests that got a 200 response, by user id. Users without one are
    /// absent.
    pub fn upload_counts(&self) -> BTreeMap<String, usize> {
        self.shared.lock().upload_counts()
    }

    /// Returns the arrival times of the PUT requests that got a 200 response, oldest first.
    pub fn upload_times(&self) -> Vec<SystemTime> {
        let state = self.shared.lock();
        let uploads = state.requests.iter().filter(|r| r.is_successful_upload());
        uploads.map(|r| r.received_at).collect()
    }

    /// Counts every recorded request for this user, whatever its method or status.
    pub fn request_count_for(&self, user_id: &str) -> usize {
        let state = self.shared.lock();
        state
            .requests
            .iter()
            .filter(|r| r.is_about(user_id))
            .count()
    }

    /// Forgets the recorded requests. Scripted replies stay.
    pub fn clear(&self) {
        self.shared.lock().requests.clear();
    }

    /// Sets the reply to every later request for this user, until changed.
    pub fn respond_to_user(&self, user_id: &str, reply: Reply) {
        self.shared.lock().replies.insert(user_id.to_owned(), reply);
    }

    /// Queues a reply to the next request for this user. Queued replies are used in order,
    /// before the reply set by [`respond_to_user`](Self::respond_to_user).
    pub fn respond_to_user_once(&self, user_id: &str, reply: Reply) {
        let mut state = self.shared.lock();
        state
            .one_shot_replies
            .entry(user_id.to_owned())
            .or_default()
            .push_back(reply);
    }

    /// Drops every scripted reply, so all users get `Reply::Normal`.
    pub fn clear_replies(&self) {
        let mut state = self.shared.lock();
        state.replies.clear();
        state.one_shot_replies.clear();
    }

    /// Replaces the accepted token. Requests with the old token then get 401.
    pub fn set_token(&self, token: impl Into<String>) {
        self.shared.lock().token = token.into();
    }
}

impl Drop for DirectoryStandIn {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Checks that a path prefix is empty or starts with `/`, and strips trailing slashes.
fn normalize_prefix(prefix: &str) -> anyhow::Result<String> {
    let trimmed = prefix.trim_end_matches('/');
    if !trimmed.is_empty() && !trimmed.starts_with('/') {
        bail!("invalid path prefix {prefix:?}: it must start with '/'");
    }
    if trimmed.contains(['{', '}', '*', '?', '#']) {
        bail!("invalid path prefix {prefix:?}: it must not contain '{{', '}}', '*', '?' or '#'");
    }
    Ok(trimmed.to_owned())
}

fn build_router(shared: Arc<Shared>, layout: Layout, path_prefix: &str) -> Router {
    let avatar_route = format!("{path_prefix}{}", layout.route_template());
    Router::new()
        .route(&avatar_route, any(handle_avatar))
        .route("/_standin/requests", get(list_requests))
        .route("/_standin/uploads", get(count_uploads))
        .fallback(handle_unknown_path)
        .layer(DefaultBodyLimit::disable())
        .with_state(shared)
}

async fn serve(listener: TcpListener, router: Router, mut stopped: watch::Receiver<bool>) {
    let shutdown = async move {
        let _ = stopped.wait_for(|stopped| *stopped).await;
    };
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await;
    match result {
        Ok(()) => tracing::info!("Directory stand-in stopped"),
        Err(error) => tracing::error!(%error, "Directory stand-in failed"),
    }
}

/// State shared between the handle and the request handlers.
struct Shared {
    state: Mutex<StandInState>,
    stopped: watch::Receiver<bool>,
    latency: Duration,
}

struct StandInState {
    org_id: u64,
    token: String,
    next_id: u64,
    requests: Vec<RecordedRequest>,
    replies: HashMap<String, Reply>,
    one_shot_replies: HashMap<String, VecDeque<Reply>>,
}

impl StandInState {
    fn upload_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        let uploads = self.requests.iter().filter(|r| r.is_successful_upload());
        for user_id in uploads.filter_map(|r| r.user_id.as_deref()) {
            *counts.entry(user_id.to_owned()).or_insert(0) += 1;
        }
        counts
    }
}

impl Shared {
    fn new(config: &StandInConfig, stopped: watch::Receiver<bool>) -> Self {
        let state = StandInState {
            org_id: config.org_id,
            token: config.token.clone(),
            next_id: 0,
            requests: Vec::new(),
            replies: HashMap::new(),
            one_shot_replies: HashMap::new(),
        };
        Self {
            state: Mutex::new(state),
            stopped,
            latency: config.latency,
        }
    }

    /// Locks the state. A handler that panicked cannot leave it half-written, so a poisoned
    /// lock is still usable.
    fn lock(&self) -> MutexGuard<'_, StandInState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stores a request on arrival and returns its id.
    fn record(&self, parts: &Parts, ids: Option<(&str, &str)>, body: &[u8]) -> u64 {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.requests.push(RecordedRequest {
            id,
            received_at: SystemTime::now(),
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            org_id: ids.map(|(org, _)| org.to_owned()),
            user_id: ids.map(|(_, user)| user.to_owned()),
            headers: header_pairs(&parts.headers),
            body_len: body.len(),
            body_sha256: format!("sha256:{}", hex::encode(Sha256::digest(body))),
            body: body.to_vec(),
            status: None,
        });
        id
    }

    /// Stores the response status and logs the request in one line.
    fn finish(&self, id: u64, status: StatusCode) {
        let mut state = self.lock();
        let Some(request) = state.requests.iter_mut().find(|r| r.id == id) else {
            return; // clear() ran while the request was in flight.
        };
        request.status = Some(status.as_u16());
        tracing::info!(
            method = %request.method,
            path = %request.path,
            user_id = request.user_id.as_deref().unwrap_or("-"),
            body_len = request.body_len,
            body_sha256 = %request.body_sha256,
            status = status.as_u16(),
            "request completed"
        );
    }

    /// Takes the next one-shot reply for the user, or else the persistent one.
    fn next_reply(&self, user_id: &str) -> Reply {
        let mut state = self.lock();
        let queued = state
            .one_shot_replies
            .get_mut(user_id)
            .and_then(VecDeque::pop_front);
        queued
            .or_else(|| state.replies.get(user_id).cloned())
            .unwrap_or(Reply::Normal)
    }

    /// Sleeps for `duration` or until shutdown, whichever comes first.
    async fn sleep(&self, duration: Duration) {
        let mut stopped = self.stopped.clone();
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            _ = stopped.wait_for(|stopped| *stopped) => {}
        }
    }

    async fn wait_for_shutdown(&self) {
        let mut stopped = self.stopped.clone();
        let _ = stopped.wait_for(|stopped| *stopped).await;
    }
}

fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect()
}

async fn handle_avatar(
    State(shared): State<Arc<Shared>>,
    Path((org_id, user_id)): Path<(String, String)>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let body = read_body(body).await;
    let body_bytes = body.as_deref().unwrap_or_default();
    let id = shared.record(&parts, Some((&org_id, &user_id)), body_bytes);

    let response = match body {
        Ok(body) => respond_to_avatar(&shared, &parts, &org_id, &user_id, &body).await,
        Err(error) => error.into_response(),
    };
    shared.finish(id, response.status());
    response
}

async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "failed to read a request body");
            ApiError::bad_request(
                "BODY_UNREADABLE",
                format!("failed to read the request body: {error}"),
            )
        })
}

/// Applies the method check, then the scripted reply, then the contract checks.
async fn respond_to_avatar(
    shared: &Shared,
    parts: &Parts,
    org_id: &str,
    user_id: &str,
    body: &[u8],
) -> Response {
    if parts.method != Method::PUT {
        return ApiError::method_not_allowed(&parts.method).into_response();
    }
    if !shared.latency.is_zero() {
        shared.sleep(shared.latency).await;
    }

    match shared.next_reply(user_id) {
        Reply::Normal => {}
        Reply::Status(status) => return ApiError::scripted(status, None).into_response(),
        Reply::StatusWithRetryAfter(status, seconds) => {
            return ApiError::scripted(status, Some(seconds)).into_response();
        }
        Reply::Delay(duration) => shared.sleep(duration).await,
        Reply::Hang => {
            shared.wait_for_shutdown().await;
            return ApiError::shutting_down().into_response();
        }
    }

    match validate_upload(shared, parts, org_id, user_id, body) {
        Ok(url) => (StatusCode::OK, Json(serde_json::json!({ "url": url }))).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Runs the contract checks in order and returns the portrait URL on success.
fn validate_upload(
    shared: &Shared,
    parts: &Parts,
    org_id: &str,
    user_id: &str,
    body: &[u8],
) -> Result<String, ApiError> {
    let (expected_org, token) = {
        let state = shared.lock();
        (state.org_id, state.token.clone())
    };
    check_token(&parts.headers, &token)?;
    let org = parse_id(org_id, "orgId", "INVALID_ORG_ID")?;
    parse_id(user_id, "userId", "INVALID_USER_ID")?;
    if org != expected_org {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "ORG_NOT_FOUND",
            format!("organization {org} not found"),
        ));
    }
    check_image(&parts.headers, body)?;
    Ok(portrait_url(org, user_id, body))
}

fn check_token(headers: &HeaderMap, expected: &str) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "MISSING_CREDENTIALS",
            "missing Authorization header; send 'OAuth <token>'",
        ));
    };
    let credentials = value.to_str().ok().and_then(|value| value.split_once(' '));
    let Some((_, token)) = credentials.filter(|(scheme, _)| scheme.eq_ignore_ascii_case("OAuth"))
    else {
        return Err(ApiError::unauthorized(
            "INVALID_AUTH_SCHEME",
            "invalid Authorization header; expected 'OAuth <token>'",
        ));
    };
    if token != expected {
        return Err(ApiError::unauthorized(
            "INVALID_TOKEN",
            "invalid or expired OAuth token",
        ));
    }
    Ok(())
}

/// Parses a path id that must be a non-empty string of ASCII digits fitting in a u64.
fn parse_id(value: &str, name: &str, reason: &'static str) -> Result<u64, ApiError> {
    let digits_only = !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit());
    let parsed = if digits_only {
        value.parse::<u64>().ok()
    } else {
        None
    };
    parsed.ok_or_else(|| {
        ApiError::bad_request(
            reason,
            format!("invalid {name} {value:?}: expected an unsigned 64-bit integer"),
        )
    })
}

/// Checks that the body is non-empty and that `Content-Type` names its real format.
fn check_image(headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "EMPTY_BODY",
            "request body is empty; send the raw image bytes",
        ));
    }
    let declared = media_type(headers)?;
    let detected = detect_image_type(body);
    match detected {
        Some(detected) if detected == declared => Ok(()),
        Some(detected) => Err(ApiError::bad_request(
            "CONTENT_TYPE_MISMATCH",
            format!("Content-Type is {declared} but the body starts with the {detected} signature"),
        )),
        None => Err(ApiError::bad_request(
            "UNRECOGNIZED_IMAGE",
            "body has neither a PNG nor a JPEG signature",
        )),
    }
}

/// Returns the declared media type, lowercased and without parameters, if it is PNG or JPEG.
fn media_type(headers: &HeaderMap) -> Result<&'static str, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(ApiError::bad_request(
            "MISSING_CONTENT_TYPE",
            "missing Content-Type; send image/png or image/jpeg",
        ));
    };
    let raw = String::from_utf8_lossy(value.as_bytes());
    let essence = raw
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "image/png" => Ok("image/png"),
        "image/jpeg" => Ok("image/jpeg"),
        _ => Err(ApiError::bad_request(
            "UNSUPPORTED_CONTENT_TYPE",
            format!("unsupported Content-Type {raw:?}; expected image/png or image/jpeg"),
        )),
    }
}

/// Detects PNG or JPEG from the magic numbers at the start of the bytes.
pub fn detect_image_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(PNG_SIGNATURE) {
        Some("image/png")
    } else if bytes.starts_with(JPEG_SIGNATURE) {
        Some("image/jpeg")
    } else {
        None
    }
}

/// Builds the URL returned for an upload. It depends only on the org, the user and the bytes.
pub fn portrait_url(org_id: u64, user_id: &str, body: &[u8]) -> String {
    let digest = hex::encode(Sha256::digest(body));
    format!(
        "https://{AVATAR_HOST}/get-yapic/{org_id}/{user_id}/{}",
        &digest[..16]
    )
}

async fn handle_unknown_path(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = read_body(body).await.unwrap_or_default();
    let id = shared.record(&parts, None, &body);
    let message = format!("no API method at {} {}", parts.method, parts.uri.path());
    let response = ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", message).into_response();
    shared.finish(id, response.status());
    response
}

async fn list_requests(State(shared): State<Arc<Shared>>) -> Json<Vec<RecordedRequest>> {
    let requests = shared.lock().requests.clone();
    Json(
        requests
            .into_iter()
            .map(RecordedRequest::redact_credentials)
            .collect(),
    )
}

async fn count_uploads(State(shared): State<Arc<Shared>>) -> Json<BTreeMap<String, usize>> {
    Json(shared.lock().upload_counts())
}

/// An error response with the `{code, message, details}` body of the Directory API.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    reason: &'static str,
    message: String,
    retry_after_seconds: Option<u64>,
    allow: Option<&'static str>,
}

#[derive(Serialize)]
struct ErrorBody {
    code: i32,
    message: String,
    details: Vec<ErrorDetail>,
}

#[derive(Serialize)]
struct ErrorDetail {
    #[serde(rename = "@type")]
    type_url: &'static str,
    reason: &'static str,
}

impl ApiError {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
            retry_after_seconds: None,
            allow: None,
        }
    }

    fn bad_request(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason, message)
    }

    fn unauthorized(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, reason, message)
    }

    fn method_not_allowed(method: &Method) -> Self {
        let message = format!("method {method} is not allowed on the avatar path; use PUT");
        let error = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            message,
        );
        Self {
            allow: Some("PUT"),
            ..error
        }
    }

    fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SHUTTING_DOWN",
            "stand-in is shutting down",
        )
    }

    /// Builds the response for `Reply::Status`. An invalid status code becomes 500.
    fn scripted(status: u16, retry_after_seconds: Option<u64>) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = status
            .canonical_reason()
            .unwrap_or("scripted error")
            .to_owned();
        let error = Self::new(status, grpc_status(status).1, message);
        Self {
            retry_after_seconds,
            ..error
        }
    }
}

/// Maps an HTTP status to the `google.rpc.Code` number and name used in the error body.
fn grpc_status(status: StatusCode) -> (i32, &'static str) {
    match status.as_u16() {
        400 => (3, "INVALID_ARGUMENT"),
        401 => (16, "UNAUTHENTICATED"),
        403 => (7, "PERMISSION_DENIED"),
        404 => (5, "NOT_FOUND"),
        405 | 501 => (12, "UNIMPLEMENTED"),
        409 => (10, "ABORTED"),
        429 => (8, "RESOURCE_EXHAUSTED"),
        500 => (13, "INTERNAL"),
        503 => (14, "UNAVAILABLE"),
        504 => (4, "DEADLINE_EXCEEDED"),
        _ => (2, "UNKNOWN"),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: grpc_status(self.status).0,
            message: self.message,
            details: vec![ErrorDetail {
                type_url: ERROR_INFO_TYPE,
                reason: self.reason,
            }],
        };
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after_seconds {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(allow) = self.allow {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}

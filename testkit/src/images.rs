//! Loopback HTTP server that serves image bytes and misbehaves on demand, per path.
//!
//! Images come from memory ([`ImageServer::put`]) or, when a directory is configured, from a
//! file of that name, read again on every request. A normal response is 200 with `ETag` (the
//! quoted first 16 hex digits of the body's sha256) and `Last-Modified`, or 304 when
//! `If-None-Match` or `If-Modified-Since` matches. [`Behaviour`] switches a path to error
//! statuses, delays, hangs, redirects, oversized, truncated or reset bodies and wrong headers.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use futures_util::stream;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Size of the chunks in which an oversized body is streamed.
const STREAM_CHUNK_BYTES: usize = 64 * 1024;

/// Pause after the last chunk of a cut-off body, which gives hyper time to write that chunk
/// to the socket before the connection is closed or reset.
const FLUSH_PAUSE: Duration = Duration::from_millis(50);

/// How the server responds to requests for one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Responds 200 with the bytes, `ETag` and `Last-Modified`, or 304 to a matching
    /// conditional request, or 404 when the path has no image.
    Normal,
    /// Responds with this status and a short text body.
    Status(u16),
    /// Like `Status`, plus a `Retry-After` header with this many seconds.
    StatusWithRetryAfter(u16, u64),
    /// Waits this long, then responds as `Normal`.
    Delay(Duration),
    /// Sends no response while the server runs. Dropping the server ends the wait with a 503
    /// response.
    Hang,
    /// Sends the headers and the first half of the body, then resets the TCP connection.
    ResetMidBody,
    /// Responds with `status` (meant for 301, 302, 303, 307 or 308) and this `Location`.
    Redirect { status: u16, location: String },
    /// Streams `bytes` bytes: the stored image (if any) followed by zeros. With
    /// `declare_length` the response carries `Content-Length`, otherwise it is chunked.
    Oversized { bytes: u64, declare_length: bool },
    /// Declares the full `Content-Length`, sends the first half of the body, then closes.
    Truncated,
    /// Responds as `Normal` but with this `Content-Type`.
    ContentType(String),
    /// Responds as `Normal` plus `Content-Encoding: gzip`, although the bytes are not compressed.
    GzipEncoding,
}

/// Settings for [`ImageServer::start_with`].
#[derive(Clone, Debug)]
pub struct ImageServerConfig {
    /// Address to bind. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Directory whose files are served at `/<file name>` when the path has no stored image.
    pub dir: Option<PathBuf>,
}

impl Default for ImageServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir: None,
        }
    }
}

/// One request that reached the server.
#[derive(Clone, Debug)]
pub struct ImageRequest {
    pub method: String,
    /// Request path without the query string.
    pub path: String,
    /// Every header in the order received, with lowercase names. Values that are not UTF-8
    /// are converted lossily.
    pub headers: Vec<(String, String)>,
}

impl ImageRequest {
    /// Returns the first value of a header, matching the name case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Running image server. Dropping it stops the server and releases hanging requests.
pub struct ImageServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
}

impl ImageServer {
    /// Starts a server on a free loopback port that serves only images stored with `put`.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(ImageServerConfig::default()).await
    }

    /// Binds `config.listen` and serves in a background tokio task.
    pub async fn start_with(config: ImageServerConfig) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("failed to bind the image server to {}", config.listen))?;
        let addr = listener.local_addr()?;

        let (shutdown, stopped) = watch::channel(false);
        let shared = Arc::new(Shared::new(config.dir.clone(), stopped.clone()));
        let router = Router::new()
            .fallback(handle_request)
            .with_state(shared.clone());
        tokio::spawn(serve(ResettableListener(listener), router, stopped));

        tracing::info!(%addr, dir = ?config.dir, "image server started");
        Ok(Self {
            shared,
            addr,
            shutdown,
        })
    }

    /// Returns the bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Returns `http://127.0.0.1:PORT/<path>`. The leading `/` of `path` is optional.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, normalize_path(path))
    }

    /// Stores bytes to serve at `path`, replacing earlier bytes. `Last-Modified` becomes now.
    pub fn put(&self, path: &str, bytes: impl Into<Vec<u8>>, content_type: &str) {
        let image = StoredImage::new(bytes.into(), content_type, SystemTime::now());
        self.shared
            .lock()
            .images
            .insert(normalize_path(path), image);
    }

    /// Sets the behaviour for every later request to `path`, until changed.
    pub fn behave(&self, path: &str, behaviour: Behaviour) {
        self.shared
            .lock()
            .behaviours
            .insert(normalize_path(path), behaviour);
    }

    /// Queues a behaviour for the next request to `path`. Queued behaviours are used in order,
    /// before the one set by [`behave`](Self::behave).
    pub fn behave_once(&self, path: &str, behaviour: Behaviour) {
        let mut state = self.shared.lock();
        state
            .one_shot_behaviours
            .entry(normalize_path(path))
            .or_default()
            .push_back(behaviour);
    }

    /// Drops every behaviour, so all paths respond as `Behaviour::Normal`.
    pub fn clear_behaviours(&self) {
        let mut state = self.shared.lock();
        state.behaviours.clear();
        state.one_shot_behaviours.clear();
    }

    /// Counts the requests for `path`, whatever their method or response.
    pub fn requests_for(&self, path: &str) -> usize {
        self.requests_to(path).len()
    }

    /// Returns the requests for `path`, oldest first.
    pub fn requests_to(&self, path: &str) -> Vec<ImageRequest> {
        let path = normalize_path(path);
        let state = self.shared.lock();
        state
            .requests
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Returns every request, oldest first.
    pub fn requests(&self) -> Vec<ImageRequest> {
        self.shared.lock().requests.clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }
}

impl Drop for ImageServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

fn normalize_path(path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

async fn serve(listener: ResettableListener, router: Router, mut stopped: watch::Receiver<bool>) {
    let shutdown = async move {
        let _ = stopped.wait_for(|stopped| *stopped).await;
    };
    let service = router.into_make_service_with_connect_info::<ConnectionControl>();
    let result = axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await;
    match result {
        Ok(()) => tracing::info!("image server stopped"),
        Err(error) => tracing::error!(%error, "image server failed"),
    }
}

/// Image bytes with the metadata served alongside them.
#[derive(Clone)]
struct StoredImage {
    bytes: Bytes,
    content_type: String,
    modified: SystemTime,
    etag: String,
}

impl StoredImage {
    fn new(bytes: Vec<u8>, content_type: &str, modified: SystemTime) -> Self {
        let digest = hex::encode(Sha256::digest(&bytes));
        let etag = format!("\"{}\"", &digest[..16]);
        Self {
            bytes: Bytes::from(bytes),
            content_type: content_type.to_owned(),
            modified,
            etag,
        }
    }

    /// Reads a file of the served directory. Returns `None` when it does not exist.
    async fn read_file(path: &Path) -> io::Result<Option<Self>> {
        let bytes = match tokio::fs::read(path).await {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let modified = tokio::fs::metadata(path).await?.modified()?;
        Ok(Some(Self::new(bytes, content_type_for(path), modified)))
    }
}

/// Returns the content type for a file extension, `application/octet-stream` when unknown.
pub fn content_type_for(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .and_then(|ext| ext.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

struct Shared {
    state: Mutex<ServerState>,
    dir: Option<PathBuf>,
    stopped: watch::Receiver<bool>,
}

#[derive(Default)]
struct ServerState {
    images: HashMap<String, StoredImage>,
    behaviours: HashMap<String, Behaviour>,
    one_shot_behaviours: HashMap<String, VecDeque<Behaviour>>,
    requests: Vec<ImageRequest>,
}

impl Shared {
    fn new(dir: Option<PathBuf>, stopped: watch::Receiver<bool>) -> Self {
        Self {
            state: Mutex::new(ServerState::default()),
            dir,
            stopped,
        }
    }

    /// Locks the state. A handler that panicked cannot leave it half-written, so a poisoned
    /// lock is still usable.
    fn lock(&self) -> MutexGuard<'_, ServerState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self, method: &Method, path: &str, headers: &HeaderMap) {
        let headers = headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let request = ImageRequest {
            method: method.to_string(),
            path: path.to_owned(),
            headers,
        };
        self.lock().requests.push(request);
    }

    /// Takes the next one-shot behaviour for the path, or else the persistent one.
    fn next_behaviour(&self, path: &str) -> Behaviour {
        let mut state = self.lock();
        let queued = state
            .one_shot_behaviours
            .get_mut(path)
            .and_then(VecDeque::pop_front);
        queued
            .or_else(|| state.behaviours.get(path).cloned())
            .unwrap_or(Behaviour::Normal)
    }

    /// Finds the image for a path: stored bytes first, then a file of the served directory.
    async fn load(&self, path: &str) -> io::Result<Option<StoredImage>> {
        if let Some(image) = self.lock().images.get(path).cloned() {
            return Ok(Some(image));
        }
        let (Some(dir), Some(name)) = (&self.dir, file_name_in_path(path)) else {
            return Ok(None);
        };
        StoredImage::read_file(&dir.join(name)).await
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

/// Returns the file name in a `/<name>` path, or `None` for nested, hidden or empty names.
fn file_name_in_path(path: &str) -> Option<&str> {
    let name = path.strip_prefix('/')?;
    let plain = !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\']);
    plain.then_some(name)
}

async fn handle_request(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(connection): ConnectInfo<ConnectionControl>,
    request: Request,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    shared.record(&method, &path, request.headers());

    let response = if method == Method::GET || method == Method::HEAD {
        let behaviour = shared.next_behaviour(&path);
        respond(&shared, &connection, &path, request.headers(), behaviour).await
    } else {
        let allow = [(header::ALLOW, "GET, HEAD")];
        (
            StatusCode::METHOD_NOT_ALLOWED,
            allow,
            "method not allowed; use GET or HEAD\n",
        )
            .into_response()
    };
    tracing::info!(%method, %path, status = response.status().as_u16(), "image request completed");
    response
}

async fn respond(
    shared: &Shared,
    connection: &ConnectionControl,
    path: &str,
    request_headers: &HeaderMap,
    behaviour: Behaviour,
) -> Response {
    match behaviour {
        Behaviour::Status(status) => status_response(status, None),
        Behaviour::StatusWithRetryAfter(status, seconds) => status_response(status, Some(seconds)),
        Behaviour::Redirect { status, location } => redirect_response(status, &location),
        Behaviour::Hang => {
            shared.wait_for_shutdown().await;
            status_response(503, None)
        }
        Behaviour::Delay(duration) => {
            shared.sleep(duration).await;
            respond_with_image(shared, connection, path, request_headers, Behaviour::Normal).await
        }
        other => respond_with_image(shared, connection, path, request_headers, other).await,
    }
}

/// Builds the responses that need the image bytes. A missing image is 404 for all of them
/// except `Oversized`, which then streams zeros.
async fn respond_with_image(
    shared: &Shared,
    connection: &ConnectionControl,
    path: &str,
    request_headers: &HeaderMap,
    behaviour: Behaviour,
) -> Response {
    let image = match shared.load(path).await {
        Ok(image) => image,
        Err(error) => {
            tracing::error!(%path, %error, "failed to read the image file");
            return status_response(500, None);
        }
    };
    match (behaviour, image) {
        (
            Behaviour::Oversized {
                bytes,
                declare_length,
            },
            image,
        ) => {
            let prefix = image.map(|image| image.bytes).unwrap_or_default();
            oversized_response(prefix, bytes, declare_length)
        }
        (_, None) => status_response(404, None),
        (behaviour, Some(image)) => {
            shape_image_response(behaviour, image, connection, request_headers)
        }
    }
}

fn shape_image_response(
    behaviour: Behaviour,
    image: StoredImage,
    connection: &ConnectionControl,
    request_headers: &HeaderMap,
) -> Response {
    match behaviour {
        Behaviour::ResetMidBody => {
            connection.reset_on_close();
            let error = io::Error::new(
                io::ErrorKind::ConnectionReset,
                "connection reset on request",
            );
            cut_body_response(image, Some(error))
        }
        Behaviour::Truncated => cut_body_response(image, None),
        Behaviour::ContentType(content_type) => {
            let mut response = image_response(&image, request_headers);
            set_header(&mut response, header::CONTENT_TYPE, &content_type);
            response
        }
        Behaviour::GzipEncoding => {
            let mut response = image_response(&image, request_headers);
            set_header(&mut response, header::CONTENT_ENCODING, "gzip");
            response
        }
        _ => image_response(&image, request_headers),
    }
}

/// Builds a 200 response with the bytes and validators, or 304 when a conditional header matches.
fn image_response(image: &StoredImage, request_headers: &HeaderMap) -> Response {
    let last_modified = httpdate::fmt_http_date(image.modified);
    let status = if is_not_modified(image, request_headers) {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    let body = if status == StatusCode::OK {
        Body::from(image.bytes.clone())
    } else {
        Body::empty()
    };

    let mut response = (status, body).into_response();
    set_header(&mut response, header::ETAG, &image.etag);
    set_header(&mut response, header::LAST_MODIFIED, &last_modified);
    if status == StatusCode::OK {
        set_header(&mut response, header::CONTENT_TYPE, &image.content_type);
    }
    response
}

/// Evaluates `If-None-Match` (weak comparison, `*` matches). Only when that header is absent,
/// evaluates `If-Modified-Since` at the one-second precision of HTTP dates.
fn is_not_modified(image: &StoredImage, request_headers: &HeaderMap) -> bool {
    if let Some(value) = request_headers.get(header::IF_NONE_MATCH) {
        let value = String::from_utf8_lossy(value.as_bytes());
        return value.split(',').map(str::trim).any(|tag| {
            let opaque = tag.strip_prefix("W/").unwrap_or(tag);
            tag == "*" || opaque == image.etag
        });
    }
    let since = request_headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|value| value.to_str().ok());
    let Some(since) = since.and_then(|since| httpdate::parse_http_date(since).ok()) else {
        return false;
    };
    unix_seconds(image.modified) <= unix_seconds(since)
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// Sets a header, falling back to `application/octet-stream` for an invalid content type and
/// skipping other invalid values.
fn set_header(response: &mut Response, name: header::HeaderName, value: &str) {
    let parsed = HeaderValue::from_str(value).ok().or_else(|| {
        let fallback = name == header::CONTENT_TYPE;
        fallback.then_some(HeaderValue::from_static("application/octet-stream"))
    });
    if let Some(parsed) = parsed {
        response.headers_mut().insert(name, parsed);
    }
}

/// Builds a response with this status and a one-line text body. An invalid status code becomes 500.
fn status_response(status: u16, retry_after_seconds: Option<u64>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let text = format!("{status}\n");
    let mut response = (status, text).into_response();
    if let Some(seconds) = retry_after_seconds {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

fn redirect_response(status: u16, location: &str) -> Response {
    let mut response = status_response(status, None);
    set_header(&mut response, header::LOCATION, location);
    response
}

/// Declares the full `Content-Length`, sends the first half of the bytes, then ends the body
/// with `error` (the connection is aborted) or cleanly (hyper closes the connection because
/// the declared length was not reached).
fn cut_body_response(image: StoredImage, error: Option<io::Error>) -> Response {
    let declared_length = image.bytes.len().max(1);
    let half = image.bytes.slice(..image.bytes.len() / 2);
    let mut response = Body::from_stream(chunk_then_end(half, error)).into_response();
    set_header(&mut response, header::CONTENT_TYPE, &image.content_type);
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(declared_length));
    response
}

enum CutStep {
    Chunk(Bytes, Option<io::Error>),
    Pause(Option<io::Error>),
    Done,
}

/// Streams one chunk, pauses so it reaches the socket, then yields `error` if any and ends.
fn chunk_then_end(
    chunk: Bytes,
    error: Option<io::Error>,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> {
    stream::unfold(CutStep::Chunk(chunk, error), |step| async move {
        match step {
            CutStep::Chunk(chunk, error) => Some((Ok(chunk), CutStep::Pause(error))),
            CutStep::Pause(error) => {
                tokio::time::sleep(FLUSH_PAUSE).await;
                error.map(|error| (Err(error), CutStep::Done))
            }
            CutStep::Done => None,
        }
    })
}

/// Streams `total` bytes: `prefix` first, then zeros, in chunks of [`STREAM_CHUNK_BYTES`].
fn oversized_response(prefix: Bytes, total: u64, declare_length: bool) -> Response {
    let chunks = stream::unfold(0_u64, move |sent| {
        let prefix = prefix.clone();
        async move {
            let remaining = total.checked_sub(sent).filter(|remaining| *remaining > 0)?;
            let chunk = next_oversized_chunk(&prefix, sent, remaining);
            let next = sent + chunk.len() as u64;
            Some((Ok::<_, io::Error>(chunk), next))
        }
    });
    let mut response = Body::from_stream(chunks).into_response();
    if declare_length {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    }
    response
}

fn next_oversized_chunk(prefix: &Bytes, sent: u64, remaining: u64) -> Bytes {
    let limit = remaining.min(STREAM_CHUNK_BYTES as u64) as usize;
    match usize::try_from(sent)
        .ok()
        .filter(|sent| *sent < prefix.len())
    {
        Some(offset) => prefix.slice(offset..prefix.len().min(offset + limit)),
        None => Bytes::from(vec![0_u8; limit]),
    }
}

/// TCP listener whose connections can be reset instead of closed.
struct ResettableListener(TcpListener);

impl Listener for ResettableListener {
    type Io = ResettableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) => return (ResettableStream::new(stream), addr),
                Err(error) => {
                    tracing::warn!(%error, "failed to accept a connection; retrying in 50 ms");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// TCP stream that, once flagged, skips the orderly shutdown and sends a RST when dropped.
struct ResettableStream {
    inner: TcpStream,
    reset_on_close: Arc<AtomicBool>,
}

impl ResettableStream {
    fn new(inner: TcpStream) -> Self {
        Self {
            inner,
            reset_on_close: Arc::new(AtomicBool::new(false)),
        }
    }

    fn reset_requested(&self) -> bool {
        self.reset_on_close.load(Ordering::SeqCst)
    }
}

impl Drop for ResettableStream {
    fn drop(&mut self) {
        // SO_LINGER with a zero timeout makes close() send RST and drop unsent data.
        if !self.reset_requested() {
            return;
        }
        if let Err(error) = self.inner.set_zero_linger() {
            let message = "failed to set SO_LINGER; the connection closes without a reset";
            tracing::warn!(%error, "{message}");
        }
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    /// Skips the FIN when a reset was requested, so the peer receives only the RST.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        if self.reset_requested() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Per-connection handle that a request handler uses to ask for a reset.
#[derive(Clone)]
struct ConnectionControl {
    reset_on_close: Arc<AtomicBool>,
}

impl ConnectionControl {
    fn reset_on_close(&self) {
        self.reset_on_close.store(true, Ordering::SeqCst);
    }
}

impl Connected<IncomingStream<'_, ResettableListener>> for ConnectionControl {
    fn connect_info(stream: IncomingStream<'_, ResettableListener>) -> Self {
        Self {
            reset_on_close: stream.io().reset_on_close.clone(),
        }
    }
}

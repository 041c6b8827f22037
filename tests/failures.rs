//! Failure-mode tables. Each row is one UserAvatar with a broken input, the Ready condition it
//! must end with, and the number of requests it may cost the Directory API stand-in and the
//! image server. One operator run covers a whole table. Every row gets its own object and
//! user id in the table's namespace, and all rows are checked after the run settles.
//!
//! After the rows settle, each table waits `SETTLE_WINDOW` and then checks that no status was
//! rewritten, that the request counts hold, and that no status or Event contains a secret.

mod support;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{ObjectMeta, Patch, PatchParams};
use serde_json::json;
use tokio::net::TcpListener;
use y360_avatar_operator::crd::UserAvatar;
use y360_avatar_operator::reconcile::Settings;
use y360_avatar_operator::source::UrlPolicy;
use y360_testkit::directory::Reply;
use y360_testkit::images::{Behaviour, ImageServer};

use support::{Harness, TOKEN, WAIT, condition, example_image, ready_is, sha256, test_settings};

/// Time after the rows settle during which no status may change. The request counts are
/// taken at its end.
const SETTLE_WINDOW: Duration = Duration::from_secs(5);

/// A 1x1 GIF89a image.
const ONE_PIXEL_GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

/// Image size limit of the ConfigMap table. kube-apiserver rejects a ConfigMap whose keys
/// contain more than 1 MiB in total, so no ConfigMap image can exceed the default limit of
/// 1 MiB. This lower limit makes the SourceTooLarge row reachable.
const CONFIG_MAP_MAX_IMAGE_BYTES: usize = 64 * 1024;

/// Token of the credentials table that has a line break inside. Neither half may leak.
const CRLF_TOKEN_HEAD: &str = "y0_crlf-head-5d1e";
const CRLF_TOKEN_TAIL: &str = "crlf-tail-8b2a";

/// Userinfo and query of the URL-redaction row. None of them may appear in status or Events.
const URL_USER: &str = "leakuser";
const URL_PASSWORD: &str = "leakpass";
const URL_SIGNATURE: &str = "leaksig";

/// Expected number of requests.
#[derive(Clone, Copy, Debug)]
enum Count {
    Exactly(usize),
    Between(usize, usize),
    AtLeast(usize),
}

impl Count {
    fn admits(self, count: usize) -> bool {
        match self {
            Count::Exactly(expected) => count == expected,
            Count::Between(min, max) => (min..=max).contains(&count),
            Count::AtLeast(min) => count >= min,
        }
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Count::Exactly(expected) => write!(f, "exactly {expected}"),
            Count::Between(min, max) => write!(f, "{min} to {max}"),
            Count::AtLeast(min) => write!(f, "at least {min}"),
        }
    }
}

/// Expected end state of one UserAvatar and the requests it may cost.
#[derive(Clone, Debug)]
struct Row {
    /// Name of the UserAvatar, which also labels the row in failure messages.
    name: String,
    user_id: String,
    ready: &'static str,
    reason: &'static str,
    /// Substrings that the Ready message must contain.
    message_parts: Vec<String>,
    /// Condition besides Ready that must be True: `Stalled` or `Reconciling`.
    side_condition: Option<&'static str>,
    directory_requests: Count,
    /// Path prefix of the image server requests that belong to the row, and their count.
    image_requests: Option<(String, Count)>,
}

impl Row {
    /// Creates a row whose Ready condition is False with `reason`, and that sends nothing to
    /// the Directory API.
    fn failed(name: &str, user_number: u32, reason: &'static str) -> Row {
        Row {
            name: name.to_owned(),
            user_id: user_id(user_number),
            ready: "False",
            reason,
            message_parts: Vec::new(),
            side_condition: None,
            directory_requests: Count::Exactly(0),
            image_requests: None,
        }
    }

    /// Creates a row whose image is uploaded with exactly one request.
    fn uploaded(name: &str, user_number: u32) -> Row {
        Row {
            ready: "True",
            reason: "UpToDate",
            directory_requests: Count::Exactly(1),
            ..Row::failed(name, user_number, "UpToDate")
        }
    }

    fn message(mut self, part: impl Into<String>) -> Row {
        self.message_parts.push(part.into());
        self
    }

    fn stalled(mut self) -> Row {
        self.side_condition = Some("Stalled");
        self
    }

    fn reconciling(mut self) -> Row {
        self.side_condition = Some("Reconciling");
        self
    }

    fn directory(mut self, count: Count) -> Row {
        self.directory_requests = count;
        self
    }

    fn images(mut self, path_prefix: impl Into<String>, count: Count) -> Row {
        self.image_requests = Some((path_prefix.into(), count));
        self
    }

    /// Returns the reason of the Event that the row's outcome publishes.
    fn event_reason(&self) -> &'static str {
        if self.ready == "True" {
            "Uploaded"
        } else {
            self.reason
        }
    }
}

fn user_id(number: u32) -> String {
    format!("11300000000{number:05}")
}

/// Problems found in a table. A table checks every row before it fails, so one run reports
/// all rows that behave differently.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn check(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.0.push(problem());
        }
    }

    fn assert_none(&self, table: &str) {
        assert!(
            self.0.is_empty(),
            "{table}: {} problem(s):\n  {}",
            self.0.len(),
            self.0.join("\n  ")
        );
    }
}

/// Waits until every row reaches its Ready condition, waits `SETTLE_WINDOW`, then checks
/// each row and that no status or Event in the namespace contains one of `secrets`. Returns
/// the UserAvatars by name as they were at the end.
async fn check_table(
    harness: &Harness,
    rows: &[Row],
    secrets: &[String],
    problems: &mut Problems,
) -> BTreeMap<String, UserAvatar> {
    let first = wait_until_settled(harness, rows, problems).await;
    tokio::time::sleep(SETTLE_WINDOW).await;
    let avatars = avatars_by_name(harness).await;
    let events = harness.events().await;

    for row in rows {
        let Some(avatar) = avatars.get(&row.name) else {
            problems.check(false, || {
                format!("row {}: the UserAvatar is gone", row.name)
            });
            continue;
        };
        check_conditions(row, avatar, problems);
        check_status_unchanged(row, first.get(&row.name), avatar, problems);
        check_requests(harness, row, problems);
        check_event(row, &events, problems);
    }
    check_no_secrets(&avatars, &events, secrets, problems);
    avatars
}

async fn avatars_by_name(harness: &Harness) -> BTreeMap<String, UserAvatar> {
    let avatars = harness.avatars().await;
    avatars
        .into_iter()
        .map(|avatar| (avatar.name_any(), avatar))
        .collect()
}

/// Polls until every row's Ready condition has the expected status and reason, or `WAIT`
/// passes. Returns the objects seen last.
async fn wait_until_settled(
    harness: &Harness,
    rows: &[Row],
    problems: &mut Problems,
) -> BTreeMap<String, UserAvatar> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let avatars = avatars_by_name(harness).await;
        let is_settled = |row: &Row| {
            avatars
                .get(&row.name)
                .is_some_and(|avatar| ready_is(avatar, row.ready, row.reason))
        };
        if rows.iter().all(is_settled) {
            return avatars;
        }
        if tokio::time::Instant::now() > deadline {
            for row in rows.iter().filter(|row| !is_settled(row)) {
                let last = avatars.get(&row.name).map(describe_ready);
                let last = last.unwrap_or_else(|| "no object".into());
                problems.check(false, || {
                    format!(
                        "row {}: Ready never became {}/{} within {WAIT:?}; last Ready: {last}",
                        row.name, row.ready, row.reason
                    )
                });
            }
            return avatars;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn describe_ready(avatar: &UserAvatar) -> String {
    match condition(avatar, "Ready") {
        Some(ready) => format!("{}/{}: {:?}", ready.status, ready.reason, ready.message),
        None => "no Ready condition".into(),
    }
}

fn check_conditions(row: &Row, avatar: &UserAvatar, problems: &mut Problems) {
    let name = &row.name;
    let Some(ready) = condition(avatar, "Ready") else {
        problems.check(false, || format!("row {name}: no Ready condition"));
        return;
    };
    problems.check(ready.status == row.ready, || {
        let (expected, actual) = (row.ready, &ready.status);
        format!("row {name}: Ready status is {actual}, expected {expected}")
    });
    problems.check(ready.reason == row.reason, || {
        let (expected, actual) = (row.reason, &ready.reason);
        format!("row {name}: Ready reason is {actual}, expected {expected}")
    });
    for part in &row.message_parts {
        problems.check(ready.message.contains(part.as_str()), || {
            let message = &ready.message;
            format!("row {name}: Ready message {message:?} does not contain {part:?}")
        });
    }
    if let Some(side) = row.side_condition {
        let status = condition(avatar, side).map(|c| c.status);
        problems.check(status.as_deref() == Some("True"), || {
            format!("row {name}: condition {side} is {status:?}, expected True")
        });
    }
}

/// Checks that the status was not written again during the settle window, which would mean
/// a repeated failure rewrites it.
fn check_status_unchanged(
    row: &Row,
    first: Option<&UserAvatar>,
    last: &UserAvatar,
    problems: &mut Problems,
) {
    let before = first.and_then(|avatar| avatar.resource_version());
    let after = last.resource_version();
    problems.check(before == after, || {
        let name = &row.name;
        format!(
            "row {name}: resourceVersion changed from {before:?} to {after:?} within \
             {SETTLE_WINDOW:?}; status before: {:?}; after: {:?}",
            first.and_then(|avatar| avatar.status.as_ref()),
            last.status
        )
    });
}

fn check_requests(harness: &Harness, row: &Row, problems: &mut Problems) {
    let name = &row.name;
    let directory = harness.directory.request_count_for(&row.user_id);
    problems.check(row.directory_requests.admits(directory), || {
        let expected = row.directory_requests;
        format!("row {name}: {directory} Directory API requests, expected {expected}")
    });
    if let Some((prefix, expected)) = &row.image_requests {
        let images = image_requests_under(&harness.images, prefix);
        problems.check(expected.admits(images), || {
            format!(
                "row {name}: {images} image server requests under {prefix}, expected {expected}"
            )
        });
    }
}

fn image_requests_under(images: &ImageServer, prefix: &str) -> usize {
    let requests = images.requests();
    requests
        .iter()
        .filter(|request| request.path.starts_with(prefix))
        .count()
}

/// Checks that an Event about the row has the reason of its outcome. This also keeps the
/// secret check of Events from passing on an empty list.
fn check_event(row: &Row, events: &[Event], problems: &mut Problems) {
    let reason = row.event_reason();
    let published = events.iter().any(|event| {
        let regarding = event.regarding.as_ref();
        let about_row = regarding.and_then(|r| r.name.as_deref()) == Some(row.name.as_str());
        about_row && event.reason.as_deref() == Some(reason)
    });
    problems.check(published, || {
        format!("row {}: no Event with reason {reason}", row.name)
    });
}

fn check_no_secrets(
    avatars: &BTreeMap<String, UserAvatar>,
    events: &[Event],
    secrets: &[String],
    problems: &mut Problems,
) {
    for (name, avatar) in avatars {
        let status = serde_json::to_string(&avatar.status).unwrap();
        for secret in secrets {
            problems.check(!status.contains(secret.as_str()), || {
                format!("UserAvatar {name}: status contains {secret:?}: {status}")
            });
        }
    }
    for event in events {
        let text = serde_json::to_string(event).unwrap();
        for secret in secrets {
            problems.check(!text.contains(secret.as_str()), || {
                format!("Event {}: contains {secret:?}: {text}", event.name_any())
            });
        }
    }
}

/// Returns the base64 text that `binaryData` would contain for these bytes.
fn base64(bytes: &[u8]) -> String {
    let value = serde_json::to_value(ByteString(bytes.to_vec())).unwrap();
    value.as_str().unwrap().to_owned()
}

/// Computes the CRC-32 (ISO-HDLC) used by PNG chunks.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffff_u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

/// Returns a valid PNG of exactly `size` bytes: `png` with a private ancillary `paDd` chunk of
/// zeros inserted before its IEND chunk.
fn png_of_size(png: &[u8], size: usize) -> Vec<u8> {
    const IEND_CHUNK_BYTES: usize = 12;
    const CHUNK_OVERHEAD_BYTES: usize = 12;
    let (head, iend) = png.split_at(png.len() - IEND_CHUNK_BYTES);
    assert_eq!(
        &iend[4..8],
        b"IEND",
        "the PNG does not end with an IEND chunk"
    );

    let data_len = size - png.len() - CHUNK_OVERHEAD_BYTES;
    let mut type_and_data = b"paDd".to_vec();
    type_and_data.resize(4 + data_len, 0);
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(head);
    bytes.extend_from_slice(&u32::try_from(data_len).unwrap().to_be_bytes());
    bytes.extend_from_slice(&type_and_data);
    bytes.extend_from_slice(&crc32(&type_and_data).to_be_bytes());
    bytes.extend_from_slice(iend);
    assert_eq!(bytes.len(), size);
    bytes
}

/// Creates or replaces a ConfigMap whose `data` contains one text key.
async fn put_text_config_map(harness: &Harness, name: &str, key: &str, text: &str) {
    let config_map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(key.to_owned(), text.to_owned())])),
        ..Default::default()
    };
    let params = PatchParams::apply("y360-tests").force();
    let api = harness.api::<ConfigMap>();
    api.patch(name, &params, &Patch::Apply(&config_map))
        .await
        .unwrap();
}

/// Content of the ConfigMap that a ConfigMap-table row reads.
enum ConfigMapInput {
    /// `binaryData` key `face` with these bytes.
    Binary(Vec<u8>),
    /// `data` key `face` with this text.
    Text(String),
    /// The ConfigMap exists, but only with key `other`.
    OtherKeyOnly,
    /// No ConfigMap.
    Missing,
}

#[tokio::test]
async fn config_map_source_failures() {
    let mut harness = Harness::new("cm-failures").await;
    let png = example_image("alice.png");
    let mut truncated = png.clone();
    truncated.truncate(png.len() / 2);
    let max = CONFIG_MAP_MAX_IMAGE_BYTES;

    use ConfigMapInput::*;
    let table = vec![
        (
            Binary(ONE_PIXEL_GIF.to_vec()),
            Row::failed("gif", 1, "UnsupportedImageFormat")
                .message("GIF")
                .stalled(),
        ),
        (
            Text(base64(&png)),
            Row::failed("base64-in-data", 2, "UnsupportedImageFormat")
                .message("text")
                .stalled(),
        ),
        (
            Binary(Vec::new()),
            Row::failed("empty", 3, "EmptyImage").stalled(),
        ),
        (
            Binary(truncated),
            Row::failed("truncated-png", 4, "TruncatedImage")
                .message("PNG")
                .stalled(),
        ),
        (
            Binary(png_of_size(&png, max + 1)),
            Row::failed("png-over-limit", 5, "SourceTooLarge")
                .message(format!("{} bytes", max + 1))
                .message(format!("limit of {max} bytes"))
                .stalled(),
        ),
        (
            Binary(png_of_size(&png, max)),
            Row::uploaded("png-at-limit", 6),
        ),
        (
            OtherKeyOnly,
            Row::failed("missing-key", 7, "SourceKeyNotFound")
                .message("\"face\"")
                .stalled(),
        ),
        (
            Missing,
            Row::failed("missing-config-map", 8, "SourceNotFound")
                .message("ConfigMap \"missing-config-map\" not found")
                .stalled(),
        ),
    ];

    for (input, row) in &table {
        match input {
            Binary(bytes) => harness.put_config_map(&row.name, &[("face", bytes)]).await,
            Text(text) => put_text_config_map(&harness, &row.name, "face", text).await,
            OtherKeyOnly => harness.put_config_map(&row.name, &[("other", &png)]).await,
            Missing => {}
        }
        harness
            .create_config_map_avatar(&row.name, &row.user_id, &row.name, "face")
            .await;
    }
    let settings = Settings {
        max_image_bytes: max,
        ..test_settings()
    };
    harness.start_operator_with(settings);

    let rows: Vec<Row> = table.into_iter().map(|(_, row)| row).collect();
    let mut problems = Problems::default();
    check_table(&harness, &rows, &[TOKEN.to_owned()], &mut problems).await;
    problems.assert_none("ConfigMap sources");
}

/// How the image server serves a URL-table row.
enum Serve {
    /// Stores the PNG at `/{row}/image.png` and applies the behaviour to that path.
    Png(Behaviour),
    /// Stores nothing, so `/{row}/image.png` returns 404.
    Nothing,
    /// Redirects `/{row}/0` to `/{row}/1` and so on, `n` times. `/{row}/{n}` serves the PNG.
    RedirectChain(usize),
}

struct UrlCase {
    serve: Serve,
    /// URL of the source. `None` means the row's first path on the image server.
    url: Option<String>,
    row: Row,
}

impl UrlCase {
    fn new(serve: Serve, row: Row) -> UrlCase {
        let path = format!("/{}/", row.name);
        // A chain is followed up to the redirect limit, so the first request plus at most that
        // many redirects reach the server.
        let max_redirects = test_settings().fetch_limits.max_redirects;
        let count = match serve {
            Serve::RedirectChain(redirects) => Count::Exactly(redirects.min(max_redirects) + 1),
            _ => Count::Exactly(1),
        };
        let row = if row.image_requests.is_none() {
            row.images(path, count)
        } else {
            row
        };
        UrlCase {
            serve,
            url: None,
            row,
        }
    }

    fn first_path(&self) -> String {
        match self.serve {
            Serve::RedirectChain(_) => format!("/{}/0", self.row.name),
            _ => format!("/{}/image.png", self.row.name),
        }
    }

    fn set_up(&self, images: &ImageServer, png: &[u8]) {
        let name = &self.row.name;
        match &self.serve {
            Serve::Png(behaviour) => {
                let path = self.first_path();
                images.put(&path, png.to_vec(), "image/png");
                images.behave(&path, behaviour.clone());
            }
            Serve::Nothing => {}
            Serve::RedirectChain(redirects) => {
                for hop in 0..*redirects {
                    let location = images.url(&format!("/{name}/{}", hop + 1));
                    images.behave(
                        &format!("/{name}/{hop}"),
                        Behaviour::Redirect {
                            status: 302,
                            location,
                        },
                    );
                }
                images.put(&format!("/{name}/{redirects}"), png.to_vec(), "image/png");
            }
        }
    }
}

#[tokio::test]
async fn url_source_failures() {
    let mut harness = Harness::new("url-failures").await;
    let png = example_image("carol.png");
    let over_limit = 2 * 1024 * 1024;
    let address = harness.images.addr();
    let redacted_url = format!("http://{address}/url-userinfo/image.png");
    let userinfo_url = format!(
        "http://{URL_USER}:{URL_PASSWORD}@{address}/url-userinfo/image.png?sig={URL_SIGNATURE}"
    );
    let metadata = "http://169.254.169.254/latest/meta-data";

    use Serve::*;
    let mut table = vec![
        UrlCase::new(
            Png(Behaviour::Status(404)),
            Row::failed("url-404", 1, "SourceNotFound")
                .message("HTTP 404")
                .stalled(),
        ),
        UrlCase::new(
            Png(Behaviour::Status(500)),
            Row::failed("url-500", 2, "SourceUnreachable")
                .message("HTTP 500")
                .reconciling()
                .images("/url-500/", Count::AtLeast(1)),
        ),
        UrlCase::new(
            Png(Behaviour::Hang),
            Row::failed("url-hang", 3, "SourceTimedOut")
                .message("timed out")
                .reconciling()
                .images("/url-hang/", Count::AtLeast(1)),
        ),
        UrlCase::new(
            Png(Behaviour::ResetMidBody),
            Row::failed("url-reset", 4, "SourceUnreachable")
                .reconciling()
                .images("/url-reset/", Count::AtLeast(1)),
        ),
        UrlCase::new(
            Png(Behaviour::Truncated),
            Row::failed("url-truncated", 5, "SourceUnreachable")
                .reconciling()
                .images("/url-truncated/", Count::AtLeast(1)),
        ),
        UrlCase::new(
            Png(Behaviour::Oversized {
                bytes: over_limit,
                declare_length: true,
            }),
            Row::failed("url-oversized-declared", 6, "SourceTooLarge")
                .message("limit of 1048576 bytes")
                .stalled(),
        ),
        UrlCase::new(
            Png(Behaviour::Oversized {
                bytes: over_limit,
                declare_length: false,
            }),
            Row::failed("url-oversized-chunked", 7, "SourceTooLarge")
                .message("limit of 1048576 bytes")
                .stalled(),
        ),
        // Reason UrlForbidden with "redirect refused" shows that the policy rejected the
        // address before connecting, because a connection attempt to 169.254.169.254 would end
        // in SourceUnreachable or SourceTimedOut instead.
        UrlCase::new(
            Png(Behaviour::Redirect {
                status: 302,
                location: metadata.into(),
            }),
            Row::failed("url-metadata-redirect", 8, "UrlForbidden")
                .message("redirect refused")
                .message("169.254.169.254")
                .stalled(),
        ),
        // The test settings allow 3 redirects. The request and three redirects reach the
        // image server, and the fourth redirect is rejected.
        UrlCase::new(
            RedirectChain(4),
            Row::failed("url-redirects-over-cap", 9, "UrlForbidden")
                .message("more than 3 redirects")
                .stalled(),
        ),
        UrlCase::new(RedirectChain(3), Row::uploaded("url-redirects-at-cap", 10)),
        UrlCase::new(
            Png(Behaviour::ContentType("text/html; charset=utf-8".into())),
            Row::uploaded("url-wrong-content-type", 11),
        ),
        UrlCase::new(
            Png(Behaviour::GzipEncoding),
            Row::uploaded("url-gzip-encoding", 12),
        ),
        UrlCase::new(
            Nothing,
            Row::failed("url-userinfo", 13, "SourceNotFound").stalled(),
        ),
    ];
    let userinfo_case = table.last_mut().unwrap();
    userinfo_case.url = Some(userinfo_url);

    for case in &table {
        case.set_up(&harness.images, &png);
        let url = match &case.url {
            Some(url) => url.clone(),
            None => harness.images.url(&case.first_path()),
        };
        harness
            .create_url_avatar(&case.row.name, &case.row.user_id, &url)
            .await;
    }
    harness.start_operator();

    let rows: Vec<Row> = table.iter().map(|case| case.row.clone()).collect();
    let secrets = [TOKEN, URL_USER, URL_PASSWORD, URL_SIGNATURE, "sig="].map(String::from);
    let mut problems = Problems::default();
    let settled = check_table(&harness, &rows, &secrets, &mut problems).await;

    let userinfo_message = settled
        .get("url-userinfo")
        .and_then(|avatar| condition(avatar, "Ready"))
        .map(|ready| ready.message);
    let expected = format!("{redacted_url} answered HTTP 404");
    problems.check(
        userinfo_message.as_deref() == Some(expected.as_str()),
        || {
            format!(
                "row url-userinfo: Ready message is {userinfo_message:?}, expected {expected:?}"
            )
        },
    );

    for (name, user) in [
        ("url-redirects-at-cap", user_id(10)),
        ("url-wrong-content-type", user_id(11)),
        ("url-gzip-encoding", user_id(12)),
    ] {
        check_png_upload(&harness, &settled, name, &user, &png, &mut problems);
    }
    check_image_requests_carry_no_token(&harness, &mut problems);
    problems.assert_none("URL sources");
}

/// Checks that the row uploaded exactly the PNG bytes it was served, as `image/png`.
fn check_png_upload(
    harness: &Harness,
    settled: &BTreeMap<String, UserAvatar>,
    name: &str,
    user: &str,
    png: &[u8],
    problems: &mut Problems,
) {
    let requests = harness.directory.requests();
    let upload = requests
        .iter()
        .find(|request| request.user_id.as_deref() == Some(user));
    let Some(upload) = upload else {
        problems.check(false, || format!("row {name}: no Directory API request"));
        return;
    };
    problems.check(upload.body == png, || {
        let length = upload.body.len();
        format!("row {name}: uploaded {length} bytes that differ from the served PNG")
    });
    let content_type = upload.header("content-type");
    problems.check(content_type == Some("image/png"), || {
        format!("row {name}: upload Content-Type is {content_type:?}, expected image/png")
    });
    let status = settled.get(name).and_then(|a| a.status.clone());
    let hash = status.as_ref().and_then(|s| s.content_hash.clone());
    problems.check(hash == Some(sha256(png)), || {
        format!("row {name}: status contentHash is {hash:?}, expected the PNG's hash")
    });
}

/// Checks that no image request carries the Directory API token. The URL with userinfo is
/// the one request allowed an `Authorization` header: Basic, with that userinfo.
fn check_image_requests_carry_no_token(harness: &Harness, problems: &mut Problems) {
    let basic = format!(
        "Basic {}",
        base64(format!("{URL_USER}:{URL_PASSWORD}").as_bytes())
    );
    for request in harness.images.requests() {
        let authorization = request.header("authorization");
        let path = &request.path;
        problems.check(
            !authorization.is_some_and(|value| value.contains(TOKEN)),
            || format!("image request {path}: Authorization header carries the token"),
        );
        let expected = if path.starts_with("/url-userinfo/") {
            Some(basic.as_str())
        } else {
            None
        };
        problems.check(authorization == expected, || {
            format!(
                "image request {path}: Authorization is {authorization:?}, expected {expected:?}"
            )
        });
    }
}

/// A loopback listener that accepts connections and only counts them.
struct ConnectionCounter {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl ConnectionCounter {
    async fn start() -> ConnectionCounter {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while listener.accept().await.is_ok() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        ConnectionCounter { addr, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn strict_policy_rejects_internal_urls() {
    let mut harness = Harness::new("strict-urls").await;
    harness
        .images
        .put("/x.png", example_image("carol.png"), "image/png");
    let counter = ConnectionCounter::start().await;
    let image_port = harness.images.addr().port();
    let counter_port = counter.addr.port();

    let table = [
        (
            format!("http://127.0.0.1:{image_port}/x.png"),
            Row::failed("strict-http-loopback", 1, "UrlForbidden")
                .message("http is disabled")
                .stalled(),
        ),
        (
            "https://169.254.169.254/x.png".to_owned(),
            Row::failed("strict-metadata-address", 2, "UrlForbidden")
                .message("address 169.254.169.254 is internal")
                .stalled(),
        ),
        (
            format!("https://localhost:{counter_port}/x.png"),
            Row::failed("strict-localhost", 3, "UrlForbidden")
                .message("localhost resolves only to internal addresses")
                .stalled(),
        ),
    ];
    for (url, row) in &table {
        harness
            .create_url_avatar(&row.name, &row.user_id, url)
            .await;
    }
    let strict = Settings {
        url_policy: UrlPolicy {
            allow_http: false,
            allowed_networks: Vec::new(),
        },
        ..test_settings()
    };
    harness.start_operator_with(strict);

    let rows: Vec<Row> = table.into_iter().map(|(_, row)| row).collect();
    let mut problems = Problems::default();
    check_table(&harness, &rows, &[TOKEN.to_owned()], &mut problems).await;
    let image_requests = harness.images.requests().len();
    problems.check(image_requests == 0, || {
        format!("the image server got {image_requests} requests, expected 0")
    });
    let connections = counter.accepted();
    problems.check(connections == 0, || {
        format!("the localhost listener accepted {connections} connections, expected 0")
    });
    problems.assert_none("strict URL policy");
}

#[tokio::test]
async fn directory_error_responses() {
    let mut harness = Harness::new("api-responses").await;
    harness
        .put_config_map("portraits", &[("face", &example_image("alice.png"))])
        .await;

    let one_request = Count::Exactly(1);
    let table = [
        (
            Reply::Status(400),
            Row::failed("api-400", 1, "BadRequest")
                .message("HTTP 400")
                .stalled()
                .directory(one_request),
        ),
        (
            Reply::Status(401),
            Row::failed("api-401", 2, "Unauthorized")
                .message("HTTP 401")
                .stalled()
                .directory(one_request),
        ),
        (
            Reply::Status(403),
            Row::failed("api-403", 3, "Forbidden")
                .message("HTTP 403")
                .stalled()
                .directory(one_request),
        ),
        (
            Reply::Status(404),
            Row::failed("api-404", 4, "UserNotFound")
                .message("HTTP 404")
                .stalled()
                .directory(one_request),
        ),
        // Retry-After of 30 s outlasts the settle window, so the one request is the only one.
        (
            Reply::StatusWithRetryAfter(429, 30),
            Row::failed("api-429", 5, "RateLimited")
                .message("HTTP 429")
                .reconciling()
                .directory(one_request),
        ),
        // Backoff of about 1 s, 2 s and 4 s (80-100% jitter) allows 2 to 4 tries in the wait.
        (
            Reply::Status(500),
            Row::failed("api-500", 6, "DirectoryUnavailable")
                .message("HTTP 500")
                .reconciling()
                .directory(Count::Between(2, 4)),
        ),
    ];
    for (reply, row) in &table {
        harness
            .directory
            .respond_to_user(&row.user_id, reply.clone());
        harness
            .create_config_map_avatar(&row.name, &row.user_id, "portraits", "face")
            .await;
    }
    harness.start_operator();

    let rows: Vec<Row> = table.into_iter().map(|(_, row)| row).collect();
    let mut problems = Problems::default();
    check_table(&harness, &rows, &[TOKEN.to_owned()], &mut problems).await;
    problems.assert_none("Directory API responses");
}

/// Token Secret of a credentials-table row.
enum SecretInput {
    /// A DirectoryConnection named after the row whose Secret has one key.
    Key { key: &'static str, value: String },
    /// A DirectoryConnection named after the row whose Secret does not exist.
    NoSecret,
    /// No DirectoryConnection at all.
    NoConnection,
}

#[tokio::test]
async fn credential_failures() {
    let mut harness = Harness::new("credentials").await;
    harness
        .put_config_map("portraits", &[("face", &example_image("alice.png"))])
        .await;
    let crlf_token = format!("{CRLF_TOKEN_HEAD}\r\n{CRLF_TOKEN_TAIL}");

    use SecretInput::*;
    let table = [
        (
            Key {
                key: "token",
                value: format!("  {TOKEN} \n"),
            },
            Row::uploaded("token-padded", 1),
        ),
        (
            Key {
                key: "token",
                value: crlf_token,
            },
            Row::failed("token-line-break", 2, "CredentialsInvalid")
                .message("line break")
                .stalled(),
        ),
        (
            Key {
                key: "token",
                value: String::new(),
            },
            Row::failed("token-empty", 3, "CredentialsInvalid")
                .message("is empty")
                .stalled(),
        ),
        (
            Key {
                key: "other",
                value: TOKEN.to_owned(),
            },
            Row::failed("token-key-missing", 4, "CredentialsNotFound")
                .message("key \"token\" not found")
                .stalled(),
        ),
        (
            NoSecret,
            Row::failed("token-secret-missing", 5, "CredentialsNotFound")
                .message("\"token-secret-missing-token\" not found")
                .stalled(),
        ),
        (
            NoConnection,
            Row::failed("connection-missing", 6, "ConnectionNotFound")
                .message("DirectoryConnection \"connection-missing\" not found")
                .stalled(),
        ),
    ];
    let api_url = harness.directory.base_url();
    for (input, row) in &table {
        let secret = format!("{}-token", row.name);
        if let Key { key, value } = input {
            harness.create_secret(&secret, key, value).await;
        }
        if !matches!(input, NoConnection) {
            harness
                .create_connection(&row.name, &api_url, &secret)
                .await;
        }
        let spec = json!({
            "connectionRef": { "name": row.name },
            "userId": row.user_id,
            "source": { "configMap": { "name": "portraits", "key": "face" } },
        });
        harness.apply_avatar(&row.name, spec).await;
    }
    harness.start_operator();

    let rows: Vec<Row> = table.into_iter().map(|(_, row)| row).collect();
    let secrets = [TOKEN, CRLF_TOKEN_HEAD, CRLF_TOKEN_TAIL].map(String::from);
    let mut problems = Problems::default();
    check_table(&harness, &rows, &secrets, &mut problems).await;

    let expected = format!("OAuth {TOKEN}");
    for request in harness.directory.requests() {
        let authorization = request.header("authorization");
        problems.check(authorization == Some(expected.as_str()), || {
            let user = request.user_id.as_deref().unwrap_or("-");
            format!(
                "Directory request for user {user}: Authorization is {authorization:?}, \
                 expected the trimmed token"
            )
        });
    }
    problems.assert_none("credentials");
}

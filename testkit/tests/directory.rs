//! Exercises the Directory API stand-in and the image server over real loopback HTTP.

use std::error::Error as _;
use std::io;
use std::time::{Duration, Instant};

use reqwest::header::{
    ALLOW, AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE,
    IF_NONE_MATCH, LAST_MODIFIED, LOCATION, RETRY_AFTER,
};
use reqwest::{Client, ClientBuilder, Response, StatusCode, redirect};
use serde_json::Value;
use y360_testkit::directory::{DirectoryStandIn, Layout, Reply, StandInConfig, portrait_url};
use y360_testkit::images::{Behaviour, ImageServer, ImageServerConfig};

const ALICE_PNG: &[u8] = include_bytes!("../../examples/images/alice.png");
const BOB_JPG: &[u8] = include_bytes!("../../examples/images/bob.jpg");
const ORG_ID: u64 = 4_100_200;
const TOKEN: &str = "y0_test-token";
/// Larger than 2^53, so a float parser would change it.
const BIG_USER_ID: &str = "1130000012345678901";
const ERROR_INFO_TYPE: &str = "type.googleapis.com/google.rpc.ErrorInfo";

/// Returns a builder for a client that reaches loopback servers directly, without proxies.
fn client_builder() -> ClientBuilder {
    // reqwest is built with rustls-no-provider and panics without a process-wide provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
}

fn client() -> Client {
    client_builder()
        .build()
        .expect("failed to build the HTTP client")
}

async fn start_stand_in() -> DirectoryStandIn {
    DirectoryStandIn::start(StandInConfig::new(ORG_ID, TOKEN))
        .await
        .expect("failed to start the Directory stand-in")
}

async fn put_avatar(url: &str, token: &str, content_type: &str, body: &[u8]) -> Response {
    client()
        .put(url)
        .header(AUTHORIZATION, format!("OAuth {token}"))
        .header(CONTENT_TYPE, content_type)
        .body(body.to_vec())
        .send()
        .await
        .expect("PUT to the stand-in failed")
}

async fn json_body(response: Response) -> Value {
    let bytes = response
        .bytes()
        .await
        .expect("failed to read the response body");
    serde_json::from_slice(&bytes).expect("response body is not JSON")
}

fn error_reason(body: &Value) -> &str {
    body["details"][0]["reason"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn png_upload_returns_url() {
    let stand_in = start_stand_in().await;

    let response = put_avatar(&stand_in.avatar_url("42"), TOKEN, "image/png", ALICE_PNG).await;
    assert_eq!(response.status(), StatusCode::OK);

    let body = json_body(response).await;
    assert_eq!(body["url"], portrait_url(ORG_ID, "42", ALICE_PNG));
    assert!(
        body["url"]
            .as_str()
            .unwrap()
            .starts_with("https://avatars.example.test/get-yapic/")
    );
}

#[tokio::test]
async fn png_upload_recorded_byte_identical() {
    let stand_in = start_stand_in().await;
    put_avatar(&stand_in.avatar_url("42"), TOKEN, "image/png", ALICE_PNG).await;

    let requests = stand_in.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "PUT");
    assert_eq!(
        request.path,
        format!("/directory/v1/org/{ORG_ID}/users/42/avatar")
    );
    assert_eq!(request.org_id.as_deref(), Some("4100200"));
    assert_eq!(request.user_id.as_deref(), Some("42"));
    assert_eq!(request.body, ALICE_PNG);
    assert_eq!(request.body_len, ALICE_PNG.len());
    assert!(request.body_sha256.starts_with("sha256:"));
    assert_eq!(request.header("content-type"), Some("image/png"));
    assert_eq!(request.header("authorization"), Some("OAuth y0_test-token"));
    assert_eq!(request.status, Some(200));
    assert_eq!(stand_in.uploads_for("42"), 1);
}

#[tokio::test]
async fn jpeg_upload_returns_200() {
    let stand_in = start_stand_in().await;

    let response = put_avatar(&stand_in.avatar_url("7"), TOKEN, "image/jpeg", BOB_JPG).await;

    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn big_user_id_kept_as_string() {
    let stand_in = start_stand_in().await;

    let response = put_avatar(
        &stand_in.avatar_url(BIG_USER_ID),
        TOKEN,
        "image/png",
        ALICE_PNG,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);

    let body = json_body(response).await;
    assert!(body["url"].as_str().unwrap().contains(BIG_USER_ID));
    assert_eq!(stand_in.uploads_for(BIG_USER_ID), 1);
}

#[tokio::test]
async fn wrong_token_returns_401() {
    let stand_in = start_stand_in().await;

    let response = put_avatar(&stand_in.avatar_url("42"), "other", "image/png", ALICE_PNG).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let body = json_body(response).await;
    assert_eq!(body["code"], 16);
    assert!(body["message"].is_string());
    assert_eq!(body["details"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["details"][0]["@type"], ERROR_INFO_TYPE);
    assert_eq!(error_reason(&body), "INVALID_TOKEN");
    assert_eq!(stand_in.uploads_for("42"), 0);
    assert_eq!(stand_in.request_count_for("42"), 1);
}

#[tokio::test]
async fn missing_token_returns_401() {
    let stand_in = start_stand_in().await;

    let response = client()
        .put(stand_in.avatar_url("42"))
        .header(CONTENT_TYPE, "image/png")
        .body(ALICE_PNG.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let body = json_body(response).await;
    assert_eq!(error_reason(&body), "MISSING_CREDENTIALS");
}

#[tokio::test]
async fn bearer_scheme_returns_401() {
    let stand_in = start_stand_in().await;

    let response = client()
        .put(stand_in.avatar_url("42"))
        .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(CONTENT_TYPE, "image/png")
        .body(ALICE_PNG.to_vec())
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn rotated_token_replaces_old() {
    let stand_in = start_stand_in().await;
    stand_in.set_token("y0_rotated");

    let old = put_avatar(&stand_in.avatar_url("42"), TOKEN, "image/png", ALICE_PNG).await;
    let new = put_avatar(
        &stand_in.avatar_url("42"),
        "y0_rotated",
        "image/png",
        ALICE_PNG,
    )
    .await;

    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(new.status(), StatusCode::OK);
}

#[tokio::test]
async fn jpeg_labelled_png_returns_400() {
    let stand_in = start_stand_in().await;

    let response = put_avatar(&stand_in.avatar_url("42"), TOKEN, "image/png", BOB_JPG).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let body = json_body(response).await;
    assert_eq!(body["code"], 3);
    assert_eq!(body["details"][0]["@type"], ERROR_INFO_TYPE);
    assert_eq!(error_reason(&body), "CONTENT_TYPE_MISMATCH");
}

#[tokio::test]
async fn content_type_rejections_return_400() {
    let stand_in = start_stand_in().await;
    let cases: [(&str, &[u8], &str); 4] = [
        ("image/png", b"", "EMPTY_BODY"),
        ("image/gif", ALICE_PNG, "UNSUPPORTED_CONTENT_TYPE"),
        ("image/png", b"GIF89a not a portrait", "UNRECOGNIZED_IMAGE"),
        ("image/jpeg", ALICE_PNG, "CONTENT_TYPE_MISMATCH"),
    ];

    for (content_type, body, expected_reason) in cases {
        let response = put_avatar(&stand_in.avatar_url("42"), TOKEN, content_type, body).await;
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "case {expected_reason}"
        );
        let body = json_body(response).await;
        assert_eq!(error_reason(&body), expected_reason);
    }
}

#[tokio::test]
async fn non_digit_user_id_returns_400() {
    let stand_in = start_stand_in().await;

    let response = put_avatar(&stand_in.avatar_url("alice"), TOKEN, "image/png", ALICE_PNG).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let body = json_body(response).await;
    assert_eq!(error_reason(&body), "INVALID_USER_ID");
}

#[tokio::test]
async fn unknown_org_returns_404() {
    let stand_in = start_stand_in().await;
    let url = format!(
        "{}/directory/v1/org/999/users/42/avatar",
        stand_in.base_url()
    );

    let response = put_avatar(&url, TOKEN, "image/png", ALICE_PNG).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let body = json_body(response).await;
    assert_eq!(body["code"], 5);
    assert_eq!(error_reason(&body), "ORG_NOT_FOUND");
}

#[tokio::test]
async fn scripted_500_returns_error_body() {
    let stand_in = start_stand_in().await;
    stand_in.respond_to_user("42", Reply::Status(500));

    let response = put_avatar(&stand_in.avatar_url("42"), TOKEN, "image/png", ALICE_PNG).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);

    let body = json_body(response).await;
    assert_eq!(body["code"], 13);
    assert_eq!(body["details"][0]["@type"], ERROR_INFO_TYPE);
    assert_eq!(stand_in.requests()[0].status, Some(500));
    assert_eq!(stand_in.uploads_for("42"), 0);
}

#[tokio::test]
async fn scripted_429_sets_retry_after() {
    let stand_in = start_stand_in().await;
    stand_in.respond_to_user("42", Reply::StatusWithRetryAfter(429, 7));

    let response = put_avatar(&stand_in.avatar_url("42"), TOKEN, "image/png", ALICE_PNG).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()[RETRY_AFTER], "7");

    let body = json_body(response).await;
    assert_eq!(body["code"], 8);
}

#[tokio::test]
async fn one_shot_reply_used_once() {
    let stand_in = start_stand_in().await;
    stand_in.respond_to_user_once("42", Reply::Status(503));
    let url = stand_in.avatar_url("42");

    let first = put_avatar(&url, TOKEN, "image/png", ALICE_PNG).await;
    let second = put_avatar(&url, TOKEN, "image/png", ALICE_PNG).await;

    assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(stand_in.request_count_for("42"), 2);
    assert_eq!(stand_in.uploads_for("42"), 1);
}

#[tokio::test]
async fn cleared_replies_restore_normal() {
    let stand_in = start_stand_in().await;
    stand_in.respond_to_user("42", Reply::Status(500));
    stand_in.clear_replies();

    let response = put_avatar(&stand_in.avatar_url("42"), TOKEN, "image/png", ALICE_PNG).await;

    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn delay_reply_responds_late() {
    let stand_in = start_stand_in().await;
    stand_in.respond_to_user("42", Reply::Delay(Duration::from_millis(300)));
    let started = Instant::now();

    let response = put_avatar(&stand_in.avatar_url("42"), TOKEN, "image/png", ALICE_PNG).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn hang_reply_sends_no_response() {
    let stand_in = start_stand_in().await;
    stand_in.respond_to_user("42", Reply::Hang);

    let result = client()
        .put(stand_in.avatar_url("42"))
        .header(AUTHORIZATION, format!("OAuth {TOKEN}"))
        .header(CONTENT_TYPE, "image/png")
        .body(ALICE_PNG.to_vec())
        .timeout(Duration::from_millis(300))
        .send()
        .await;

    assert!(
        result
            .expect_err("a hanging request must time out")
            .is_timeout()
    );
    assert_eq!(stand_in.requests()[0].status, None);
}

#[tokio::test]
async fn get_on_avatar_path_returns_405() {
    let stand_in = start_stand_in().await;

    let response = client()
        .get(stand_in.avatar_url("42"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[ALLOW], "PUT");

    let body = json_body(response).await;
    assert_eq!(body["code"], 12);
    assert_eq!(stand_in.requests()[0].method, "GET");
}

#[tokio::test]
async fn unknown_path_returns_404() {
    let stand_in = start_stand_in().await;
    let url = format!("{}/directory/v1/org/{ORG_ID}/users/42", stand_in.base_url());

    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let body = json_body(response).await;
    assert_eq!(body["code"], 5);
    assert_eq!(stand_in.requests()[0].user_id, None);
}

#[tokio::test]
async fn latency_delays_every_upload() {
    let config = StandInConfig {
        latency: Duration::from_millis(200),
        ..StandInConfig::new(ORG_ID, TOKEN)
    };
    let stand_in = DirectoryStandIn::start(config).await.unwrap();
    let started = Instant::now();

    let response = put_avatar(&stand_in.avatar_url("42"), TOKEN, "image/png", ALICE_PNG).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "responded after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn upload_counts_and_times_cover_successes_only() {
    let stand_in = start_stand_in().await;
    let before = std::time::SystemTime::now();
    for user in ["42", "42", "43"] {
        put_avatar(&stand_in.avatar_url(user), TOKEN, "image/png", ALICE_PNG).await;
    }
    put_avatar(
        &stand_in.avatar_url("44"),
        "wrong-token",
        "image/png",
        ALICE_PNG,
    )
    .await;

    let counts = stand_in.upload_counts();
    assert_eq!(counts.get("42"), Some(&2));
    assert_eq!(counts.get("43"), Some(&1));
    assert_eq!(counts.get("44"), None);
    let times = stand_in.upload_times();
    assert_eq!(times.len(), 3);
    assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "{times:?}");
    assert!(times[0] >= before, "{times:?} before {before:?}");
}

#[tokio::test]
async fn on_prem_layout_accepts_upload() {
    let config = StandInConfig {
        layout: Layout::OnPremises,
        path_prefix: "/gateway/".to_owned(),
        ..StandInConfig::new(ORG_ID, TOKEN)
    };
    let stand_in = DirectoryStandIn::start(config).await.unwrap();
    assert!(stand_in.base_url().ends_with("/gateway"));
    let url = format!(
        "{}/v1/api360/directory/org/{ORG_ID}/users/42/avatar",
        stand_in.base_url()
    );

    let response = put_avatar(&url, TOKEN, "image/png", ALICE_PNG).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(stand_in.avatar_url("42"), url);
    assert_eq!(stand_in.uploads_for("42"), 1);
}

#[tokio::test]
async fn on_prem_layout_rejects_cloud_path() {
    let config = StandInConfig {
        layout: Layout::OnPremises,
        ..StandInConfig::new(ORG_ID, TOKEN)
    };
    let stand_in = DirectoryStandIn::start(config).await.unwrap();
    let url = format!(
        "{}/directory/v1/org/{ORG_ID}/users/42/avatar",
        stand_in.base_url()
    );

    let response = put_avatar(&url, TOKEN, "image/png", ALICE_PNG).await;

    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn invalid_prefix_rejected() {
    let config = StandInConfig {
        path_prefix: "gateway".to_owned(),
        ..StandInConfig::new(ORG_ID, TOKEN)
    };

    let result = DirectoryStandIn::start(config).await;

    assert!(result.is_err());
}

#[tokio::test]
async fn control_requests_redact_token() {
    let stand_in = start_stand_in().await;
    put_avatar(&stand_in.avatar_url("42"), TOKEN, "image/png", ALICE_PNG).await;
    let url = format!("http://{}/_standin/requests", stand_in.addr());

    let body = json_body(client().get(url).send().await.unwrap()).await;
    let recorded = &body[0];
    let headers = recorded["headers"].as_array().unwrap();
    let authorization = headers
        .iter()
        .find(|pair| pair[0] == "authorization")
        .unwrap();

    assert_eq!(authorization[1], "OAuth <redacted>");
    assert_eq!(recorded["user_id"], "42");
    assert_eq!(recorded["status"], 200);
    assert!(recorded.get("body").is_none());
    assert_eq!(stand_in.requests().len(), 1);
}

#[tokio::test]
async fn control_uploads_counts_per_user() {
    let stand_in = start_stand_in().await;
    put_avatar(&stand_in.avatar_url("42"), TOKEN, "image/png", ALICE_PNG).await;
    put_avatar(&stand_in.avatar_url("42"), TOKEN, "image/png", ALICE_PNG).await;
    put_avatar(&stand_in.avatar_url("7"), "other", "image/png", ALICE_PNG).await;
    let url = format!("http://{}/_standin/uploads", stand_in.addr());

    let body = json_body(client().get(url).send().await.unwrap()).await;

    assert_eq!(body, serde_json::json!({ "42": 2 }));
}

#[tokio::test]
async fn clear_forgets_requests() {
    let stand_in = start_stand_in().await;
    put_avatar(&stand_in.avatar_url("42"), TOKEN, "image/png", ALICE_PNG).await;

    stand_in.clear();

    assert!(stand_in.requests().is_empty());
    assert_eq!(stand_in.uploads_for("42"), 0);
}

async fn start_image_server() -> ImageServer {
    let server = ImageServer::start()
        .await
        .expect("failed to start the image server");
    server.put("alice.png", ALICE_PNG, "image/png");
    server
}

/// Reads a body chunk by chunk and returns the bytes received and the error that ended it.
async fn read_until_error(mut response: Response) -> (usize, Option<reqwest::Error>) {
    let mut received = 0;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => return (received, None),
            Err(error) => return (received, Some(error)),
        }
    }
}

fn io_error_kind(error: &reqwest::Error) -> Option<io::ErrorKind> {
    let mut source = error.source();
    while let Some(current) = source {
        if let Some(io_error) = current.downcast_ref::<io::Error>() {
            return Some(io_error.kind());
        }
        source = current.source();
    }
    None
}

#[tokio::test]
async fn image_served_with_validators() {
    let server = start_image_server().await;

    let response = client().get(server.url("alice.png")).send().await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "image/png");
    assert!(response.headers().contains_key(LAST_MODIFIED));
    let etag = response.headers()[ETAG].to_str().unwrap().to_owned();
    assert_eq!(
        etag.len(),
        18,
        "ETag {etag} should be 16 hex digits in quotes"
    );
    assert_eq!(response.bytes().await.unwrap(), ALICE_PNG);
}

#[tokio::test]
async fn matching_etag_returns_304() {
    let server = start_image_server().await;
    let first = client().get(server.url("alice.png")).send().await.unwrap();
    let etag = first.headers()[ETAG].clone();

    let second = client()
        .get(server.url("alice.png"))
        .header(IF_NONE_MATCH, etag)
        .send()
        .await
        .unwrap();

    assert_eq!(second.status(), StatusCode::NOT_MODIFIED);
    assert!(second.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn stale_etag_returns_200() {
    let server = start_image_server().await;

    let response = client()
        .get(server.url("alice.png"))
        .header(IF_NONE_MATCH, "\"0000000000000000\"")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn if_modified_since_returns_304() {
    let server = start_image_server().await;
    let first = client().get(server.url("alice.png")).send().await.unwrap();
    let last_modified = first.headers()[LAST_MODIFIED].clone();

    let second = client()
        .get(server.url("alice.png"))
        .header(IF_MODIFIED_SINCE, last_modified)
        .send()
        .await
        .unwrap();

    assert_eq!(second.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn redirect_sends_location() {
    let server = start_image_server().await;
    let target = server.url("alice.png");
    server.behave(
        "old.png",
        Behaviour::Redirect {
            status: 301,
            location: target.clone(),
        },
    );
    let no_redirects = client_builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap();

    let response = no_redirects
        .get(server.url("old.png"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(response.headers()[LOCATION], target.as_str());
}

#[tokio::test]
async fn redirect_followed_to_image() {
    let server = start_image_server().await;
    server.behave(
        "moved.png",
        Behaviour::Redirect {
            status: 307,
            location: "/alice.png".to_owned(),
        },
    );

    let response = client().get(server.url("moved.png")).send().await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap(), ALICE_PNG);
    assert_eq!(server.requests_for("moved.png"), 1);
    assert_eq!(server.requests_for("alice.png"), 1);
}

#[tokio::test]
async fn truncated_body_ends_early() {
    let server = start_image_server().await;
    server.behave("alice.png", Behaviour::Truncated);

    let response = client().get(server.url("alice.png")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[CONTENT_LENGTH],
        ALICE_PNG.len().to_string().as_str()
    );

    let (received, error) = read_until_error(response).await;
    assert_eq!(received, ALICE_PNG.len() / 2);
    let error = error.expect("reading a truncated body must fail");
    assert_eq!(
        io_error_kind(&error),
        Some(io::ErrorKind::UnexpectedEof),
        "error: {error:?}"
    );
}

#[tokio::test]
async fn reset_mid_body_resets_connection() {
    let server = start_image_server().await;
    server.behave("alice.png", Behaviour::ResetMidBody);

    let response = client().get(server.url("alice.png")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let (received, error) = read_until_error(response).await;
    assert_eq!(received, ALICE_PNG.len() / 2);
    let error = error.expect("reading a reset body must fail");
    assert_eq!(
        io_error_kind(&error),
        Some(io::ErrorKind::ConnectionReset),
        "error: {error:?}"
    );
}

#[tokio::test]
async fn oversized_body_streams_requested_bytes() {
    let server = start_image_server().await;
    let size = 3 * 1024 * 1024 + 5;
    server.behave(
        "alice.png",
        Behaviour::Oversized {
            bytes: size,
            declare_length: true,
        },
    );

    let response = client().get(server.url("alice.png")).send().await.unwrap();
    assert_eq!(
        response.headers()[CONTENT_LENGTH],
        size.to_string().as_str()
    );

    let body = response.bytes().await.unwrap();
    assert_eq!(body.len() as u64, size);
    assert!(body.starts_with(ALICE_PNG));
}

#[tokio::test]
async fn oversized_chunked_has_no_length() {
    let server = start_image_server().await;
    server.behave(
        "big.png",
        Behaviour::Oversized {
            bytes: 100_000,
            declare_length: false,
        },
    );

    let response = client().get(server.url("big.png")).send().await.unwrap();
    assert!(!response.headers().contains_key(CONTENT_LENGTH));

    let body = response.bytes().await.unwrap();
    assert_eq!(body.len(), 100_000);
}

#[tokio::test]
async fn status_behaviour_sets_retry_after() {
    let server = start_image_server().await;
    server.behave("alice.png", Behaviour::StatusWithRetryAfter(503, 2));

    let response = client().get(server.url("alice.png")).send().await.unwrap();

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[RETRY_AFTER], "2");
}

#[tokio::test]
async fn one_shot_behaviour_used_once() {
    let server = start_image_server().await;
    server.behave_once("alice.png", Behaviour::Status(500));

    let first = client().get(server.url("alice.png")).send().await.unwrap();
    let second = client().get(server.url("alice.png")).send().await.unwrap();

    assert_eq!(first.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(second.status(), StatusCode::OK);
}

#[tokio::test]
async fn header_behaviours_override_headers() {
    let server = start_image_server().await;
    server.put("labelled.png", ALICE_PNG, "image/png");
    server.behave("alice.png", Behaviour::ContentType("text/html".to_owned()));
    server.behave("labelled.png", Behaviour::GzipEncoding);

    let html = client().get(server.url("alice.png")).send().await.unwrap();
    let gzip = client()
        .get(server.url("labelled.png"))
        .send()
        .await
        .unwrap();

    assert_eq!(html.headers()[CONTENT_TYPE], "text/html");
    assert_eq!(gzip.headers()[CONTENT_ENCODING], "gzip");
    assert_eq!(gzip.bytes().await.unwrap(), ALICE_PNG);
}

#[tokio::test]
async fn hang_behaviour_times_out() {
    let server = start_image_server().await;
    server.behave("alice.png", Behaviour::Hang);

    let result = client()
        .get(server.url("alice.png"))
        .timeout(Duration::from_millis(300))
        .send()
        .await;

    assert!(
        result
            .expect_err("a hanging request must time out")
            .is_timeout()
    );
}

#[tokio::test]
async fn missing_image_returns_404() {
    let server = start_image_server().await;

    let response = client().get(server.url("nobody.png")).send().await.unwrap();

    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn image_requests_record_headers() {
    let server = start_image_server().await;

    client()
        .get(server.url("alice.png"))
        .header("x-trace", "abc")
        .send()
        .await
        .unwrap();

    let requests = server.requests_to("alice.png");
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].header("x-trace"), Some("abc"));
    assert_eq!(requests[0].header("authorization"), None);
}

#[tokio::test]
async fn served_dir_rereads_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bob.jpg"), BOB_JPG).unwrap();
    let config = ImageServerConfig {
        dir: Some(dir.path().to_owned()),
        ..ImageServerConfig::default()
    };
    let server = ImageServer::start_with(config).await.unwrap();

    let first = client().get(server.url("bob.jpg")).send().await.unwrap();
    assert_eq!(first.headers()[CONTENT_TYPE], "image/jpeg");
    assert_eq!(first.bytes().await.unwrap(), BOB_JPG);

    std::fs::write(dir.path().join("bob.jpg"), ALICE_PNG).unwrap();
    let second = client().get(server.url("bob.jpg")).send().await.unwrap();
    assert_eq!(second.bytes().await.unwrap(), ALICE_PNG);
}

#[tokio::test]
async fn served_dir_rejects_hidden_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".token"), b"secret").unwrap();
    let config = ImageServerConfig {
        dir: Some(dir.path().to_owned()),
        ..ImageServerConfig::default()
    };
    let server = ImageServer::start_with(config).await.unwrap();

    let response = client().get(server.url(".token")).send().await.unwrap();

    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

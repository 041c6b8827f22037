//! Checks that no log line of any crate at any level contains the token, during an upload, a
//! rejected token and a token with surrounding whitespace. This is a test binary of its own
//! because it installs the process-wide log subscriber.

mod support;

use std::io;
use std::sync::{Arc, Mutex};

use k8s_openapi::ByteString;
use serde_json::json;
use tracing_subscriber::filter::LevelFilter;
use y360_testkit::directory::Reply;

use support::{Harness, TOKEN, example_image};

const UPLOADED_NAME: &str = "log-capture-uploaded";

/// In-memory log sink shared by every writer the subscriber creates.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut buffer = self.0.lock().unwrap_or_else(|e| e.into_inner());
        buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Returns the base64 text that a Secret's `data` contains for this value.
fn base64(value: &str) -> String {
    let encoded = serde_json::to_value(ByteString(value.as_bytes().to_vec())).unwrap();
    encoded.as_str().unwrap().to_owned()
}

#[tokio::test]
async fn logs_never_contain_token() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    // Installed before Harness::new, whose own subscriber then fails to install.
    tracing_subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("another log subscriber is installed already");

    let mut harness = Harness::new("log-capture").await;
    harness
        .put_config_map("portraits", &[("face", &example_image("alice.png"))])
        .await;
    let padded_token = format!("  {TOKEN} \n");
    harness
        .create_token_secret("padded-token", &padded_token)
        .await;
    let api_url = harness.directory.base_url();
    harness
        .create_connection("padded", &api_url, "padded-token")
        .await;

    let rejected_user = "1130000000000401";
    harness
        .directory
        .respond_to_user(rejected_user, Reply::Status(401));
    harness
        .create_config_map_avatar(UPLOADED_NAME, "1130000000000001", "portraits", "face")
        .await;
    harness
        .create_config_map_avatar("log-capture-401", rejected_user, "portraits", "face")
        .await;
    let padded_spec = json!({
        "connectionRef": { "name": "padded" },
        "userId": "1130000000000002",
        "source": { "configMap": { "name": "portraits", "key": "face" } },
    });
    harness
        .apply_avatar("log-capture-padded", padded_spec)
        .await;
    harness.start_operator();

    harness
        .wait_for_ready(UPLOADED_NAME, "True", "UpToDate")
        .await;
    harness
        .wait_for_ready("log-capture-401", "False", "Unauthorized")
        .await;
    harness
        .wait_for_ready("log-capture-padded", "True", "UpToDate")
        .await;
    harness.stop_operator().await;

    let text = logs.text();
    assert!(!text.is_empty(), "no log output was captured");
    assert!(
        text.contains(UPLOADED_NAME),
        "the logs never name the uploaded UserAvatar {UPLOADED_NAME}"
    );
    let forms = [
        ("the token", TOKEN.to_owned()),
        ("the token in base64", base64(TOKEN)),
        ("the padded token in base64", base64(&padded_token)),
    ];
    for (what, secret) in forms {
        let leaking: Vec<String> = text
            .lines()
            .filter(|line| line.contains(secret.as_str()))
            .map(|line| line.replace(secret.as_str(), "<secret>"))
            .collect();
        let examples = leaking.iter().take(5).cloned().collect::<Vec<_>>();
        assert!(
            leaking.is_empty(),
            "{} log lines contain {what}, for example:\n{}",
            leaking.len(),
            examples.join("\n")
        );
    }
}

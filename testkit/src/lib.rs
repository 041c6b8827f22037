//! Test and demo tooling for y360-avatar-operator: a local kube-apiserver with etcd, a
//! stand-in for the Yandex 360 Directory API, and a small image server. None of it ships in the
//! operator binary.

pub mod bench;
pub mod cluster;
pub mod directory;
pub mod images;

/// Logs to stderr for the testkit binaries, at the level `RUST_LOG` names (info when unset),
/// with colour only on a terminal.
pub fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

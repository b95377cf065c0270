//! End-to-end tests: the real `strictmx` binary, real SMTP clients and receivers, real sockets on
//! loopback. Tests marked as needing the lab expect `tests/lab/up` to have run (tests/run-all
//! does it) and fail with a clear message otherwise.

mod audit;
mod cli;
mod cluster;
mod crash;
mod dkim;
mod drain;
mod http_api;
mod lab_mx;
mod policy;
mod relay;
mod sendmail;
mod smarthost;
mod tlsrpt;
mod webhook;

use std::path::{Path, PathBuf};

pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_strictmx"))
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A plain message with the given subject; no Message-ID or Date, so the relay adds them.
pub fn message(from: &str, to: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\r\nHello from the end-to-end tests.\r\n.leading dot line\r\n"
    )
    .into_bytes()
}

/// Submits one plain message from `app@src.test` to `rcpt` and expects it accepted.
pub async fn submit(relay: &strictmx_test_support::relay::Relay, rcpt: &str) {
    let mut client = strictmx_test_support::smtp::Client::connect(relay.smtp)
        .await
        .unwrap();
    let reply = client
        .send_mail(
            "app@src.test",
            &[rcpt],
            &message("app@src.test", rcpt, "end-to-end"),
        )
        .await
        .unwrap();
    assert_eq!(reply.code, 250, "{reply:?}");
}

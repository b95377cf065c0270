//! The Prometheus endpoint and the gauges sampled from the spool.
//!
//! Counters are incremented where things happen, in each crate, through the `metrics` facade;
//! this module installs the recorder with a `# HELP` text for every metric, serves the
//! exposition at `GET /metrics` (and nothing else), and samples queue-wide figures every few
//! seconds.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use strictmx_protocol::ErrorChain;
use strictmx_spool::Spool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::warn;

const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// A scraper gets this long to send its request and read the answer.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a request that is read: the request line and a few headers.
const MAX_REQUEST: usize = 8 * 1024;

/// Every metric strictmx exports, with its help text (`# HELP` in the exposition).
const METRICS: &[(&str, &str)] = &[
    (
        "strictmx_node_info",
        "always 1; the node label is this node's id (node-id in the data directory)",
    ),
    (
        "strictmx_cluster_database_up",
        "1 when the last query to the cluster database succeeded, 0 when it failed",
    ),
    (
        "strictmx_cluster_database_errors_total",
        "failed cluster database operations, by op",
    ),
    (
        "strictmx_cluster_rules_mismatch",
        "other live nodes whose rules hash differs from this node's",
    ),
    (
        "strictmx_cluster_tlsrpt_reporter",
        "1 while this node holds the lease to send the cluster's TLSRPT reports",
    ),
    (
        "strictmx_webhook_events_queued",
        "webhook events waiting to be sent, by webhook",
    ),
    (
        "strictmx_webhook_events_sent_total",
        "webhook events accepted (2xx) by their endpoint, by webhook",
    ),
    (
        "strictmx_webhook_events_failed_total",
        "failed webhook POSTs (reason post, retried) and events dropped from full queues (reason dropped)",
    ),
    ("strictmx_sessions_total", "SMTP sessions admitted"),
    ("strictmx_sessions_active", "SMTP sessions open now"),
    (
        "strictmx_sessions_refused_total",
        "connections refused at connect (session limits)",
    ),
    (
        "strictmx_messages_accepted_total",
        "messages accepted (250 after DATA)",
    ),
    (
        "strictmx_messages_rejected_total",
        "messages refused, by reason",
    ),
    (
        "strictmx_auth_failures_total",
        "failed or malformed AUTH attempts",
    ),
    (
        "strictmx_auth_throttled_total",
        "AUTH refused without a password check, by reason",
    ),
    (
        "strictmx_auth_clients_tracked",
        "client networks in the AUTH failure table",
    ),
    (
        "strictmx_delivery_attempts_total",
        "delivery attempts, by outcome and TLS",
    ),
    (
        "strictmx_exception_relaxed_total",
        "delivered messages an exception (insecure_relax) let through that its absence would have stopped, by rule",
    ),
    (
        "strictmx_shadow_total",
        "delivered messages a shadow rule was tried on, by rule and outcome (pass, would-defer, would-bounce)",
    ),
    ("strictmx_messages_delivered_total", "recipients delivered"),
    ("strictmx_messages_deferred_total", "recipients deferred"),
    ("strictmx_messages_bounced_total", "recipients bounced"),
    (
        "strictmx_destination_deferrals_total",
        "recipients deferred, by destination domain (the first 200 domains; the rest as other)",
    ),
    (
        "strictmx_dsn_sent_total",
        "delivery status notifications queued, by kind",
    ),
    ("strictmx_queue_messages", "messages in the queue"),
    (
        "strictmx_queue_recipients_queued",
        "recipients waiting for an attempt",
    ),
    ("strictmx_queue_held", "recipients held by an administrator"),
    (
        "strictmx_queue_oldest_age_seconds",
        "age of the oldest queued message",
    ),
    ("strictmx_spool_commits", "spool commits since start"),
    (
        "strictmx_spool_flushes",
        "spool commits that ended with an fdatasync since start",
    ),
    (
        "strictmx_spool_failed_commits",
        "failed spool commits since start",
    ),
    (
        "strictmx_spool_commit_seconds_sum",
        "total time spent in spool commits",
    ),
    (
        "strictmx_spool_last_commit_seconds",
        "duration of the last spool commit",
    ),
    (
        "strictmx_transfers_remembered",
        "messages received from other nodes whose transfer ids are remembered, per recipient",
    ),
];

/// The bound metrics endpoint, not yet serving.
#[derive(Debug)]
pub struct Exporter {
    listener: std::net::TcpListener,
    handle: PrometheusHandle,
}

/// Install the recorder and bind `addr`; nothing is served until [`Exporter::run`].
pub fn install(addr: SocketAddr) -> anyhow::Result<Exporter> {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    for (name, help) in METRICS {
        metrics::describe_counter!(*name, *help);
        metrics::describe_gauge!(*name, *help);
    }
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    listener.set_nonblocking(true)?;
    Ok(Exporter { listener, handle })
}

impl Exporter {
    /// Serve scrapes and keep the recorder's housekeeping going until cancelled.
    pub async fn run(self, token: CancellationToken) {
        let listener = match TcpListener::from_std(self.listener) {
            Ok(listener) => listener,
            Err(e) => {
                warn!(error = %ErrorChain(&e), "cannot serve the metrics endpoint");
                return;
            }
        };
        let mut upkeep = tokio::time::interval(SAMPLE_EVERY);
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = upkeep.tick() => self.handle.run_upkeep(),
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let handle = self.handle.clone();
                        tokio::spawn(async move {
                            let _ = tokio::time::timeout(SCRAPE_TIMEOUT, answer(stream, &handle)).await;
                        });
                    }
                    Err(e) => warn!(error = %ErrorChain(&e), "metrics endpoint accept failed"),
                },
            }
        }
    }
}

/// One HTTP/1.x request: `GET /metrics` gets the exposition, anything else 404 (or 405).
async fn answer(mut stream: TcpStream, handle: &PrometheusHandle) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&chunk[..n]);
    }
    let response = respond(&request, || handle.render());
    stream.write_all(&response).await?;
    stream.shutdown().await
}

/// The response to a request's bytes; `render` makes the exposition only when it is asked for.
fn respond(request: &[u8], render: impl FnOnce() -> String) -> Vec<u8> {
    let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let (status, content_type, body) = match (method, target) {
        (b"GET", b"/metrics") => ("200 OK", "text/plain; version=0.0.4", render()),
        (b"GET", _) => (
            "404 Not Found",
            "text/plain",
            "only /metrics is served\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET /metrics\n".to_owned(),
        ),
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Samples queue depth, age and spool commit latency into gauges until cancelled.
pub async fn sample_spool(spool: Spool, token: CancellationToken) {
    loop {
        if let Ok(remembered) = spool.transfers_remembered() {
            metrics::gauge!("strictmx_transfers_remembered").set(remembered as f64);
        }
        let stats = spool.stats();
        metrics::gauge!("strictmx_queue_messages").set(stats.messages as f64);
        metrics::gauge!("strictmx_queue_recipients_queued").set(stats.recipients_queued as f64);
        metrics::gauge!("strictmx_queue_held").set(stats.held as f64);
        metrics::gauge!("strictmx_queue_oldest_age_seconds")
            .set(stats.oldest_age.map_or(0.0, |d| d.as_secs_f64()));
        metrics::gauge!("strictmx_spool_commits").set(stats.commits as f64);
        metrics::gauge!("strictmx_spool_flushes").set(stats.flushes as f64);
        metrics::gauge!("strictmx_spool_failed_commits").set(stats.failed_commits as f64);
        metrics::gauge!("strictmx_spool_commit_seconds_sum")
            .set(stats.total_commit_latency.as_secs_f64());
        metrics::gauge!("strictmx_spool_last_commit_seconds")
            .set(stats.last_commit_latency.map_or(0.0, |d| d.as_secs_f64()));
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_metrics_is_answered_with_the_exposition() {
        let rows: [(&[u8], &str, bool); 5] = [
            (
                b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                "HTTP/1.1 200 OK",
                true,
            ),
            (b"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found", false),
            (
                b"GET /metrics/../x HTTP/1.1\r\n\r\n",
                "HTTP/1.1 404 Not Found",
                false,
            ),
            (
                b"POST /metrics HTTP/1.1\r\n\r\n",
                "HTTP/1.1 405 Method Not Allowed",
                false,
            ),
            (b"", "HTTP/1.1 405 Method Not Allowed", false),
        ];
        for (request, status, rendered) in rows {
            let mut asked = false;
            let response = respond(request, || {
                asked = true;
                "x 1\n".to_owned()
            });
            let text = String::from_utf8(response).expect("ascii");
            assert!(text.starts_with(status), "{request:?}: {text}");
            assert_eq!(asked, rendered, "{request:?}");
        }
    }
}

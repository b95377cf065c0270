//! The Prometheus exporter and the gauges sampled from the spool.
//!
//! Counters are incremented where things happen, in each crate, through the `metrics` facade;
//! this module installs the exporter and samples queue-wide figures every few seconds.

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use strictmx_spool::Spool;
use tokio_util::sync::CancellationToken;

const SAMPLE_EVERY: Duration = Duration::from_secs(5);

pub fn install(addr: SocketAddr) -> anyhow::Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()?;
    Ok(())
}

/// Samples queue depth, age and spool commit latency into gauges until cancelled.
pub async fn sample_spool(spool: Spool, token: CancellationToken) {
    loop {
        let stats = spool.stats();
        metrics::gauge!("strictmx_queue_messages").set(stats.messages as f64);
        metrics::gauge!("strictmx_queue_recipients_queued").set(stats.recipients_queued as f64);
        metrics::gauge!("strictmx_queue_held").set(stats.held as f64);
        metrics::gauge!("strictmx_queue_oldest_age_seconds")
            .set(stats.oldest_age.map_or(0.0, |d| d.as_secs_f64()));
        metrics::gauge!("strictmx_spool_commits").set(stats.commits as f64);
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

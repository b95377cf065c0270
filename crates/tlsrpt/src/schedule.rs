//! The daily task (RFC 8460 §4.1): once a UTC day is over, wait a random delay after midnight
//! (so that senders do not all report at 00:00) and send that day's reports; on start, catch up
//! on closed days not yet sent. Building and sending is left to `send`.

use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::day::Day;
use crate::send::Reporter;

/// Runs until `shutdown`. Does nothing when reporting is disabled.
pub async fn run(reporter: Reporter, shutdown: CancellationToken) {
    if !reporter.settings().enabled {
        return;
    }
    loop {
        let now = SystemTime::now();
        let today = Day::of(now);
        let max = reporter.settings().send_delay_max;
        let jitter = if max.is_zero() {
            Duration::ZERO
        } else {
            rand::rng().random_range(Duration::ZERO..=max)
        };
        // Midnight that opened today, plus the delay: on a restart later in the day, at once.
        let send_at = today.previous().closes_at() + jitter;
        if !sleep_until(send_at, &shutdown).await {
            return;
        }
        if let Err(e) = reporter.send_closed_days(SystemTime::now()).await {
            tracing::error!(error = %e, "TLSRPT daily reports failed");
        }
        if !sleep_until(today.closes_at(), &shutdown).await {
            return;
        }
    }
}

/// Sleeps until `at` (wall clock); false when shut down first.
async fn sleep_until(at: SystemTime, shutdown: &CancellationToken) -> bool {
    let Ok(wait) = at.duration_since(SystemTime::now()) else {
        return !shutdown.is_cancelled();
    };
    tokio::select! {
        () = tokio::time::sleep(wait) => true,
        () = shutdown.cancelled() => false,
    }
}

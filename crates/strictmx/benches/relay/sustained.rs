//! The sustained profile (`--sustained=SECS`, `--rate=N`): submission at a fixed rate below
//! capacity to a sink that waits 30 ms before each `250` to the end of data, answers 5% of
//! recipients 451 the first time and 2% 550 every time (chosen by a hash of the address). Prints
//! the queue every 10 s; at the end delivered msg/s, retries that became deliveries, bounces
//! (the DSNs that reached the sender's sink) and duplicates.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use strictmx_test_support::smtp::{RcptScript, Sink, SinkOptions};

use crate::generator::{self, Envelope, Load};
use crate::harness::{self, Bench, Waited};
use crate::probe;
use crate::throughput::{KEEP, sink_options};

const CONNS: usize = 10;
const SCRIPT: RcptScript = RcptScript::Mixed {
    temp_per_mille: 50,
    reject_per_mille: 20,
};
/// Retries come 2 s after a 451 (growing to at most 10 s), so that they happen within the run.
const RETRY: &str =
    "[retry]\ninitial = \"2s\"\nfactor = 2.0\nmax_interval = \"10s\"\njitter = 0.2\n\n";

fn recipient(n: usize) -> String {
    format!("r{n}@dest.test")
}

pub async fn run(secs: u64, rate: f64, size: usize) -> anyhow::Result<()> {
    let dest = Sink::start_with(
        "127.0.0.1:0".parse()?,
        SinkOptions {
            script: SCRIPT,
            data_reply_delay: Duration::from_millis(30),
            body_limit: KEEP,
            ..SinkOptions::default()
        },
    )
    .await?;
    let senders = Sink::start_with("127.0.0.1:0".parse()?, sink_options(false)?).await?;
    let routes = format!(
        "{RETRY}[[route]]\ndomain = \"dest.test\"\nnext_hop = \"{}\"\n\n\
         [[route]]\ndomain = \"src.test\"\nnext_hop = \"{}\"\n",
        dest.addr, senders.addr
    );
    let bench = Bench::start("", &routes, false).await?;
    let n = (secs as f64 * rate) as usize;
    let envelope: Envelope = Arc::new(|n| ("bench@src.test".to_owned(), vec![recipient(n)]));
    let start = Instant::now();
    let load = Arc::new(Load {
        addr: bench.relay.smtp,
        envelope,
        size,
        pace: Some((start, rate)),
        acked: Arc::default(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let reporter = tokio::spawn(report(
        bench.metrics,
        dest.clone(),
        senders.clone(),
        load.clone(),
        stop.clone(),
    ));
    let (submitted, error) = generator::run(load.clone(), n, CONNS).await;
    let window = start.elapsed();
    let delivered_in_window = dest.recipient_count();
    if let Some(e) = error {
        return Err(e);
    }
    let bounces: Vec<usize> = (0..n)
        .filter(|&i| SCRIPT.first_reply_code(&recipient(i)) == 550)
        .collect();
    let retried: Vec<usize> = (0..n)
        .filter(|&i| SCRIPT.first_reply_code(&recipient(i)) == 451)
        .collect();
    let expected = n - bounces.len();
    let waited = harness::wait("draining", start, Duration::from_millis(200), || {
        let got = dest.recipient_count() + senders.message_count();
        (got, got >= expected + bounces.len())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let max_queue = reporter.await?;
    let t = harness::tally(&[&dest]);
    let retries_delivered = retried
        .iter()
        .filter(|&&i| t.distinct.contains(&(i, recipient(i))))
        .count();
    let drained = match waited {
        Waited::Done(took) => format!("all final after {:.1}s", took.as_secs_f64()),
        Waited::Stalled { progress } => format!("STALLED at {progress}"),
    };
    bench.stop().await?;
    println!(
        "sustained {secs}s at {rate:.0} msg/s ({n} msgs, C={CONNS}, 30 ms before each 250, 5% 451 once, 2% 550): \
         delivered {:.0} msg/s during the run, {drained}; retries that became deliveries {retries_delivered} of {}; \
         bounces (DSNs received) {} of {}; duplicates {}; missing {}; largest queue {max_queue:.0} msgs; \
         .->250 p99 {:.1} ms, longest {:.0} ms",
        delivered_in_window as f64 / window.as_secs_f64(),
        retried.len(),
        senders.message_count(),
        bounces.len(),
        t.duplicates,
        expected.saturating_sub(t.distinct.len()),
        probe::percentile(&submitted.latencies, 0.99).as_secs_f64() * 1e3,
        submitted
            .latencies
            .last()
            .map_or(0.0, |l| l.as_secs_f64() * 1e3),
    );
    Ok(())
}

/// Every 10 s until `stop`: submitted, delivered, queue depth; returns the largest depth seen.
async fn report(
    metrics: std::net::SocketAddr,
    dest: Sink,
    senders: Sink,
    load: Arc<Load>,
    stop: Arc<AtomicBool>,
) -> f64 {
    let start = Instant::now();
    let mut max_queue: f64 = 0.0;
    let mut second = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        second += 1;
        let m = probe::scrape(metrics).await.unwrap_or_default();
        let queued = m.get("strictmx_queue_messages").copied().unwrap_or(0.0);
        max_queue = max_queue.max(queued);
        if second.is_multiple_of(10) {
            println!(
                "  t={:>4}s submitted {:>6} delivered {:>6} DSNs {:>4} queue {:>5.0} msgs {:>5.0} rcpts waiting, deferred so far {:.0}",
                start.elapsed().as_secs(),
                load.acked.lock().expect("acked lock poisoned").len(),
                dest.recipient_count(),
                senders.message_count(),
                queued,
                m.get("strictmx_queue_recipients_queued")
                    .copied()
                    .unwrap_or(0.0),
                m.get("strictmx_messages_deferred_total")
                    .copied()
                    .unwrap_or(0.0),
            );
        }
    }
    max_queue
}

//! `kill -9` under load (`--kill`): N messages over 10 connections; once a third of them reached
//! the sink, SIGKILL the relay, start it again on the same data, and wait until every message
//! that got a `250` is delivered. Counts duplicates the kill caused and acknowledged messages
//! lost (must be 0).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strictmx_test_support::smtp::Sink;

use crate::generator::{self, Load, single};
use crate::harness::{self, Bench, Waited};
use crate::throughput::sink_options;

const CONNS: usize = 10;

pub async fn run(n: usize, size: usize) -> anyhow::Result<()> {
    let sink = Sink::start_with("127.0.0.1:0".parse()?, sink_options(false)?).await?;
    let routes = format!(
        "[[route]]\ndomain = \"dest.test\"\nnext_hop = \"{}\"\n",
        sink.addr
    );
    let mut bench = Bench::start("", &routes, false).await?;
    let load = Arc::new(Load {
        addr: bench.relay.smtp,
        envelope: single("sink@dest.test"),
        size,
        pace: None,
        acked: Arc::default(),
    });
    let submitters = tokio::spawn(generator::run(load.clone(), n, CONNS));
    let start = Instant::now();
    harness::wait(
        "delivery before the kill",
        start,
        Duration::from_millis(5),
        || {
            let got = sink.message_count();
            (got, got >= n / 3)
        },
    )
    .await;
    bench.relay.kill9()?;
    let at_kill = sink.message_count();
    // The submitters fail on the dead connections; what was acknowledged is kept.
    let _ = submitters.await?;
    let acked: HashSet<usize> = load
        .acked
        .lock()
        .expect("acked lock poisoned")
        .iter()
        .copied()
        .collect();
    let restarted = Instant::now();
    bench.relay.restart().await?;
    bench.relay.keep_warnings_only();
    let waited = harness::wait(
        "redelivery after restart",
        restarted,
        Duration::from_millis(500),
        || {
            let t = harness::tally(&[&sink]);
            let delivered = acked
                .iter()
                .filter(|&&i| t.distinct.contains(&(i, "sink@dest.test".to_owned())))
                .count();
            (delivered, delivered == acked.len())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t = harness::tally(&[&sink]);
    let delivered: HashSet<usize> = t.distinct.iter().map(|(i, _)| *i).collect();
    let lost = acked.difference(&delivered).count();
    let unacked_delivered = delivered.difference(&acked).count();
    let recovered = match waited {
        Waited::Done(took) => format!(
            "all acknowledged delivered {:.1}s after restart",
            took.as_secs_f64()
        ),
        Waited::Stalled { progress } => format!("STALLED with {progress} acknowledged delivered"),
    };
    bench.stop().await?;
    println!(
        "kill -9 at C={CONNS}: {} of {n} acknowledged before the kill, {at_kill} at the sink when killed; {recovered}; \
         duplicates {}, acknowledged lost {lost}, delivered without a 250 (committed, reply lost) {unacked_delivered}",
        acked.len(),
        t.duplicates,
    );
    Ok(())
}

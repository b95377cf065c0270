//! The fan-out workload (`--fanout`): messages with 50 recipients over 10 domains (5 each),
//! each domain routed to its own sink on its own loopback address, 10 submitting connections.
//! Counts delivered recipients per second, duplicates and missing recipients, and stops on a
//! stall.

use std::sync::Arc;
use std::time::{Duration, Instant};

use strictmx_test_support::smtp::Sink;

use crate::generator::{self, Envelope, Load};
use crate::harness::{self, Bench, Waited};
use crate::throughput::sink_options;

const DOMAINS: usize = 10;
const PER_DOMAIN: usize = 5;
const CONNS: usize = 10;

fn recipients() -> Vec<String> {
    (0..DOMAINS)
        .flat_map(|d| (0..PER_DOMAIN).map(move |u| format!("u{u}@d{d}.test")))
        .collect()
}

pub async fn run(messages: usize, size: usize, count_flushes: bool) -> anyhow::Result<()> {
    let mut sinks = Vec::new();
    let mut routes = String::new();
    for d in 0..DOMAINS {
        let sink = Sink::start_with(
            format!("127.0.0.{}:0", 10 + d).parse()?,
            sink_options(false)?,
        )
        .await?;
        routes += &format!(
            "[[route]]\ndomain = \"d{d}.test\"\nnext_hop = \"{}\"\n\n",
            sink.addr
        );
        sinks.push(sink);
    }
    // Bounces, if any, go back to the sender's domain.
    let senders = Sink::start_with("127.0.0.9:0".parse()?, sink_options(false)?).await?;
    routes += &format!(
        "[[route]]\ndomain = \"src.test\"\nnext_hop = \"{}\"\n",
        senders.addr
    );
    let bench = Bench::start("", &routes, count_flushes).await?;
    let before = bench.usage().await;
    let all = recipients();
    let envelope: Envelope = Arc::new(move |_| ("bench@src.test".to_owned(), all.clone()));
    let load = Arc::new(Load {
        addr: bench.relay.smtp,
        envelope,
        size,
        pace: None,
        acked: Arc::default(),
    });
    let start = Instant::now();
    let (_, error) = generator::run(load, messages, CONNS).await;
    if let Some(e) = error {
        return Err(e);
    }
    let accepted_in = start.elapsed();
    let expected = messages * DOMAINS * PER_DOMAIN;
    let refs: Vec<&Sink> = sinks.iter().collect();
    let waited = harness::wait(
        "fan-out delivery",
        start,
        Duration::from_millis(500),
        || {
            let arrived: usize = sinks.iter().map(Sink::recipient_count).sum();
            let done = arrived >= expected && harness::tally(&refs).distinct.len() >= expected;
            (arrived, done)
        },
    )
    .await;
    // Late copies of recipients already delivered would still be duplicates.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t = harness::tally(&refs);
    let (cpu_ms, commits) = bench.cost_since(before).await;
    // The DNSSEC self-test fails by design (the bench gives the relay no DNS); any other error
    // record, such as an outcome that could not be recorded, is the relay's fault.
    let errors: Vec<String> = bench
        .relay
        .logs()
        .iter()
        .filter(|v| v["level"] == "ERROR")
        .filter_map(|v| v["message"].as_str().map(str::to_owned))
        .filter(|m| !m.starts_with("DNSSEC self-test"))
        .collect();
    let flushes = bench.stop().await?;
    let rate = match waited {
        Waited::Done(took) => format!(
            "delivered {:.0} recipients/s, {:.0} msg/s",
            expected as f64 / took.as_secs_f64(),
            messages as f64 / took.as_secs_f64()
        ),
        Waited::Stalled { progress } => format!("STALLED at {progress} of {expected} recipients"),
    };
    println!(
        "fan-out: {messages} msgs x {} rcpts over {DOMAINS} domains, C={CONNS}: accepted {:.0} msg/s, {rate}; \
         duplicates {}, missing {}, DSNs {}, relay errors logged {}{}, CPU {:.3} ms/msg, spool commits {:.2}/msg{}",
        DOMAINS * PER_DOMAIN,
        messages as f64 / accepted_in.as_secs_f64(),
        t.duplicates,
        expected - t.distinct.len(),
        senders.message_count(),
        errors.len(),
        errors
            .first()
            .map_or(String::new(), |e| format!(" (first: {e})")),
        cpu_ms / messages as f64,
        commits / messages as f64,
        flushes.map_or(String::new(), |f| format!(
            ", flushes {:.2}/msg, system calls {:.1}/msg",
            f.flushes as f64 / messages as f64,
            f.syscalls as f64 / messages as f64
        )),
    );
    Ok(())
}

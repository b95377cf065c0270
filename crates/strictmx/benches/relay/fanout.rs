//! The fan-out workload (`--fanout`): messages with 50 recipients over 10 domains (5 each),
//! each domain routed to its own sink on its own loopback address, 10 submitting connections.
//! Counts delivered recipients per second, duplicates and missing recipients, and stops on a
//! stall.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strictmx_test_support::smtp::Sink;

use crate::generator::{self, Envelope, Load};
use crate::harness::{self, Bench, Waited};
use crate::postfix::{self, Postfix};
use crate::throughput::sink_options;

const DOMAINS: usize = 10;
const PER_DOMAIN: usize = 5;
const CONNS: usize = 10;

fn recipients() -> Vec<String> {
    (0..DOMAINS)
        .flat_map(|d| (0..PER_DOMAIN).map(move |u| format!("u{u}@d{d}.test")))
        .collect()
}

/// The sinks of one run: one per domain, and one for bounces to the sender's domain.
struct Sinks {
    domains: Vec<Sink>,
    senders: Sink,
    /// Each domain with its sink, the bounce domain last.
    routes: Vec<(String, SocketAddr)>,
}

impl Sinks {
    async fn start() -> anyhow::Result<Sinks> {
        let mut domains = Vec::new();
        let mut routes = Vec::new();
        for d in 0..DOMAINS {
            let sink = Sink::start_with(
                format!("127.0.0.{}:0", 10 + d).parse()?,
                sink_options(false)?,
            )
            .await?;
            routes.push((format!("d{d}.test"), sink.addr));
            domains.push(sink);
        }
        let senders = Sink::start_with("127.0.0.9:0".parse()?, sink_options(false)?).await?;
        routes.push(("src.test".to_owned(), senders.addr));
        Ok(Sinks {
            domains,
            senders,
            routes,
        })
    }
}

/// What one MTA did with the workload.
struct Delivered {
    accepted_per_s: f64,
    waited: Waited,
    tally: harness::Tally,
}

/// Submits `messages` to `addr` and waits until every recipient reached its sink (or a stall).
async fn deliver(
    addr: SocketAddr,
    messages: usize,
    size: usize,
    sinks: &Sinks,
) -> anyhow::Result<Delivered> {
    let start = Instant::now();
    submit(addr, messages, size).await?;
    let accepted_in = start.elapsed();
    let expected = messages * DOMAINS * PER_DOMAIN;
    let refs: Vec<&Sink> = sinks.domains.iter().collect();
    let waited = harness::wait(
        "fan-out delivery",
        start,
        Duration::from_millis(500),
        || {
            let arrived: usize = sinks.domains.iter().map(Sink::recipient_count).sum();
            let done = arrived >= expected && harness::tally(&refs).distinct.len() >= expected;
            (arrived, done)
        },
    )
    .await;
    // Late copies of recipients already delivered would still be duplicates.
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(Delivered {
        accepted_per_s: messages as f64 / accepted_in.as_secs_f64(),
        waited,
        tally: harness::tally(&refs),
    })
}

impl Delivered {
    fn recipients_per_s(&self, messages: usize) -> Option<f64> {
        match self.waited {
            Waited::Done(took) => {
                Some((messages * DOMAINS * PER_DOMAIN) as f64 / took.as_secs_f64())
            }
            Waited::Stalled { .. } => None,
        }
    }

    fn describe(&self, messages: usize, sinks: &Sinks) -> String {
        let expected = messages * DOMAINS * PER_DOMAIN;
        let rate = match self.waited {
            Waited::Done(took) => format!(
                "delivered {:.0} recipients/s, {:.0} msg/s",
                expected as f64 / took.as_secs_f64(),
                messages as f64 / took.as_secs_f64()
            ),
            Waited::Stalled { progress } => {
                format!("STALLED at {progress} of {expected} recipients")
            }
        };
        format!(
            "accepted {:.0} msg/s, {rate}; duplicates {}, missing {}, DSNs {}",
            self.accepted_per_s,
            self.tally.duplicates,
            expected - self.tally.distinct.len(),
            sinks.senders.message_count(),
        )
    }
}

/// The same generator with the same envelopes straight into one sink: msg/s from the first
/// submission to the last `250`.
async fn ceiling(messages: usize, size: usize) -> anyhow::Result<f64> {
    let sink = Sink::start_with("127.0.0.1:0".parse()?, sink_options(false)?).await?;
    let start = Instant::now();
    submit(sink.addr, messages, size).await?;
    Ok(messages as f64 / start.elapsed().as_secs_f64())
}

/// Submits `messages` of the workload to `addr` over [`CONNS`] connections.
async fn submit(addr: SocketAddr, messages: usize, size: usize) -> anyhow::Result<()> {
    let all = recipients();
    let envelope: Envelope = Arc::new(move |_| ("bench@src.test".to_owned(), all.clone()));
    let load = Arc::new(Load {
        addr,
        envelope,
        size,
        pace: None,
        acked: Arc::default(),
    });
    match generator::run(load, messages, CONNS).await {
        (_, Some(e)) => Err(e),
        (_, None) => Ok(()),
    }
}

pub async fn run(
    messages: usize,
    size: usize,
    count_flushes: bool,
    postfix: bool,
) -> anyhow::Result<()> {
    let ceiling = ceiling(messages, size).await?;
    println!("fan-out ceiling (the generator straight into one sink): {ceiling:.0} msg/s");
    let sinks = Sinks::start().await?;
    let routes: String = sinks
        .routes
        .iter()
        .map(|(domain, hop)| format!("[[route]]\ndomain = \"{domain}\"\nnext_hop = \"{hop}\"\n\n"))
        .collect();
    let bench = Bench::start("", &routes, count_flushes).await?;
    let before = bench.usage().await;
    let delivered = deliver(bench.relay.smtp, messages, size, &sinks).await?;
    let cost = bench.cost_since(before).await;
    let (cpu_ms, commits) = (cost.cpu_ms, cost.commits);
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
    let cpu_ms_per_msg = cpu_ms / messages as f64;
    println!(
        "fan-out: {messages} msgs x {} rcpts over {DOMAINS} domains, C={CONNS}: {}, relay errors logged {}{}, CPU {cpu_ms_per_msg:.3} ms/msg, spool commits {:.2}/msg{}",
        DOMAINS * PER_DOMAIN,
        delivered.describe(messages, &sinks),
        errors.len(),
        errors
            .first()
            .map_or(String::new(), |e| format!(" (first: {e})")),
        commits / messages as f64,
        flushes.map_or(String::new(), |f| format!(
            ", flushes {:.2}/msg, system calls {:.1}/msg",
            f.flushes as f64 / messages as f64,
            f.syscalls as f64 / messages as f64
        )),
    );
    if postfix {
        let sinks = Sinks::start().await?;
        let instance = Postfix::start(&sinks.routes, false).await?;
        let before = instance.cpu_ticks();
        let by_postfix = deliver(instance.smtp, messages, size, &sinks).await?;
        let postfix_ms = postfix::ticks_to_ms(instance.cpu_ticks() - before) / messages as f64;
        let warnings = instance.stop().await?;
        let ratio = match (
            delivered.recipients_per_s(messages),
            by_postfix.recipients_per_s(messages),
        ) {
            (Some(s), Some(p)) => format!(
                " | strictmx delivers {:.1}x as many recipients per second",
                s / p
            ),
            _ => String::new(),
        };
        println!(
            "  Postfix: {}, {}, CPU {postfix_ms:.3} ms/msg{ratio}, with {:.1}x less CPU per message",
            by_postfix.describe(messages, &sinks),
            postfix::describe_warnings(&warnings),
            postfix_ms / cpu_ms_per_msg
        );
    }
    Ok(())
}

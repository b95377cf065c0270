//! End-to-end relay benchmark: N messages over C concurrent connections into the real binary,
//! delivered to a local sink. Prints, for each C, the ceiling (the same generator straight into
//! the same sink), accepted and delivered msg/s, delivered as a share of the ceiling, p50/p99
//! latency from the final `.` to the `250`, the relay's CPU time and spool commits per message,
//! and its peak RSS.
//!
//! `cargo bench -p strictmx --bench relay -- [N] [SIZE_BYTES] [C ...] [FLAGS]`, defaults
//! 10000 2048 1 10 50. Flags:
//! - `--max-body-memory=SIZE`: the server's `[limits] max_body_memory`; messages refused with
//!   452 (the budget for bodies is spent) are counted, not retried.
//! - `--accept-only`: the next hop is a closed port; only acceptance is measured.
//! - `--count-flushes`: run the relay under `perf stat` and report its fsync plus fdatasync
//!   calls, and all its system calls, per message (over the relay's whole life: startup and
//!   shutdown add a handful of flushes and some hundreds of calls).
//! - `--tls`: each C again with STARTTLS offered by the sink (self-signed, opportunistic).
//! - `--postfix`: each workload again through a private Postfix instance (`postfix.rs`) fed
//!   by the same generator into the same kind of sink, with its figures and strictmx's as
//!   multiples of them (the default sweep and `--fanout`).
//! - `--pipeline`: every submitter pipelines MAIL, RCPT and DATA (RFC 2920), in every workload
//!   and its ceiling, for strictmx and Postfix alike; without it each command waits for its
//!   reply, as issue 9's generator did.
//! - `--profile=FILE`: `perf record` the relay for 10 s from 1 s into the load.
//! - `--fanout[=MSGS]`: only the fan-out workload, 1000 messages x 50 recipients over 10 domains.
//! - `--sustained[=SECS]` with `--rate=N`: only the sustained profile, default 120 s at 150 msg/s.
//! - `--kill`: only the kill -9 workload (N messages, 10 connections).
//! - `--dead-hop=N`: only acceptance of N messages (of SIZE) at C=10 for a closed next hop.
//! - `--http`: only HTTP API submissions (N of SIZE at each C, `POST /v1/messages` with `raw`),
//!   delivered to the sink, then the same over SMTP on a fresh relay for comparison.
//!
//! Not part of the test run: figures depend on the machine; docs/benchmarks.md records ours.

mod fanout;
mod generator;
mod harness;
mod http;
mod kill;
mod postfix;
mod probe;
mod sustained;
mod throughput;

/// The command line, parsed.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub n: usize,
    pub size: usize,
    pub conns: Vec<usize>,
    pub body_memory: Option<String>,
    pub accept_only: bool,
    pub count_flushes: bool,
    pub tls: bool,
    pub postfix: bool,
    pub profile: Option<String>,
}

/// A workload other than the default sweep over C.
enum Only {
    Fanout(usize),
    Sustained { secs: u64, rate: f64 },
    Kill,
    Http,
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().find_map(|a| {
        let rest = a.strip_prefix(name)?;
        match rest.strip_prefix('=') {
            Some(value) => Some(value),
            None if rest.is_empty() => Some(""),
            None => None,
        }
    })
}

fn parse(args: &[String]) -> anyhow::Result<(Options, Option<Only>)> {
    let number = |name: &str, default: f64| -> anyhow::Result<f64> {
        match flag(args, name) {
            None | Some("") => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| anyhow::anyhow!("{name} wants a number, not {v:?}")),
        }
    };
    let positional: Vec<usize> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .filter_map(|a| a.parse().ok())
        .collect();
    let mut o = Options {
        n: positional.first().copied().unwrap_or(10_000),
        size: positional.get(1).copied().unwrap_or(2048),
        conns: positional.iter().skip(2).copied().collect(),
        body_memory: flag(args, "--max-body-memory").map(str::to_owned),
        accept_only: flag(args, "--accept-only").is_some(),
        count_flushes: flag(args, "--count-flushes").is_some(),
        tls: flag(args, "--tls").is_some(),
        postfix: flag(args, "--postfix").is_some(),
        profile: flag(args, "--profile").map(str::to_owned),
    };
    if o.conns.is_empty() {
        o.conns = vec![1, 10, 50];
    }
    if flag(args, "--dead-hop").is_some() {
        o.n = number("--dead-hop", 100_000.0)? as usize;
        o.conns = vec![10];
        o.accept_only = true;
    }
    let only = if flag(args, "--fanout").is_some() {
        Some(Only::Fanout(number("--fanout", 1000.0)? as usize))
    } else if flag(args, "--sustained").is_some() {
        Some(Only::Sustained {
            secs: number("--sustained", 120.0)? as u64,
            rate: number("--rate", 150.0)?,
        })
    } else if flag(args, "--kill").is_some() {
        Some(Only::Kill)
    } else if flag(args, "--http").is_some() {
        Some(Only::Http)
    } else {
        None
    };
    Ok((o, only))
}

fn main() -> anyhow::Result<()> {
    // cargo bench passes --bench; it is not ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (o, only) = parse(&args)?;
    if flag(&args, "--pipeline").is_some() {
        generator::pipeline();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        match only {
            Some(Only::Fanout(messages)) => {
                fanout::run(messages, o.size, o.count_flushes, o.postfix).await
            }
            Some(Only::Sustained { secs, rate }) => sustained::run(secs, rate, o.size).await,
            Some(Only::Kill) => kill::run(o.n, o.size).await,
            Some(Only::Http) => {
                for &c in &o.conns {
                    http::run(o.n, o.size, c).await?;
                }
                Ok(())
            }
            None => {
                for &c in &o.conns {
                    throughput::run(&o, c).await?;
                }
                Ok(())
            }
        }
    })
}

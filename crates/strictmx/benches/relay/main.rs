//! End-to-end relay benchmark: N messages over C concurrent connections into the real binary,
//! delivered to a local sink. Prints accepted and delivered msg/s, p50/p99 latency from the final
//! `.` to the `250`, and the server's peak RSS.
//!
//! `cargo bench -p strictmx --bench relay -- [N] [SIZE_BYTES] [C ...] [--max-body-memory=SIZE]`,
//! defaults 10000 2048 1 10 50 and the server's default `[limits] max_body_memory`. Messages the
//! server refuses with 452 (its memory budget for bodies is spent) are counted, not retried.
//! With `--accept-only` the next hop is a closed port: only acceptance is measured (nothing is
//! delivered, and delivered msg/s is not printed).
//! Not part of the test run: figures depend on the machine; docs/benchmarks.md records ours.

use std::time::{Duration, Instant};

use strictmx_test_support::relay::{Relay, TestDir};
use strictmx_test_support::smtp::{Client, RcptScript, Sink};

fn body(size: usize, n: usize) -> Vec<u8> {
    let mut b =
        format!("From: <bench@src.test>\r\nTo: <sink@dest.test>\r\nSubject: bench {n}\r\n\r\n")
            .into_bytes();
    let line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
    while b.len() + line.len() <= size {
        b.extend_from_slice(line);
    }
    b
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// What one submitter saw: `.`→`250` latencies, and how many messages got 452.
#[derive(Debug, Default)]
struct Submitted {
    latencies: Vec<Duration>,
    refused: usize,
}

/// One submitter: EHLO once, then transactions back to back.
async fn submit(
    addr: std::net::SocketAddr,
    count: usize,
    size: usize,
    offset: usize,
) -> anyhow::Result<Submitted> {
    let mut c = Client::connect(addr).await?;
    anyhow::ensure!(
        c.command("EHLO bench.test").await?.code == 250,
        "EHLO refused"
    );
    let mut latencies = Vec::with_capacity(count);
    let mut refused = 0;
    for n in 0..count {
        let body = body(size, offset + n);
        anyhow::ensure!(
            c.command("MAIL FROM:<bench@src.test>").await?.code == 250,
            "MAIL refused"
        );
        anyhow::ensure!(
            c.command("RCPT TO:<sink@dest.test>").await?.code == 250,
            "RCPT refused"
        );
        anyhow::ensure!(c.command("DATA").await?.code == 354, "DATA refused");
        let mut wire = body;
        if !wire.ends_with(b"\r\n") {
            wire.extend_from_slice(b"\r\n");
        }
        c.send_raw(&wire).await?;
        let start = Instant::now();
        c.send_raw(b".\r\n").await?;
        let reply = c.read_reply().await?;
        if reply.code == 452 {
            refused += 1;
            continue;
        }
        latencies.push(start.elapsed());
        anyhow::ensure!(
            reply.code == 250,
            "end of data answered {} {}",
            reply.code,
            reply.text
        );
    }
    c.quit().await?;
    Ok(Submitted { latencies, refused })
}

async fn run(
    n: usize,
    size: usize,
    conns: usize,
    body_memory: Option<&str>,
    accept_only: bool,
) -> anyhow::Result<()> {
    let dir = TestDir::new("bench")?;
    let sink = Sink::start(RcptScript::Accept).await?;
    let next_hop = if accept_only {
        std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?
    } else {
        sink.addr
    };
    let budget = body_memory.map_or(String::new(), |m| format!("max_body_memory = \"{m}\"\n"));
    let config = format!(
        "[log]\nformat = \"json\"\nlevel = \"info\"\n\n[limits]\nmax_sessions_per_ip = 500\n{budget}\n\
         [[route]]\ndomain = \"dest.test\"\nnext_hop = \"{next_hop}\"\n"
    );
    let relay = Relay::start(env!("CARGO_BIN_EXE_strictmx").as_ref(), dir.path(), &config).await?;
    let start = Instant::now();
    let per = n / conns;
    let mut tasks = Vec::new();
    for c in 0..conns {
        let count = if c == conns - 1 {
            n - per * (conns - 1)
        } else {
            per
        };
        tasks.push(tokio::spawn(submit(relay.smtp, count, size, c * per)));
    }
    let mut latencies = Vec::with_capacity(n);
    let mut refused = 0;
    for t in tasks {
        let submitted = t.await??;
        latencies.extend(submitted.latencies);
        refused += submitted.refused;
    }
    let accepted_in = start.elapsed();
    let accepted = n - refused;
    let delivered = if accept_only {
        "not delivered (--accept-only)".to_owned()
    } else {
        sink.wait_for(accepted, Duration::from_secs(600)).await?;
        format!(
            "delivered {:.0} msg/s",
            accepted as f64 / start.elapsed().as_secs_f64()
        )
    };
    latencies.sort();
    let rss = relay.pid().map(peak_rss_kib).unwrap_or(0);
    println!(
        "N={n} size={size}B C={conns}: accepted {:.0} msg/s, {delivered}, .->250 p50 {:.2} ms p99 {:.2} ms, peak RSS {:.1} MiB, refused with 452: {refused}",
        accepted as f64 / accepted_in.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        rss as f64 / 1024.0
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let body_memory =
        std::env::args().find_map(|a| a.strip_prefix("--max-body-memory=").map(str::to_owned));
    let accept_only = std::env::args().any(|a| a == "--accept-only");
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let size: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2048);
    let mut conns: Vec<usize> = args.iter().skip(2).filter_map(|a| a.parse().ok()).collect();
    if conns.is_empty() {
        conns = vec![1, 10, 50];
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    for c in conns {
        rt.block_on(run(n, size, c, body_memory.as_deref(), accept_only))?;
    }
    Ok(())
}

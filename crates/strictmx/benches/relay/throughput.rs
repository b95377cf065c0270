//! The main workload: N messages of one size over C connections, to one recipient routed to a
//! sink. Beside the relay's figures it measures the ceiling (the same generator straight into
//! the same sink), the relay's CPU time and spool commits per message, and with `--tls` the same
//! run again with STARTTLS on the delivery leg.

use std::sync::Arc;
use std::time::{Duration, Instant};

use strictmx_test_support::smtp::{Sink, SinkOptions, self_signed_tls};

use crate::Options;
use crate::generator::{self, Load, single};
use crate::harness::{self, Bench, Waited};
use crate::postfix::{self, Postfix};
use crate::probe::{self, percentile};

/// Headers are all the sinks keep of a body.
pub const KEEP: Option<usize> = Some(512);

pub fn sink_options(starttls: bool) -> anyhow::Result<SinkOptions> {
    Ok(SinkOptions {
        starttls: starttls.then(self_signed_tls).transpose()?,
        body_limit: KEEP,
        ..SinkOptions::default()
    })
}

/// The generator straight into a sink: msg/s from the first submission to the last `250`.
pub async fn ceiling(n: usize, size: usize, conns: usize) -> anyhow::Result<f64> {
    let sink = Sink::start_with("127.0.0.1:0".parse()?, sink_options(false)?).await?;
    let load = Arc::new(Load {
        addr: sink.addr,
        envelope: single("sink@dest.test"),
        size,
        pace: None,
        acked: Arc::default(),
    });
    let start = Instant::now();
    let (_, error) = generator::run(load, n, conns).await;
    if let Some(e) = error {
        return Err(e);
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// One relay run's figures.
pub struct Figures {
    pub accepted_per_s: f64,
    pub delivered_per_s: Option<f64>,
    pub cpu_ms_per_msg: f64,
    pub commits_per_msg: f64,
    /// Mean time inside one spool commit.
    pub commit_ms: f64,
    pub flushes_per_msg: Option<f64>,
    pub syscalls_per_msg: Option<f64>,
    pub p50: Duration,
    pub p99: Duration,
    pub peak_rss_kib: u64,
    pub rss_now_kib: u64,
    pub refused: usize,
    pub tls_sessions: usize,
    pub resumed_tls_sessions: usize,
}

/// N messages through the relay to a sink (or, with `--accept-only`, to a closed port).
pub async fn relay(o: &Options, conns: usize, starttls: bool) -> anyhow::Result<Figures> {
    let sink = Sink::start_with("127.0.0.1:0".parse()?, sink_options(starttls)?).await?;
    let next_hop = if o.accept_only {
        probe::free_port()?
    } else {
        sink.addr
    };
    let budget = o
        .body_memory
        .as_ref()
        .map_or(String::new(), |m| format!("max_body_memory = \"{m}\"\n"));
    let routes = format!("[[route]]\ndomain = \"dest.test\"\nnext_hop = \"{next_hop}\"\n");
    let bench = Bench::start(&budget, &routes, o.count_flushes).await?;
    let before = bench.usage().await;
    let load = Arc::new(Load {
        addr: bench.relay.smtp,
        envelope: single("sink@dest.test"),
        size: o.size,
        pace: None,
        acked: Arc::default(),
    });
    let start = Instant::now();
    let profile = o.profile.clone().map(|path| profile(bench.pid(), path));
    let (submitted, error) = generator::run(load, o.n, conns).await;
    if let Some(e) = error {
        return Err(e);
    }
    let accepted_in = start.elapsed();
    let accepted = o.n - submitted.refused;
    let delivered_per_s = if o.accept_only {
        None
    } else {
        let waited = harness::wait("delivery", start, Duration::from_millis(50), || {
            let got = sink.message_count();
            (got, got >= accepted)
        })
        .await;
        match waited {
            Waited::Done(took) => Some(accepted as f64 / took.as_secs_f64()),
            Waited::Stalled { .. } => None,
        }
    };
    if let Some(p) = profile {
        p.await??;
    }
    let cost = bench.cost_since(before).await;
    let (cpu_ms, commits) = (cost.cpu_ms, cost.commits);
    let peak_rss_kib = probe::status_kib(bench.pid(), "VmHWM:");
    let rss_now_kib = probe::status_kib(bench.pid(), "VmRSS:");
    let flushes = bench.stop().await?;
    Ok(Figures {
        accepted_per_s: accepted as f64 / accepted_in.as_secs_f64(),
        delivered_per_s,
        cpu_ms_per_msg: cpu_ms / accepted as f64,
        commits_per_msg: commits / accepted as f64,
        commit_ms: cost.commit_ms / commits.max(1.0),
        flushes_per_msg: flushes.map(|f| f.flushes as f64 / accepted as f64),
        syscalls_per_msg: flushes.map(|f| f.syscalls as f64 / accepted as f64),
        p50: percentile(&submitted.latencies, 0.50),
        p99: percentile(&submitted.latencies, 0.99),
        peak_rss_kib,
        rss_now_kib,
        refused: submitted.refused,
        tls_sessions: sink.tls_sessions(),
        resumed_tls_sessions: sink.resumed_tls_sessions(),
    })
}

/// What Postfix did with the same workload.
pub struct Yardstick {
    pub accepted_per_s: f64,
    pub delivered_per_s: Option<f64>,
    pub cpu_ms_per_msg: f64,
    pub p99: Duration,
    pub warnings: String,
}

/// N messages through a private Postfix instance to a sink (`--postfix`).
pub async fn postfix(o: &Options, conns: usize, starttls: bool) -> anyhow::Result<Yardstick> {
    let sink = Sink::start_with("127.0.0.1:0".parse()?, sink_options(starttls)?).await?;
    let instance = Postfix::start(&[("dest.test".to_owned(), sink.addr)], starttls).await?;
    let before = instance.cpu_ticks();
    let load = Arc::new(Load {
        addr: instance.smtp,
        envelope: single("sink@dest.test"),
        size: o.size,
        pace: None,
        acked: Arc::default(),
    });
    let start = Instant::now();
    let (submitted, error) = generator::run(load, o.n, conns).await;
    if let Some(e) = error {
        return Err(e);
    }
    let accepted_in = start.elapsed();
    let accepted = o.n - submitted.refused;
    let waited = harness::wait("Postfix delivery", start, Duration::from_millis(50), || {
        let got = sink.message_count();
        (got, got >= accepted)
    })
    .await;
    // Whatever the daemons still do for the last messages (removing queue files) counts.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu_ms = postfix::ticks_to_ms(instance.cpu_ticks() - before);
    let warnings = instance.stop().await?;
    Ok(Yardstick {
        warnings: postfix::describe_warnings(&warnings),
        accepted_per_s: accepted as f64 / accepted_in.as_secs_f64(),
        delivered_per_s: match waited {
            Waited::Done(took) => Some(accepted as f64 / took.as_secs_f64()),
            Waited::Stalled { .. } => None,
        },
        cpu_ms_per_msg: cpu_ms / accepted as f64,
        p99: percentile(&submitted.latencies, 0.99),
    })
}

/// Postfix's figures, and strictmx's as multiples of them.
fn against(p: &Yardstick, f: &Figures, ceiling: f64) -> String {
    let delivered = match (p.delivered_per_s, f.delivered_per_s) {
        (Some(pd), Some(sd)) => format!(
            "delivered {pd:.0} msg/s ({:.3} of ceiling) | strictmx delivers {:.1}x as many per second",
            pd / ceiling,
            sd / pd
        ),
        (Some(pd), None) => format!("delivered {pd:.0} msg/s ({:.3} of ceiling)", pd / ceiling),
        (None, _) => "not delivered".to_owned(),
    };
    format!(
        "Postfix: accepted {:.0} msg/s, .->250 p99 {:.2} ms, CPU {:.3} ms/msg, {}, {delivered}, with {:.1}x less CPU per message",
        p.accepted_per_s,
        p.p99.as_secs_f64() * 1e3,
        p.cpu_ms_per_msg,
        p.warnings,
        p.cpu_ms_per_msg / f.cpu_ms_per_msg
    )
}

/// `perf record` on the relay for 10 s, starting 1 s into the load (`--profile=FILE`).
fn profile(pid: u32, path: String) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let status = tokio::process::Command::new("perf")
            .args(["record", "-q", "-e", "cpu-clock", "-F", "499"])
            .args(["--call-graph", "dwarf,32768", "-o", &path, "-p"])
            .arg(pid.to_string())
            .args(["--", "sleep", "10"])
            .status()
            .await?;
        anyhow::ensure!(status.success(), "perf record failed: {status}");
        println!("  profile of relay pid {pid} written to {path}");
        Ok(())
    })
}

/// The ceiling, then the relay (and with `--tls` the relay with STARTTLS), for one C.
pub async fn run(o: &Options, conns: usize) -> anyhow::Result<()> {
    let ceiling = ceiling(o.n, o.size, conns).await?;
    let plain = relay(o, conns, false).await?;
    println!(
        "N={} size={}B C={conns}: ceiling {ceiling:.0} msg/s | relay {}",
        o.n,
        o.size,
        describe(&plain, ceiling)
    );
    if o.postfix {
        let p = postfix(o, conns, false).await?;
        println!("  {}", against(&p, &plain, ceiling));
    }
    if o.tls {
        let tls = relay(o, conns, true).await?;
        println!(
            "  with STARTTLS on delivery: {} | TLS sessions {} ({} resumed), CPU {:.2}x plain",
            describe(&tls, ceiling),
            tls.tls_sessions,
            tls.resumed_tls_sessions,
            tls.cpu_ms_per_msg / plain.cpu_ms_per_msg
        );
        if o.postfix {
            let p = postfix(o, conns, true).await?;
            println!(
                "  with STARTTLS on delivery, {}",
                against(&p, &tls, ceiling)
            );
        }
    }
    Ok(())
}

fn describe(f: &Figures, ceiling: f64) -> String {
    let delivered = match f.delivered_per_s {
        Some(d) => format!("delivered {d:.0} msg/s ({:.3} of ceiling)", d / ceiling),
        None => "not delivered".to_owned(),
    };
    let flushes = match (f.flushes_per_msg, f.syscalls_per_msg) {
        (Some(flushes), Some(calls)) => {
            format!(", flushes {flushes:.2}/msg, system calls {calls:.1}/msg")
        }
        _ => String::new(),
    };
    format!(
        "accepted {:.0} msg/s, {delivered}, .->250 p50 {:.2} ms p99 {:.2} ms, CPU {:.3} ms/msg, spool commits {:.2}/msg of {:.2} ms each{flushes}, peak RSS {:.1} MiB (now {:.1}), refused with 452: {}",
        f.accepted_per_s,
        f.p50.as_secs_f64() * 1e3,
        f.p99.as_secs_f64() * 1e3,
        f.cpu_ms_per_msg,
        f.commits_per_msg,
        f.commit_ms,
        f.peak_rss_kib as f64 / 1024.0,
        f.rss_now_kib as f64 / 1024.0,
        f.refused
    )
}

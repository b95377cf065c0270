//! Starting the relay for a workload, waiting for delivery without hanging on a stall, and
//! counting what the sinks got: distinct (message, recipient) pairs, duplicates, DSNs.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use strictmx_test_support::relay::{Relay, TestDir};
use strictmx_test_support::smtp::Sink;

use crate::generator::id_of;
use crate::probe;

/// No progress for this long is a stall: the wait reports it and stops.
pub const STALL: Duration = Duration::from_secs(30);

/// A relay started for one workload, with its metrics endpoint.
pub struct Bench {
    pub relay: Relay,
    pub metrics: SocketAddr,
    /// Where `perf stat` writes the flush counts (`--count-flushes`).
    flushes: Option<PathBuf>,
    /// The config and data directory, removed when the bench is dropped (after the relay).
    _dir: TestDir,
}

/// CPU ticks, spool commits and the time spent in them at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    ticks: u64,
    commits: f64,
    commit_secs: f64,
}

/// What the relay spent between two [`Usage`] readings.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    pub cpu_ms: f64,
    pub commits: f64,
    /// Time inside spool commits (from the start of a transaction to its flush returning):
    /// the writer thread is serial, so this over the run's length is how busy it was.
    pub commit_ms: f64,
}

impl Bench {
    /// Starts the release binary with JSON logs at `info` (as in production), `limits` added to
    /// its `[limits]` table and `rest` (routes, retry...) after it.
    pub async fn start(limits: &str, rest: &str, count_flushes: bool) -> anyhow::Result<Bench> {
        let dir = TestDir::new("bench")?;
        let metrics = probe::free_port()?;
        let config = format!(
            "[log]\nformat = \"json\"\nlevel = \"info\"\n\n[limits]\nmax_sessions_per_ip = 500\n{limits}\n\
             [metrics]\nlisten = \"{metrics}\"\n\n{rest}"
        );
        // STRICTMX_BENCH_BIN measures another build (an older commit) through the same
        // generator and sink.
        let bin = std::env::var_os("STRICTMX_BENCH_BIN").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_strictmx")),
            PathBuf::from,
        );
        let (bin, flushes) = if count_flushes {
            let (script, out) = probe::flush_counting_wrapper(dir.path(), &bin)?;
            (script, Some(out))
        } else {
            (bin, None)
        };
        let relay = Relay::start(&bin, dir.path(), &config).await?;
        relay.keep_warnings_only();
        Ok(Bench {
            relay,
            metrics,
            flushes,
            _dir: dir,
        })
    }

    /// The relay's own pid (not the `perf` wrapper's).
    pub fn pid(&self) -> u32 {
        let pid = self.relay.pid().unwrap_or(0);
        if self.flushes.is_some() {
            probe::child_of(pid).unwrap_or(pid)
        } else {
            pid
        }
    }

    pub async fn usage(&self) -> Usage {
        Usage {
            ticks: probe::cpu_ticks(self.pid()),
            commits: probe::metric(self.metrics, "strictmx_spool_commits").await,
            commit_secs: probe::metric(self.metrics, "strictmx_spool_commit_seconds_sum").await,
        }
    }

    /// Usage since `before`, once the spool gauges caught up.
    pub async fn cost_since(&self, before: Usage) -> Cost {
        tokio::time::sleep(probe::GAUGE_LAG).await;
        let after = self.usage().await;
        Cost {
            cpu_ms: (after.ticks - before.ticks) as f64 * 1e3 / probe::clock_ticks_per_sec(),
            commits: after.commits - before.commits,
            commit_ms: (after.commit_secs - before.commit_secs) * 1e3,
        }
    }

    /// Stops the relay (SIGTERM); with `--count-flushes`, returns its fsync and fdatasync calls
    /// and all its system calls over its whole life (startup and shutdown included).
    pub async fn stop(mut self) -> anyhow::Result<Option<probe::Counted>> {
        let pid = self.pid();
        let Some(out) = self.flushes.take() else {
            self.relay.terminate().await?;
            return Ok(None);
        };
        // Signal the relay itself: perf stat counts until its child exits, then writes.
        std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()?;
        let flushes = probe::flushes_counted(&out).await?;
        let _ = self.relay.terminate().await;
        Ok(Some(flushes))
    }
}

impl Drop for Bench {
    /// A bench that ends without [`Bench::stop`] (an error) kills the relay: under the `perf`
    /// wrapper, `Relay`'s own drop would kill only `perf` and leave the relay running.
    fn drop(&mut self) {
        if self.flushes.is_some() {
            let _ = std::process::Command::new("kill")
                .arg("-KILL")
                .arg(self.pid().to_string())
                .status();
        }
    }
}

/// How a wait for delivery ended.
#[derive(Debug, Clone, Copy)]
pub enum Waited {
    /// Everything arrived, this long after the start.
    Done(Duration),
    /// Progress stopped at this count for [`STALL`].
    Stalled { progress: usize },
}

/// Polls `poll` (progress so far, done?) every `every` until done; a progress figure that does
/// not change for [`STALL`] is reported as a stall and ends the wait.
pub async fn wait(
    what: &str,
    start: Instant,
    every: Duration,
    mut poll: impl FnMut() -> (usize, bool),
) -> Waited {
    let mut last = (usize::MAX, Instant::now());
    loop {
        let (progress, done) = poll();
        if done {
            return Waited::Done(start.elapsed());
        }
        if progress != last.0 {
            last = (progress, Instant::now());
        } else if last.1.elapsed() >= STALL {
            println!(
                "  STALL: {what}: no progress for {}s at {progress}",
                STALL.as_secs()
            );
            return Waited::Stalled { progress };
        }
        tokio::time::sleep(every).await;
    }
}

/// What some sinks received, as (message number, recipient) pairs.
#[derive(Debug, Default)]
pub struct Tally {
    pub distinct: HashSet<(usize, String)>,
    /// Pairs received more than once, counted once per extra copy.
    pub duplicates: usize,
    /// Messages with the null sender: delivery status notifications.
    pub dsns: usize,
    /// Messages without an `X-Bench-Id`.
    pub unnumbered: usize,
}

pub fn tally(sinks: &[&Sink]) -> Tally {
    let mut t = Tally::default();
    for message in sinks.iter().flat_map(|s| s.received()) {
        if message.mail_from.is_empty() {
            t.dsns += 1;
            continue;
        }
        let Some(id) = id_of(&message.body) else {
            t.unnumbered += 1;
            continue;
        };
        for rcpt in message.rcpts {
            if !t.distinct.insert((id, rcpt)) {
                t.duplicates += 1;
            }
        }
    }
    t
}

//! What the benchmark reads about the relay process: CPU time and memory from `/proc`, spool
//! and queue figures from its `/metrics`, and, with `--count-flushes`, its fsync/fdatasync
//! calls and all its system calls, counted by `perf stat` around the whole process.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The relay samples its spool gauges this often (`crates/strictmx/src/metrics.rs`); a figure
/// read this long after the work ended includes all of it.
pub const GAUGE_LAG: Duration = Duration::from_millis(5_500);

/// User plus system CPU time of the whole process (all threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces: state is
    // field 3, utime 14, stime 15 (proc(5)).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    fields.iter().sum()
}

/// Clock ticks per second (`getconf CLK_TCK`), 100 if that cannot be run.
pub fn clock_ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A line of `/proc/PID/status` in KiB: `VmHWM` (peak RSS) or `VmRSS` (now).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// The relay's `/metrics`, each metric summed over its labels.
pub async fn scrape(addr: SocketAddr) -> anyhow::Result<HashMap<String, f64>> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
        .await?;
    let mut text = String::new();
    tcp.read_to_string(&mut text).await?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .context("no body in the metrics response")?;
    let mut figures = HashMap::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        if let Ok(v) = value.parse::<f64>() {
            *figures.entry(name.to_owned()).or_insert(0.0) += v;
        }
    }
    Ok(figures)
}

/// One figure from `/metrics`, 0 when absent or unreachable.
pub async fn metric(addr: SocketAddr, name: &str) -> f64 {
    scrape(addr)
        .await
        .ok()
        .and_then(|m| m.get(name).copied())
        .unwrap_or(0.0)
}

/// A free loopback port for the relay's metrics listener.
pub fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A script that runs the relay under `perf stat`, counting its fsync and fdatasync calls and
/// all its system calls over its whole life into `out` (written when it exits).
pub fn flush_counting_wrapper(dir: &Path, bin: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let out = dir.join("flushes.csv");
    let script = dir.join("strictmx-under-perf");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec perf stat -x, -o {} -e syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync,raw_syscalls:sys_enter -- {} \"$@\"\n",
            out.display(),
            bin.display()
        ),
    )?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    Ok((script, out))
}

/// The relay's own pid under the wrapper: the child of `perf`.
pub fn child_of(pid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// What `perf stat` counted over the relay's life.
#[derive(Debug, Clone, Copy)]
pub struct Counted {
    /// fsync plus fdatasync calls.
    pub flushes: u64,
    /// Every system call, of every thread.
    pub syscalls: u64,
}

/// Waits for `perf stat` to write its counts, and returns them.
pub async fn flushes_counted(out: &Path) -> anyhow::Result<Counted> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(out).unwrap_or_default();
        if text.contains("sys_enter_fsync") && text.contains("raw_syscalls:sys_enter") {
            let count = |event: &str| -> u64 {
                text.lines()
                    .filter(|l| l.split(',').nth(2) == Some(event))
                    .filter_map(|l| l.split(',').next()?.parse::<u64>().ok())
                    .sum()
            };
            return Ok(Counted {
                flushes: count("syscalls:sys_enter_fdatasync") + count("syscalls:sys_enter_fsync"),
                syscalls: count("raw_syscalls:sys_enter"),
            });
        }
        anyhow::ensure!(Instant::now() < deadline, "perf stat wrote no counts");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `p` quantile of sorted latencies.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

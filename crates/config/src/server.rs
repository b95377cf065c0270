//! The process-wide sections: `[server]` (host name, data directory, shutdown grace), `[log]`,
//! `[metrics]` and `[control]`.
//!
//! What the host name and the data directory are used for is the other sections' (the EHLO name
//! and the spool follow them); this checks the values and fills in the defaults that depend on
//! the machine (the system's host name).

use std::fmt::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Source;
use crate::raw::{RawConfig, RawLog};
use crate::validate::{dur, opt, path_in, quote, quote_duration, req};
use crate::{Config, LogFormat, LogSettings, values};

/// What `[server]`, `[log]`, `[metrics]` and `[control]` say, as `Config` holds it.
pub(crate) struct Server {
    pub(crate) hostname: String,
    pub(crate) data_dir: PathBuf,
    pub(crate) shutdown_grace: Duration,
    pub(crate) log: LogSettings,
    pub(crate) metrics_listen: Option<SocketAddr>,
    pub(crate) control_socket: PathBuf,
}

pub(crate) fn build(raw: &RawConfig, src: &mut Source<'_>, base: Option<&Path>) -> Server {
    let server = raw.server.as_ref();
    let hostname = opt(
        src,
        "server.hostname",
        &server.and_then(|s| s.hostname.clone()),
        system_hostname(),
        |s| values::domain(s),
    );
    let data_dir = opt(
        src,
        "server.data_dir",
        &server.and_then(|s| s.data_dir.clone()),
        PathBuf::from("data"),
        path_in(base),
    );
    let shutdown_grace = opt(
        src,
        "server.shutdown_grace",
        &server.and_then(|s| s.shutdown_grace.clone()),
        Duration::from_secs(30),
        dur,
    );
    let log = build_log(raw.log.as_ref(), src);
    let metrics_listen = raw.metrics.as_ref().and_then(|m| {
        m.listen.as_ref().map(|l| {
            req(src, "metrics.listen", l, None, |s| {
                values::socket_addr(s).map(Some)
            })
        })
    });
    let control_socket = opt(
        src,
        "control.socket",
        &raw.control.as_ref().and_then(|c| c.socket.clone()),
        data_dir.join("control.sock"),
        path_in(base),
    );
    Server {
        hostname,
        data_dir,
        shutdown_grace,
        log,
        metrics_listen: metrics_listen.flatten(),
        control_socket,
    }
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| values::domain(s).is_ok())
        .unwrap_or_else(|| "localhost".to_string())
}

fn build_log(raw: Option<&RawLog>, src: &mut Source<'_>) -> LogSettings {
    let format = opt(
        src,
        "log.format",
        &raw.and_then(|l| l.format.clone()),
        LogFormat::Human,
        |s| match s.as_str() {
            "human" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "`{other}` is not a log format: use \"human\" or \"json\""
            )),
        },
    );
    let level = opt(
        src,
        "log.level",
        &raw.and_then(|l| l.level.clone()),
        "info".to_string(),
        |s| {
            let ok = s.split(',').all(|d| {
                let level = d.rsplit('=').next().unwrap_or("");
                matches!(
                    level.trim(),
                    "error" | "warn" | "info" | "debug" | "trace" | "off"
                )
            });
            if ok {
                Ok(s.clone())
            } else {
                Err(format!(
                    "`{s}` is not a log level such as \"info\" or \"info,strictmx_delivery=debug\""
                ))
            }
        },
    );
    LogSettings { format, level }
}

pub(crate) fn render(c: &Config, o: &mut String) {
    let _ = writeln!(
        o,
        "[server]\nhostname = {}\ndata_dir = {}\nshutdown_grace = {}\n",
        quote(&c.hostname),
        quote(&c.data_dir.display().to_string()),
        quote_duration(c.shutdown_grace)
    );
    let _ = writeln!(
        o,
        "[log]\nformat = {}\nlevel = {}\n",
        quote(match c.log.format {
            LogFormat::Human => "human",
            LogFormat::Json => "json",
        }),
        quote(&c.log.level)
    );
    match c.metrics_listen {
        Some(a) => {
            let _ = writeln!(o, "[metrics]\nlisten = {}\n", quote(&a.to_string()));
        }
        None => {
            let _ = writeln!(o, "# [metrics] is off\n");
        }
    }
    let _ = writeln!(
        o,
        "[control]\nsocket = {}\n",
        quote(&c.control_socket.display().to_string())
    );
}

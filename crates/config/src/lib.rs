//! strictmx configuration: the TOML schema, the defaults, and validation into each crate's settings.
//!
//! Reading is two-staged: `read` turns the text into `raw`'s structs, which mirror the file,
//! reporting every unknown key (`keys`), wrong type and missing key; `validate` turns them into
//! the settings types the other crates own, one module per section (`server`, `spool`,
//! `listen`, `auth`, `limits`, `dkim`, `dns`, `delivery`, `policy`, `mta_sts`, `retry`,
//! `rules`, `tlsrpt`, `audit`, `routes`, `webhook`, `cluster`, `http_api`), checking the files
//! the configuration names (`files`) and
//! refusing published password hashes (`published`). Every problem is reported
//! with file, line and key, all of them in file order. This crate holds no behaviour of its own
//! beyond that.

mod audit;
mod auth;
mod cluster;
mod delivery;
mod dkim;
mod dns;
mod error;
mod files;
mod http_api;
mod keys;
mod limits;
mod listen;
mod mta_sts;
mod networks;
mod policy;
mod published;
mod raw;
mod read;
mod retry;
mod routes;
mod rules;
mod server;
mod spool;
mod tlsrpt;
mod validate;
mod values;
mod watch;
mod webhook;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{ConfigError, ConfigErrors};
pub use webhook::WebhookSettings;

use strictmx_delivery::runner::QueueSettings;
use strictmx_delivery::transport::TransportSettings;
use strictmx_inbound::InboundSettings;
use strictmx_resolve::{GatherSettings, ResolverSettings, StsSettings};
use strictmx_spool::SpoolSettings;
use strictmx_tlsrpt::TlsrptSettings;

/// The validated configuration of one strictmx instance.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from; `None` for the embedded defaults.
    pub source: Option<PathBuf>,
    /// This host's name: EHLO, `Received:`, DSN `Reporting-MTA`.
    pub hostname: String,
    pub data_dir: PathBuf,
    /// How long `serve` waits for sessions and deliveries to finish after SIGTERM.
    pub shutdown_grace: Duration,
    pub log: LogSettings,
    /// Where the Prometheus exporter listens; off when `None`.
    pub metrics_listen: Option<SocketAddr>,
    /// The Unix socket the queue commands use to reach the running server.
    pub control_socket: PathBuf,
    pub spool: SpoolSettings,
    pub inbound: InboundSettings,
    pub resolver: ResolverSettings,
    /// `[dns]` limits on looking up a domain's MX hosts.
    pub gather: GatherSettings,
    pub transport: TransportSettings,
    /// `[mta_sts]`; its extra CA file is `delivery.extra_ca_file`.
    pub mta_sts: StsSettings,
    pub queue: QueueSettings,
    /// `[tlsrpt]`: daily RFC 8460 reports.
    pub tlsrpt: TlsrptSettings,
    /// `[watch]`: noticing destinations that weaken their policy.
    pub watch: strictmx_delivery::watch::WatchSettings,
    /// `[[webhook]]`: endpoints told of each recipient's outcome.
    pub webhooks: Vec<WebhookSettings>,
    /// `[cluster]`: the database several nodes share; off by default.
    pub cluster: strictmx_cluster::ClusterSettings,
    /// `[http_api]`: the HTTP submission API; off when `None`.
    pub http_api: Option<strictmx_http_api::HttpApiSettings>,
    /// Valid but dangerous or pointless settings (an `insecure_relax` rule, a rule that changes
    /// nothing), located like errors; `check-config` prints them and `serve` logs them.
    pub warnings: Vec<ConfigError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub format: LogFormat,
    /// An `EnvFilter` directive such as `info` or `info,strictmx_delivery=debug`.
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

impl Config {
    /// The configuration `strictmx serve` runs on without a file: a relay listener on
    /// 127.0.0.1:2525 trusting 127.0.0.0/8, the spool in `./data`, opportunistic TLS outbound.
    pub fn embedded_default() -> Config {
        let raw = raw::RawConfig::default();
        let mut source = error::Source::new(PathBuf::from("<embedded defaults>"), "");
        let config = validate::build(&raw, &mut source, None);
        assert!(
            source.errors.is_empty(),
            "the embedded defaults must validate: {:?}",
            source.errors
        );
        config
    }

    /// The rules in force as text (`[policy]` and every `[[rule]]`, as `check-config` shows
    /// them): what the nodes of a cluster compare by hash.
    pub fn effective_rules(&self) -> String {
        let mut out = String::new();
        policy::render(&self.transport, &mut out);
        rules::render(&self.transport.policy.rules, &mut out);
        out
    }

    /// Reads and validates a file. Relative paths in it are relative to the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Config::parse(&read_file(path)?, path)
    }

    /// Validates `text` as if it were the file at `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
        let mut source = error::Source::new(path.to_path_buf(), text);
        let read = read::read(&mut source);
        let Some(raw) = read.raw else {
            return Err(ConfigErrors(source.errors));
        };
        let read_errors = source.errors.len();
        let base = path.parent().map(Path::to_path_buf);
        let config = validate::build(&raw, &mut source, base.as_deref());
        // A key taken out as wrong was validated as if absent; what that says is no news.
        let validation = source.errors.split_off(read_errors);
        source.errors.extend(
            validation
                .into_iter()
                .filter(|e| !read.dropped.iter().any(|d| is_under(&e.key, d))),
        );
        if source.errors.is_empty() {
            Ok(Config {
                source: Some(path.to_path_buf()),
                warnings: source.warnings,
                ..config
            })
        } else {
            // In file order, however the checks ran; a stable sort keeps one line's in theirs.
            source.errors.sort_by_key(|e| (e.line, e.column));
            Err(ConfigErrors(source.errors))
        }
    }

    /// Where the server running on the file at `path` has its control socket, read leniently:
    /// only `[server] data_dir` and `[control] socket` are looked at, so `strictmx reload` can
    /// reach the server and let it report a file that no longer validates.
    pub fn control_socket_of(path: &Path) -> Result<PathBuf, ConfigErrors> {
        let text = read_file(path)?;
        let mut source = error::Source::new(path.to_path_buf(), &text);
        let table: toml::Table = toml::from_str(&text).map_err(|e| {
            source.toml_error(&e, String::new());
            ConfigErrors(source.errors.clone())
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        let lookup = |section: &str, key: &str| -> Option<String> {
            table
                .get(section)?
                .as_table()?
                .get(key)?
                .as_str()
                .map(str::to_string)
        };
        let data_dir = base.join(lookup("server", "data_dir").unwrap_or_else(|| "data".into()));
        Ok(match lookup("control", "socket") {
            Some(socket) => base.join(socket),
            None => data_dir.join("control.sock"),
        })
    }

    /// The effective configuration as TOML, every key with the value in force.
    pub fn render(&self) -> String {
        validate::render(self)
    }
}

/// Whether the error key `key` is `path` or below it (`rule[0].pins[1]` is below `rule[0].pins`).
fn is_under(key: &str, path: &str) -> bool {
    key.strip_prefix(path)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

fn read_file(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read the file: {e}"),
        }])
    })
}

#[cfg(test)]
mod tests;

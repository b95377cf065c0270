//! `[cluster]` as the crate uses it; built by `strictmx-config`.

use std::fmt;
use std::time::Duration;

/// A secret that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: String) -> Secret {
        Secret(text)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Where the shared database is. `url` holds no password (config refuses one there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSettings {
    /// `postgres://user@host:port/dbname`, as written.
    pub url: String,
    /// From `cluster.password_file` or `cluster.password_env`.
    pub password: Option<Secret>,
    /// The `cluster.password_file` or `cluster.password_env` it came from, for `check-config`.
    pub password_source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// Off (single node) when `None`.
    pub database: Option<DatabaseSettings>,
    /// Connections a node keeps at most.
    pub pool_size: usize,
    /// TCP connect and login.
    pub connect_timeout: Duration,
    /// Each query (waiting for a pooled connection included).
    pub query_timeout: Duration,
    /// How often a node writes its TLSRPT totals, its new audit records and its heartbeat.
    pub sync_interval: Duration,
    /// How long the reporter's lease (and an MTA-STS refresh claim) lasts unrenewed.
    pub lease_ttl: Duration,
    /// How long after midnight UTC the reporter waits before sending, so that every node has
    /// written its final counts of the day.
    pub report_delay: Duration,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            database: None,
            pool_size: 4,
            connect_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(5),
            sync_interval: Duration::from_secs(30),
            lease_ttl: Duration::from_secs(60),
            report_delay: Duration::from_secs(300),
        }
    }
}

/// Checks `cluster.database`: a `postgres://` (or `postgresql://`) URL that tokio-postgres
/// reads, naming a host, without a password (which goes in a file or the environment, so that
/// the configuration file and `check-config` never show it) and without TLS demands that
/// this build cannot meet.
pub fn check_database_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("must be a postgres:// URL".into());
    }
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| format!("not a PostgreSQL URL: {e}"))?;
    if config.get_password().is_some() {
        return Err(
            "holds a password: put it in cluster.password_file or cluster.password_env".into(),
        );
    }
    if config.get_hosts().is_empty() {
        return Err("names no host".into());
    }
    if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
        return Err("sslmode=require: this build connects without TLS; reach the database over a trusted network or a local tunnel".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_name_a_host_and_hold_no_password() {
        let rows = [
            ("postgres://strictmx@db.example:5432/strictmx", true),
            ("postgresql://strictmx@127.0.0.1/strictmx", true),
            ("postgres://strictmx:hunter2@db.example/strictmx", false),
            ("mysql://db.example/strictmx", false),
            ("postgres://db.example/strictmx?sslmode=require", false),
            ("host=db.example user=strictmx", false),
        ];
        for (url, ok) in rows {
            assert_eq!(check_database_url(url).is_ok(), ok, "{url}");
        }
    }

    #[test]
    fn a_secret_does_not_show_in_debug_output() {
        let shown = format!("{:?}", Secret::new("hunter2".into()));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}

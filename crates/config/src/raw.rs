//! The TOML file as written: `Raw*` structs that mirror it key for key.
//!
//! Every table rejects unknown keys (`deny_unknown_fields`; no `flatten`, which would disable
//! that). Values that validation must check keep their place in the file (`Spanned`), so an error
//! names the line. Turning these into settings is `validate.rs`'s job, one module per section.

use serde::{Deserialize, Serialize};
use toml::Spanned;

type S<T> = Option<Spanned<T>>;

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub server: Option<RawServer>,
    pub log: Option<RawLog>,
    pub metrics: Option<RawMetrics>,
    pub control: Option<RawControl>,
    pub spool: Option<RawSpool>,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<RawListener>,
    pub tls: Option<RawTls>,
    pub relay: Option<RawRelay>,
    pub auth: Option<RawAuth>,
    pub limits: Option<RawLimits>,
    pub dns: Option<RawDns>,
    pub delivery: Option<RawDelivery>,
    pub retry: Option<RawRetry>,
    pub watch: Option<RawWatch>,
    #[serde(default, rename = "route")]
    pub routes: Vec<RawRoute>,
    pub mta_sts: Option<RawMtaSts>,
    pub policy: Option<RawPolicy>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<RawRule>,
    pub tlsrpt: Option<RawTlsrpt>,
    pub audit: Option<RawAudit>,
    #[serde(default, rename = "dkim")]
    pub dkim: Vec<RawDkim>,
    #[serde(default, rename = "webhook")]
    pub webhooks: Vec<RawWebhook>,
    pub cluster: Option<RawCluster>,
    pub http_api: Option<RawHttpApi>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub database: S<String>,
    pub password_file: S<String>,
    pub password_env: S<String>,
    pub pool_size: S<i64>,
    pub connect_timeout: S<String>,
    pub query_timeout: S<String>,
    pub sync_interval: S<String>,
    pub lease_ttl: S<String>,
    pub report_delay: S<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpApi {
    pub listen: Spanned<String>,
    pub insecure_plaintext: S<bool>,
    pub max_request_size: S<RawSize>,
    pub max_recipients: S<i64>,
    pub auth_failures_per_client: S<i64>,
    pub auth_failure_window: S<String>,
    #[serde(default, rename = "token")]
    pub tokens: Vec<RawToken>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    pub name: Spanned<String>,
    pub token_hash: Spanned<String>,
    pub senders: Spanned<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub hostname: S<String>,
    pub data_dir: S<String>,
    pub shutdown_grace: S<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: S<String>,
    pub level: S<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: S<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawControl {
    pub socket: S<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpool {
    pub commit_batch_max: S<i64>,
    pub cache_size: S<RawSize>,
    pub transfer_memory: S<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    pub enabled: S<bool>,
    pub keep: S<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub url: Spanned<String>,
    pub secret: S<String>,
    pub secret_file: S<String>,
    pub events: S<Vec<String>>,
    pub max_queued: S<i64>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub address: Spanned<String>,
    pub role: S<String>,
    pub insecure_allow_plaintext_auth: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub certificate: S<String>,
    pub private_key: S<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRelay {
    pub trusted_networks: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub users_file: S<String>,
    #[serde(default, rename = "user")]
    pub users: Vec<RawUser>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub name: Spanned<String>,
    pub password_hash: Spanned<String>,
    pub senders: Option<Vec<Spanned<String>>>,
    pub require_tls: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_message_size: S<RawSize>,
    pub max_recipients: S<i64>,
    pub command_timeout: S<String>,
    pub data_timeout: S<String>,
    pub max_sessions: S<i64>,
    pub max_sessions_per_ip: S<i64>,
    pub max_bad_commands: S<i64>,
    pub max_auth_failures: S<i64>,
    pub auth_failure_delay: S<String>,
    pub auth_failures_per_client: S<i64>,
    pub auth_failure_window: S<String>,
    pub max_concurrent_auth: S<i64>,
    pub max_received_headers: S<i64>,
    pub max_body_memory: S<RawSize>,
}

/// A size: a number of bytes, or a string with a unit (`"25MiB"`, `"10MB"`, `"512KiB"`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RawSize {
    Bytes(i64),
    Text(String),
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    pub nameservers: Option<Vec<Spanned<String>>>,
    pub timeout: S<String>,
    pub attempts: S<i64>,
    pub dnssec: S<String>,
    pub trust_anchor: S<String>,
    pub trusted_nameservers: Option<Vec<Spanned<String>>>,
    pub max_mx_hosts: S<i64>,
    pub host_lookups_at_once: S<i64>,
    pub host_lookup_timeout: S<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDelivery {
    pub helo_name: S<String>,
    pub source_ipv4: S<String>,
    pub source_ipv6: S<String>,
    pub extra_ca_file: S<String>,
    pub smtp_port: S<i64>,
    pub connect_timeout: S<String>,
    pub greeting_timeout: S<String>,
    pub command_timeout: S<String>,
    pub data_timeout: S<String>,
    pub max_connections: S<i64>,
    pub max_per_destination: S<i64>,
    pub max_messages_per_connection: S<i64>,
    pub default_tls: S<String>,
    pub insecure_plaintext_fallback: Option<bool>,
    pub never_deliver_to: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub initial: S<String>,
    pub factor: S<f64>,
    pub max_interval: S<String>,
    pub jitter: S<f64>,
    pub max_lifetime: S<String>,
    pub delay_dsn_after: S<String>,
    pub destination_backoff: S<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawWatch {
    pub alarm_destinations: S<i64>,
    pub alarm_window: S<String>,
    pub keep: S<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub domain: Spanned<String>,
    pub next_hop: Spanned<String>,
    pub auth_user: S<String>,
    pub auth_password_file: S<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawMtaSts {
    pub enabled: Option<bool>,
    pub fetch_timeout: S<String>,
    pub connect_timeout: S<String>,
    pub max_policy_size: S<RawSize>,
    pub refresh_before: S<String>,
    pub refresh_interval: S<String>,
    pub forget_unused_after: S<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub tls_required_no_users: Option<Vec<Spanned<String>>>,
    pub tls_required_no_networks: Option<Vec<Spanned<String>>>,
}

/// One `[[rule]]` table. Lists keep each element's place so an error names its line.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: S<String>,
    pub domains: Option<Spanned<Vec<Spanned<String>>>>,
    pub senders: Option<Spanned<Vec<Spanned<String>>>>,
    pub require: S<String>,
    pub pins: Option<Spanned<Vec<Spanned<String>>>>,
    pub min_tls_version: S<String>,
    pub fail_closed: Option<bool>,
    pub insecure_relax: S<String>,
    pub mode: S<String>,
    pub expires: S<String>,
    pub reason: S<String>,
    pub pin_last_good: S<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTlsrpt {
    pub enabled: S<bool>,
    pub organization_name: S<String>,
    pub contact_info: S<String>,
    pub submitter: S<String>,
    pub mail_from: S<String>,
    pub exclude_domains: Option<Vec<Spanned<String>>>,
    pub send_delay_max: S<String>,
    pub keep_days: S<i64>,
    pub https_attempts: S<i64>,
    pub https_backoff: S<String>,
    pub https_timeout: S<String>,
    pub max_rua: S<i64>,
    pub https_concurrency: S<i64>,
    pub https_extra_ca_file: S<String>,
    pub insecure_https_allow_networks: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDkim {
    pub domain: S<String>,
    pub selector: S<String>,
    pub key_file: S<String>,
    pub headers: S<Vec<String>>,
}

//! TLSRPT settings; `strictmx-config` builds them from the `[tlsrpt]` table, this crate only
//! reads them.

use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

/// How strictmx reports (see docs/tlsrpt.md for each field's key and default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsrptSettings {
    /// Count sessions and send daily reports.
    pub enabled: bool,
    /// RFC 8460 §4.4 `organization-name`.
    pub organization_name: String,
    /// RFC 8460 §4.4 `contact-info`: an address or URI for questions about our reports.
    pub contact_info: String,
    /// The submitter's domain: report ids, the §5.1 file name, `TLS-Report-Submitter` and the
    /// §5.3 subject. Normally the relay's hostname.
    pub submitter: String,
    /// Envelope sender and `From:` of `mailto:` reports.
    pub mail_from: String,
    /// Report domains never counted nor reported (lowercase, no trailing dot).
    pub exclude_domains: Vec<String>,
    /// Reports for a day go out at a random time between midnight UTC and this much later.
    pub send_delay_max: Duration,
    /// Counters are kept this many days (for `preview`/`send` of past days), then pruned.
    pub keep_days: u32,
    /// Tries per `https:` report endpoint (RFC 8460 §5.4) before giving up.
    pub https_attempts: u32,
    /// Wait before the second try; doubled for each further try.
    pub https_backoff: Duration,
    /// Time limit of one POST.
    pub https_timeout: Duration,
    /// At most this many report URIs of one domain's record are used (in record order); the
    /// record's author chooses how many it lists.
    pub max_rua: usize,
    /// At most this many POSTs run at once (over all domains).
    pub https_concurrency: usize,
    /// CA certificates trusted for `https:` reports besides the web PKI roots. `None`: the
    /// public roots only (the MTA-STS and delivery `extra_ca_file` is not used for reports).
    pub https_extra_ca_file: Option<PathBuf>,
    /// Networks `https:` reports may be posted to although they are not public (loopback,
    /// private, link-local, ...); for test labs. Empty: public addresses only.
    pub insecure_https_allow_networks: Vec<IpNet>,
}

impl Default for TlsrptSettings {
    fn default() -> Self {
        TlsrptSettings {
            enabled: false,
            organization_name: String::new(),
            contact_info: String::new(),
            submitter: String::new(),
            mail_from: String::new(),
            exclude_domains: Vec::new(),
            send_delay_max: Duration::from_secs(3600),
            keep_days: 7,
            https_attempts: 5,
            https_backoff: Duration::from_secs(60),
            https_timeout: Duration::from_secs(30),
            max_rua: 5,
            https_concurrency: 8,
            https_extra_ca_file: None,
            insecure_https_allow_networks: Vec::new(),
        }
    }
}

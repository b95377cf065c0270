//! TLSRPT settings; `strictmx-config` builds them from the `[tlsrpt]` table, this crate only
//! reads them.

use std::time::Duration;

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
        }
    }
}

//! Turning one closed day's counters into reports and sending them (RFC 8460 §5): the
//! `_smtp._tls` lookup, the schema check, gzip, `mailto:` through our own queue and `https:`
//! POSTs with retries, and the per-(day, domain) sent mark. Which report URIs are used is
//! `strictmx_policy::tlsrpt_record`'s decision, capped here at `max_rua` per domain; POSTs run
//! concurrently (at most `https_concurrency` at once), so one slow endpoint delays no other.
//! DNS and HTTPS are behind the [`TxtLookup`] and [`ReportPoster`] traits; the binary wires
//! them to `strictmx-resolve`, whose report client checks every address it connects to.

use std::fmt;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Serialize;
use strictmx_policy::tlsrpt_record::{self as record, Rua, TlsrptRecord};
use strictmx_spool::Spool;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::day::Day;
use crate::error::TlsrptError;
use crate::mail::{self, ReportMail};
use crate::report::{self, Report, Submitter};
use crate::schema;
use crate::settings::TlsrptSettings;
use crate::store::{CounterStore, LocalCounters};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// TXT lookups for `_smtp._tls.<domain>`: one string per record (its character-strings
/// concatenated). An empty list means no record; an error means the lookup failed.
pub trait TxtLookup: Send + Sync + fmt::Debug {
    fn txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>>;
}

/// POSTs a gzip report to an `https:` rua (RFC 8460 §5.4).
pub trait ReportPoster: Send + Sync + fmt::Debug {
    fn post<'a>(&'a self, url: &'a str, gzip: Vec<u8>) -> BoxFuture<'a, Result<(), String>>;
}

/// The production poster: a reqwest client built by `strictmx-resolve`
/// (`report_client`: public addresses only, web PKI roots, ring).
impl ReportPoster for reqwest::Client {
    fn post<'a>(&'a self, url: &'a str, gzip: Vec<u8>) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let url = client_url(url)?;
            let response = reqwest::Client::post(self, url)
                // RFC 8460 §5.4: the gzip form goes as application/tlsrpt+gzip.
                .header("Content-Type", "application/tlsrpt+gzip")
                .body(gzip)
                .send()
                .await
                .map_err(|e| error_chain(&e))?;
            // RFC 8460 §5.4: any 2xx is success.
            if response.status().is_success() {
                Ok(())
            } else {
                Err(format!("HTTP status {}", response.status()))
            }
        })
    }
}

/// `url` as the HTTP client itself parses it, refused unless it names a host (not an IP
/// address), port 443 and no user information. `strictmx_policy::tlsrpt_record` checked the
/// same before; checking the client's own reading too leaves no gap between two URL parsers,
/// and a host name makes the client resolve through the report client's address check.
fn client_url(url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if parsed.scheme() != "https"
        || parsed.domain().is_none()
        || parsed.port_or_known_default() != Some(443)
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return Err("only https URLs naming a host on port 443 are posted to".into());
    }
    Ok(parsed)
}

/// An error with each of its sources, so that a refused address is not hidden behind
/// "error sending request".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One domain's report as it would go out.
#[derive(Debug, Clone, Serialize)]
pub struct Prepared {
    pub domain: String,
    /// Where it goes, or why it would not be sent.
    pub rua: Result<Vec<String>, String>,
    /// Report URIs of the record that would not be used, with the reason.
    pub refused: Vec<String>,
    pub report: Report,
}

/// What sending one domain's report did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DomainOutcome {
    pub domain: String,
    pub report_id: Option<String>,
    /// `mailto:` addresses whose report mail was queued.
    pub queued: Vec<String>,
    /// `https:` URIs that accepted the report.
    pub posted: Vec<String>,
    /// URIs (either scheme) that failed after every try, with the last reason.
    pub failed: Vec<(String, String)>,
    /// URIs of the record that were not used (malformed, not allowed, over `max_rua`).
    pub refused: Vec<(String, String)>,
    /// Why nothing was sent (no record, already sent, schema failure, ...).
    pub skipped: Option<String>,
}

/// Builds and sends reports.
#[derive(Debug, Clone)]
pub struct Reporter {
    spool: Spool,
    counters: Arc<dyn CounterStore>,
    settings: Arc<TlsrptSettings>,
    txt: Arc<dyn TxtLookup>,
    poster: Arc<dyn ReportPoster>,
}

impl Reporter {
    pub fn new(
        spool: Spool,
        settings: TlsrptSettings,
        txt: Arc<dyn TxtLookup>,
        poster: Arc<dyn ReportPoster>,
    ) -> Self {
        Reporter {
            counters: Arc::new(LocalCounters(spool.clone())),
            spool,
            settings: Arc::new(settings),
            txt,
            poster,
        }
    }

    /// Reads counters and keeps sent marks in `counters` instead of the local spool (the
    /// report mails are still queued in the local spool).
    pub fn with_counters(mut self, counters: Arc<dyn CounterStore>) -> Self {
        self.counters = counters;
        self
    }

    pub fn settings(&self) -> &TlsrptSettings {
        &self.settings
    }

    fn submitter(&self) -> Submitter {
        Submitter {
            organization_name: self.settings.organization_name.clone(),
            contact_info: self.settings.contact_info.clone(),
            domain: self.settings.submitter.clone(),
        }
    }

    /// The report domains with counters on `day`, minus excluded ones.
    async fn domains(
        &self,
        day: Day,
    ) -> Result<Vec<(String, Vec<strictmx_spool::TlsrptCounters>)>, TlsrptError> {
        let counters = self.counters.day(day.0).await?;
        let mut by_domain: Vec<(String, Vec<_>)> = Vec::new();
        for row in counters {
            if self.settings.exclude_domains.contains(&row.report_domain) {
                continue;
            }
            match by_domain.last_mut() {
                Some((domain, rows)) if *domain == row.report_domain => rows.push(row),
                _ => by_domain.push((row.report_domain.clone(), vec![row])),
            }
        }
        Ok(by_domain)
    }

    /// The report URIs of `domain`'s record that are used, at most `max_rua`, and the refused.
    async fn rua(&self, domain: &str) -> Result<TlsrptRecord, String> {
        let txts = self
            .txt
            .txt(&record::record_name(domain))
            .await
            .map_err(|e| format!("TXT lookup failed: {e}"))?;
        let record = record::select_record(&txts).map_err(|problem| problem.to_string())?;
        Ok(record.capped(self.settings.max_rua))
    }

    /// The reports `day` would produce (all domains, or only `only`), with their destinations.
    pub async fn preview(
        &self,
        day: Day,
        only: Option<&str>,
    ) -> Result<Vec<Prepared>, TlsrptError> {
        let submitter = self.submitter();
        let mut out = Vec::new();
        for (domain, counters) in self.domains(day).await? {
            if only.is_some_and(|o| !o.eq_ignore_ascii_case(&domain)) {
                continue;
            }
            let Some(report) = report::build_report(&submitter, day, &domain, &counters) else {
                continue;
            };
            let (rua, refused) = match self.rua(&domain).await {
                Ok(record) => (
                    Ok(record.rua.iter().map(Rua::uri).collect()),
                    record.refused.iter().map(ToString::to_string).collect(),
                ),
                Err(why) => (Err(why), Vec::new()),
            };
            out.push(Prepared {
                domain,
                rua,
                refused,
                report,
            });
        }
        Ok(out)
    }

    /// Sends the reports of `day`, which must be over at `now`. Each domain's report goes out
    /// at most once (a mark in the spool, set before sending); mailto reports are queued, https
    /// ones POSTed with retries before this returns. The POSTs of all domains run concurrently,
    /// at most `https_concurrency` at a time, each try within `https_timeout`.
    pub async fn send_day(
        &self,
        day: Day,
        now: SystemTime,
    ) -> Result<Vec<DomainOutcome>, TlsrptError> {
        if !self.settings.enabled {
            return Err(TlsrptError::Disabled);
        }
        if now < day.closes_at() {
            return Err(TlsrptError::DayNotClosed {
                day: day.to_string(),
            });
        }
        let submitter = self.submitter();
        let posting = Arc::new(Semaphore::new(self.settings.https_concurrency.max(1)));
        let mut posts = JoinSet::new();
        let mut outcomes = Vec::new();
        let mut failure = None;
        for (domain, counters) in self.domains(day).await? {
            let (outcome, https) = match self
                .send_domain(&submitter, day, &domain, &counters, now)
                .await
            {
                Ok(sent) => sent,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            let gzip = Arc::new(https.gzip);
            for (position, url) in https.urls.into_iter().enumerate() {
                let index = outcomes.len();
                let (reporter, posting, gzip) =
                    (self.clone(), Arc::clone(&posting), Arc::clone(&gzip));
                posts.spawn(async move {
                    let result = reporter.post_with_retries(&url, &gzip, &posting).await;
                    ((index, position), url, result)
                });
            }
            outcomes.push(outcome);
        }
        // Reports already marked sent are posted even when a later domain failed.
        finish_posts(posts, &mut outcomes).await;
        if let Some(e) = failure {
            return Err(e);
        }
        for outcome in &outcomes {
            tracing::info!(
                domain = %outcome.domain,
                queued = outcome.queued.len(),
                posted = outcome.posted.len(),
                failed = outcome.failed.len(),
                refused = outcome.refused.len(),
                skipped = outcome.skipped.as_deref().unwrap_or(""),
                outcome = if outcome.skipped.is_some() { "skipped" } else { "sent" },
                "TLSRPT report"
            );
        }
        Ok(outcomes)
    }

    /// Sends every closed day that has counters and unsent reports (catching up after
    /// downtime), then prunes counters older than `keep_days`.
    pub async fn send_closed_days(&self, now: SystemTime) -> Result<(), TlsrptError> {
        let today = Day::of(now);
        let days = self.counters.days().await?;
        let oldest_kept = today.0.saturating_sub(self.settings.keep_days);
        for day in days
            .into_iter()
            .filter(|&d| d >= oldest_kept && d < today.0)
        {
            self.send_day(Day(day), now).await?;
        }
        let pruned = self.counters.prune(oldest_kept).await?;
        if pruned > 0 {
            tracing::info!(pruned, "old TLSRPT counters pruned");
        }
        Ok(())
    }

    /// Marks one domain's report sent and queues its mailto reports; returns the outcome so
    /// far and the https URIs still to be posted.
    async fn send_domain(
        &self,
        submitter: &Submitter,
        day: Day,
        domain: &str,
        counters: &[strictmx_spool::TlsrptCounters],
        now: SystemTime,
    ) -> Result<(DomainOutcome, HttpsPending), TlsrptError> {
        let mut outcome = DomainOutcome {
            domain: domain.to_owned(),
            ..DomainOutcome::default()
        };
        let nothing = HttpsPending::default();
        let sent = self.counters.sent(day.0, domain).await?;
        if sent {
            outcome.skipped = Some("already sent".into());
            return Ok((outcome, nothing));
        }
        let record = match self.rua(domain).await {
            Ok(record) => record,
            Err(why) => {
                outcome.skipped = Some(why);
                return Ok((outcome, nothing));
            }
        };
        for refused in &record.refused {
            tracing::warn!(domain, rua = %refused.uri, reason = %refused.reason, "TLSRPT report address not used");
            outcome
                .refused
                .push((refused.uri.clone(), refused.reason.to_string()));
        }
        let Some(report) = report::build_report(submitter, day, domain, counters) else {
            outcome.skipped = Some("no decodable counters".into());
            return Ok((outcome, nothing));
        };
        outcome.report_id = Some(report.report_id.clone());
        let gzip = match checked_gzip(domain, &report) {
            Ok(gzip) => gzip,
            Err(e) => {
                tracing::error!(domain, error = %e, "TLSRPT report not sent");
                outcome.skipped = Some(e.to_string());
                return Ok((outcome, nothing));
            }
        };
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let claimed = self.counters.mark_sent(day.0, domain, secs).await?;
        if !claimed {
            outcome.skipped = Some("already sent".into());
            return Ok((outcome, nothing));
        }
        let mut urls = Vec::new();
        for rua in record.rua {
            match rua {
                Rua::Mailto(to) => {
                    match self.queue_mail(&report, domain, day, &to, &gzip, now).await {
                        Ok(()) => outcome.queued.push(to),
                        Err(e) => outcome.failed.push((format!("mailto:{to}"), e)),
                    }
                }
                Rua::Https(url) => urls.push(url),
            }
        }
        Ok((outcome, HttpsPending { urls, gzip }))
    }

    async fn queue_mail(
        &self,
        report: &Report,
        domain: &str,
        day: Day,
        to: &str,
        gzip: &[u8],
        now: SystemTime,
    ) -> Result<(), String> {
        let submitter = &self.settings.submitter;
        let unique = report.report_id.rsplit('_').next().unwrap_or_default();
        let file_name = report::file_name(submitter, domain, day, unique);
        let (envelope, body) = mail::build(&ReportMail {
            domain,
            submitter,
            organization_name: &self.settings.organization_name,
            report_id: &report.report_id,
            mail_from: &self.settings.mail_from,
            to,
            file_name: &file_name,
            gzip,
            start: &report.date_range.start_datetime,
            end: &report.date_range.end_datetime,
            now,
        })
        .map_err(|e| format!("cannot build the mail: {e}"))?;
        self.spool
            .submit(envelope, body)
            .await
            .map(|_| ())
            .map_err(|e| format!("cannot queue the mail: {e}"))
    }

    /// RFC 8460 §5.5 asks senders to retry failed deliveries; tries are bounded by the
    /// settings and kept in memory only (a restart drops a report still being retried). Each
    /// try holds one of the `posting` permits; waiting between tries holds none.
    async fn post_with_retries(
        &self,
        url: &str,
        gzip: &[u8],
        posting: &Semaphore,
    ) -> Result<(), String> {
        let attempts = self.settings.https_attempts.max(1);
        let mut wait = self.settings.https_backoff;
        let mut last = String::new();
        for attempt in 1..=attempts {
            let result = {
                let _permit = posting.acquire().await.map_err(|e| e.to_string())?;
                let post = self.poster.post(url, gzip.to_vec());
                tokio::time::timeout(self.settings.https_timeout, post).await
            };
            match result {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("no answer within {:?}", self.settings.https_timeout),
            }
            tracing::warn!(url, attempt, error = %last, "TLSRPT https report not accepted");
            if attempt < attempts {
                tokio::time::sleep(wait).await;
                wait = wait.saturating_mul(2).min(Duration::from_secs(3600));
            }
        }
        Err(last)
    }
}

/// One POST task's answer: (domain index, position in its record), URL, result.
type Posted = ((usize, usize), String, Result<(), String>);

/// Waits for every POST and files its result under its domain, in record order whichever
/// answered first.
async fn finish_posts(mut posts: JoinSet<Posted>, outcomes: &mut [DomainOutcome]) {
    let mut done = Vec::new();
    while let Some(joined) = posts.join_next().await {
        match joined {
            Ok(post) => done.push(post),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {}
        }
    }
    done.sort_by_key(|(order, ..)| *order);
    for ((index, _), url, result) in done {
        let Some(outcome) = outcomes.get_mut(index) else {
            continue;
        };
        match result {
            Ok(()) => outcome.posted.push(url),
            Err(e) => outcome.failed.push((url, e)),
        }
    }
}

/// The `https:` URIs of one domain's report, posted after every domain's mail is queued.
#[derive(Debug, Default)]
struct HttpsPending {
    urls: Vec<String>,
    gzip: Vec<u8>,
}

/// The report as JSON, checked against the schema, then gzip-compressed (RFC 8460 §5.2).
pub fn checked_gzip(domain: &str, report: &Report) -> Result<Vec<u8>, TlsrptError> {
    let value = serde_json::to_value(report).map_err(|source| TlsrptError::Encode {
        domain: domain.to_owned(),
        source,
    })?;
    schema::validate(&value).map_err(|errors| TlsrptError::Schema {
        domain: domain.to_owned(),
        report_id: report.report_id.clone(),
        errors,
    })?;
    let json = serde_json::to_vec(&value).map_err(|source| TlsrptError::Encode {
        domain: domain.to_owned(),
        source,
    })?;
    let compress = |source| TlsrptError::Compress {
        domain: domain.to_owned(),
        source,
    };
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(&json).map_err(compress)?;
    encoder.finish().map_err(compress)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The HTTP client's own reading of a report URL must name a host on port 443, whatever
    /// the record parser let through (issue 14, item 8).
    #[test]
    fn only_host_names_on_port_443_reach_the_http_client() {
        let cases = [
            ("a host name", "https://reports.example.com/r", true),
            (
                "port 443 written out",
                "https://reports.example.com:443/r",
                true,
            ),
            ("an IPv4 address", "https://127.0.0.1/r", false),
            ("WHATWG: a short IPv4 form", "https://127.1/r", false),
            (
                "WHATWG: percent-encoded dots",
                "https://127%2e0%2e0%2e1/r",
                false,
            ),
            (
                "WHATWG: a backslash is a slash",
                "https://127.0.0.1\\@a.example/",
                false,
            ),
            ("an IPv6 address", "https://[::1]/r", false),
            ("another port", "https://reports.example.com:8443/r", false),
            ("plain http", "http://reports.example.com/r", false),
            (
                "user information",
                "https://u:p@reports.example.com/r",
                false,
            ),
        ];
        for (rule, url, allowed) in cases {
            assert_eq!(client_url(url).is_ok(), allowed, "{rule}: {url}");
        }
    }
}

//! Turning one closed day's counters into reports and sending them (RFC 8460 §5): the
//! `_smtp._tls` lookup, the schema check, gzip, `mailto:` through our own queue and `https:`
//! POSTs with retries, and the per-(day, domain) sent mark. DNS and HTTPS are behind the
//! [`TxtLookup`] and [`ReportPoster`] traits; the binary wires them to `strictmx-resolve`.

use std::fmt;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Serialize;
use strictmx_spool::Spool;

use crate::day::Day;
use crate::error::TlsrptError;
use crate::mail::{self, ReportMail};
use crate::record::{self, RecordProblem, Rua};
use crate::report::{self, Report, Submitter};
use crate::schema;
use crate::settings::TlsrptSettings;

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

/// The production poster: a reqwest client built by `strictmx-resolve` (web PKI, ring).
impl ReportPoster for reqwest::Client {
    fn post<'a>(&'a self, url: &'a str, gzip: Vec<u8>) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let response = reqwest::Client::post(self, url)
                // RFC 8460 §5.4: the gzip form goes as application/tlsrpt+gzip.
                .header("Content-Type", "application/tlsrpt+gzip")
                .body(gzip)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            // RFC 8460 §5.4: any 2xx is success.
            if response.status().is_success() {
                Ok(())
            } else {
                Err(format!("HTTP status {}", response.status()))
            }
        })
    }
}

/// One domain's report as it would go out.
#[derive(Debug, Clone, Serialize)]
pub struct Prepared {
    pub domain: String,
    /// Where it goes, or why it would not be sent.
    pub rua: Result<Vec<String>, String>,
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
    /// Why nothing was sent (no record, already sent, schema failure, ...).
    pub skipped: Option<String>,
}

/// Builds and sends reports.
#[derive(Debug, Clone)]
pub struct Reporter {
    spool: Spool,
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
            spool,
            settings: Arc::new(settings),
            txt,
            poster,
        }
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
    fn domains(
        &self,
        day: Day,
    ) -> Result<Vec<(String, Vec<strictmx_spool::TlsrptCounters>)>, TlsrptError> {
        let counters = self
            .spool
            .tlsrpt_day(day.0)
            .map_err(TlsrptError::spool("reading a day's counters"))?;
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

    async fn rua(&self, domain: &str) -> Result<Vec<Rua>, String> {
        let txts = self
            .txt
            .txt(&record::record_name(domain))
            .await
            .map_err(|e| format!("TXT lookup failed: {e}"))?;
        record::select_record(&txts).map_err(|problem: RecordProblem| problem.to_string())
    }

    /// The reports `day` would produce (all domains, or only `only`), with their destinations.
    pub async fn preview(
        &self,
        day: Day,
        only: Option<&str>,
    ) -> Result<Vec<Prepared>, TlsrptError> {
        let submitter = self.submitter();
        let mut out = Vec::new();
        for (domain, counters) in self.domains(day)? {
            if only.is_some_and(|o| !o.eq_ignore_ascii_case(&domain)) {
                continue;
            }
            let Some(report) = report::build_report(&submitter, day, &domain, &counters) else {
                continue;
            };
            let rua = self
                .rua(&domain)
                .await
                .map(|list| list.iter().map(rua_text).collect());
            out.push(Prepared {
                domain,
                rua,
                report,
            });
        }
        Ok(out)
    }

    /// Sends the reports of `day`, which must be over at `now`. Each domain's report goes out
    /// at most once (a mark in the spool, set before sending); mailto reports are queued, https
    /// ones POSTed with retries before this returns.
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
        let mut outcomes = Vec::new();
        for (domain, counters) in self.domains(day)? {
            let outcome = self
                .send_domain(&submitter, day, &domain, &counters, now)
                .await?;
            tracing::info!(
                domain = %outcome.domain,
                queued = outcome.queued.len(),
                posted = outcome.posted.len(),
                failed = outcome.failed.len(),
                skipped = outcome.skipped.as_deref().unwrap_or(""),
                outcome = if outcome.skipped.is_some() { "skipped" } else { "sent" },
                "TLSRPT report"
            );
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// Sends every closed day that has counters and unsent reports (catching up after
    /// downtime), then prunes counters older than `keep_days`.
    pub async fn send_closed_days(&self, now: SystemTime) -> Result<(), TlsrptError> {
        let today = Day::of(now);
        let days = self
            .spool
            .tlsrpt_days()
            .map_err(TlsrptError::spool("listing counter days"))?;
        let oldest_kept = today.0.saturating_sub(self.settings.keep_days);
        for day in days
            .into_iter()
            .filter(|&d| d >= oldest_kept && d < today.0)
        {
            self.send_day(Day(day), now).await?;
        }
        let pruned = self
            .spool
            .tlsrpt_prune(oldest_kept)
            .await
            .map_err(TlsrptError::spool("pruning counters"))?;
        if pruned > 0 {
            tracing::info!(pruned, "old TLSRPT counters pruned");
        }
        Ok(())
    }

    async fn send_domain(
        &self,
        submitter: &Submitter,
        day: Day,
        domain: &str,
        counters: &[strictmx_spool::TlsrptCounters],
        now: SystemTime,
    ) -> Result<DomainOutcome, TlsrptError> {
        let mut outcome = DomainOutcome {
            domain: domain.to_owned(),
            ..DomainOutcome::default()
        };
        let sent = self
            .spool
            .tlsrpt_sent(day.0, domain)
            .map_err(TlsrptError::spool("reading sent marks"))?;
        if sent {
            outcome.skipped = Some("already sent".into());
            return Ok(outcome);
        }
        let ruas = match self.rua(domain).await {
            Ok(ruas) => ruas,
            Err(why) => {
                outcome.skipped = Some(why);
                return Ok(outcome);
            }
        };
        let Some(report) = report::build_report(submitter, day, domain, counters) else {
            outcome.skipped = Some("no decodable counters".into());
            return Ok(outcome);
        };
        outcome.report_id = Some(report.report_id.clone());
        let gzip = match checked_gzip(domain, &report) {
            Ok(gzip) => gzip,
            Err(e) => {
                tracing::error!(domain, error = %e, "TLSRPT report not sent");
                outcome.skipped = Some(e.to_string());
                return Ok(outcome);
            }
        };
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let claimed = self
            .spool
            .tlsrpt_mark_sent(day.0, domain.to_owned(), secs)
            .await
            .map_err(TlsrptError::spool("marking a report sent"))?;
        if !claimed {
            outcome.skipped = Some("already sent".into());
            return Ok(outcome);
        }
        for rua in &ruas {
            match rua {
                Rua::Mailto(to) => {
                    match self.queue_mail(&report, domain, day, to, &gzip, now).await {
                        Ok(()) => outcome.queued.push(to.clone()),
                        Err(e) => outcome.failed.push((rua_text(rua), e)),
                    }
                }
                Rua::Https(url) => match self.post_with_retries(url, &gzip).await {
                    Ok(()) => outcome.posted.push(url.clone()),
                    Err(e) => outcome.failed.push((url.clone(), e)),
                },
            }
        }
        Ok(outcome)
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
    /// settings and kept in memory only (a restart drops a report still being retried).
    async fn post_with_retries(&self, url: &str, gzip: &[u8]) -> Result<(), String> {
        let attempts = self.settings.https_attempts.max(1);
        let mut wait = self.settings.https_backoff;
        let mut last = String::new();
        for attempt in 1..=attempts {
            let post = self.poster.post(url, gzip.to_vec());
            match tokio::time::timeout(self.settings.https_timeout, post).await {
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

fn rua_text(rua: &Rua) -> String {
    match rua {
        Rua::Mailto(address) => format!("mailto:{address}"),
        Rua::Https(url) => url.clone(),
    }
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

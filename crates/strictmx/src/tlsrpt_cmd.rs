//! `strictmx tlsrpt preview|send`: the TLSRPT commands (RFC 8460). The client side turns the
//! arguments into a control-socket request and prints the answer; the server side answers it
//! with the running server's [`Reporter`] (the spool belongs to the server). [`start`] wires the
//! recorder, the reporter and the daily task for `serve`. Building and sending reports is
//! `strictmx-tlsrpt`'s job.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::Subcommand;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use strictmx_protocol::ErrorChain;
use strictmx_resolve::DnsResolver;
use strictmx_spool::Spool;
use strictmx_tlsrpt::{
    BoxFuture, CounterStore, Day, Recorder, ReportPoster, Reporter, TlsrptSettings, TxtLookup,
    schedule,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::terminal::escape;

/// How long a `send` request waits for the reports before answering; https retries may go on
/// in the server afterwards (the control socket gives a request 120 seconds in all).
const SEND_ANSWER_WITHIN: Duration = Duration::from_secs(90);

#[derive(Debug, Subcommand)]
pub enum TlsrptAction {
    /// Print the report JSON that would be sent for a day (default: yesterday, UTC).
    Preview {
        /// The UTC day, YYYY-MM-DD.
        #[arg(long)]
        date: Option<String>,
        /// Only this report domain.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Send the reports of a closed UTC day now (each domain's report goes out once).
    Send {
        /// The UTC day, YYYY-MM-DD; it must be over.
        #[arg(long)]
        date: String,
    },
}

/// The control-socket request, carried inside the control protocol's own request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "tlsrpt", rename_all = "snake_case")]
pub enum TlsrptRequest {
    Preview {
        date: Option<String>,
        domain: Option<String>,
    },
    Send {
        date: String,
    },
}

impl From<TlsrptAction> for TlsrptRequest {
    fn from(action: TlsrptAction) -> Self {
        match action {
            TlsrptAction::Preview { date, domain } => TlsrptRequest::Preview { date, domain },
            TlsrptAction::Send { date } => TlsrptRequest::Send { date },
        }
    }
}

fn parse_day(text: &str) -> anyhow::Result<Day> {
    Day::parse(text).with_context(|| format!("`{text}` is not a date (YYYY-MM-DD)"))
}

/// The server side of a `tlsrpt` request.
pub async fn handle(request: TlsrptRequest, reporter: Option<&Reporter>) -> anyhow::Result<Value> {
    let Some(reporter) = reporter else {
        bail!("TLSRPT is not enabled on this server ([tlsrpt] enabled = true)");
    };
    match request {
        TlsrptRequest::Preview { date, domain } => {
            let day = match date {
                Some(text) => parse_day(&text)?,
                None => Day::of(SystemTime::now()).previous(),
            };
            let prepared = reporter.preview(day, domain.as_deref()).await?;
            Ok(serde_json::to_value(prepared)?)
        }
        TlsrptRequest::Send { date } => {
            let day = parse_day(&date)?;
            let reporter = reporter.clone();
            let sending =
                tokio::spawn(async move { reporter.send_day(day, SystemTime::now()).await });
            match tokio::time::timeout(SEND_ANSWER_WITHIN, sending).await {
                Ok(joined) => Ok(serde_json::to_value(joined??)?),
                Err(_) => Ok(json!({
                    "pending": "reports are still being sent (https retries); see the server log"
                })),
            }
        }
    }
}

/// Prints a `tlsrpt` answer for people: preview shows each report's JSON under a line naming
/// its destinations; send shows what happened per domain.
pub fn render(request: &TlsrptRequest, result: &Value) -> String {
    let mut out = String::new();
    if let Some(pending) = result["pending"].as_str() {
        return format!("{pending}\n");
    }
    for item in result.as_array().into_iter().flatten() {
        // Report domains and addresses come from recipients' DNS: escaped for the terminal.
        let domain = escape(item["domain"].as_str().unwrap_or_default());
        match request {
            TlsrptRequest::Preview { .. } => {
                let to = match (&item["rua"]["Ok"], &item["rua"]["Err"]) {
                    (Value::Array(list), _) => list
                        .iter()
                        .filter_map(Value::as_str)
                        .map(escape)
                        .collect::<Vec<_>>()
                        .join(", "),
                    (_, Value::String(why)) => format!("not sent: {}", escape(why)),
                    _ => String::new(),
                };
                out.push_str(&format!("# {domain} -> {to}\n"));
                for refused in item["refused"].as_array().into_iter().flatten() {
                    out.push_str(&format!(
                        "#   not used: {}\n",
                        refused.as_str().unwrap_or("")
                    ));
                }
                out.push_str(&serde_json::to_string_pretty(&item["report"]).unwrap_or_default());
                out.push('\n');
            }
            TlsrptRequest::Send { .. } => out.push_str(&render_outcome(&domain, item)),
        }
    }
    if out.is_empty() {
        out.push_str("no report domains with activity that day\n");
    }
    out
}

fn render_outcome(domain: &str, outcome: &Value) -> String {
    if let Some(why) = outcome["skipped"].as_str() {
        return format!("{domain}: skipped ({})\n", escape(why));
    }
    let list = |key: &str| {
        outcome[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(escape)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let mut line = format!(
        "{domain}: report {} queued [{}] posted [{}]",
        outcome["report_id"].as_str().unwrap_or("-"),
        list("queued"),
        list("posted")
    );
    for failed in outcome["failed"].as_array().into_iter().flatten() {
        line.push_str(&format!(
            " FAILED {} ({})",
            escape(&failed[0].to_string()),
            escape(&failed[1].to_string())
        ));
    }
    for refused in outcome["refused"].as_array().into_iter().flatten() {
        line.push_str(&format!(" NOT USED {} ({})", refused[0], refused[1]));
    }
    line.push('\n');
    line
}

/// `_smtp._tls` TXT lookups through the server's resolver.
#[derive(Debug)]
pub struct ResolverTxt(pub DnsResolver);

impl TxtLookup for ResolverTxt {
    fn txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>> {
        Box::pin(async move {
            match self.0.txt(name).await {
                Ok(answer) => Ok(answer.value),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

/// The TLSRPT parts of a running server.
#[derive(Debug, Clone)]
pub struct Tlsrpt {
    pub recorder: Recorder,
    pub reporter: Reporter,
}

/// Starts the recorder and the daily report task on `tracker`; `None` when disabled. With
/// `shared` (a cluster's counters) reports are built from every node's counts, and the daily
/// task is the cluster's (`strictmx_cluster::run`), not started here.
pub fn start(
    spool: &Spool,
    settings: TlsrptSettings,
    resolver: DnsResolver,
    poster: Arc<dyn ReportPoster>,
    shared: Option<Arc<dyn CounterStore>>,
    tracker: &TaskTracker,
    token: &CancellationToken,
) -> Option<Tlsrpt> {
    if !settings.enabled {
        return None;
    }
    let (recorder, recording) = Recorder::start(
        spool.clone(),
        settings.exclude_domains.clone(),
        token.clone(),
    );
    tracker.spawn(async move {
        if let Err(e) = recording.await {
            tracing::error!(error = %ErrorChain(&e), "TLSRPT recorder task failed");
        }
    });
    let reporter = Reporter::new(
        spool.clone(),
        settings,
        Arc::new(ResolverTxt(resolver)),
        poster,
    );
    let reporter = match shared {
        Some(counters) => reporter.with_counters(counters),
        None => {
            tracker.spawn(schedule::run(reporter.clone(), token.clone()));
            reporter
        }
    };
    Some(Tlsrpt { recorder, reporter })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlsrpt_requests_travel_as_tagged_json() {
        let send = TlsrptRequest::Send {
            date: "2024-01-02".into(),
        };
        let text = serde_json::to_string(&send).unwrap();
        assert_eq!(text, r#"{"tlsrpt":"send","date":"2024-01-02"}"#);
        assert_eq!(serde_json::from_str::<TlsrptRequest>(&text).unwrap(), send);
    }

    #[tokio::test]
    async fn a_server_without_tlsrpt_says_how_to_enable_it() {
        let request = TlsrptRequest::Preview {
            date: None,
            domain: None,
        };
        let error = handle(request, None).await.unwrap_err().to_string();
        assert!(error.contains("[tlsrpt] enabled = true"), "{error}");
    }

    #[test]
    fn send_outcomes_render_one_line_per_domain() {
        let result = json!([
            {"domain": "a.test", "report_id": "id1", "queued": ["mailto:r@a.test"], "posted": [], "failed": [], "skipped": null},
            {"domain": "b.test", "report_id": null, "queued": [], "posted": [], "failed": [], "skipped": "no v=TLSRPTv1 record"}
        ]);
        let text = render(
            &TlsrptRequest::Send {
                date: "2024-01-02".into(),
            },
            &result,
        );
        assert_eq!(
            text,
            "a.test: report id1 queued [mailto:r@a.test] posted []\nb.test: skipped (no v=TLSRPTv1 record)\n"
        );
    }
}

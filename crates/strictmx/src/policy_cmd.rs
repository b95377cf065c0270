//! `strictmx policy changes [--since 30d] [--domain D]`: the destinations whose published
//! security weakened (MTA-STS downgraded or gone, TLSA gone or unusable, DNSSEC lost, STARTTLS
//! dropped), from the running server's watch; and the same changes and the site-wide downgrade
//! alarm in `explain`.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use serde_json::{Value, json};
use strictmx_delivery::watch::{PostureChange, PostureWatch};

use crate::control::Request;
use crate::terminal::text;

/// How far back `explain` looks for a destination's changes.
pub const EXPLAIN_SINCE: Duration = Duration::from_secs(30 * 86_400);

#[derive(Debug, Subcommand)]
pub enum PolicyAction {
    /// Destinations whose policy weakened, oldest first.
    Changes {
        /// How far back (`12h`, `7d`); default 30 days.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "30d")]
        since: Duration,
        /// Only this destination domain.
        #[arg(long)]
        domain: Option<String>,
    },
}

/// `strictmx policy ...`: one request to the running server, its answer printed.
pub fn run(socket: &Path, action: PolicyAction, json_output: bool) -> ExitCode {
    let PolicyAction::Changes { since, domain } = action;
    let request = Request::PolicyChanges {
        since_secs: since.as_secs(),
        domain,
    };
    crate::control::run_request(socket, request, json_output)
}

/// The server's answer: the alarm (if up) and the changes (with a cluster, every node's).
pub async fn changes(
    watch: &PostureWatch,
    since_secs: u64,
    domain: Option<&str>,
) -> anyhow::Result<Value> {
    let since = SystemTime::now() - Duration::from_secs(since_secs);
    Ok(json!({
        "alarm": watch.alarm(),
        "changes": watch.changes_everywhere(since, domain).await?,
    }))
}

/// Adds the destination's recent changes, its last posture and the site-wide alarm to an
/// `explain` answer.
pub async fn annotate(
    explanation: &mut Value,
    watch: &PostureWatch,
    domain: &str,
) -> anyhow::Result<()> {
    let since = SystemTime::now() - EXPLAIN_SINCE;
    let found = watch.changes_everywhere(since, Some(domain)).await?;
    explanation["policy_changes"] = serde_json::to_value(found)?;
    explanation["posture"] = serde_json::to_value(watch.posture(domain))?;
    explanation["site_alarm"] = serde_json::to_value(watch.alarm())?;
    Ok(())
}

/// The same from the spool alone (`explain` with no server running).
pub fn annotate_from_spool(
    explanation: &mut Value,
    spool: &strictmx_spool::Spool,
    domain: &str,
) -> anyhow::Result<()> {
    let since = SystemTime::now() - EXPLAIN_SINCE;
    let found: Vec<PostureChange> = strictmx_delivery::watch::changes(spool, since, Some(domain))?;
    explanation["policy_changes"] = serde_json::to_value(found)?;
    Ok(())
}

fn when(ms: &Value) -> String {
    let ms = ms.as_u64().unwrap_or(0);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// The alarm banner, when it is up.
pub fn alarm_banner(alarm: &Value) -> Option<String> {
    if alarm.is_null() {
        return None;
    }
    let list: Vec<String> = alarm["destinations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    Some(format!(
        "!! SITE-WIDE STARTTLS DOWNGRADE ALARM since {}: {} destinations stopped offering STARTTLS at once ({}). A middlebox on our own path (a firewall's SMTP inspection) is the likely cause, not the destinations.\n",
        when(&alarm["since_ms"]),
        list.len(),
        list.join(", ")
    ))
}

/// One line per weakening: time, destination, what changed.
pub fn change_lines(changes: &Value) -> String {
    let mut out = String::new();
    for change in changes.as_array().into_iter().flatten() {
        for weakening in change["weakenings"].as_array().into_iter().flatten() {
            let said =
                serde_json::from_value::<strictmx_policy::posture::Weakening>(weakening.clone())
                    .map(|w| w.describe())
                    .unwrap_or_else(|_| weakening.to_string());
            out.push_str(&format!(
                "  {}  {}  {}{}\n",
                when(&change["at_ms"]),
                text(&change["domain"]),
                crate::terminal::escape(&said),
                if change["during_alarm"] == true {
                    " (during the site-wide alarm)"
                } else {
                    ""
                }
            ));
        }
    }
    out
}

pub fn render(result: &Value) -> String {
    let mut out = alarm_banner(&result["alarm"]).unwrap_or_default();
    let lines = change_lines(&result["changes"]);
    if lines.is_empty() {
        out.push_str("no destination weakened its policy in that time\n");
    } else {
        out.push_str("destinations that weakened their policy:\n");
        out.push_str(&lines);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_render_one_line_per_weakening_with_the_alarm_first() {
        let result = json!({
            "alarm": {"since_ms": 0, "destinations": ["a.example", "b.example"]},
            "changes": [{
                "domain": "bank.example\u{1b}[2J", "at_ms": 1_000, "during_alarm": false,
                "weakenings": [{"kind": "sts-mode", "from": "enforce", "to": "testing"},
                               {"kind": "dnssec-lost"}],
                "before": {}, "after": {},
            }],
        });
        let shown = render(&result);
        assert!(
            shown.starts_with("!! SITE-WIDE STARTTLS DOWNGRADE ALARM"),
            "{shown}"
        );
        assert!(
            shown.contains("bank.example\\u{1b}[2J  MTA-STS mode went from enforce to testing"),
            "{shown}"
        );
        assert!(shown.contains("DNSSEC lost"), "{shown}");
        assert_eq!(shown.lines().count(), 4, "{shown}");
        let quiet = render(&json!({"alarm": null, "changes": []}));
        assert_eq!(quiet, "no destination weakened its policy in that time\n");
    }
}

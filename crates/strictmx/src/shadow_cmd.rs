//! `strictmx shadow report`: what the shadow rules would have stopped, from the spool's daily
//! counters, through the running server (the spool is the server's); and the exceptions and
//! shadow verdicts of an attempt, as `queue show` prints them.
//!
//! Evaluating the rules is `strictmx-policy`'s, recording the verdicts the delivery
//! transport's, counting them the spool's; this module asks and prints.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use strictmx_policy::rules::RuleMode;
use strictmx_spool::Spool;

use crate::control::{self, Request};
use crate::reload::Live;
use crate::terminal::text;

#[derive(Debug, Subcommand)]
pub enum ShadowAction {
    /// What each shadow rule would have stopped among the messages delivered since a time:
    /// messages and domains, each domain with its count and reasons.
    Report {
        /// Only this rule.
        #[arg(long)]
        rule: Option<String>,
        /// How far back, in whole UTC days counted back from today (`7d`, `24h`, `30d`).
        #[arg(long, default_value = "7d")]
        since: String,
    },
}

/// The control-socket request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowRequest {
    pub rule: Option<String>,
    /// The report starts with the UTC day this many seconds ago.
    pub since_secs: u64,
}

/// `strictmx shadow ...`: one request to the running server, its answer printed.
pub fn run(socket: &Path, action: ShadowAction, json_output: bool) -> ExitCode {
    let ShadowAction::Report { rule, since } = action;
    let since_secs = match humantime::parse_duration(&since) {
        Ok(since) => since.as_secs(),
        Err(e) => {
            eprintln!("shadow report: `{since}` is not a duration such as \"7d\" ({e})");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    let request = Request::Shadow(ShadowRequest { rule, since_secs });
    let Some(result) = control::ask_or_report(socket, &request) else {
        return ExitCode::FAILURE;
    };
    if json_output {
        println!(
            "{}",
            serde_json::to_string_pretty(&result).unwrap_or_default()
        );
    } else {
        print!("{}", render(&result));
    }
    ExitCode::SUCCESS
}

/// The server side: the counters from the first day asked for, and the rules in shadow mode
/// now (so that one no delivered message was tried on still shows).
pub fn handle(request: &ShadowRequest, spool: &Spool, live: &Live) -> anyhow::Result<Value> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let since_day = u32::try_from(now.saturating_sub(request.since_secs) / 86_400)?;
    let rules = spool.shadow_report(since_day, request.rule.as_deref())?;
    let configured: Vec<String> = live
        .transport()
        .policy()
        .rules
        .into_iter()
        .filter(|r| r.mode == RuleMode::Shadow)
        .filter(|r| request.rule.as_ref().is_none_or(|wanted| *wanted == r.name))
        .map(|r| r.name)
        .collect();
    Ok(json!({
        "since": day_text(since_day),
        "rules": rules,
        "configured": configured,
    }))
}

/// `YYYY-MM-DD` of a day number.
fn day_text(day: u32) -> String {
    strictmx_tlsrpt::Day(day).to_string()
}

/// The report as text: per rule, the messages and domains it would have stopped, then each
/// such domain with its count and reasons.
fn render(result: &Value) -> String {
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let mut out = format!(
        "shadow rules, messages delivered since {} (UTC):\n",
        text(&result["since"])
    );
    let rules = list(&result["rules"]);
    for rule in &rules {
        let domains = list(&rule["domains"]);
        let stopped: Vec<&Value> = domains.iter().filter(|d| d["stopped"] != 0).collect();
        out.push_str(&format!(
            "\nrule {}: would have stopped {} of {} message(s), to {} of {} domain(s)\n",
            text(&rule["rule"]),
            rule["stopped"],
            rule["messages"],
            stopped.len(),
            domains.len()
        ));
        for domain in &stopped {
            out.push_str(&format!(
                "  {}: {} of {} message(s)\n",
                text(&domain["domain"]),
                domain["stopped"],
                domain["messages"]
            ));
            for reason in list(&domain["reasons"]) {
                out.push_str(&format!(
                    "    {} {}: {}\n",
                    reason["messages"],
                    text(&reason["outcome"]),
                    text(&reason["reason"])
                ));
            }
        }
        let passed = domains.len() - stopped.len();
        if passed > 0 {
            out.push_str(&format!("  {passed} other domain(s): nothing stopped\n"));
        }
    }
    let reported: Vec<String> = rules.iter().map(|r| text(&r["rule"])).collect();
    for name in list(&result["configured"]) {
        if !reported.contains(&text(&name)) {
            out.push_str(&format!(
                "\nrule {}: no delivered message was tried on it in this period\n",
                text(&name)
            ));
        }
    }
    if rules.is_empty() && list(&result["configured"]).is_empty() {
        out.push_str("\nno shadow rule is configured and nothing was counted in this period\n");
    }
    out
}

/// ` exceptions=a(until T, spared: why) shadow=b:would-defer(why)` for an attempt record; empty
/// when it has neither (and for records written before they existed).
pub fn attempt_notes(attempt: &Value) -> String {
    let mut out = String::new();
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let exceptions: Vec<String> = list(&attempt["exceptions"])
        .iter()
        .map(|x| {
            let mut parts = Vec::new();
            if let Some(secs) = x["expires"].as_u64() {
                let at = UNIX_EPOCH + Duration::from_secs(secs);
                parts.push(format!("until {}", humantime::format_rfc3339_seconds(at)));
            }
            if let Some(spared) = x["spared"].as_str() {
                parts.push(format!("spared: {}", text(&Value::from(spared))));
            }
            format!("{}({})", text(&x["rule"]), parts.join(", "))
        })
        .collect();
    if !exceptions.is_empty() {
        out.push_str(&format!(" exceptions={}", exceptions.join(",")));
    }
    let shadow: Vec<String> = list(&attempt["shadow"])
        .iter()
        .map(|v| match text(&v["reason"]) {
            reason if reason.is_empty() => format!("{}:{}", text(&v["rule"]), text(&v["outcome"])),
            reason => format!("{}:{}({reason})", text(&v["rule"]), text(&v["outcome"])),
        })
        .collect();
    if !shadow.is_empty() {
        out.push_str(&format!(" shadow={}", shadow.join(",")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Issue 11: the report says how many messages and domains each rule would have stopped,
    // which domains with counts, and the reason for each; a quiet shadow rule is named too.
    #[test]
    fn the_report_names_messages_domains_and_reasons_per_rule() {
        let result = json!({
            "since": "2026-05-01",
            "rules": [{"rule": "dane-trial", "messages": 4, "stopped": 2, "domains": [
                {"domain": "plain.test", "messages": 1, "stopped": 1, "reasons": [
                    {"outcome": "would-defer", "reason": "no host of plain.test may be used now\u{1b}[2J", "messages": 1}]},
                {"domain": "sts-enforce.test", "messages": 1, "stopped": 1, "reasons": [
                    {"outcome": "would-defer", "reason": "no TLSA", "messages": 1}]},
                {"domain": "dane-ok.test", "messages": 2, "stopped": 0, "reasons": []}]}],
            "configured": ["dane-trial", "quiet-trial"],
        });
        let shown = render(&result);
        for expected in [
            "shadow rules, messages delivered since 2026-05-01 (UTC):",
            "rule dane-trial: would have stopped 2 of 4 message(s), to 2 of 3 domain(s)",
            "  plain.test: 1 of 1 message(s)\n    1 would-defer: no host of plain.test may be used now\\u{1b}[2J",
            "  sts-enforce.test: 1 of 1 message(s)\n    1 would-defer: no TLSA",
            "  1 other domain(s): nothing stopped",
            "rule quiet-trial: no delivered message was tried on it in this period",
        ] {
            assert!(
                shown.contains(expected),
                "missing {expected:?} in:\n{shown}"
            );
        }
        assert!(!shown.contains("dane-ok.test"), "{shown}");
        let empty = render(&json!({"since": "2026-05-01", "rules": [], "configured": []}));
        assert!(empty.contains("no shadow rule is configured"), "{empty}");
    }

    #[test]
    fn a_report_request_travels_inside_the_control_protocol() {
        let request = Request::Shadow(ShadowRequest {
            rule: Some("dane-trial".into()),
            since_secs: 604_800,
        });
        let line = serde_json::to_string(&request).unwrap();
        assert_eq!(
            line,
            r#"{"op":"shadow","rule":"dane-trial","since_secs":604800}"#
        );
        assert!(serde_json::from_str::<Request>(&line).is_ok());
    }

    #[test]
    fn an_attempt_names_its_exceptions_and_shadow_verdicts_escaped() {
        let attempt = json!({
            "exceptions": [{"rule": "partner-relax", "expires": 1801353600, "reason": "t",
                "spared": "mx: certificate-host-mismatch: bad\u{1b}[2J"}],
            "shadow": [{"rule": "dane-trial", "outcome": "would-defer", "reason": "no DANE"},
                {"rule": "verified-trial", "outcome": "pass", "reason": ""}],
        });
        assert_eq!(
            attempt_notes(&attempt),
            " exceptions=partner-relax(until 2027-01-31T00:00:00Z, spared: mx: certificate-host-mismatch: bad\\u{1b}[2J) shadow=dane-trial:would-defer(no DANE),verified-trial:pass"
        );
        assert_eq!(attempt_notes(&json!({"rules": []})), "");
    }
}

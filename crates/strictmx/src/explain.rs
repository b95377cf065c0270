//! `strictmx explain DOMAIN`: the plan a message to DOMAIN would get now, and why.
//!
//! Asks the running server through the control socket when one answers (its resolver, MTA-STS
//! cache and current rules); otherwise builds the same fact gatherer in-process from the
//! configuration. The decision is `Transport::explain`'s; this module only gathers and prints.

use std::fmt::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use serde_json::Value;
use strictmx_config::Config;
use strictmx_delivery::transport::Transport;
use strictmx_delivery::watch::PostureWatch;
use strictmx_policy::MessageFacts;
use strictmx_protocol::HumanDuration;
use strictmx_resolve::{DnsResolver, FactGatherer, StsSource};
use strictmx_spool::{Spool, SpoolSettings};

use crate::control::{self, Request};
use crate::terminal::text;

/// What the operator asked about.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Question {
    pub domain: String,
    /// The envelope sender; empty for the null sender.
    pub from: String,
    pub requiretls: bool,
    /// A per-message TLS floor, as an HTTP submission or an SMTP user's `require_tls` sets it.
    #[serde(default)]
    pub require_tls: Option<strictmx_spool::TlsFloor>,
}

impl Question {
    pub fn message_facts(&self) -> MessageFacts {
        MessageFacts {
            sender: self.from.clone(),
            requiretls: self.requiretls,
            tls_required_no: false,
            submitter_may_relax: false,
            floor: self.require_tls.map(strictmx_delivery::transport::floor_of),
        }
    }
}

/// sysexits.h EX_UNAVAILABLE: the decision is BOUNCE, the mail would never be delivered.
const EXIT_BOUNCE: u8 = 69;
/// sysexits.h EX_TEMPFAIL: the decision is DEFER, the mail would wait and be retried.
const EXIT_DEFER: u8 = 75;

/// The exit code of an answer: 0 deliver, 69 bounce, 75 defer.
fn exit_code_for(explanation: &Value) -> ExitCode {
    match explanation["outcome"]["kind"].as_str() {
        Some("bounce") => ExitCode::from(EXIT_BOUNCE),
        Some("defer") => ExitCode::from(EXIT_DEFER),
        _ => ExitCode::SUCCESS,
    }
}

/// Runs `explain` and prints the answer; exits 0 for a plan to deliver, 75 (EX_TEMPFAIL) for
/// DEFER, 69 (EX_UNAVAILABLE) for BOUNCE, 1 when no answer could be made.
pub fn run(config: &Config, question: Question, json: bool) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(answer(config, &question)) {
        Ok((explanation, source)) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&explanation).unwrap_or_default()
                );
                eprintln!("{source}");
            } else {
                print!("{}", render(&explanation, &source));
            }
            exit_code_for(&explanation)
        }
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The explanation as JSON, and a line saying where it came from.
async fn answer(config: &Config, question: &Question) -> anyhow::Result<(Value, String)> {
    let request = Request::Explain(question.clone());
    if let Some(reply) = control::ask_if_serving(&config.control_socket, &request).await? {
        return Ok((
            reply,
            "answered by the running server (its resolver, MTA-STS cache and current rules)".into(),
        ));
    }
    in_process(config, question).await
}

/// No server: the resolver and gatherer from the configuration, the spool's MTA-STS cache when
/// the spool can be opened.
async fn in_process(config: &Config, question: &Question) -> anyhow::Result<(Value, String)> {
    let resolver = DnsResolver::new(&config.resolver).context("setting up the DNS resolver")?;
    let scratch;
    let (spool, source) = match open_existing_spool(&config.spool) {
        Ok(spool) => (
            spool,
            format!(
                "computed in-process (no server answered on {}); MTA-STS cache: the spool in {}",
                config.control_socket.display(),
                config.data_dir.display()
            ),
        ),
        Err(reason) => {
            scratch = tempdir()?;
            let settings = SpoolSettings {
                data_dir: scratch.0.clone(),
                ..config.spool.clone()
            };
            let spool = Spool::open(&settings).context("opening a scratch spool")?;
            (
                spool,
                format!(
                    "computed in-process (no server answered on {}); no MTA-STS cache ({reason}): policies were fetched now and not kept",
                    config.control_socket.display()
                ),
            )
        }
    };
    let history = spool.clone();
    let watch = Arc::new(
        PostureWatch::load(spool.clone(), config.watch)
            .context("loading the destination postures")?,
    );
    let sts = StsSource::new(resolver.clone(), spool, config.mta_sts.clone())
        .context("setting up MTA-STS")?;
    // No blocking self-test first: it runs alongside the MX lookup, and not at all for a route
    // to an IP address.
    let gatherer = FactGatherer::testing_on_demand(resolver, sts, config.gather);
    let transport = Transport::new(config.transport.clone(), Arc::new(gatherer))
        .context("setting up outbound delivery")?
        .with_watch(watch);
    let explanation = transport
        .explain(&question.domain, question.message_facts())
        .await;
    let mut value = serde_json::to_value(&explanation).context("serializing the explanation")?;
    crate::policy_cmd::annotate_from_spool(&mut value, &history, &explanation.domain)?;
    Ok((value, source))
}

fn open_existing_spool(settings: &SpoolSettings) -> Result<Spool, String> {
    if !settings.data_dir.join("spool.redb").is_file() {
        return Err(format!("no spool in {}", settings.data_dir.display()));
    }
    Spool::open(settings).map_err(|e| format!("the spool cannot be opened: {e}"))
}

/// A private directory for a scratch spool, removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> anyhow::Result<TempDir> {
    let dir = std::env::temp_dir().join(format!("strictmx-explain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(TempDir(dir))
}

/// The human-readable explanation.
pub fn render(e: &Value, source: &str) -> String {
    let mut o = String::new();
    let message = &e["message"];
    let _ = write!(o, "explain {}", text(&e["domain"]));
    match text(&message["sender"]) {
        s if s.is_empty() => o.push_str(" (null sender)"),
        s => {
            let _ = write!(o, " (from {s})");
        }
    }
    if message["requiretls"] == true {
        o.push_str(" with REQUIRETLS");
    }
    let _ = writeln!(o, "\n  {source}\n");
    if let Some(banner) = crate::policy_cmd::alarm_banner(&e["site_alarm"]) {
        let _ = writeln!(o, "{banner}");
    }
    render_facts(&mut o, &e["facts"]);
    render_outcome(&mut o, &e["outcome"]);
    render_rule_terms(&mut o, e);
    let changes = crate::policy_cmd::change_lines(&e["policy_changes"]);
    if !changes.is_empty() {
        o.push_str("\nPolicy weakened (last 30 days):\n");
        o.push_str(&changes);
    }
    o
}

/// The exceptions in force, the shadow rules and the expired rules, apart from the plan.
fn render_rule_terms(o: &mut String, e: &Value) {
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let exceptions = list(&e["alternatives"]["exceptions"]);
    if !exceptions.is_empty() {
        o.push_str("\nExceptions in force (insecure_relax; each ends by itself):\n");
    }
    for x in &exceptions {
        let _ = writeln!(o, "  - {}", term_text(&x["term"], "until"));
        let _ = writeln!(o, "    without it: {}", alternative_text(&x["outcome"]));
    }
    let shadows = list(&e["alternatives"]["shadows"]);
    if !shadows.is_empty() {
        o.push_str("\nShadow rules (evaluated for every message, never enforced):\n");
    }
    for x in &shadows {
        let _ = writeln!(o, "  - {}", term_text(&x["term"], "until"));
        let _ = writeln!(o, "    if enforced: {}", alternative_text(&x["outcome"]));
    }
    let expired = list(&e["expired"]);
    if !expired.is_empty() {
        o.push_str("\nExpired rules (no longer applied):\n");
    }
    for x in &expired {
        let _ = writeln!(o, "  - {}", term_text(x, "expired at"));
    }
}

/// `name until T: reason`, escaped.
fn term_text(term: &Value, when: &str) -> String {
    let mut out = text(&term["rule"]);
    if let Some(secs) = term["expires"].as_u64() {
        let at = UNIX_EPOCH + Duration::from_secs(secs);
        let _ = write!(out, " {when} {}", humantime::format_rfc3339_seconds(at));
    }
    if let Some(reason) = term["reason"].as_str() {
        let _ = write!(out, ": {}", text(&Value::from(reason)));
    }
    out
}

/// One line for an alternative plan: its decision and, to deliver, each host's requirement.
fn alternative_text(outcome: &Value) -> String {
    match text(&outcome["kind"]).as_str() {
        "deliver" => {
            let hosts: Vec<String> = outcome["candidates"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| format!("{} {}", text(&c["host"]), text(&c["requirement"]["kind"])))
                .collect();
            format!(
                "deliver under policy `{}` ({})",
                text(&outcome["policy"]),
                hosts.join(", ")
            )
        }
        "defer" => format!("DEFER: {}", text(&outcome["reason"])),
        "bounce" => format!(
            "BOUNCE {}: {}",
            text(&outcome["status"]),
            text(&outcome["reason"])
        ),
        _ => text(outcome),
    }
}

fn render_facts(o: &mut String, facts: &Value) {
    if facts["kind"] == "route" {
        let _ = writeln!(
            o,
            "Route: a configured next hop, port {}",
            facts["port"].as_u64().unwrap_or(25)
        );
        render_host(o, &facts["host"]);
        o.push('\n');
        return;
    }
    match &facts["dnssec_health"] {
        h if h["kind"] == "working" => {
            let _ = writeln!(o, "DNSSEC: working (mode {})", text(&h["mode"]));
        }
        h => {
            let _ = writeln!(
                o,
                "DNSSEC: BROKEN (mode {}): {}\n  DANE cannot be established: hosts with TLSA records are deferred, rules with fail_closed defer",
                text(&h["mode"]),
                text(&h["reason"])
            );
        }
    }
    let _ = writeln!(
        o,
        "MX ({}): {}",
        text(&facts["mx_dnssec"]),
        mx_text(&facts["mx"])
    );
    let _ = writeln!(o, "MTA-STS: {}", sts_text(&facts["sts"]));
    let hosts = facts["hosts"].as_array().cloned().unwrap_or_default();
    if !hosts.is_empty() {
        o.push_str("Hosts:\n");
    }
    for host in &hosts {
        render_host(o, host);
    }
    o.push('\n');
}

fn mx_text(mx: &Value) -> String {
    match text(&mx["kind"]).as_str() {
        "hosts" => {
            let hosts = mx["value"].as_array().cloned().unwrap_or_default();
            hosts
                .iter()
                .map(|h| format!("{} {}", h["preference"], text(&h["name"])))
                .collect::<Vec<_>>()
                .join(", ")
        }
        "null" => "null MX: the domain accepts no mail (RFC 7505)".into(),
        "implicit" => format!("none; implicit MX {}", text(&mx["value"]["host"])),
        "no-such-domain" => "the domain does not exist".into(),
        "unavailable" => format!("lookup failed: {}", text(&mx["value"]["reason"])),
        "not-a-host-name" => format!(
            "not looked up: not a host name ({})",
            text(&mx["value"]["reason"])
        ),
        _ => text(mx),
    }
}

fn sts_text(sts: &Value) -> String {
    let record = &sts["record"];
    let mut out = match text(&record["kind"]).as_str() {
        "absent" => "no _mta-sts record".to_string(),
        "present" => format!("record id {}", text(&record["id"])),
        "invalid" => format!("invalid record ({}): no policy", text(&record["reason"])),
        "lookup-failed" => format!("record lookup failed: {}", text(&record["reason"])),
        _ => text(record),
    };
    if let Some(p) = sts["policy"].as_object() {
        let policy = &p["policy"];
        let mx: Vec<String> = policy["mx"]
            .as_array()
            .map(|m| m.iter().map(text).collect())
            .unwrap_or_default();
        let _ = write!(
            out,
            "; policy mode {} mx [{}] max_age {} ({}, expires {})",
            text(&policy["mode"]),
            mx.join(", "),
            policy["max_age"].as_u64().map_or_else(
                || text(&policy["max_age"]),
                |secs| HumanDuration(Duration::from_secs(secs)).to_string()
            ),
            if p["from_cache"] == true {
                "from the cache"
            } else {
                "fetched now"
            },
            p["expires_at"]
                .as_u64()
                .map(|s| {
                    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s))
                        .to_string()
                })
                .unwrap_or_default()
        );
    }
    if let Some(f) = sts["fetch_failure"].as_object() {
        let _ = write!(
            out,
            "; policy fetch FAILED ({}): {}",
            text(&f["result_type"]),
            text(&f["reason"])
        );
    }
    out
}

fn render_host(o: &mut String, h: &Value) {
    let addresses = match (&h["addresses"]["Ok"], &h["addresses"]["Err"]) {
        (Value::Array(a), _) => a.iter().map(text).collect::<Vec<_>>().join(" "),
        (_, Value::Object(err)) => format!(
            "no address ({}{})",
            err.get("reason").map(text).unwrap_or_default(),
            if err.get("transient") == Some(&Value::Bool(true)) {
                ", transient"
            } else {
                ""
            }
        ),
        _ => text(&h["addresses"]),
    };
    let canonical = match text(&h["canonical"]) {
        c if c.is_empty() => String::new(),
        c => format!(" (alias of {c})"),
    };
    let _ = writeln!(
        o,
        "  {}{canonical}: {addresses} [{}]",
        text(&h["name"]),
        text(&h["addresses_dnssec"])
    );
    let tlsa = &h["tlsa"];
    let line = match text(&tlsa["kind"]).as_str() {
        "records" => format!(
            "TLSA at _25._tcp.{}: {}",
            text(&tlsa["base_domain"]),
            tlsa_list(&tlsa["records"])
        ),
        "failed" => format!(
            "TLSA lookup FAILED ({}): {}",
            text(&tlsa["dnssec"]),
            text(&tlsa["reason"])
        ),
        "absent" => format!("no TLSA ({})", text(&tlsa["reason"])),
        "not-applicable" => format!("TLSA not looked up ({})", text(&tlsa["reason"])),
        _ => text(tlsa),
    };
    let _ = writeln!(o, "    {line}");
}

fn tlsa_list(records: &Value) -> String {
    records
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    format!(
                        "{} {} {} {}",
                        r["usage"],
                        r["selector"],
                        r["matching_type"],
                        text(&r["data"])
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

fn render_outcome(o: &mut String, outcome: &Value) {
    match text(&outcome["kind"]).as_str() {
        "deliver" => render_plan(o, outcome),
        "defer" => {
            let _ = writeln!(
                o,
                "Decision: DEFER (try again later): {}",
                text(&outcome["reason"])
            );
        }
        "bounce" => {
            let _ = writeln!(
                o,
                "Decision: BOUNCE {}: {}",
                text(&outcome["status"]),
                text(&outcome["reason"])
            );
        }
        _ => {
            let _ = writeln!(o, "Decision: {}", text(outcome));
        }
    }
    let why = outcome["why"].as_array().cloned().unwrap_or_default();
    if !why.is_empty() {
        o.push_str("\nWhy:\n");
        for step in &why {
            let _ = writeln!(o, "  - {}", text(step));
        }
    }
}

fn render_plan(o: &mut String, plan: &Value) {
    let _ = writeln!(
        o,
        "Decision: deliver under policy `{}`{}",
        text(&plan["policy"]),
        if plan["requiretls"] == true {
            ", REQUIRETLS (the next hop must advertise it and receives the parameter)"
        } else {
            ""
        }
    );
    if plan["insecure_plaintext_fallback"] == true {
        o.push_str("  insecure_plaintext_fallback: after a failed handshake, opportunistic hosts are retried in plaintext\n");
    }
    o.push_str("MX hosts that may be used, in order:\n");
    let candidates = plan["candidates"].as_array().cloned().unwrap_or_default();
    for (n, c) in candidates.iter().enumerate() {
        let _ = writeln!(
            o,
            "  {}. {} (preference {}): {}",
            n + 1,
            text(&c["host"]),
            c["preference"],
            requirement_text(&c["requirement"])
        );
        let mut extra = Vec::new();
        if let Some(pins) = c["pins"].as_array().filter(|p| !p.is_empty()) {
            extra.push(format!(
                "pins: the end-entity certificate, or a presented issuer it validates to (for the host name), must match one of {} pin(s)",
                pins.len()
            ));
        }
        if !c["min_tls_version"].is_null() {
            extra.push(format!(
                "TLS version at least {}",
                text(&c["min_tls_version"])
            ));
        }
        if !c["testing"].is_null() {
            extra.push(format!(
                "MTA-STS testing: {} is evaluated and reported, not enforced",
                requirement_text(&c["testing"])
            ));
        }
        let report = &c["report"];
        extra.push(format!(
            "reported to TLSRPT as {} for {}",
            text(&report["policy_type"]),
            text(&report["policy_domain"])
        ));
        for line in extra {
            let _ = writeln!(o, "     {line}");
        }
        let _ = writeln!(o, "     fails if: {}", failure_text(&c["requirement"]));
    }
    if candidates.is_empty() {
        o.push_str("  (none)\n");
    }
    o.push_str("When every host fails, the recipients are deferred and retried later.\n");
}

fn requirement_text(r: &Value) -> String {
    match text(&r["kind"]).as_str() {
        "opportunistic" => {
            "opportunistic: STARTTLS when offered, any certificate; plaintext otherwise".into()
        }
        "encrypted" => "encrypted: STARTTLS mandatory, any certificate".into(),
        "verified" => format!(
            "verified: STARTTLS mandatory, a web PKI certificate for {}",
            names(&r["names"])
        ),
        "dane" => {
            let mut s = format!(
                "dane: STARTTLS mandatory, the certificate must match TLSA {}",
                tlsa_list(&r["records"])
            );
            let dane_ta = r["records"]
                .as_array()
                .is_some_and(|rs| rs.iter().any(|rec| rec["usage"] == 2));
            if dane_ta && r["names"].as_array().is_some_and(|n| !n.is_empty()) {
                let _ = write!(s, " (usage 2 names: {})", names(&r["names"]));
            }
            s
        }
        _ => text(r),
    }
}

fn failure_text(r: &Value) -> &'static str {
    match text(&r["kind"]).as_str() {
        "opportunistic" => "the connection fails (plaintext is accepted)",
        "encrypted" => "STARTTLS is not offered or the TLS handshake fails",
        "verified" => {
            "STARTTLS is not offered, the handshake fails, or the certificate is expired, untrusted or for another name"
        }
        "dane" => {
            "STARTTLS is not offered, the handshake fails, or the certificate matches none of the TLSA records"
        }
        _ => "the requirement is not met",
    }
}

fn names(v: &Value) -> String {
    v.as_array()
        .map(|n| n.iter().map(text).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defer_and_bounce_exit_with_sysexits_codes_and_delivery_with_zero() {
        let with = |kind: &str| exit_code_for(&json!({"outcome": {"kind": kind}}));
        assert_eq!(with("defer"), ExitCode::from(75));
        assert_eq!(with("bounce"), ExitCode::from(69));
        assert_eq!(with("deliver"), ExitCode::SUCCESS);
    }

    #[test]
    fn a_dane_plan_renders_its_hosts_requirements_and_failures() {
        let e = json!({
            "domain": "dane-ok.test",
            "message": {"sender": "a@b.test", "requiretls": false},
            "facts": {"kind": "mx", "domain": "dane-ok.test",
                "mx": {"kind": "hosts", "value": [{"name": "mx.dane-ok.test", "preference": 10}]},
                "mx_dnssec": "secure",
                "hosts": [{"name": "mx.dane-ok.test", "canonical": null,
                    "addresses": {"Ok": ["127.77.1.30"]}, "addresses_dnssec": "secure",
                    "tlsa": {"kind": "records", "base_domain": "mx.dane-ok.test",
                        "records": [{"usage": 3, "selector": 1, "matching_type": 1, "data": "ab12"}]}}],
                "sts": {"record": {"kind": "absent"}, "policy": null, "fetch_failure": null},
                "dnssec_health": {"kind": "working", "mode": "validate"}},
            "outcome": {"kind": "deliver", "domain": "dane-ok.test", "policy": "dane",
                "requiretls": false, "insecure_plaintext_fallback": false,
                "candidates": [{"host": "mx.dane-ok.test", "preference": 10,
                    "requirement": {"kind": "dane", "records": [{"usage": 3, "selector": 1, "matching_type": 1, "data": "ab12"}], "names": []},
                    "pins": [], "min_tls_version": null, "testing": null,
                    "report": {"policy_type": "tlsa", "policy_domain": "dane-ok.test"}}],
                "why": ["mx.dane-ok.test: usable TLSA records (RFC 7672)"]}
        });
        let shown = render(&e, "answered by a test");
        for expected in [
            "explain dane-ok.test (from a@b.test)",
            "DNSSEC: working (mode validate)",
            "MX (secure): 10 mx.dane-ok.test",
            "TLSA at _25._tcp.mx.dane-ok.test: 3 1 1 ab12",
            "Decision: deliver under policy `dane`",
            "1. mx.dane-ok.test (preference 10): dane: STARTTLS mandatory",
            "fails if: STARTTLS is not offered",
            "  - mx.dane-ok.test: usable TLSA records (RFC 7672)",
        ] {
            assert!(
                shown.contains(expected),
                "missing {expected:?} in:\n{shown}"
            );
        }
    }

    #[test]
    fn names_and_reasons_from_dns_are_printed_escaped() {
        let e = json!({
            "domain": "x.test", "message": {"sender": "", "requiretls": false},
            "facts": {"kind": "mx",
                "mx": {"kind": "hosts", "value": [{"name": "mx\u{1b}]0;pwned\u{7}.x.test", "preference": 10}]},
                "mx_dnssec": "insecure", "hosts": [],
                "sts": {"record": {"kind": "invalid", "reason": "bad\r\nDecision: deliver"}},
                "dnssec_health": {"kind": "working", "mode": "validate"}},
            "outcome": {"kind": "defer", "reason": "x\u{9b}31m"}
        });
        let shown = render(&e, "");
        assert!(
            !shown.contains(['\u{1b}', '\u{7}', '\r', '\u{9b}']),
            "{shown:?}"
        );
        assert!(
            shown.contains("10 mx\\u{1b}]0;pwned\\u{7}.x.test"),
            "{shown}"
        );
        assert_eq!(
            shown.lines().filter(|l| l.starts_with("Decision:")).count(),
            1,
            "{shown}"
        );
    }

    #[test]
    fn an_mta_sts_max_age_is_shown_like_a_configured_duration() {
        let sts = json!({"record": {"kind": "present", "id": "1"},
            "policy": {"policy": {"mode": "enforce", "mx": ["mx.x.test"], "max_age": 86400},
                "from_cache": true, "expires_at": 0}});
        let shown = sts_text(&sts);
        assert!(shown.contains("max_age 1day (from the cache"), "{shown}");
    }

    #[test]
    fn a_deferral_shows_its_why_trail() {
        let e = json!({
            "domain": "x.test", "message": {"sender": "", "requiretls": false},
            "facts": {"kind": "mx", "mx": {"kind": "unavailable",
                    "value": {"reason": "MX lookup for x.test timed out after 10s"}},
                "mx_dnssec": "indeterminate", "hosts": [],
                "sts": {"record": {"kind": "absent"}},
                "dnssec_health": {"kind": "working", "mode": "validate"}},
            "outcome": {"kind": "defer", "reason": "MX lookup for x.test timed out after 10s",
                "why": ["MX lookup failed: MX lookup for x.test timed out after 10s; a temporary failure, so the mail is queued and retried later (RFC 5321 §5.1)",
                    "matching rule(s): bank"]}
        });
        let shown = render(&e, "");
        assert!(
            shown.contains("Why:\n  - MX lookup failed: MX lookup for x.test timed out after 10s; a temporary failure"),
            "{shown}"
        );
        assert!(shown.contains("  - matching rule(s): bank"), "{shown}");
    }

    // Issue 11: `explain` names each exception with its end and what its absence would do,
    // shows shadow rules apart from the enforced plan, and lists the rules that expired.
    #[test]
    fn exceptions_shadow_rules_and_expired_rules_are_shown_apart_from_the_plan() {
        let e = json!({
            "domain": "partner.test", "message": {"sender": "", "requiretls": false},
            "facts": {"kind": "mx", "mx": {"kind": "hosts", "value": []}, "mx_dnssec": "secure",
                "hosts": [], "sts": {"record": {"kind": "absent"}},
                "dnssec_health": {"kind": "working", "mode": "validate"}},
            "outcome": {"kind": "deliver", "policy": "rule-relaxed", "candidates": [], "why": []},
            "alternatives": {
                "exceptions": [{"term": {"rule": "partner-relax", "expires": 1801353600, "reason": "ticket 4711"},
                    "outcome": {"kind": "deliver", "policy": "sts-enforce",
                        "candidates": [{"host": "mx.partner.test", "requirement": {"kind": "verified"}}]}}],
                "shadows": [{"term": {"rule": "dane-trial", "expires": null, "reason": null},
                    "outcome": {"kind": "defer", "reason": "no host of partner.test may be used now"}}]},
            "expired": [{"rule": "old-relax", "expires": 1700000000, "reason": "fixed"}]
        });
        let shown = render(&e, "");
        for expected in [
            "Exceptions in force (insecure_relax; each ends by itself):\n  - partner-relax until 2027-01-31T00:00:00Z: ticket 4711\n    without it: deliver under policy `sts-enforce` (mx.partner.test verified)",
            "Shadow rules (evaluated for every message, never enforced):\n  - dane-trial\n    if enforced: DEFER: no host of partner.test may be used now",
            "Expired rules (no longer applied):\n  - old-relax expired at 2023-11-14T22:13:20Z: fixed",
        ] {
            assert!(
                shown.contains(expected),
                "missing {expected:?} in:\n{shown}"
            );
        }
        let plain = json!({"domain": "x.test", "message": {}, "facts": {"kind": "mx"},
            "outcome": {"kind": "deliver"}, "alternatives": {"exceptions": [], "shadows": []}, "expired": []});
        assert!(!render(&plain, "").contains("Shadow rules"));
    }

    #[test]
    fn a_deferral_and_broken_dnssec_are_said_plainly() {
        let e = json!({
            "domain": "x.test", "message": {"sender": "", "requiretls": true},
            "facts": {"kind": "mx", "mx": {"kind": "unavailable", "value": {"reason": "timeout"}},
                "mx_dnssec": "indeterminate", "hosts": [],
                "sts": {"record": {"kind": "lookup-failed", "reason": "timeout"}},
                "dnssec_health": {"kind": "broken", "mode": "validate", "reason": "no answer"}},
            "outcome": {"kind": "defer", "reason": "mx lookup failed"}
        });
        let shown = render(&e, "");
        assert!(shown.contains("(null sender) with REQUIRETLS"), "{shown}");
        assert!(
            shown.contains("DNSSEC: BROKEN (mode validate): no answer"),
            "{shown}"
        );
        assert!(
            shown.contains("Decision: DEFER (try again later): mx lookup failed"),
            "{shown}"
        );
    }
}

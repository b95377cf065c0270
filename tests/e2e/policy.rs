//! The policy engine through the real binary in the lab: `explain` against a running server and
//! in-process, `reload` (valid and invalid files) and SIGHUP, deliveries under MTA-STS enforce
//! and DANE with the attempt's `auth` (and their sessions counted for TLSRPT), and a rule that
//! tightens. Needs the lab (`tests/lab/up`).
//!
//! strictmx validates DNSSEC itself here (`dnssec = "validate"` with the lab's root anchor,
//! against the lab's non-validating resolver), so the binary's own validation is what is tested.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use strictmx_test_support::lab::{Lab, unique_rcpt, wait_for};
use strictmx_test_support::relay::{Relay, TestDir};

use crate::{bin, submit};

const WAIT: Duration = Duration::from_secs(45);

/// DNS and CA settings that put the relay in the lab, then `rules`.
fn lab_config(lab: &Lab, rules: &str) -> String {
    format!(
        "[dns]\nnameservers = [\"{}\"]\ntimeout = \"3s\"\ndnssec = \"validate\"\ntrust_anchor = \"{}\"\n\n\
         [delivery]\nextra_ca_file = \"{}\"\n# The lab's MX hosts are on loopback.\nnever_deliver_to = []\n\n{rules}",
        lab.nonvalidating_resolver(),
        lab.trust_anchor().display(),
        lab.ca_bundle().display()
    )
}

const MULTI_DANE_ONLY: &str =
    "[[rule]]\nname = \"multi-dane-only\"\ndomains = [\"multi.test\"]\nrequire = \"dane-only\"\n";

async fn relay_in_lab(lab: &Lab, dir: &TestDir, rules: &str) -> Relay {
    let relay = Relay::start(bin(), dir.path(), &lab_config(lab, rules))
        .await
        .unwrap();
    relay
        .wait_log(WAIT, |v| v["message"] == "DNSSEC self-test passed")
        .await
        .expect("the DNSSEC self-test passes with the lab's anchor");
    relay
}

/// `explain --json`'s answer. Its exit code says the outcome: 0 deliver, 75 (EX_TEMPFAIL)
/// defer, 69 (EX_UNAVAILABLE) bounce; the JSON's `outcome.kind` must say the same.
fn stdout_json(out: &Output) -> Value {
    let value: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let expected = match value["outcome"]["kind"].as_str() {
        Some("defer") => Some(75),
        Some("bounce") => Some(69),
        _ => Some(0),
    };
    assert_eq!(
        out.status.code(),
        expected,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    value
}

fn explain(relay: &Relay, domain: &str) -> Value {
    stdout_json(&relay.cli(&["explain", domain, "--json"]).unwrap())
}

/// Replaces the relay's rules in its configuration file: `old` becomes `new`.
fn rewrite_rules(relay: &Relay, old: &str, new: &str) {
    let text = std::fs::read_to_string(&relay.config_path).unwrap();
    let rewritten = if old.is_empty() {
        format!("{text}\n{new}")
    } else {
        assert!(text.contains(old), "{text}");
        text.replace(old, new)
    };
    std::fs::write(&relay.config_path, rewritten).unwrap();
}

async fn attempt(relay: &Relay, domain: &str, outcome: &str) -> Value {
    relay
        .wait_log(WAIT, |v| {
            v["message"] == "delivery attempt" && v["domain"] == domain && v["outcome"] == outcome
        })
        .await
        .unwrap_or_else(|e| panic!("{domain} {outcome}: {e}"))
}

#[tokio::test]
async fn explain_asks_the_running_server_and_shows_dane_for_a_dane_domain() {
    let lab = Lab::get().unwrap();
    let dir = TestDir::new("explain-dane").unwrap();
    let relay = relay_in_lab(&lab, &dir, "").await;

    let out = relay.cli(&["explain", "dane-ok.test", "--json"]).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("answered by the running server"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e = stdout_json(&out);
    assert_eq!(e["domain"], "dane-ok.test");
    assert_eq!(e["facts"]["dnssec_health"]["kind"], "working", "{e:#}");
    assert_eq!(e["facts"]["mx_dnssec"], "secure", "{e:#}");
    assert_eq!(e["facts"]["mx"]["value"][0]["name"], "mx.dane-ok.test");
    assert_eq!(e["facts"]["hosts"][0]["tlsa"]["kind"], "records", "{e:#}");
    let outcome = &e["outcome"];
    assert_eq!(outcome["kind"], "deliver", "{e:#}");
    assert_eq!(outcome["policy"], "dane");
    let host = &outcome["candidates"][0];
    assert_eq!(host["host"], "mx.dane-ok.test");
    assert_eq!(host["requirement"]["kind"], "dane");
    assert_eq!(host["requirement"]["records"][0]["usage"], 3);
    assert_eq!(host["report"]["policy_type"], "tlsa");

    let human = relay.cli(&["explain", "dane-ok.test"]).unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("Decision: deliver under policy `dane`"),
        "{text}"
    );
    assert!(text.contains("DNSSEC: working (mode validate)"), "{text}");
}

#[tokio::test]
async fn explain_without_a_server_plans_in_process_for_an_mta_sts_domain() {
    let lab = Lab::get().unwrap();
    let dir = TestDir::new("explain-sts").unwrap();
    let config = dir.path().join("strictmx.toml");
    let text = format!(
        "[server]\nhostname = \"relay.test\"\ndata_dir = \"{d}/data\"\n[control]\nsocket = \"{d}/control.sock\"\n\n{}",
        lab_config(&lab, ""),
        d = dir.path().display()
    );
    std::fs::write(&config, text).unwrap();
    let out = Command::new(bin())
        .args([
            "explain",
            "sts-enforce.test",
            "--from",
            "app@src.test",
            "--json",
        ])
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(stderr.contains("computed in-process"), "{stderr}");
    assert!(stderr.contains("no MTA-STS cache"), "{stderr}");
    let e = stdout_json(&out);
    assert_eq!(e["message"]["sender"], "app@src.test");
    assert_eq!(
        e["facts"]["sts"]["policy"]["policy"]["mode"], "enforce",
        "{e:#}"
    );
    let outcome = &e["outcome"];
    assert_eq!(outcome["policy"], "sts-enforce", "{e:#}");
    let host = &outcome["candidates"][0];
    assert_eq!(host["host"], "mx.sts-enforce.test");
    assert_eq!(host["requirement"]["kind"], "verified");
    assert_eq!(host["requirement"]["names"][0], "mx.sts-enforce.test");
    assert_eq!(host["report"]["policy_type"], "sts");
}

#[tokio::test]
async fn reload_applies_a_valid_file_and_refuses_an_invalid_one_keeping_the_running_rules() {
    let lab = Lab::get().unwrap();
    let dir = TestDir::new("reload").unwrap();
    let relay = relay_in_lab(&lab, &dir, "").await;
    assert_eq!(explain(&relay, "multi.test")["outcome"]["kind"], "deliver");

    rewrite_rules(&relay, "", MULTI_DANE_ONLY);
    let out = relay.cli(&["reload"]).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("rule `multi-dane-only` added"), "{stdout}");
    let e = explain(&relay, "multi.test");
    assert_eq!(e["outcome"]["kind"], "defer", "{e:#}");

    rewrite_rules(
        &relay,
        "require = \"dane-only\"",
        "require = \"dane-please\"",
    );
    let out = relay.cli(&["reload"]).unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = std::fs::read_to_string(&relay.config_path)
        .unwrap()
        .lines()
        .position(|l| l.contains("dane-please"))
        .unwrap()
        + 1;
    let located = format!("strictmx.toml:{line}:11: key `rule[0].require`");
    assert!(stderr.contains(&located), "{located} not in {stderr}");
    assert!(stderr.contains("reload refused"), "{stderr}");
    relay
        .wait_log(WAIT, |v| {
            v["message"] == "configuration reload refused; the running configuration stays"
        })
        .await
        .unwrap();
    // The file must validate for `explain` to read it: take the rule out without reloading.
    // The server still answers with the rule it runs.
    let invalid = MULTI_DANE_ONLY.replace("\"dane-only\"", "\"dane-please\"");
    rewrite_rules(&relay, &invalid, "");
    let e = explain(&relay, "multi.test");
    assert_eq!(
        e["outcome"]["kind"], "defer",
        "the running rule stays: {e:#}"
    );
}

#[tokio::test]
async fn sighup_reloads_the_rules_without_a_restart() {
    let lab = Lab::get().unwrap();
    let dir = TestDir::new("sighup").unwrap();
    let relay = relay_in_lab(&lab, &dir, "").await;
    assert_eq!(explain(&relay, "multi.test")["outcome"]["kind"], "deliver");

    rewrite_rules(&relay, "", MULTI_DANE_ONLY);
    let pid = relay.pid().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let logged = relay
        .wait_log(WAIT, |v| {
            v["message"] == "configuration reloaded: policy changed"
        })
        .await
        .unwrap();
    assert_eq!(logged["change"], "rule `multi-dane-only` added");
    assert_eq!(explain(&relay, "multi.test")["outcome"]["kind"], "defer");
    assert_eq!(
        relay.pid().map(|p| p.to_string()),
        Some(pid),
        "same process"
    );
}

const TLSRPT: &str = "[tlsrpt]\nenabled = true\norganization_name = \"Test Org\"\n\
    contact_info = \"mailto:pm@relay.test\"\nmail_from = \"tlsrpt@relay.test\"\n";

#[tokio::test]
async fn mail_under_mta_sts_enforce_and_under_dane_records_how_the_peer_was_authenticated() {
    let lab = Lab::get().unwrap();
    let dir = TestDir::new("policy-deliveries").unwrap();
    let relay = relay_in_lab(&lab, &dir, TLSRPT).await;
    let sts_rcpt = unique_rcpt("sts-enforce.test");
    let dane_rcpt = unique_rcpt("dane-ok.test");
    submit(&relay, &sts_rcpt).await;
    submit(&relay, &dane_rcpt).await;

    for (host, rcpt) in [
        ("mx.sts-enforce.test", &sts_rcpt),
        ("mx.dane-ok.test", &dane_rcpt),
    ] {
        let got = wait_for(WAIT, || Ok(lab.received_for(host, rcpt)?.pop()))
            .await
            .unwrap();
        assert!(got.tls, "{host}: delivered over TLS");
    }
    let sts = attempt(&relay, "sts-enforce.test", "delivered").await;
    assert_eq!(sts["auth"], "sts", "{sts}");
    assert_eq!(sts["policy"], "sts-enforce", "{sts}");
    assert_eq!(sts["requirement"], "verified", "{sts}");
    let dane = attempt(&relay, "dane-ok.test", "delivered").await;
    assert_eq!(dane["auth"], "dane", "{dane}");
    assert_eq!(dane["policy"], "dane", "{dane}");
    assert_eq!(dane["requirement"], "dane", "{dane}");

    // Both sessions were counted for today's TLSRPT reports. The counts are committed with
    // the outcome, a moment after the attempt record is logged: look until they are there.
    let today = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let expected = [
        "# sts-enforce.test",
        "# dane-ok.test",
        "\"total-successful-session-count\": 1",
    ];
    let mut last = String::new();
    let counted = wait_for(WAIT, || {
        let out = relay.cli(&["tlsrpt", "preview", "--date", &today[..10]])?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let done = expected.iter().all(|e| text.contains(e));
        last = text;
        Ok(done.then_some(()))
    })
    .await;
    assert!(counted.is_ok(), "{expected:?} not all in {last}");
}

#[tokio::test]
async fn a_rule_demanding_dane_for_a_domain_without_it_defers_and_the_attempt_says_why() {
    let lab = Lab::get().unwrap();
    let dir = TestDir::new("policy-tighten").unwrap();
    let relay = relay_in_lab(&lab, &dir, MULTI_DANE_ONLY).await;
    let rcpt = unique_rcpt("multi.test");
    submit(&relay, &rcpt).await;

    let deferred = attempt(&relay, "multi.test", "deferred").await;
    let reply = deferred["reply"].as_str().unwrap_or_default();
    assert!(reply.contains("a rule requires DANE"), "{deferred}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    for host in ["mx1.multi.test", "mx2.multi.test", "backup.multi.test"] {
        assert!(
            lab.received_for(host, &rcpt).unwrap().is_empty(),
            "nothing reaches {host} without DANE"
        );
    }
    let id = relay
        .logs()
        .iter()
        .find(|v| v["message"] == "delivery attempt" && v["domain"] == "multi.test")
        .and_then(|v| v["msg_id"].as_str().map(str::to_string))
        .unwrap();
    let shown = relay.cli(&["queue", "show", &id]).unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("deferred"), "{text}");
    assert!(text.contains("a rule requires DANE"), "{text}");
}

// Issue 15: in the default `validate` mode, an MX name that is a signed CNAME into another
// signed zone (RFC 4035 §5: each link validated in its own zone) gets mail over DANE; before,
// the missing AAAA at the target read as bogus and the host deferred.
#[tokio::test]
async fn a_cnamed_mx_in_another_signed_zone_gets_mail_over_dane_in_validate_mode() {
    let lab = Lab::get().unwrap();
    let dir = TestDir::new("policy-dane-cname").unwrap();
    let relay = relay_in_lab(&lab, &dir, "").await;
    let rcpt = unique_rcpt("dane-cname.test");
    submit(&relay, &rcpt).await;
    let got = wait_for(WAIT, || {
        Ok(lab.received_for("mx.hosting.test", &rcpt)?.pop())
    })
    .await
    .unwrap();
    assert!(got.tls);
    let dane = attempt(&relay, "dane-cname.test", "delivered").await;
    assert_eq!(dane["auth"], "dane", "{dane}");
    assert_eq!(dane["requirement"], "dane", "{dane}");
    assert_eq!(dane["mx"], "mx.dane-cname.test", "{dane}");
}

const DANE_TRIAL: &str =
    "[[rule]]\nname = \"dane-trial\"\nrequire = \"dane-only\"\nmode = \"shadow\"\n";

// Issue 11, "Shadow rules": a shadow rule changes nothing; `strictmx shadow report` (through
// the control socket, after the messages left the queue) and the metrics say whom it would have
// stopped and why; `reload` with `mode = "enforce"` promotes it.
#[tokio::test]
async fn a_shadow_rule_is_reported_by_the_running_server_and_promoted_by_reload() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let lab = Lab::get().unwrap();
    let dir = TestDir::new("policy-shadow").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let rules = format!("[metrics]\nlisten = \"{port}\"\n\n{DANE_TRIAL}");
    let relay = relay_in_lab(&lab, &dir, &rules).await;
    for (domain, host) in [
        ("plain.test", "mx.plain.test"),
        ("dane-ok.test", "mx.dane-ok.test"),
    ] {
        let rcpt = unique_rcpt(domain);
        submit(&relay, &rcpt).await;
        wait_for(WAIT, || Ok(lab.received_for(host, &rcpt)?.pop()))
            .await
            .unwrap_or_else(|e| panic!("{domain}: the shadow rule changes nothing: {e}"));
        let delivered = attempt(&relay, domain, "delivered").await;
        let shadow = delivered["shadow"].as_str().unwrap_or_default();
        let expected = if domain == "plain.test" {
            "dane-trial:would-defer"
        } else {
            "dane-trial:pass"
        };
        assert_eq!(shadow, expected, "{delivered}");
    }

    // The attempt is logged while its job runs and counted when the job's outcome is
    // recorded: wait until both messages are in the report.
    let report = wait_for(WAIT, || {
        let out = relay.cli(&["shadow", "report", "--json"])?;
        anyhow::ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout)?;
        Ok((report["rules"][0]["messages"].as_u64() == Some(2)).then_some(report))
    })
    .await
    .unwrap();
    let dane = &report["rules"][0];
    assert_eq!(dane["rule"], "dane-trial", "{report:#}");
    assert_eq!(
        (dane["messages"].as_u64(), dane["stopped"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(dane["domains"][0]["domain"], "plain.test", "{report:#}");
    let text = String::from_utf8_lossy(
        &relay
            .cli(&["shadow", "report", "--rule", "dane-trial", "--since", "1d"])
            .unwrap()
            .stdout,
    )
    .into_owned();
    for expected in [
        "rule dane-trial: would have stopped 1 of 2 message(s), to 1 of 2 domain(s)",
        "  plain.test: 1 of 1 message(s)",
        "a rule requires DANE but the host has no usable TLSA records",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }

    let mut scrape = String::new();
    let mut s = tokio::net::TcpStream::connect(port).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    s.read_to_string(&mut scrape).await.unwrap();
    for line in [
        "strictmx_shadow_total{rule=\"dane-trial\",outcome=\"would-defer\"} 1",
        "strictmx_shadow_total{rule=\"dane-trial\",outcome=\"pass\"} 1",
    ] {
        assert!(scrape.contains(line), "{line} in {scrape}");
    }

    // `explain` shows the shadow rule apart from the plan it does not change.
    let e = explain(&relay, "plain.test");
    assert_eq!(e["outcome"]["policy"], "default-opportunistic", "{e:#}");
    let shadow = &e["alternatives"]["shadows"][0];
    assert_eq!(shadow["term"]["rule"], "dane-trial", "{e:#}");
    assert_eq!(shadow["outcome"]["kind"], "defer", "{e:#}");

    rewrite_rules(&relay, "mode = \"shadow\"", "mode = \"enforce\"");
    let out = relay.cli(&["reload"]).unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("rule `dane-trial` promoted: shadow -> enforce"),
        "{said}"
    );
    let rcpt = unique_rcpt("plain.test");
    submit(&relay, &rcpt).await;
    let deferred = attempt(&relay, "plain.test", "deferred").await;
    let reply = deferred["reply"].as_str().unwrap_or_default();
    assert!(reply.contains("a rule requires DANE"), "{deferred}");
    assert!(lab.received_for("mx.plain.test", &rcpt).unwrap().is_empty());
}

// Issue 11, "Exceptions that expire": the exception lets the broken certificate through and the
// attempt says so; at its expiry it stops by itself, with one warning, and mail defers again.
#[tokio::test]
async fn an_exception_stops_at_its_expiry_without_a_reload_and_warns_once() {
    let lab = Lab::get().unwrap();
    let dir = TestDir::new("policy-expiry").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expires = now + 8;
    let at =
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(expires));
    let rules = format!(
        "[[rule]]\nname = \"partner-relax\"\ndomains = [\"sts-enforce-badcert.test\"]\n\
         insecure_relax = \"encrypted\"\nexpires = \"{at}\"\nreason = \"ticket 4711\"\n"
    );
    let relay = relay_in_lab(&lab, &dir, &rules).await;
    let first = unique_rcpt("sts-enforce-badcert.test");
    submit(&relay, &first).await;
    let delivered = attempt(&relay, "sts-enforce-badcert.test", "delivered").await;
    let exceptions = delivered["exceptions"].as_str().unwrap_or_default();
    assert_eq!(
        exceptions,
        format!("partner-relax (until {at})!"),
        "{delivered}"
    );
    assert_eq!(
        lab.received_for("mx.sts-enforce-badcert.test", &first)
            .unwrap()
            .len(),
        1
    );

    let wait = (expires + 1).saturating_sub(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    );
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let deferred_after_expiry = |v: &Value| {
        v["message"] == "delivery attempt"
            && v["outcome"] == "deferred"
            && v["domain"] == "sts-enforce-badcert.test"
            && v["result_type"] == "certificate-host-mismatch"
            && v["exceptions"] == "-"
    };
    for n in 1..=2 {
        let rcpt = unique_rcpt("sts-enforce-badcert.test");
        submit(&relay, &rcpt).await;
        // This message's own deferral: one more such line than before.
        wait_for(WAIT, || {
            let seen = relay
                .logs()
                .iter()
                .filter(|v| deferred_after_expiry(v))
                .count();
            Ok((seen >= n).then_some(()))
        })
        .await
        .unwrap();
        assert!(
            lab.received_for("mx.sts-enforce-badcert.test", &rcpt)
                .unwrap()
                .is_empty()
        );
    }
    let warned = relay
        .logs()
        .iter()
        .filter(|v| v["message"] == "rule expired: it no longer applies")
        .inspect(|v| assert_eq!(v["rule"], "partner-relax", "{v}"))
        .count();
    assert_eq!(warned, 1, "one warning, however many deliveries");
}

// Issue 10: an SMTP user's `require_tls` is a floor on every message it submits: mail to a
// destination whose certificate does not verify defers instead of going out, and `explain
// --require-tls` shows the same plan.
#[tokio::test]
async fn an_smtp_users_tls_floor_keeps_its_mail_from_an_unverified_receiver() {
    use base64::Engine as _;
    use std::io::Write as _;
    let lab = Lab::get().unwrap();
    let dir = TestDir::new("user-floor").unwrap();
    let mut hasher = std::process::Command::new(bin())
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    hasher
        .stdin
        .take()
        .unwrap()
        .write_all(b"reset password\n")
        .unwrap();
    let hash = String::from_utf8(hasher.wait_with_output().unwrap().stdout).unwrap();
    let user = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\nrole = \"relay\"\ninsecure_allow_plaintext_auth = true\n\n\
         [[auth.user]]\nname = \"resets\"\npassword_hash = \"{}\"\nsenders = [\"@app.test\"]\nrequire_tls = \"verified\"\n",
        hash.trim()
    );
    let relay = relay_in_lab(&lab, &dir, &user).await;
    let mut c = strictmx_test_support::smtp::Client::connect(relay.smtp)
        .await
        .unwrap();
    assert_eq!(c.command("EHLO client.test").await.unwrap().code, 250);
    let login = base64::engine::general_purpose::STANDARD.encode(b"\0resets\0reset password");
    assert_eq!(
        c.command(&format!("AUTH PLAIN {login}"))
            .await
            .unwrap()
            .code,
        235
    );
    let rcpt = unique_rcpt("selfsigned.test");
    let body = format!("From: reset@app.test\r\nTo: {rcpt}\r\nSubject: reset\r\n\r\nlink\r\n");
    let reply = c
        .transaction("reset@app.test", &[&rcpt], body.as_bytes())
        .await
        .unwrap();
    assert_eq!(reply.code, 250);
    let attempt = relay
        .wait_log(WAIT, |v| {
            v["message"] == "delivery attempt" && v["domain"] == "selfsigned.test"
        })
        .await
        .unwrap();
    assert_eq!(attempt["outcome"], "deferred", "{attempt}");
    assert_eq!(attempt["requirement"], "verified", "{attempt}");
    assert_eq!(attempt["policy"], "message-floor", "{attempt}");
    assert!(
        lab.received_for("mx.selfsigned.test", &rcpt)
            .unwrap()
            .is_empty()
    );

    let plan = stdout_json(
        &relay
            .cli(&[
                "explain",
                "selfsigned.test",
                "--require-tls",
                "verified",
                "--json",
            ])
            .unwrap(),
    );
    assert_eq!(plan["outcome"]["policy"], "message-floor", "{plan}");
    let without = explain(&relay, "selfsigned.test");
    assert_ne!(without["outcome"]["policy"], "message-floor");
}

/// The lab destination whose DNS and MTA-STS policy change (`tests/lab/switch`).
const CHANGING: &str = "sts-drop.changing.test";

const PIN: &str = "[[rule]]\nname = \"sts-drop-pin\"\ndomains = [\"sts-drop.changing.test\"]\npin_last_good = \"30d\"\n";

// Issue 11: a destination drops MTA-STS between two deliveries (a new policy id whose policy
// says `mode: none`, RFC 8461 §8.3, and an MX host with a self-signed certificate). Without a
// pin the second message follows the weaker policy, and the weakening is warned of and listed;
// with `pin_last_good` it fails closed on what the destination offered before (`verified`).
#[tokio::test]
async fn a_destination_that_drops_mta_sts_is_noticed_and_a_pin_keeps_it_verified() {
    let lab = Lab::get().unwrap();
    for pinned in [false, true] {
        lab.switch("changing.test", "default").await.unwrap();
        let dir = TestDir::new(if pinned { "policy-pin" } else { "policy-drop" }).unwrap();
        let relay = relay_in_lab(&lab, &dir, if pinned { PIN } else { "" }).await;
        let before = unique_rcpt(CHANGING);
        submit(&relay, &before).await;
        let first = attempt(&relay, CHANGING, "delivered").await;
        assert_eq!(first["auth"], "sts", "{first}");
        assert_eq!(
            lab.received_for("mx.sts-drop.changing.test", &before)
                .unwrap()
                .len(),
            1
        );

        lab.switch("changing.test", "weakened").await.unwrap();
        let after = unique_rcpt(CHANGING);
        submit(&relay, &after).await;
        let weakened = relay
            .wait_log(WAIT, |v| {
                v["message"] == "destination policy weakened" && v["domain"] == CHANGING
            })
            .await
            .unwrap();
        assert_eq!(weakened["kind"], "sts-mode", "{weakened}");
        let out = relay.cli(&["policy", "changes", "--json"]).unwrap();
        let changes: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(changes["changes"][0]["domain"], CHANGING, "{changes}");
        assert_eq!(
            changes["changes"][0]["weakenings"][0]["kind"], "sts-mode",
            "{changes}"
        );
        if !pinned {
            let delivered = wait_for(WAIT, || {
                Ok(lab.received_for("mx.selfsigned.test", &after)?.pop())
            })
            .await
            .unwrap();
            assert!(delivered.tls, "opportunistic TLS to the new host");
            continue;
        }
        let deferred = relay
            .wait_log(WAIT, |v| {
                v["message"] == "delivery attempt"
                    && v["domain"] == CHANGING
                    && v["outcome"] == "deferred"
            })
            .await
            .unwrap();
        assert_eq!(
            deferred["result_type"], "certificate-not-trusted",
            "{deferred}"
        );
        assert_eq!(deferred["requirement"], "verified", "{deferred}");
        assert!(
            lab.received_for("mx.selfsigned.test", &after)
                .unwrap()
                .is_empty(),
            "the pin keeps the mail from the unverified host"
        );
        let why = explain(&relay, CHANGING)["outcome"]["why"].to_string();
        assert!(
            why.contains("sts-drop-pin pins the last good policy: verified is required")
                && why.contains("MTA-STS mode went from enforce to none"),
            "{why}"
        );
    }
    lab.switch("changing.test", "default").await.unwrap();
}

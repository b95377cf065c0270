//! `[tlsrpt]` → `strictmx_tlsrpt::TlsrptSettings`: who we are in reports, where report mail
//! comes from, how sending is paced, and how far a recipient domain's record can make us reach
//! (report addresses per domain, the CA and the networks `https:` reports may use).
//!
//! What is counted and how reports are built and sent is `strictmx-tlsrpt`'s; this checks the
//! values and that reporting, once enabled, has the identity RFC 8460 §4.4 requires.

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use strictmx_tlsrpt::TlsrptSettings;

use crate::error::Source;
use crate::raw::RawTlsrpt;
use crate::validate::{checked_file, dur, opt};
use crate::values;

pub(crate) fn build(
    raw: Option<&RawTlsrpt>,
    hostname: &str,
    src: &mut Source<'_>,
    base: Option<&Path>,
) -> TlsrptSettings {
    let mut s = TlsrptSettings {
        submitter: hostname.to_string(),
        ..TlsrptSettings::default()
    };
    let Some(raw) = raw else { return s };
    let k = |key: &str| format!("tlsrpt.{key}");
    s.enabled = raw.enabled.as_ref().is_some_and(|e| *e.get_ref());
    s.organization_name = opt(
        src,
        &k("organization_name"),
        &raw.organization_name,
        String::new(),
        |t| non_empty(t),
    );
    s.contact_info = opt(
        src,
        &k("contact_info"),
        &raw.contact_info,
        String::new(),
        |t| non_empty(t),
    );
    s.submitter = opt(
        src,
        &k("submitter"),
        &raw.submitter,
        s.submitter.clone(),
        |d| values::domain(d),
    );
    s.mail_from = opt(src, &k("mail_from"), &raw.mail_from, String::new(), |a| {
        address(a)
    });
    for (i, d) in raw.exclude_domains.iter().flatten().enumerate() {
        match values::domain(d.get_ref()) {
            Ok(domain) => s.exclude_domains.push(domain),
            Err(m) => src.error(d.span(), format!("tlsrpt.exclude_domains[{i}]"), m),
        }
    }
    s.send_delay_max = opt(
        src,
        &k("send_delay_max"),
        &raw.send_delay_max,
        s.send_delay_max,
        |t| {
            dur(t).and_then(|d| {
                if d > Duration::from_secs(20 * 3600) {
                    Err(
                        "must leave the reports of a day time to go out that day: at most 20h"
                            .into(),
                    )
                } else {
                    Ok(d)
                }
            })
        },
    );
    s.keep_days = opt(src, &k("keep_days"), &raw.keep_days, s.keep_days, |n| {
        small(*n, 1)
    });
    s.https_attempts = opt(
        src,
        &k("https_attempts"),
        &raw.https_attempts,
        s.https_attempts,
        |n| small(*n, 1),
    );
    s.https_backoff = opt(
        src,
        &k("https_backoff"),
        &raw.https_backoff,
        s.https_backoff,
        dur,
    );
    s.https_timeout = opt(
        src,
        &k("https_timeout"),
        &raw.https_timeout,
        s.https_timeout,
        dur,
    );
    s.max_rua = opt(src, &k("max_rua"), &raw.max_rua, s.max_rua, |n| {
        small(*n, 1).map(|n| n as usize)
    });
    s.https_concurrency = opt(
        src,
        &k("https_concurrency"),
        &raw.https_concurrency,
        s.https_concurrency,
        |n| small(*n, 1).map(|n| n as usize),
    );
    s.https_extra_ca_file = opt(
        src,
        &k("https_extra_ca_file"),
        &raw.https_extra_ca_file,
        None,
        |p| checked_file(base, p, crate::files::ca_bundle).map(Some),
    );
    for (i, n) in raw
        .insecure_https_allow_networks
        .iter()
        .flatten()
        .enumerate()
    {
        match values::network(n.get_ref()) {
            Ok(net) => s.insecure_https_allow_networks.push(net),
            Err(m) => src.error(
                n.span(),
                format!("tlsrpt.insecure_https_allow_networks[{i}]"),
                m,
            ),
        }
    }
    if s.enabled {
        require_identity(raw, src);
    }
    s
}

/// RFC 8460 §4.4: `organization-name` and `contact-info` are required fields, and report mail
/// needs a sender; none has a sensible default.
fn require_identity(raw: &RawTlsrpt, src: &mut Source<'_>) {
    let span = raw.enabled.as_ref().map_or(0..0, |e| e.span());
    for (key, set) in [
        ("organization_name", raw.organization_name.is_some()),
        ("contact_info", raw.contact_info.is_some()),
        ("mail_from", raw.mail_from.is_some()),
    ] {
        if !set {
            src.error(
                span.clone(),
                format!("tlsrpt.{key}"),
                format!("reporting is enabled: set tlsrpt.{key} (RFC 8460 section 4.4)"),
            );
        }
    }
}

fn non_empty(text: &str) -> Result<String, String> {
    let t = text.trim();
    if t.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(t.to_string())
    }
}

fn address(text: &str) -> Result<String, String> {
    match text.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !local.contains(char::is_whitespace) => {
            Ok(format!("{local}@{}", values::domain(domain)?))
        }
        _ => Err(format!(
            "`{text}` is not a mail address such as \"tlsrpt@relay.example.org\""
        )),
    }
}

fn small(n: i64, min: i64) -> Result<u32, String> {
    values::count(n, min).and_then(|n| u32::try_from(n).map_err(|_| format!("{n} is out of range")))
}

pub(crate) fn render(t: &TlsrptSettings, out: &mut String) {
    let d = |d: Duration| humantime::format_duration(d).to_string();
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let _ = writeln!(out, "[tlsrpt]\nenabled = {}", t.enabled);
    for (key, value) in [
        ("organization_name", &t.organization_name),
        ("contact_info", &t.contact_info),
        ("mail_from", &t.mail_from),
    ] {
        if !value.is_empty() {
            let _ = writeln!(out, "{key} = {}", q(value));
        }
    }
    let excluded: Vec<String> = t.exclude_domains.iter().map(|e| q(e)).collect();
    let _ = writeln!(
        out,
        "submitter = {}\nexclude_domains = [{}]\nsend_delay_max = {}\nkeep_days = {}\nhttps_attempts = {}\nhttps_backoff = {}\nhttps_timeout = {}\nmax_rua = {}\nhttps_concurrency = {}",
        q(&t.submitter),
        excluded.join(", "),
        q(&d(t.send_delay_max)),
        t.keep_days,
        t.https_attempts,
        q(&d(t.https_backoff)),
        q(&d(t.https_timeout)),
        t.max_rua,
        t.https_concurrency,
    );
    if let Some(path) = &t.https_extra_ca_file {
        let _ = writeln!(
            out,
            "https_extra_ca_file = {}",
            q(&path.display().to_string())
        );
    }
    let allowed: Vec<String> = t
        .insecure_https_allow_networks
        .iter()
        .map(|n| q(&n.to_string()))
        .collect();
    let _ = writeln!(
        out,
        "insecure_https_allow_networks = [{}]\n",
        allowed.join(", ")
    );
}

//! `[[rule]]` tables → `strictmx_policy::rules::Rule`: patterns, requirements, pins, overrides.
//!
//! Checks each value where it stands (an error names the rule's line and key) and the rule as a
//! whole (a relax override needs named domains, a reason and an expiry, and cannot sit beside a
//! demand for verification or in a shadow rule); warns of rules that expired or expire within a
//! week of `now`.
//! What a rule means at delivery time is decided by `strictmx-policy`; rendering the rules back
//! as TOML for `check-config` is here too, so the two stay in step.

use std::collections::HashSet;
use std::fmt::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use toml::Spanned;

use strictmx_policy::rules::{
    DomainPattern, MinRequirement, Pin, Relax, Rule, RuleMode, SenderPattern, TlsVersion,
};

use crate::error::Source;
use crate::raw::RawRule;
use crate::values;

/// How long before a rule expires `check-config` (and every start and reload) warns of it.
pub(crate) const EXPIRY_NOTICE: u64 = 7 * 86_400;

/// Validates every `[[rule]]`; rules with errors are left out (the errors make the file invalid).
/// `now` (unix seconds) is what expiry warnings are reckoned from.
pub(crate) fn build(raw: &[RawRule], src: &mut Source<'_>, now: u64) -> Vec<Rule> {
    let mut names = HashSet::new();
    let mut rules = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let errors_before = src.errors.len();
        let rule = build_one(i, r, src);
        if let (Some(message), Some(v)) = (expiry_warning(&rule, now), &r.expires) {
            src.warn(v.span(), format!("rule[{i}].expires"), message);
        }
        if let Some(name) = &r.name
            && !names.insert(rule.name.clone())
        {
            src.error(
                name.span(),
                format!("rule[{i}].name"),
                format!("another rule is already named `{}`", rule.name),
            );
        }
        if src.errors.len() == errors_before {
            rules.push(rule);
        }
    }
    rules
}

/// The rule's `name`, or its position in the file.
fn rule_name(i: usize, r: &RawRule) -> String {
    match &r.name {
        Some(n) if !n.get_ref().trim().is_empty() => n.get_ref().trim().to_string(),
        _ => format!("rule[{i}]"),
    }
}

fn build_one(i: usize, r: &RawRule, src: &mut Source<'_>) -> Rule {
    let key = |k: &str| format!("rule[{i}].{k}");
    if let Some(n) = &r.name
        && n.get_ref().trim().is_empty()
    {
        src.error(n.span(), key("name"), "a rule name must not be empty");
    }
    let name = rule_name(i, r);
    let domains = list(src, &key("domains"), r.domains.as_ref(), domain_pattern);
    let senders = list(src, &key("senders"), r.senders.as_ref(), sender_pattern);
    let pins = list(src, &key("pins"), r.pins.as_ref(), pin);
    let require = one(src, &key("require"), &r.require, min_requirement);
    let min_tls_version = one(
        src,
        &key("min_tls_version"),
        &r.min_tls_version,
        tls_version,
    );
    let insecure_relax = one(src, &key("insecure_relax"), &r.insecure_relax, relax);
    let mode = one(src, &key("mode"), &r.mode, mode).unwrap_or_default();
    let expires = one(src, &key("expires"), &r.expires, values::moment);
    let reason = one(src, &key("reason"), &r.reason, reason);
    let pin_last_good = one(src, &key("pin_last_good"), &r.pin_last_good, pin_window);
    let rule = Rule {
        name,
        domains,
        senders,
        require,
        pins,
        min_tls_version,
        fail_closed: r.fail_closed.unwrap_or(false),
        insecure_relax,
        mode,
        expires,
        reason,
        pin_last_good,
        pinned: None,
    };
    check_relax(i, r, &rule, src);
    if let (Some(message), Some(v)) = (relax_warning(&rule), &r.insecure_relax) {
        src.warn(v.span(), key("insecure_relax"), message);
    }
    let demands_nothing = rule.require.is_none()
        && rule.pins.is_empty()
        && rule.min_tls_version.is_none()
        && !rule.fail_closed
        && rule.insecure_relax.is_none()
        && rule.pin_last_good.is_none();
    if demands_nothing {
        let span = r.name.as_ref().map_or(0..0, Spanned::span);
        src.warn(
            span,
            format!("rule[{i}]"),
            "this rule sets none of require, pins, min_tls_version, fail_closed, insecure_relax or pin_last_good: it changes nothing",
        );
    }
    rule
}

/// A pin can only remember a weakening while `[watch] keep` keeps it: warns of a longer pin.
pub(crate) fn check_pins(
    raw: &[RawRule],
    rules: &[Rule],
    keep: std::time::Duration,
    src: &mut Source<'_>,
) {
    for (i, r) in raw.iter().enumerate() {
        let (Some(v), Some(rule)) = (
            &r.pin_last_good,
            rules.iter().find(|rule| rule.name == rule_name(i, r)),
        ) else {
            continue;
        };
        if rule
            .pin_last_good
            .is_some_and(|window| window > keep.as_secs())
        {
            src.warn(
                v.span(),
                format!("rule[{i}].pin_last_good"),
                format!(
                    "the pin outlasts [watch] keep ({}): a weakening is forgotten, and the pin ends, when the change is pruned",
                    humantime::format_duration(keep)
                ),
            );
        }
    }
}

/// The relax override loosens what a destination publishes, so it must name its destinations and
/// must not contradict the same rule's own demand.
fn check_relax(i: usize, r: &RawRule, rule: &Rule, src: &mut Source<'_>) {
    let Some(span) = r.insecure_relax.as_ref().map(Spanned::span) else {
        return;
    };
    if rule.insecure_relax.is_none() {
        return;
    }
    let key = format!("rule[{i}].insecure_relax");
    if rule.domains.is_empty() {
        src.error(
            span.clone(),
            &key,
            "insecure_relax must be limited to the broken receiver's domains: set `domains`",
        );
    }
    if matches!(
        rule.require,
        Some(MinRequirement::Verified | MinRequirement::DaneOnly)
    ) {
        src.error(
            span.clone(),
            &key,
            "insecure_relax accepts an unverified certificate, which contradicts this rule's `require`",
        );
    }
    // An exception is written down and ends: both keys, or the file is refused.
    if r.expires.is_none() {
        src.error(
            span.clone(),
            format!("rule[{i}].expires"),
            "an exception (insecure_relax) must say when it ends: set `expires` to a date such as \"2027-01-31\" or an RFC 3339 time",
        );
    }
    if r.reason.is_none() {
        src.error(
            span.clone(),
            format!("rule[{i}].reason"),
            "an exception (insecure_relax) must say why it exists: set `reason` (a ticket, the partner's contact)",
        );
    }
    if rule.mode == RuleMode::Shadow {
        let at = r.mode.as_ref().map_or(span, Spanned::span);
        src.error(
            at,
            format!("rule[{i}].mode"),
            "a shadow rule shows what it would stop, and insecure_relax stops nothing: enforce the exception (with `expires`) or drop insecure_relax",
        );
    }
}

/// The warning for a rule that expired at `now`, or expires within [`EXPIRY_NOTICE`].
pub(crate) fn expiry_warning(rule: &Rule, now: u64) -> Option<String> {
    let expires = rule.expires?;
    let what = if rule.is_exception() {
        "exception"
    } else {
        "rule"
    };
    let reason = rule
        .reason
        .as_ref()
        .map(|r| format!(" (reason: {r})"))
        .unwrap_or_default();
    let at = values::moment_text(expires);
    if now >= expires {
        return Some(format!(
            "{what} `{}`{reason} expired at {at} and no longer applies: remove it, or set a later `expires`",
            rule.name
        ));
    }
    let left = expires - now;
    (left <= EXPIRY_NOTICE).then(|| {
        format!(
            "{what} `{}`{reason} expires at {at}, in {}: it stops applying then by itself; renew it (a later `expires`) if it is still needed",
            rule.name,
            humantime::format_duration(std::time::Duration::from_secs(left - left % 60))
        )
    })
}

fn list<T>(
    src: &mut Source<'_>,
    key: &str,
    values: Option<&Spanned<Vec<Spanned<String>>>>,
    parse: fn(&str) -> Result<T, String>,
) -> Vec<T> {
    let Some(values) = values else {
        return Vec::new();
    };
    if values.get_ref().is_empty() {
        // An empty list reads like "nothing" but would mean "everything": make the author omit it.
        src.error(
            values.span(),
            key,
            "an empty list is not allowed here: omit the key to match everything",
        );
        return Vec::new();
    }
    values
        .get_ref()
        .iter()
        .enumerate()
        .filter_map(|(n, v)| match parse(v.get_ref()) {
            Ok(t) => Some(t),
            Err(m) => {
                src.error(v.span(), format!("{key}[{n}]"), m);
                None
            }
        })
        .collect()
}

fn one<T>(
    src: &mut Source<'_>,
    key: &str,
    value: &Option<Spanned<String>>,
    parse: fn(&str) -> Result<T, String>,
) -> Option<T> {
    let v = value.as_ref()?;
    match parse(v.get_ref()) {
        Ok(t) => Some(t),
        Err(m) => {
            src.error(v.span(), key, m);
            None
        }
    }
}

/// `bank.example` (that domain) or `*.bank.example` (any name below it, not itself).
pub(crate) fn domain_pattern(text: &str) -> Result<DomainPattern, String> {
    match text.strip_prefix("*.") {
        Some(parent) => values::domain(parent).map(DomainPattern::Below),
        None if text.contains('*') => Err(format!(
            "`{text}` is not a domain pattern: a wildcard is only allowed as the whole first label, as in \"*.example.com\""
        )),
        None => values::domain(text).map(DomainPattern::Exact),
    }
}

/// `reset@app.example` (that address) or `@app.example` (anyone in that domain).
pub(crate) fn sender_pattern(text: &str) -> Result<SenderPattern, String> {
    let Some((local, domain)) = text.rsplit_once('@') else {
        return Err(format!(
            "`{text}` is not a sender pattern: use an address (\"reset@app.example\") or a domain (\"@app.example\")"
        ));
    };
    let domain = values::domain(domain)?;
    if local.is_empty() {
        return Ok(SenderPattern::Domain(domain));
    }
    if local.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{text}` has spaces in its local part"));
    }
    Ok(SenderPattern::Address(format!("{local}@{domain}")))
}

/// `spki-sha256:<base64>` or `cert-sha256:<base64>`, the digest 32 bytes long.
pub(crate) fn pin(text: &str) -> Result<Pin, String> {
    let (kind, encoded) = text.split_once(':').ok_or_else(|| {
        format!("`{text}` is not a pin: use \"spki-sha256:<base64>\" or \"cert-sha256:<base64>\"")
    })?;
    let digest = STANDARD
        .decode(encoded.trim())
        .map_err(|e| format!("the digest in `{text}` is not base64 ({e})"))?;
    let sha256: [u8; 32] = digest.as_slice().try_into().map_err(|_| {
        format!(
            "the digest in `{text}` is {} bytes long; a SHA-256 digest is 32",
            digest.len()
        )
    })?;
    match kind {
        "spki-sha256" => Ok(Pin::Spki { sha256 }),
        "cert-sha256" => Ok(Pin::Certificate { sha256 }),
        other => Err(format!(
            "`{other}` is not a pin kind: use \"spki-sha256\" or \"cert-sha256\""
        )),
    }
}

fn min_requirement(text: &str) -> Result<MinRequirement, String> {
    match text {
        "opportunistic" => Ok(MinRequirement::Opportunistic),
        "encrypted" => Ok(MinRequirement::Encrypted),
        "verified" => Ok(MinRequirement::Verified),
        "dane-only" => Ok(MinRequirement::DaneOnly),
        other => Err(format!(
            "`{other}` is not a requirement: use \"opportunistic\", \"encrypted\", \"verified\" or \"dane-only\""
        )),
    }
}

fn tls_version(text: &str) -> Result<TlsVersion, String> {
    match text {
        "TLSv1.2" => Ok(TlsVersion::Tls12),
        "TLSv1.3" => Ok(TlsVersion::Tls13),
        other => Err(format!(
            "`{other}` is not a TLS version: use \"TLSv1.2\" or \"TLSv1.3\""
        )),
    }
}

fn mode(text: &str) -> Result<RuleMode, String> {
    match text {
        "enforce" => Ok(RuleMode::Enforce),
        "shadow" => Ok(RuleMode::Shadow),
        other => Err(format!(
            "`{other}` is not a rule mode: use \"enforce\" (the default) or \"shadow\" (evaluated and recorded, never applied)"
        )),
    }
}

/// How long a pin holds after a weakening: a duration of at least one hour.
fn pin_window(text: &str) -> Result<u64, String> {
    let window = values::duration(text)?.as_secs();
    if window < 3_600 {
        return Err(format!(
            "{text} is too short to pin anything: give a duration of at least 1h, such as \"30d\""
        ));
    }
    Ok(window)
}

fn reason(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("a reason must not be empty: say why the rule exists".to_owned());
    }
    Ok(text.to_owned())
}

fn relax(text: &str) -> Result<Relax, String> {
    match text {
        "encrypted" => Ok(Relax::Encrypted),
        other => Err(format!(
            "`{other}` is not a relax level: the only one is \"encrypted\" (TLS stays mandatory, the certificate is not checked)"
        )),
    }
}

/// The warning an operator must see whenever a rule relaxes published policy.
pub(crate) fn relax_warning(rule: &Rule) -> Option<String> {
    rule.insecure_relax?;
    let domains: Vec<String> = rule.domains.iter().map(domain_text).collect();
    let until = rule
        .expires
        .map(|at| format!(" until {}", values::moment_text(at)))
        .unwrap_or_default();
    Some(format!(
        "rule `{}` relaxes published MTA-STS and DANE policy to \"encrypted\" for {}{until}: certificates of these receivers are not verified{}",
        rule.name,
        domains.join(", "),
        if rule.pins.is_empty() {
            " and an active attacker can read their mail"
        } else {
            " (the rule's pins are still checked)"
        }
    ))
}

fn domain_text(d: &DomainPattern) -> String {
    match d {
        DomainPattern::Exact(d) => d.clone(),
        DomainPattern::Below(d) => format!("*.{d}"),
    }
}

fn sender_text(s: &SenderPattern) -> String {
    match s {
        SenderPattern::Address(a) => a.clone(),
        SenderPattern::Domain(d) => format!("@{d}"),
    }
}

fn pin_text(p: &Pin) -> String {
    match p {
        Pin::Spki { sha256 } => format!("spki-sha256:{}", STANDARD.encode(sha256)),
        Pin::Certificate { sha256 } => format!("cert-sha256:{}", STANDARD.encode(sha256)),
    }
}

fn requirement_text(r: MinRequirement) -> &'static str {
    match r {
        MinRequirement::Opportunistic => "opportunistic",
        MinRequirement::Encrypted => "encrypted",
        MinRequirement::Verified => "verified",
        MinRequirement::DaneOnly => "dane-only",
    }
}

/// The rules as `[[rule]]` tables that validate back into the same rules.
pub(crate) fn render(rules: &[Rule], out: &mut String) {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let qs = |items: Vec<String>| {
        let quoted: Vec<String> = items.iter().map(|s| q(s)).collect();
        format!("[{}]", quoted.join(", "))
    };
    for r in rules {
        let _ = writeln!(out, "[[rule]]\nname = {}", q(&r.name));
        if !r.domains.is_empty() {
            let _ = writeln!(
                out,
                "domains = {}",
                qs(r.domains.iter().map(domain_text).collect())
            );
        }
        if !r.senders.is_empty() {
            let _ = writeln!(
                out,
                "senders = {}",
                qs(r.senders.iter().map(sender_text).collect())
            );
        }
        if let Some(req) = r.require {
            let _ = writeln!(out, "require = {}", q(requirement_text(req)));
        }
        if !r.pins.is_empty() {
            let _ = writeln!(out, "pins = {}", qs(r.pins.iter().map(pin_text).collect()));
        }
        if let Some(v) = r.min_tls_version {
            let v = match v {
                TlsVersion::Tls12 => "TLSv1.2",
                TlsVersion::Tls13 => "TLSv1.3",
            };
            let _ = writeln!(out, "min_tls_version = {}", q(v));
        }
        let _ = writeln!(out, "fail_closed = {}", r.fail_closed);
        if let Some(Relax::Encrypted) = r.insecure_relax {
            let _ = writeln!(out, "insecure_relax = \"encrypted\"");
        }
        let _ = writeln!(out, "mode = {}", q(r.mode.as_str()));
        if let Some(expires) = r.expires {
            let _ = writeln!(out, "expires = {}", q(&values::moment_text(expires)));
        }
        if let Some(reason) = &r.reason {
            let _ = writeln!(out, "reason = {}", q(reason));
        }
        if let Some(window) = r.pin_last_good {
            let window = humantime::format_duration(std::time::Duration::from_secs(window));
            let _ = writeln!(out, "pin_last_good = {}", q(&window.to_string()));
        }
        out.push('\n');
    }
}

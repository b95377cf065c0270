//! `[dns]` → `strictmx_resolve::ResolverSettings` (nameservers, timeouts, the DNSSEC mode and
//! trust anchor) and `strictmx_resolve::GatherSettings` (how many MX hosts are looked up, how
//! many at once, for how long each).
//!
//! Resolving and validating are `strictmx-resolve`'s; this checks the values, that the trust
//! anchor loads (`files`), and that the settings of one DNSSEC mode do not appear under the
//! other.

use std::fmt::Write;
use std::path::Path;

use strictmx_resolve::{DnssecMode, GatherSettings, ResolverSettings};
use toml::Spanned;

use crate::error::Source;
use crate::raw::RawDns;
use crate::validate::{checked_file, dur, opt, quote, quote_duration, quote_list};
use crate::values;

/// `[dns]` resolver settings: which nameservers, how long, and how DNSSEC is validated.
pub(crate) fn resolver(
    raw: Option<&RawDns>,
    src: &mut Source<'_>,
    base: Option<&Path>,
) -> ResolverSettings {
    let mut s = ResolverSettings::default();
    let Some(raw) = raw else { return s };
    s.nameservers = nameservers(src, "dns.nameservers", raw.nameservers.as_deref());
    s.timeout = opt(src, "dns.timeout", &raw.timeout, s.timeout, dur);
    s.attempts = opt(src, "dns.attempts", &raw.attempts, s.attempts, |n| {
        values::count(*n, 1)
    });
    s.trusted_nameservers = nameservers(
        src,
        "dns.trusted_nameservers",
        raw.trusted_nameservers.as_deref(),
    );
    let trust_anchor = opt(src, "dns.trust_anchor", &raw.trust_anchor, None, |p| {
        checked_file(base, p, crate::files::trust_anchor).map(Some)
    });
    s.dnssec = opt(
        src,
        "dns.dnssec",
        &raw.dnssec,
        s.dnssec.clone(),
        |m| match m.as_str() {
            "validate" => Ok(DnssecMode::Validate {
                trust_anchor: trust_anchor.clone(),
            }),
            "trust-resolver" => Ok(DnssecMode::TrustResolver),
            other => Err(format!(
                "`{other}` is not a DNSSEC mode: use \"validate\" or \"trust-resolver\""
            )),
        },
    );
    if let DnssecMode::Validate { trust_anchor: None } = &s.dnssec {
        s.dnssec = DnssecMode::Validate { trust_anchor };
    }
    check_dnssec_mode(raw, &s, src);
    s
}

/// How many MX hosts of a domain are looked up, how many at once, and for how long each.
pub(crate) fn gather(raw: Option<&RawDns>, src: &mut Source<'_>) -> GatherSettings {
    let mut s = GatherSettings::default();
    let Some(raw) = raw else { return s };
    s.max_hosts = opt(
        src,
        "dns.max_mx_hosts",
        &raw.max_mx_hosts,
        s.max_hosts,
        |n| values::count(*n, 1),
    );
    s.host_concurrency = opt(
        src,
        "dns.host_lookups_at_once",
        &raw.host_lookups_at_once,
        s.host_concurrency,
        |n| values::count(*n, 1),
    );
    s.host_timeout = opt(
        src,
        "dns.host_lookup_timeout",
        &raw.host_lookup_timeout,
        s.host_timeout,
        dur,
    );
    s
}

/// The settings of one DNSSEC mode must not appear under the other; and the AD bit is trusted
/// only from resolvers an attacker on the path cannot impersonate.
fn check_dnssec_mode(raw: &RawDns, s: &ResolverSettings, src: &mut Source<'_>) {
    match &s.dnssec {
        DnssecMode::TrustResolver => {
            if let Some(anchor) = &raw.trust_anchor {
                src.error(
                    anchor.span(),
                    "dns.trust_anchor",
                    "a trust anchor is only used with dnssec = \"validate\"; with \"trust-resolver\" the resolver validates",
                );
            }
            let listed = raw.nameservers.iter().flatten();
            for (i, (text, addr)) in listed.zip(&s.nameservers).enumerate() {
                if !addr.ip().is_loopback() && !s.trusted_nameservers.contains(addr) {
                    src.error(
                        text.span(),
                        format!("dns.nameservers[{i}]"),
                        format!("dnssec = \"trust-resolver\" trusts the AD bit only from resolvers on loopback or listed in dns.trusted_nameservers; {addr} is neither"),
                    );
                }
            }
        }
        DnssecMode::Validate { .. } => {
            if let Some(first) = raw.trusted_nameservers.iter().flatten().next() {
                src.warn(
                    first.span(),
                    "dns.trusted_nameservers",
                    "only used with dnssec = \"trust-resolver\"; strictmx validates DNSSEC itself",
                );
            }
        }
    }
}

/// `ip:port` or a bare IP (port 53), each error at its element.
fn nameservers(
    src: &mut Source<'_>,
    key: &str,
    list: Option<&[Spanned<String>]>,
) -> Vec<std::net::SocketAddr> {
    list.unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let text = n.get_ref();
            let parsed =
                values::socket_addr(text).or_else(|_| values::ip(text).map(|ip| (ip, 53).into()));
            match parsed {
                Ok(a) => Some(a),
                Err(m) => {
                    src.error(n.span(), format!("{key}[{i}]"), m);
                    None
                }
            }
        })
        .collect()
}

pub(crate) fn render(resolver: &ResolverSettings, gather: &GatherSettings, o: &mut String) {
    let _ = writeln!(
        o,
        "[dns]\nnameservers = {}{}\ntimeout = {}\nattempts = {}",
        quote_list(&resolver.nameservers),
        if resolver.nameservers.is_empty() {
            " # from /etc/resolv.conf"
        } else {
            ""
        },
        quote_duration(resolver.timeout),
        resolver.attempts
    );
    let _ = writeln!(
        o,
        "max_mx_hosts = {}\nhost_lookups_at_once = {}\nhost_lookup_timeout = {}",
        gather.max_hosts,
        gather.host_concurrency,
        quote_duration(gather.host_timeout)
    );
    let (mode, anchor) = match &resolver.dnssec {
        DnssecMode::Validate { trust_anchor } => ("validate", trust_anchor.as_ref()),
        DnssecMode::TrustResolver => ("trust-resolver", None),
    };
    let _ = writeln!(o, "dnssec = {}", quote(mode));
    match anchor {
        Some(p) => {
            let _ = writeln!(o, "trust_anchor = {}", quote(&p.display().to_string()));
        }
        None if mode == "validate" => {
            let _ = writeln!(
                o,
                "# trust_anchor: the IANA root anchor built into strictmx"
            );
        }
        None => {}
    }
    let _ = writeln!(
        o,
        "trusted_nameservers = {}\n",
        quote_list(&resolver.trusted_nameservers)
    );
}

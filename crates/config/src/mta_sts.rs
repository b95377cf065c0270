//! `[mta_sts]` → `strictmx_resolve::StsSettings`: whether MTA-STS is applied, how a policy is
//! fetched (timeouts, size), and how cached policies are kept fresh and forgotten. Policy hosts
//! are verified against the same extra CAs as receivers (`delivery.extra_ca_file`).
//!
//! Fetching and caching are `strictmx-resolve`'s, what a policy means `strictmx-policy`'s; this
//! checks the values.

use std::fmt::Write;

use strictmx_delivery::transport::TransportSettings;
use strictmx_resolve::StsSettings;
use toml::Spanned;

use crate::error::Source;
use crate::raw::RawMtaSts;
use crate::validate::{dur, opt, quote_duration};
use crate::values;

pub(crate) fn build(
    raw: Option<&RawMtaSts>,
    transport: &TransportSettings,
    src: &mut Source<'_>,
) -> StsSettings {
    let mut s = StsSettings {
        extra_ca_file: transport.extra_ca_file.clone(),
        ..StsSettings::default()
    };
    let Some(raw) = raw else { return s };
    s.enabled = raw.enabled.unwrap_or(s.enabled);
    fetch(raw, &mut s, src);
    refresh(raw, &mut s, src);
    if s.connect_timeout > s.fetch_timeout {
        let span = raw.connect_timeout.as_ref().map_or(0..0, Spanned::span);
        src.error(
            span,
            key("connect_timeout"),
            "must not be longer than mta_sts.fetch_timeout, which bounds the whole fetch",
        );
    }
    s
}

fn key(name: &str) -> String {
    format!("mta_sts.{name}")
}

/// How long a fetch and its connection may take, and how large a policy may be.
fn fetch(raw: &RawMtaSts, s: &mut StsSettings, src: &mut Source<'_>) {
    s.fetch_timeout = opt(
        src,
        &key("fetch_timeout"),
        &raw.fetch_timeout,
        s.fetch_timeout,
        dur,
    );
    s.connect_timeout = opt(
        src,
        &key("connect_timeout"),
        &raw.connect_timeout,
        s.connect_timeout,
        dur,
    );
    // RFC 8461 §3.3 names no limit; policies are a few hundred bytes, and 64 KiB is what
    // other implementations accept.
    s.max_policy_size = opt(
        src,
        &key("max_policy_size"),
        &raw.max_policy_size,
        s.max_policy_size,
        |v| {
            let n = values::size(v)?;
            if n < 1024 {
                return Err(format!("{n} bytes is too small for an MTA-STS policy"));
            }
            usize::try_from(n).map_err(|_| format!("{n} is out of range"))
        },
    );
}

/// When a cached policy is fetched again, and when one no mail needs is forgotten.
fn refresh(raw: &RawMtaSts, s: &mut StsSettings, src: &mut Source<'_>) {
    s.refresh_before = opt(
        src,
        &key("refresh_before"),
        &raw.refresh_before,
        s.refresh_before,
        dur,
    );
    s.refresh_interval = opt(
        src,
        &key("refresh_interval"),
        &raw.refresh_interval,
        s.refresh_interval,
        dur,
    );
    s.forget_unused_after = opt(
        src,
        &key("forget_unused_after"),
        &raw.forget_unused_after,
        s.forget_unused_after,
        dur,
    );
}

pub(crate) fn render(m: &StsSettings, o: &mut String) {
    let _ = writeln!(
        o,
        "[mta_sts]\nenabled = {}\nfetch_timeout = {}\nconnect_timeout = {}\nmax_policy_size = {}\nrefresh_before = {}\nrefresh_interval = {}\nforget_unused_after = {}\n",
        m.enabled,
        quote_duration(m.fetch_timeout),
        quote_duration(m.connect_timeout),
        m.max_policy_size,
        quote_duration(m.refresh_before),
        quote_duration(m.refresh_interval),
        quote_duration(m.forget_unused_after),
    );
}

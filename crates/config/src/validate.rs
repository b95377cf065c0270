//! From `RawConfig` to `Config`: each section's module in turn, then the effective
//! configuration as TOML, section by section; and the helpers every section reads values with.
//!
//! Defaults come from each crate's `Default` for its settings, so there is one place per value;
//! values that depend on others (the EHLO name follows `server.hostname`) are passed on from
//! here. Errors are sorted by line later, warnings are not: they come out in the order `build`
//! checks the sections.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use strictmx_delivery::runner::QueueSettings;

use crate::error::Source;
use crate::raw::RawConfig;
use crate::{Config, values};
use crate::{
    audit, auth, cluster, delivery, dkim, dns, http_api, limits, listen, mta_sts, policy, retry,
    routes, rules, server, spool, tlsrpt, watch, webhook,
};

/// Reads an optional spanned value through `parse`; on failure records the error and keeps `default`.
pub(crate) fn opt<T, R>(
    src: &mut Source<'_>,
    key: &str,
    value: &Option<Spanned<R>>,
    default: T,
    parse: impl FnOnce(&R) -> Result<T, String>,
) -> T {
    match value {
        None => default,
        Some(v) => match parse(v.get_ref()) {
            Ok(t) => t,
            Err(message) => {
                src.error(v.span(), key, message);
                default
            }
        },
    }
}

/// Reads a required spanned value through `parse`; on failure records the error and keeps
/// `default`.
pub(crate) fn req<T, R>(
    src: &mut Source<'_>,
    key: &str,
    value: &Spanned<R>,
    default: T,
    parse: impl FnOnce(&R) -> Result<T, String>,
) -> T {
    match parse(value.get_ref()) {
        Ok(t) => t,
        Err(message) => {
            src.error(value.span(), key, message);
            default
        }
    }
}

pub(crate) fn dur(s: &impl AsRef<str>) -> Result<Duration, String> {
    values::duration(s.as_ref())
}

pub(crate) fn path_in(base: Option<&Path>) -> impl Fn(&String) -> Result<PathBuf, String> + '_ {
    move |s: &String| {
        if s.is_empty() {
            return Err("a path must not be empty".into());
        }
        let p = PathBuf::from(s);
        Ok(match base {
            Some(b) if p.is_relative() => b.join(p),
            _ => p,
        })
    }
}

/// A path (relative to the configuration file) naming a file that `check` accepts.
pub(crate) fn checked_file(
    base: Option<&Path>,
    text: &String,
    check: fn(&Path) -> Result<(), String>,
) -> Result<PathBuf, String> {
    let p = path_in(base)(text)?;
    check(&p)?;
    Ok(p)
}

pub(crate) fn build(raw: &RawConfig, src: &mut Source<'_>, base: Option<&Path>) -> Config {
    let server = server::build(raw, src, base);
    let hostname = server.hostname;
    let mut spool = spool::build(raw.spool.as_ref(), &server.data_dir, src);
    spool.audit = audit::build(raw.audit.as_ref(), src);
    let mut inbound = listen::build(raw, src, base, &hostname);
    if let Some(a) = &raw.auth {
        inbound.users = auth::build(a, src, base);
    }
    if let Some(l) = &raw.limits {
        limits::build(l, &mut inbound.limits, src);
    }
    inbound.shutdown_grace = server.shutdown_grace;
    inbound.dkim = dkim::build(&raw.dkim, src, base);
    let resolver = dns::resolver(raw.dns.as_ref(), src, base);
    let gather = dns::gather(raw.dns.as_ref(), src);
    let mut transport = delivery::transport(raw, src, base, &hostname);
    if let Some(p) = &raw.policy {
        policy::build(p, &inbound.users, &mut transport, src);
    }
    let mta_sts = mta_sts::build(raw.mta_sts.as_ref(), &transport, src);
    let mut queue = QueueSettings {
        hostname: hostname.clone(),
        ..QueueSettings::default()
    };
    delivery::connections(raw.delivery.as_ref(), &mut queue, src);
    if let Some(r) = &raw.retry {
        retry::build(r, &mut queue, src);
    }
    queue.shutdown_grace = server.shutdown_grace;
    transport.policy.rules = rules::build(&raw.rules, src, values::unix_now());
    let tlsrpt = tlsrpt::build(raw.tlsrpt.as_ref(), &hostname, src, base);
    let watch = watch::build(raw.watch.as_ref(), src);
    rules::check_pins(&raw.rules, &transport.policy.rules, watch.keep, src);
    let webhooks = webhook::build(&raw.webhooks, src, base);
    let cluster = cluster::build(raw.cluster.as_ref(), src, base);
    spool.webhooks.hooks = webhooks
        .iter()
        .map(webhook::WebhookSettings::target)
        .collect();
    let http_api = raw
        .http_api
        .as_ref()
        .and_then(|h| http_api::build(h, raw.tls.is_some(), &inbound.users, src));

    Config {
        source: None,
        hostname,
        data_dir: server.data_dir,
        shutdown_grace: server.shutdown_grace,
        log: server.log,
        metrics_listen: server.metrics_listen,
        control_socket: server.control_socket,
        spool,
        inbound,
        resolver,
        gather,
        transport,
        mta_sts,
        queue,
        tlsrpt,
        watch,
        webhooks,
        cluster,
        http_api,
        warnings: Vec::new(),
    }
}

pub(crate) fn render(c: &Config) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let o = &mut out;
    let source = c
        .source
        .as_ref()
        .map_or("<embedded defaults>".to_string(), |p| {
            p.display().to_string()
        });
    let _ = writeln!(o, "# effective configuration (from {source})\n");
    server::render(c, o);
    spool::render(&c.spool, o);
    listen::render(&c.inbound, o);
    auth::render(&c.inbound, o);
    limits::render(&c.inbound.limits, o);
    dns::render(&c.resolver, &c.gather, o);
    delivery::render(&c.transport, &c.queue, o);
    mta_sts::render(&c.mta_sts, o);
    retry::render(&c.queue, o);
    watch::render(&c.watch, o);
    policy::render(&c.transport, o);
    dkim::render(&c.inbound.dkim, o);
    rules::render(&c.transport.policy.rules, o);
    tlsrpt::render(&c.tlsrpt, o);
    audit::render(&c.spool.audit, o);
    routes::render(&c.transport.routes, o);
    webhook::render(&c.webhooks, o);
    cluster::render(&c.cluster, o);
    http_api::render(c.http_api.as_ref(), o);
    out
}

/// `text` as a TOML string.
pub(crate) fn quote(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// `d` as a TOML string in the form the reader takes back (`"1h 30m"`).
pub(crate) fn quote_duration(d: Duration) -> String {
    quote(&humantime::format_duration(d).to_string())
}

/// `items` as a TOML array of strings: `["a", "b"]`.
pub(crate) fn quote_list<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    let quoted: Vec<String> = items.into_iter().map(|i| quote(&i.to_string())).collect();
    format!("[{}]", quoted.join(", "))
}

//! `[delivery]` → `strictmx_delivery::transport::TransportSettings` (who we say we are, where we
//! connect from, the CAs we trust beyond the system's, timeouts, the default TLS requirement,
//! the networks never delivered to) and the connection limits of
//! `strictmx_delivery::runner::QueueSettings`. `[[route]]` is `routes`'s.
//!
//! Connecting, STARTTLS and the queue are `strictmx-delivery`'s; what the default requirement
//! means is `strictmx-policy`'s. This checks the values and that the CA bundle loads (`files`).

use std::fmt::Write;
use std::path::Path;

use strictmx_delivery::runner::QueueSettings;
use strictmx_delivery::transport::TransportSettings;
use strictmx_policy::DefaultRequirement;

use crate::error::Source;
use crate::raw::{RawConfig, RawDelivery};
use crate::validate::{checked_file, dur, opt, quote, quote_duration, quote_list};
use crate::values;

pub(crate) fn transport(
    raw: &RawConfig,
    src: &mut Source<'_>,
    base: Option<&Path>,
    hostname: &str,
) -> TransportSettings {
    let mut s = TransportSettings {
        helo_name: hostname.to_string(),
        ..TransportSettings::default()
    };
    if let Some(d) = &raw.delivery {
        identity(d, &mut s, src, base);
        connection(d, &mut s, src);
        tls(d, &mut s, src);
    }
    s.routes = crate::routes::build(&raw.routes, src, base);
    s
}

/// The EHLO name, the source addresses and the extra CA bundle.
fn identity(d: &RawDelivery, s: &mut TransportSettings, src: &mut Source<'_>, base: Option<&Path>) {
    s.helo_name = opt(
        src,
        "delivery.helo_name",
        &d.helo_name,
        s.helo_name.clone(),
        |h| values::domain(h),
    );
    s.source_ipv4 = opt(
        src,
        "delivery.source_ipv4",
        &d.source_ipv4,
        s.source_ipv4,
        |t| source_address(t, "IPv4"),
    );
    s.source_ipv6 = opt(
        src,
        "delivery.source_ipv6",
        &d.source_ipv6,
        s.source_ipv6,
        |t| source_address(t, "IPv6"),
    );
    s.extra_ca_file = opt(
        src,
        "delivery.extra_ca_file",
        &d.extra_ca_file,
        s.extra_ca_file.clone(),
        |p| checked_file(base, p, crate::files::ca_bundle).map(Some),
    );
}

/// `text` as an address of `family` (`Ipv4Addr` or `Ipv6Addr`, which `family` names).
fn source_address<A: std::str::FromStr>(text: &str, family: &str) -> Result<Option<A>, String> {
    text.parse()
        .map(Some)
        .map_err(|_| format!("`{text}` is not an {family} address"))
}

/// The port, the timeouts of each step, and how many messages one connection carries.
fn connection(d: &RawDelivery, s: &mut TransportSettings, src: &mut Source<'_>) {
    s.smtp_port = opt(src, "delivery.smtp_port", &d.smtp_port, s.smtp_port, |n| {
        u16::try_from(*n)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{n} is not a port number"))
    });
    for (key, value, timeout) in [
        (
            "connect_timeout",
            &d.connect_timeout,
            &mut s.connect_timeout,
        ),
        (
            "greeting_timeout",
            &d.greeting_timeout,
            &mut s.greeting_timeout,
        ),
        (
            "command_timeout",
            &d.command_timeout,
            &mut s.command_timeout,
        ),
        ("data_timeout", &d.data_timeout, &mut s.data_timeout),
    ] {
        *timeout = opt(src, &format!("delivery.{key}"), value, *timeout, dur);
    }
    s.max_messages_per_connection = opt(
        src,
        "delivery.max_messages_per_connection",
        &d.max_messages_per_connection,
        s.max_messages_per_connection,
        |n| values::count(*n, 1),
    );
}

/// The requirement where nothing stronger is known, plaintext fallback, and the networks
/// never delivered to.
fn tls(d: &RawDelivery, s: &mut TransportSettings, src: &mut Source<'_>) {
    s.policy.default_requirement = opt(
        src,
        "delivery.default_tls",
        &d.default_tls,
        s.policy.default_requirement,
        |t| match t.as_str() {
            "opportunistic" => Ok(DefaultRequirement::Opportunistic),
            "encrypted" => Ok(DefaultRequirement::Encrypted),
            "verified" => Ok(DefaultRequirement::Verified),
            other => Err(format!(
                "`{other}` is not a TLS requirement: use \"opportunistic\", \"encrypted\" or \"verified\""
            )),
        },
    );
    if let Some(f) = d.insecure_plaintext_fallback {
        s.policy.insecure_plaintext_fallback = f;
    }
    if let Some(nets) = &d.never_deliver_to {
        s.never_deliver_to = nets
            .iter()
            .enumerate()
            .filter_map(|(i, n)| match values::network(n.get_ref()) {
                Ok(net) => Some(net),
                Err(m) => {
                    src.error(n.span(), format!("delivery.never_deliver_to[{i}]"), m);
                    None
                }
            })
            .collect();
    }
}

/// The queue's connection limits, which `[delivery]` sets: over all destinations and per one.
pub(crate) fn connections(raw: Option<&RawDelivery>, q: &mut QueueSettings, src: &mut Source<'_>) {
    let Some(d) = raw else { return };
    q.max_connections = opt(
        src,
        "delivery.max_connections",
        &d.max_connections,
        q.max_connections,
        |n| values::count(*n, 1),
    );
    q.max_per_destination = opt(
        src,
        "delivery.max_per_destination",
        &d.max_per_destination,
        q.max_per_destination,
        |n| values::count(*n, 1),
    );
}

pub(crate) fn render(t: &TransportSettings, queue: &QueueSettings, o: &mut String) {
    let default_tls = match t.policy.default_requirement {
        DefaultRequirement::Opportunistic => "opportunistic",
        DefaultRequirement::Encrypted => "encrypted",
        DefaultRequirement::Verified => "verified",
    };
    let _ = writeln!(o, "[delivery]\nhelo_name = {}", quote(&t.helo_name));
    if let Some(a) = t.source_ipv4 {
        let _ = writeln!(o, "source_ipv4 = {}", quote(&a.to_string()));
    }
    if let Some(a) = t.source_ipv6 {
        let _ = writeln!(o, "source_ipv6 = {}", quote(&a.to_string()));
    }
    if let Some(p) = &t.extra_ca_file {
        let _ = writeln!(o, "extra_ca_file = {}", quote(&p.display().to_string()));
    }
    let _ = writeln!(
        o,
        "smtp_port = {}\nconnect_timeout = {}\ngreeting_timeout = {}\ncommand_timeout = {}\ndata_timeout = {}\nmax_connections = {}\nmax_per_destination = {}\nmax_messages_per_connection = {}\ndefault_tls = {}\ninsecure_plaintext_fallback = {}",
        t.smtp_port,
        quote_duration(t.connect_timeout),
        quote_duration(t.greeting_timeout),
        quote_duration(t.command_timeout),
        quote_duration(t.data_timeout),
        queue.max_connections,
        queue.max_per_destination,
        t.max_messages_per_connection,
        quote(default_tls),
        t.policy.insecure_plaintext_fallback
    );
    let _ = writeln!(
        o,
        "never_deliver_to = {}\n",
        quote_list(&t.never_deliver_to)
    );
}

//! From `RawConfig` to `Config`: defaults, checks, and the effective configuration as TOML.
//!
//! Defaults come from each crate's `Default` for its settings, so there is one place per value;
//! values that depend on others (the EHLO name follows `server.hostname`) are derived here.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use strictmx_delivery::runner::QueueSettings;
use strictmx_delivery::transport::TransportSettings;
use strictmx_inbound::{InboundSettings, ListenerSettings, Role, ServerTlsSettings, User};
use strictmx_policy::DefaultRequirement;
use strictmx_policy::rules::SenderPattern;
use strictmx_resolve::{DnssecMode, GatherSettings, ResolverSettings, StsSettings};
use strictmx_spool::SpoolSettings;

use crate::error::Source;
use crate::raw::*;
use crate::{Config, LogFormat, LogSettings};
use crate::{networks, values};

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

fn req<T, R>(
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

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| values::domain(s).is_ok())
        .unwrap_or_else(|| "localhost".to_string())
}

pub(crate) fn build(raw: &RawConfig, src: &mut Source<'_>, base: Option<&Path>) -> Config {
    let server = raw.server.as_ref();
    let hostname = opt(
        src,
        "server.hostname",
        &server.and_then(|s| s.hostname.clone()),
        system_hostname(),
        |s| values::domain(s),
    );
    let data_dir = opt(
        src,
        "server.data_dir",
        &server.and_then(|s| s.data_dir.clone()),
        PathBuf::from("data"),
        path_in(base),
    );
    let shutdown_grace = opt(
        src,
        "server.shutdown_grace",
        &server.and_then(|s| s.shutdown_grace.clone()),
        Duration::from_secs(30),
        dur,
    );

    let log = build_log(raw.log.as_ref(), src);
    let metrics_listen = raw.metrics.as_ref().and_then(|m| {
        m.listen.as_ref().map(|l| {
            req(src, "metrics.listen", l, None, |s| {
                values::socket_addr(s).map(Some)
            })
        })
    });
    let metrics_listen = metrics_listen.flatten();
    let control_socket = opt(
        src,
        "control.socket",
        &raw.control.as_ref().and_then(|c| c.socket.clone()),
        data_dir.join("control.sock"),
        path_in(base),
    );

    let mut spool = SpoolSettings {
        data_dir: data_dir.clone(),
        ..SpoolSettings::default()
    };
    if let Some(s) = &raw.spool {
        spool.commit_batch_max = opt(
            src,
            "spool.commit_batch_max",
            &s.commit_batch_max,
            spool.commit_batch_max,
            |n| values::count(*n, 1),
        );
        spool.cache_size = opt(
            src,
            "spool.cache_size",
            &s.cache_size,
            spool.cache_size,
            |v| {
                values::size(v)
                    .and_then(|n| usize::try_from(n).map_err(|_| format!("{n} is out of range")))
            },
        );
    }

    let mut inbound = build_inbound(raw, src, base, &hostname);
    inbound.shutdown_grace = shutdown_grace;
    inbound.dkim = crate::dkim::build(&raw.dkim, src, base);
    let resolver = build_dns(raw.dns.as_ref(), src, base);
    let gather = build_gather(raw.dns.as_ref(), src);
    let mut transport = build_transport(raw, src, base, &hostname);
    if let Some(p) = &raw.policy {
        build_tls_required_no(p, &inbound.users, &mut transport, src);
    }
    let mta_sts = build_mta_sts(raw.mta_sts.as_ref(), &transport, src);
    let mut queue = build_queue(raw, src, &hostname);
    queue.shutdown_grace = shutdown_grace;
    transport.policy.rules = crate::rules::build(&raw.rules, src);
    let tlsrpt = crate::tlsrpt::build(raw.tlsrpt.as_ref(), &hostname, src, base);

    Config {
        source: None,
        hostname,
        data_dir,
        shutdown_grace,
        log,
        metrics_listen,
        control_socket,
        spool,
        inbound,
        resolver,
        gather,
        transport,
        mta_sts,
        queue,
        tlsrpt,
        warnings: Vec::new(),
    }
}

fn build_log(raw: Option<&RawLog>, src: &mut Source<'_>) -> LogSettings {
    let format = opt(
        src,
        "log.format",
        &raw.and_then(|l| l.format.clone()),
        LogFormat::Human,
        |s| match s.as_str() {
            "human" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "`{other}` is not a log format: use \"human\" or \"json\""
            )),
        },
    );
    let level = opt(
        src,
        "log.level",
        &raw.and_then(|l| l.level.clone()),
        "info".to_string(),
        |s| {
            let ok = s.split(',').all(|d| {
                let level = d.rsplit('=').next().unwrap_or("");
                matches!(
                    level.trim(),
                    "error" | "warn" | "info" | "debug" | "trace" | "off"
                )
            });
            if ok {
                Ok(s.clone())
            } else {
                Err(format!(
                    "`{s}` is not a log level such as \"info\" or \"info,strictmx_delivery=debug\""
                ))
            }
        },
    );
    LogSettings { format, level }
}

fn build_inbound(
    raw: &RawConfig,
    src: &mut Source<'_>,
    base: Option<&Path>,
    hostname: &str,
) -> InboundSettings {
    let mut s = InboundSettings {
        hostname: hostname.to_string(),
        ..InboundSettings::default()
    };
    if !raw.listeners.is_empty() {
        s.listeners = raw
            .listeners
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let key = format!("listener[{i}]");
                let address = req(src, &format!("{key}.address"), &l.address, ([127, 0, 0, 1], 2525).into(), |a| values::socket_addr(a));
                let role = opt(src, &format!("{key}.role"), &l.role, Role::Relay, |r| match r.as_str() {
                    "relay" => Ok(Role::Relay),
                    "submission" => Ok(Role::Submission),
                    "submissions" => Ok(Role::Submissions),
                    other => Err(format!("`{other}` is not a listener role: use \"relay\", \"submission\" or \"submissions\"")),
                });
                ListenerSettings {
                    address,
                    role,
                    insecure_allow_plaintext_auth: l.insecure_allow_plaintext_auth.unwrap_or(false),
                }
            })
            .collect();
    }
    if let Some(tls) = &raw.tls {
        let cert = opt(src, "tls.certificate", &tls.certificate, None, |p| {
            path_in(base)(p).map(Some)
        });
        let key = opt(src, "tls.private_key", &tls.private_key, None, |p| {
            path_in(base)(p).map(Some)
        });
        match (cert, key) {
            (Some(cert_path), Some(key_path)) => {
                if let (Some(c), Some(k)) = (&tls.certificate, &tls.private_key) {
                    warn_if_world_readable(src, k.span(), "tls.private_key", &key_path);
                    crate::files::server_tls(src, (c, &cert_path), (k, &key_path));
                }
                s.tls = Some(ServerTlsSettings {
                    cert_path,
                    key_path,
                })
            }
            (None, None) => {}
            (Some(_), None) => src.error(
                tls.certificate.as_ref().map_or(0..0, |c| c.span()),
                "tls.private_key",
                "a certificate needs its private key: set tls.private_key",
            ),
            (None, Some(_)) => src.error(
                tls.private_key.as_ref().map_or(0..0, |c| c.span()),
                "tls.certificate",
                "a private key needs its certificate: set tls.certificate",
            ),
        }
    }
    for (i, l) in s.listeners.iter().enumerate() {
        if l.role == Role::Submissions && s.tls.is_none() {
            let span = raw.listeners.get(i).map_or(0..0, |l| l.address.span());
            src.error(span, format!("listener[{i}].role"), "a \"submissions\" listener speaks TLS from the first byte (RFC 8314) and needs [tls] certificate and private_key");
        }
    }
    if let Some(nets) = raw.relay.as_ref().and_then(|r| r.trusted_networks.as_ref()) {
        s.trusted_networks = nets
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let key = format!("relay.trusted_networks[{i}]");
                let checked = values::network(n.get_ref())
                    .and_then(|net| Ok((net, networks::check_trusted(n.get_ref(), net)?)));
                match checked {
                    Ok((net, warnings)) => {
                        for warning in warnings {
                            src.warn(n.span(), key.clone(), warning);
                        }
                        Some(net)
                    }
                    Err(m) => {
                        src.error(n.span(), key, m);
                        None
                    }
                }
            })
            .collect();
    }
    if let Some(auth) = &raw.auth {
        s.users = build_users(auth, src, base);
    }
    if let Some(l) = &raw.limits {
        let d = s.limits.clone();
        s.limits.max_message_size = opt(
            src,
            "limits.max_message_size",
            &l.max_message_size,
            d.max_message_size,
            |v| {
                values::size(v).and_then(|n| {
                    if n < 1024 {
                        Err(format!("{n} bytes is too small for a mail message"))
                    } else {
                        Ok(n)
                    }
                })
            },
        );
        s.limits.max_recipients = opt(
            src,
            "limits.max_recipients",
            &l.max_recipients,
            d.max_recipients,
            |n| values::count(*n, 1),
        );
        s.limits.command_timeout = opt(
            src,
            "limits.command_timeout",
            &l.command_timeout,
            d.command_timeout,
            dur,
        );
        s.limits.data_timeout = opt(
            src,
            "limits.data_timeout",
            &l.data_timeout,
            d.data_timeout,
            dur,
        );
        s.limits.max_sessions = opt(
            src,
            "limits.max_sessions",
            &l.max_sessions,
            d.max_sessions,
            |n| values::count(*n, 1),
        );
        s.limits.max_sessions_per_ip = opt(
            src,
            "limits.max_sessions_per_ip",
            &l.max_sessions_per_ip,
            d.max_sessions_per_ip,
            |n| values::count(*n, 1),
        );
        s.limits.max_bad_commands = opt(
            src,
            "limits.max_bad_commands",
            &l.max_bad_commands,
            d.max_bad_commands,
            |n| values::count(*n, 1),
        );
        s.limits.max_auth_failures = opt(
            src,
            "limits.max_auth_failures",
            &l.max_auth_failures,
            d.max_auth_failures,
            |n| values::count(*n, 1),
        );
        s.limits.auth_failure_delay = opt(
            src,
            "limits.auth_failure_delay",
            &l.auth_failure_delay,
            d.auth_failure_delay,
            dur,
        );
        s.limits.auth_failures_per_client = opt(
            src,
            "limits.auth_failures_per_client",
            &l.auth_failures_per_client,
            d.auth_failures_per_client,
            |n| values::count(*n, 1).and_then(|n| u32::try_from(n).map_err(|e| e.to_string())),
        );
        s.limits.auth_failure_window = opt(
            src,
            "limits.auth_failure_window",
            &l.auth_failure_window,
            d.auth_failure_window,
            dur,
        );
        s.limits.max_concurrent_auth = opt(
            src,
            "limits.max_concurrent_auth",
            &l.max_concurrent_auth,
            d.max_concurrent_auth,
            |n| values::count(*n, 1),
        );
        s.limits.max_received_headers = opt(
            src,
            "limits.max_received_headers",
            &l.max_received_headers,
            d.max_received_headers,
            |n| values::count(*n, 1),
        );
        s.limits.max_body_memory = opt(
            src,
            "limits.max_body_memory",
            &l.max_body_memory,
            d.max_body_memory,
            |v| {
                values::size(v).and_then(|n| {
                    if n < 1024 * 1024 {
                        Err(format!("{n} bytes is too small: at least 1MiB"))
                    } else {
                        Ok(n)
                    }
                })
            },
        );
    }
    s
}

/// Users from `[[auth.user]]` and from `auth.users_file` (lines `name:$argon2id$...`; `#` comments).
fn build_users(auth: &RawAuth, src: &mut Source<'_>, base: Option<&Path>) -> Vec<User> {
    let mut users = Vec::new();
    for (i, u) in auth.users.iter().enumerate() {
        let name = u.name.get_ref().trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            src.error(
                u.name.span(),
                format!("auth.user[{i}].name"),
                "a user name must be non-empty and without spaces",
            );
            continue;
        }
        if let Err(m) = check_hash(u.password_hash.get_ref()) {
            src.error(
                u.password_hash.span(),
                format!("auth.user[{i}].password_hash"),
                m,
            );
            continue;
        }
        let senders = user_senders(u, i, name, src);
        users.push(User {
            name: name.to_string(),
            argon2_phc_hash: u.password_hash.get_ref().clone(),
            senders,
        });
    }
    if let Some(file) = &auth.users_file {
        let Ok(path) = path_in(base)(file.get_ref()) else {
            src.error(file.span(), "auth.users_file", "a path must not be empty");
            return users;
        };
        warn_if_world_readable(src, file.span(), "auth.users_file", &path);
        match std::fs::read_to_string(&path) {
            Err(e) => src.error(
                file.span(),
                "auth.users_file",
                format!("cannot read {}: {e}", path.display()),
            ),
            Ok(text) => {
                for (n, line) in text.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    let parsed = line
                        .split_once(':')
                        .ok_or_else(|| "expected `name:$argon2id$...`".to_string())
                        .and_then(|(name, hash)| check_hash(hash).map(|()| (name, hash)));
                    match parsed {
                        Ok((name, hash)) => users.push(User {
                            name: name.to_string(),
                            argon2_phc_hash: hash.to_string(),
                            senders: Vec::new(),
                        }),
                        Err(m) => src.error(
                            file.span(),
                            "auth.users_file",
                            format!("{} line {}: {m}", path.display(), n + 1),
                        ),
                    }
                }
            }
        }
    }
    users
}

/// `[[auth.user]] senders`: the envelope senders the user may use. Left out, the user may use
/// any sender, which is allowed but said loudly: one app could then send as another.
fn user_senders(u: &RawUser, i: usize, name: &str, src: &mut Source<'_>) -> Vec<SenderPattern> {
    let Some(list) = &u.senders else {
        src.warn(
            u.name.span(),
            format!("auth.user[{i}].senders"),
            format!("not set: `{name}` may send as any address once authenticated"),
        );
        return Vec::new();
    };
    if list.is_empty() {
        src.error(
            u.name.span(),
            format!("auth.user[{i}].senders"),
            "an empty list allows no sender: list addresses or @domains, or leave the key out",
        );
    }
    let mut senders = Vec::with_capacity(list.len());
    for (j, text) in list.iter().enumerate() {
        match crate::rules::sender_pattern(text.get_ref()) {
            Ok(pattern) => senders.push(pattern),
            Err(m) => src.error(text.span(), format!("auth.user[{i}].senders[{j}]"), m),
        }
    }
    senders
}

/// A secret (the TLS key, the password hashes) that every local user can read is worth a
/// warning: it still works, and group access (e.g. Debian's `ssl-cert`) is a deliberate choice.
pub(crate) fn warn_if_world_readable(
    src: &mut Source<'_>,
    span: Range<usize>,
    key: &str,
    path: &Path,
) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode();
    if mode & 0o004 != 0 {
        src.warn(
            span,
            key,
            format!(
                "{} is readable by every local user (mode {:o}): chmod o-r it",
                path.display(),
                mode & 0o777
            ),
        );
    }
}

fn check_hash(hash: &str) -> Result<(), String> {
    if let Some(place) = crate::published::published_in(hash) {
        return Err(format!(
            "this hash is published in {place}, so its password is known to everyone: make a new one with `strictmx hash-password`"
        ));
    }
    let argon2 = hash.starts_with("$argon2id$")
        || hash.starts_with("$argon2i$")
        || hash.starts_with("$argon2d$");
    if argon2 && argon2::PasswordHash::new(hash).is_ok() {
        Ok(())
    } else {
        Err("the password hash must be an argon2 PHC string ($argon2id$v=19$m=...,t=...,p=...$SALT$HASH); make one with `strictmx hash-password`".into())
    }
}

fn build_dns(raw: Option<&RawDns>, src: &mut Source<'_>, base: Option<&Path>) -> ResolverSettings {
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
fn build_gather(raw: Option<&RawDns>, src: &mut Source<'_>) -> GatherSettings {
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

fn build_transport(
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
            |t| {
                t.parse()
                    .map(Some)
                    .map_err(|_| format!("`{t}` is not an IPv4 address"))
            },
        );
        s.source_ipv6 = opt(
            src,
            "delivery.source_ipv6",
            &d.source_ipv6,
            s.source_ipv6,
            |t| {
                t.parse()
                    .map(Some)
                    .map_err(|_| format!("`{t}` is not an IPv6 address"))
            },
        );
        s.extra_ca_file = opt(
            src,
            "delivery.extra_ca_file",
            &d.extra_ca_file,
            s.extra_ca_file.clone(),
            |p| checked_file(base, p, crate::files::ca_bundle).map(Some),
        );
        s.smtp_port = opt(src, "delivery.smtp_port", &d.smtp_port, s.smtp_port, |n| {
            u16::try_from(*n)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{n} is not a port number"))
        });
        s.connect_timeout = opt(
            src,
            "delivery.connect_timeout",
            &d.connect_timeout,
            s.connect_timeout,
            dur,
        );
        s.greeting_timeout = opt(
            src,
            "delivery.greeting_timeout",
            &d.greeting_timeout,
            s.greeting_timeout,
            dur,
        );
        s.command_timeout = opt(
            src,
            "delivery.command_timeout",
            &d.command_timeout,
            s.command_timeout,
            dur,
        );
        s.data_timeout = opt(
            src,
            "delivery.data_timeout",
            &d.data_timeout,
            s.data_timeout,
            dur,
        );
        s.max_messages_per_connection = opt(
            src,
            "delivery.max_messages_per_connection",
            &d.max_messages_per_connection,
            s.max_messages_per_connection,
            |n| values::count(*n, 1),
        );
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
    s.routes = crate::routes::build(&raw.routes, src, base);
    s
}

/// `[policy]`: who may relax recipient-domain policy with `TLS-Required: No` (RFC 8689 §5).
fn build_tls_required_no(
    raw: &RawPolicy,
    users: &[User],
    transport: &mut TransportSettings,
    src: &mut Source<'_>,
) {
    let permission = &mut transport.tls_required_no;
    for (i, u) in raw.tls_required_no_users.iter().flatten().enumerate() {
        let key = format!("policy.tls_required_no_users[{i}]");
        let name = u.get_ref().trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            src.error(
                u.span(),
                key,
                "a user name must be non-empty and without spaces",
            );
            continue;
        }
        if !users.iter().any(|known| known.name == name) {
            src.warn(
                u.span(),
                key,
                format!("`{name}` is not a user of [auth]: no submitter can be this user"),
            );
        }
        permission.users.push(name.to_string());
    }
    for (i, n) in raw.tls_required_no_networks.iter().flatten().enumerate() {
        match values::network(n.get_ref()) {
            Ok(net) => permission.networks.push(net),
            Err(m) => src.error(n.span(), format!("policy.tls_required_no_networks[{i}]"), m),
        }
    }
}

/// `[mta_sts]`; policy hosts are verified against the same extra CAs as receivers.
fn build_mta_sts(
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
    let k = |key: &str| format!("mta_sts.{key}");
    s.fetch_timeout = opt(
        src,
        &k("fetch_timeout"),
        &raw.fetch_timeout,
        s.fetch_timeout,
        dur,
    );
    s.connect_timeout = opt(
        src,
        &k("connect_timeout"),
        &raw.connect_timeout,
        s.connect_timeout,
        dur,
    );
    // RFC 8461 §3.3 names no limit; policies are a few hundred bytes, and 64 KiB is what
    // other implementations accept.
    s.max_policy_size = opt(
        src,
        &k("max_policy_size"),
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
    s.refresh_before = opt(
        src,
        &k("refresh_before"),
        &raw.refresh_before,
        s.refresh_before,
        dur,
    );
    s.refresh_interval = opt(
        src,
        &k("refresh_interval"),
        &raw.refresh_interval,
        s.refresh_interval,
        dur,
    );
    s.forget_unused_after = opt(
        src,
        &k("forget_unused_after"),
        &raw.forget_unused_after,
        s.forget_unused_after,
        dur,
    );
    if s.connect_timeout > s.fetch_timeout {
        let span = raw.connect_timeout.as_ref().map_or(0..0, Spanned::span);
        src.error(
            span,
            k("connect_timeout"),
            "must not be longer than mta_sts.fetch_timeout, which bounds the whole fetch",
        );
    }
    s
}

fn build_queue(raw: &RawConfig, src: &mut Source<'_>, hostname: &str) -> QueueSettings {
    let mut q = QueueSettings {
        hostname: hostname.to_string(),
        ..QueueSettings::default()
    };
    if let Some(d) = &raw.delivery {
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
    if let Some(r) = &raw.retry {
        let d = q.retry.clone();
        q.retry.initial = opt(src, "retry.initial", &r.initial, d.initial, dur);
        q.retry.factor = opt(src, "retry.factor", &r.factor, d.factor, |f| {
            if (1.0..=10.0).contains(f) {
                Ok(*f)
            } else {
                Err(format!("{f} is outside 1.0 to 10.0"))
            }
        });
        q.retry.max_interval = opt(
            src,
            "retry.max_interval",
            &r.max_interval,
            d.max_interval,
            dur,
        );
        q.retry.jitter = opt(src, "retry.jitter", &r.jitter, d.jitter, |f| {
            if (0.0..=0.5).contains(f) {
                Ok(*f)
            } else {
                Err(format!("{f} is outside 0.0 to 0.5"))
            }
        });
        q.retry.max_lifetime = opt(
            src,
            "retry.max_lifetime",
            &r.max_lifetime,
            d.max_lifetime,
            dur,
        );
        q.retry.delay_dsn_after = opt(
            src,
            "retry.delay_dsn_after",
            &r.delay_dsn_after,
            d.delay_dsn_after,
            |t| {
                if t == "never" {
                    Ok(None)
                } else {
                    dur(t).map(Some)
                }
            },
        );
        q.destination_backoff = opt(
            src,
            "retry.destination_backoff",
            &r.destination_backoff,
            q.destination_backoff,
            dur,
        );
        if q.retry.max_interval < q.retry.initial {
            let span: Range<usize> = r.max_interval.as_ref().map_or(0..0, |s| s.span());
            src.error(
                span,
                "retry.max_interval",
                "must not be shorter than retry.initial",
            );
        }
    }
    q
}

pub(crate) fn render(c: &Config) -> String {
    use std::fmt::Write;
    let d = |d: Duration| humantime::format_duration(d).to_string();
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut out = String::new();
    let o = &mut out;
    let source = c
        .source
        .as_ref()
        .map_or("<embedded defaults>".to_string(), |p| {
            p.display().to_string()
        });
    let _ = writeln!(o, "# effective configuration (from {source})\n");
    let _ = writeln!(
        o,
        "[server]\nhostname = {}\ndata_dir = {}\nshutdown_grace = {}\n",
        q(&c.hostname),
        q(&c.data_dir.display().to_string()),
        q(&d(c.shutdown_grace))
    );
    let _ = writeln!(
        o,
        "[log]\nformat = {}\nlevel = {}\n",
        q(match c.log.format {
            LogFormat::Human => "human",
            LogFormat::Json => "json",
        }),
        q(&c.log.level)
    );
    match c.metrics_listen {
        Some(a) => {
            let _ = writeln!(o, "[metrics]\nlisten = {}\n", q(&a.to_string()));
        }
        None => {
            let _ = writeln!(o, "# [metrics] is off\n");
        }
    }
    let _ = writeln!(
        o,
        "[control]\nsocket = {}\n",
        q(&c.control_socket.display().to_string())
    );
    let _ = writeln!(
        o,
        "[spool]\ncommit_batch_max = {}\ncache_size = {}\n",
        c.spool.commit_batch_max, c.spool.cache_size
    );
    let i = &c.inbound;
    for l in &i.listeners {
        let role = match l.role {
            Role::Relay => "relay",
            Role::Submission => "submission",
            Role::Submissions => "submissions",
        };
        let _ = writeln!(
            o,
            "[[listener]]\naddress = {}\nrole = {}\ninsecure_allow_plaintext_auth = {}\n",
            q(&l.address.to_string()),
            q(role),
            l.insecure_allow_plaintext_auth
        );
    }
    match &i.tls {
        Some(t) => {
            let _ = writeln!(
                o,
                "[tls]\ncertificate = {}\nprivate_key = {}\n",
                q(&t.cert_path.display().to_string()),
                q(&t.key_path.display().to_string())
            );
        }
        None => {
            let _ = writeln!(o, "# [tls] is not set: no STARTTLS offered to submitters\n");
        }
    }
    let nets: Vec<String> = i
        .trusted_networks
        .iter()
        .map(|n| q(&n.to_string()))
        .collect();
    let _ = writeln!(o, "[relay]\ntrusted_networks = [{}]\n", nets.join(", "));
    let _ = writeln!(o, "[auth]\n# {} user(s) configured\n", i.users.len());
    let l = &i.limits;
    let _ = writeln!(
        o,
        "[limits]\nmax_message_size = {}\nmax_recipients = {}\ncommand_timeout = {}\ndata_timeout = {}\nmax_sessions = {}\nmax_sessions_per_ip = {}\nmax_bad_commands = {}\nmax_auth_failures = {}\nauth_failure_delay = {}\nauth_failures_per_client = {}\nauth_failure_window = {}\nmax_concurrent_auth = {}\nmax_received_headers = {}\nmax_body_memory = {}\n",
        l.max_message_size,
        l.max_recipients,
        q(&d(l.command_timeout)),
        q(&d(l.data_timeout)),
        l.max_sessions,
        l.max_sessions_per_ip,
        l.max_bad_commands,
        l.max_auth_failures,
        q(&d(l.auth_failure_delay)),
        l.auth_failures_per_client,
        q(&d(l.auth_failure_window)),
        l.max_concurrent_auth,
        l.max_received_headers,
        l.max_body_memory
    );
    let ns: Vec<String> = c
        .resolver
        .nameservers
        .iter()
        .map(|n| q(&n.to_string()))
        .collect();
    let _ = writeln!(
        o,
        "[dns]\nnameservers = [{}]{}\ntimeout = {}\nattempts = {}",
        ns.join(", "),
        if ns.is_empty() {
            " # from /etc/resolv.conf"
        } else {
            ""
        },
        q(&d(c.resolver.timeout)),
        c.resolver.attempts
    );
    let _ = writeln!(
        o,
        "max_mx_hosts = {}\nhost_lookups_at_once = {}\nhost_lookup_timeout = {}",
        c.gather.max_hosts,
        c.gather.host_concurrency,
        q(&d(c.gather.host_timeout))
    );
    let (mode, anchor) = match &c.resolver.dnssec {
        DnssecMode::Validate { trust_anchor } => ("validate", trust_anchor.as_ref()),
        DnssecMode::TrustResolver => ("trust-resolver", None),
    };
    let _ = writeln!(o, "dnssec = {}", q(mode));
    match anchor {
        Some(p) => {
            let _ = writeln!(o, "trust_anchor = {}", q(&p.display().to_string()));
        }
        None if mode == "validate" => {
            let _ = writeln!(
                o,
                "# trust_anchor: the IANA root anchor built into strictmx"
            );
        }
        None => {}
    }
    let trusted: Vec<String> = c
        .resolver
        .trusted_nameservers
        .iter()
        .map(|n| q(&n.to_string()))
        .collect();
    let _ = writeln!(o, "trusted_nameservers = [{}]\n", trusted.join(", "));
    let t = &c.transport;
    let default_tls = match t.policy.default_requirement {
        DefaultRequirement::Opportunistic => "opportunistic",
        DefaultRequirement::Encrypted => "encrypted",
        DefaultRequirement::Verified => "verified",
    };
    let _ = writeln!(o, "[delivery]\nhelo_name = {}", q(&t.helo_name));
    if let Some(a) = t.source_ipv4 {
        let _ = writeln!(o, "source_ipv4 = {}", q(&a.to_string()));
    }
    if let Some(a) = t.source_ipv6 {
        let _ = writeln!(o, "source_ipv6 = {}", q(&a.to_string()));
    }
    if let Some(p) = &t.extra_ca_file {
        let _ = writeln!(o, "extra_ca_file = {}", q(&p.display().to_string()));
    }
    let _ = writeln!(
        o,
        "smtp_port = {}\nconnect_timeout = {}\ngreeting_timeout = {}\ncommand_timeout = {}\ndata_timeout = {}\nmax_connections = {}\nmax_per_destination = {}\nmax_messages_per_connection = {}\ndefault_tls = {}\ninsecure_plaintext_fallback = {}",
        t.smtp_port,
        q(&d(t.connect_timeout)),
        q(&d(t.greeting_timeout)),
        q(&d(t.command_timeout)),
        q(&d(t.data_timeout)),
        c.queue.max_connections,
        c.queue.max_per_destination,
        t.max_messages_per_connection,
        q(default_tls),
        t.policy.insecure_plaintext_fallback
    );
    let never: Vec<String> = t
        .never_deliver_to
        .iter()
        .map(|n| q(&n.to_string()))
        .collect();
    let _ = writeln!(o, "never_deliver_to = [{}]\n", never.join(", "));
    let m = &c.mta_sts;
    let _ = writeln!(
        o,
        "[mta_sts]\nenabled = {}\nfetch_timeout = {}\nconnect_timeout = {}\nmax_policy_size = {}\nrefresh_before = {}\nrefresh_interval = {}\nforget_unused_after = {}\n",
        m.enabled,
        q(&d(m.fetch_timeout)),
        q(&d(m.connect_timeout)),
        m.max_policy_size,
        q(&d(m.refresh_before)),
        q(&d(m.refresh_interval)),
        q(&d(m.forget_unused_after)),
    );
    let r = &c.queue.retry;
    let _ = writeln!(
        o,
        "[retry]\ninitial = {}\nfactor = {}\nmax_interval = {}\njitter = {}\nmax_lifetime = {}\ndelay_dsn_after = {}\ndestination_backoff = {}\n",
        q(&d(r.initial)),
        toml::Value::Float(r.factor),
        q(&d(r.max_interval)),
        toml::Value::Float(r.jitter),
        q(&d(r.max_lifetime)),
        q(&r.delay_dsn_after.map_or("never".to_string(), d)),
        q(&d(c.queue.destination_backoff))
    );
    let p = &t.tls_required_no;
    let users: Vec<String> = p.users.iter().map(|u| q(u)).collect();
    let nets: Vec<String> = p.networks.iter().map(|n| q(&n.to_string())).collect();
    let _ = writeln!(
        o,
        "[policy]\ntls_required_no_users = [{}]\ntls_required_no_networks = [{}]\n",
        users.join(", "),
        nets.join(", ")
    );
    crate::dkim::render(&c.inbound.dkim, o);
    crate::rules::render(&t.policy.rules, o);
    crate::tlsrpt::render(&c.tlsrpt, o);
    crate::routes::render(&t.routes, o);
    out
}

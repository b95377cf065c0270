//! Where submitters connect and who may relay: `[[listener]]` (address and role), `[tls]` (the
//! server certificate and key) and `[relay] trusted_networks`, into
//! `strictmx_inbound::InboundSettings`.
//!
//! Sessions, STARTTLS and the relay decision are `strictmx-inbound`'s; this checks the values,
//! that the certificate and key load together (`files`), and that a `submissions` listener has
//! them. `[auth]` and `[limits]` fill in the rest of the settings (`auth`, `limits`).

use std::fmt::Write;
use std::path::Path;

use strictmx_inbound::{InboundSettings, ListenerSettings, Role, ServerTlsSettings};

use crate::error::Source;
use crate::files::warn_if_world_readable;
use crate::raw::{RawConfig, RawListener, RawTls};
use crate::validate::{opt, path_in, quote, quote_list, req};
use crate::{networks, values};

pub(crate) fn build(
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
            .map(|(i, l)| listener(i, l, src))
            .collect();
    }
    if let Some(tls) = &raw.tls {
        s.tls = server_tls(tls, src, base);
    }
    for (i, l) in s.listeners.iter().enumerate() {
        if l.role == Role::Submissions && s.tls.is_none() {
            let span = raw.listeners.get(i).map_or(0..0, |l| l.address.span());
            src.error(span, format!("listener[{i}].role"), "a \"submissions\" listener speaks TLS from the first byte (RFC 8314) and needs [tls] certificate and private_key");
        }
    }
    if let Some(nets) = raw.relay.as_ref().and_then(|r| r.trusted_networks.as_ref()) {
        s.trusted_networks = trusted_networks(nets, src);
    }
    s
}

fn listener(i: usize, l: &RawListener, src: &mut Source<'_>) -> ListenerSettings {
    let key = format!("listener[{i}]");
    let address = req(
        src,
        &format!("{key}.address"),
        &l.address,
        ([127, 0, 0, 1], 2525).into(),
        |a| values::socket_addr(a),
    );
    let role = opt(
        src,
        &format!("{key}.role"),
        &l.role,
        Role::Relay,
        |r| match r.as_str() {
            "relay" => Ok(Role::Relay),
            "submission" => Ok(Role::Submission),
            "submissions" => Ok(Role::Submissions),
            other => Err(format!(
                "`{other}` is not a listener role: use \"relay\", \"submission\" or \"submissions\""
            )),
        },
    );
    ListenerSettings {
        address,
        role,
        insecure_allow_plaintext_auth: l.insecure_allow_plaintext_auth.unwrap_or(false),
    }
}

/// `[tls]`: both files or neither; the key is checked to belong to the certificate.
fn server_tls(
    tls: &RawTls,
    src: &mut Source<'_>,
    base: Option<&Path>,
) -> Option<ServerTlsSettings> {
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
            return Some(ServerTlsSettings {
                cert_path,
                key_path,
            });
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
    None
}

/// `[relay] trusted_networks`, each error or warning at its element.
fn trusted_networks(nets: &[toml::Spanned<String>], src: &mut Source<'_>) -> Vec<ipnet::IpNet> {
    nets.iter()
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
        .collect()
}

pub(crate) fn render(i: &InboundSettings, o: &mut String) {
    for l in &i.listeners {
        let role = match l.role {
            Role::Relay => "relay",
            Role::Submission => "submission",
            Role::Submissions => "submissions",
        };
        let _ = writeln!(
            o,
            "[[listener]]\naddress = {}\nrole = {}\ninsecure_allow_plaintext_auth = {}\n",
            quote(&l.address.to_string()),
            quote(role),
            l.insecure_allow_plaintext_auth
        );
    }
    match &i.tls {
        Some(t) => {
            let _ = writeln!(
                o,
                "[tls]\ncertificate = {}\nprivate_key = {}\n",
                quote(&t.cert_path.display().to_string()),
                quote(&t.key_path.display().to_string())
            );
        }
        None => {
            let _ = writeln!(o, "# [tls] is not set: no STARTTLS offered to submitters\n");
        }
    }
    let _ = writeln!(
        o,
        "[relay]\ntrusted_networks = {}\n",
        quote_list(&i.trusted_networks)
    );
}

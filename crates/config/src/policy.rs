//! `[policy]` → `TransportSettings::tls_required_no`: the submitters (users of `[auth]`, client
//! networks) whose `TLS-Required: No` header is honoured (RFC 8689 §5).
//!
//! Telling whether a message's submitter is one of them is `strictmx-delivery`'s, what the header
//! then relaxes `strictmx-policy`'s; this checks the names and networks, and warns of a user
//! `[auth]` does not know.

use std::fmt::Write;

use strictmx_delivery::transport::TransportSettings;
use strictmx_inbound::User;

use crate::error::Source;
use crate::raw::RawPolicy;
use crate::validate::quote_list;
use crate::values;

/// `[policy]`: who may relax recipient-domain policy with `TLS-Required: No` (RFC 8689 §5).
pub(crate) fn build(
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

pub(crate) fn render(t: &TransportSettings, o: &mut String) {
    let p = &t.tls_required_no;
    let _ = writeln!(
        o,
        "[policy]\ntls_required_no_users = {}\ntls_required_no_networks = {}\n",
        quote_list(&p.users),
        quote_list(&p.networks)
    );
}

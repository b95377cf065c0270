//! Settings of the outbound SMTP client, with defaults taken from RFC 5321 §4.5.3.2.
//!
//! `strictmx-config` builds these from TOML; the transport only reads them.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use strictmx_policy::PolicySettings;
use strictmx_spool::ClientInfo;

/// Which submitters may relax recipient-domain policy with `TLS-Required: No` (RFC 8689 §5).
/// Empty (the default): nobody; the header is then ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsRequiredNoPermission {
    /// AUTH user names (compared exactly) whose messages may relax.
    pub users: Vec<String>,
    /// Client networks whose messages may relax (the submitting client's IP address).
    pub networks: Vec<IpNet>,
}

impl TlsRequiredNoPermission {
    /// Whether the client that submitted a message may relax policy with the header.
    pub fn allows(&self, client: &ClientInfo) -> bool {
        let user = client
            .auth_user
            .as_deref()
            .is_some_and(|user| self.users.iter().any(|allowed| allowed == user));
        user || self.networks.iter().any(|net| net.contains(&client.ip))
    }
}

/// Sends recipient domains to a fixed next hop instead of their MX hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// What recipient domains the route takes, lowercase ASCII: `example.org` (that domain),
    /// `*.example.org` (its subdomains, not itself) or `*` (every domain no other route takes).
    pub domain: String,
    /// An IP address, or a host name resolved with A/AAAA only (never an MX lookup).
    pub host: String,
    pub port: u16,
    /// The login at the next hop (RFC 4954 AUTH), sent only over TLS whose peer the policy
    /// authenticated; a route with one is planned as `Verified` at least.
    pub credentials: Option<RouteCredentials>,
}

/// A user name and password for a smarthost's AUTH. The password never shows in `Debug`,
/// in `explain` or in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct RouteCredentials {
    pub user: String,
    pub password: String,
    /// Where the password was read from (`auth_password_file`), for messages and
    /// `check-config`; empty when it was given otherwise.
    pub password_file: PathBuf,
}

impl std::fmt::Debug for RouteCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteCredentials")
            .field("user", &self.user)
            .field("password", &"<withheld>")
            .field("password_file", &self.password_file)
            .finish()
    }
}

/// Only the user name is shown (`explain --json`).
impl serde::Serialize for RouteCredentials {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut state = serializer.serialize_struct("RouteCredentials", 1)?;
        state.serialize_field("user", &self.user)?;
        state.end()
    }
}

/// The routes indexed by pattern, so that finding a domain's route costs one hash lookup per
/// label of the domain, however many routes there are (a scan of every route per job would
/// grow with the table). Patterns compare case-insensitively, a trailing dot ignored; the
/// first route of a pattern wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    routes: Vec<Route>,
    exact: HashMap<String, usize>,
    /// `*.example.org` under `example.org`.
    wildcard: HashMap<String, usize>,
    catch_all: Option<usize>,
}

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> Self {
        let mut table = RouteTable::default();
        for (index, route) in routes.iter().enumerate() {
            let pattern = route.domain.trim_end_matches('.').to_ascii_lowercase();
            if pattern == "*" {
                table.catch_all.get_or_insert(index);
            } else if let Some(suffix) = pattern.strip_prefix("*.") {
                table.wildcard.entry(suffix.to_owned()).or_insert(index);
            } else {
                table.exact.entry(pattern).or_insert(index);
            }
        }
        table.routes = routes;
        table
    }

    /// Every route, in configuration order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route that takes `domain`: an exact route first, then the wildcard with the longest
    /// suffix (`*.a.example` before `*.example`; a wildcard takes subdomains only, at a label
    /// boundary), then the catch-all `*`.
    pub fn get(&self, domain: &str) -> Option<&Route> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let index = self.exact.get(&domain).copied().or_else(|| {
            // The parent domains, longest first: a.eu.example.org → eu.example.org, example.org, org.
            domain
                .match_indices('.')
                .find_map(|(dot, _)| self.wildcard.get(&domain[dot + 1..]).copied())
                .or(self.catch_all)
        })?;
        self.routes.get(index)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportSettings {
    /// The name sent in EHLO/HELO.
    pub helo_name: String,
    /// Local addresses to connect from; the system chooses when unset.
    pub source_ipv4: Option<Ipv4Addr>,
    pub source_ipv6: Option<Ipv6Addr>,
    /// TCP connect; RFC 5321 sets no minimum.
    pub connect_timeout: Duration,
    /// Waiting for the 220 greeting (RFC 5321 §4.5.3.2.1: 5 minutes).
    pub greeting_timeout: Duration,
    /// Each command's reply: EHLO, STARTTLS, MAIL, RCPT, DATA, RSET (RFC 5321 §4.5.3.2.2-4:
    /// 5 minutes for MAIL and RCPT, 2 for DATA; the longest one applies to all).
    pub command_timeout: Duration,
    /// Sending the message and waiting for the reply to its end (RFC 5321 §4.5.3.2.5-6: 3 minutes
    /// per block, 10 minutes for the final reply; the longer one applies).
    pub data_timeout: Duration,
    /// PEM bundle of CA certificates trusted in addition to the web PKI roots.
    pub extra_ca_file: Option<PathBuf>,
    /// Replaced at run time by `Transport::replace_routes`.
    pub routes: Vec<Route>,
    /// The port of MX hosts.
    pub smtp_port: u16,
    /// Messages sent over one connection before it is closed (at least 1).
    pub max_messages_per_connection: usize,
    /// The rules and the global default; replaced at run time by `Transport::replace_policy`.
    pub policy: PolicySettings,
    /// Who may use `TLS-Required: No`.
    pub tls_required_no: TlsRequiredNoPermission,
    /// Networks no MX host may be reached at; a domain whose hosts are all there bounces.
    /// Routes are exempt: the administrator named their next hop.
    pub never_deliver_to: Vec<IpNet>,
    /// Where this server accepts SMTP (filled in once the listeners are bound): a host at one
    /// of these addresses is a loop, and mail that can only go there bounces with 5.4.6.
    pub own_listeners: Vec<SocketAddr>,
}

/// The networks `never_deliver_to` holds by default: this machine's loopback and the
/// unspecified addresses, which a hostile domain could point its MX at to reach local services.
pub fn default_never_deliver_to() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128", "0.0.0.0/8", "::/128"]
        .iter()
        .map(|text| {
            text.parse()
                .expect("invariant: the default networks are valid")
        })
        .collect()
}

impl Default for TransportSettings {
    fn default() -> Self {
        TransportSettings {
            helo_name: "localhost".to_owned(),
            source_ipv4: None,
            source_ipv6: None,
            connect_timeout: Duration::from_secs(30),
            greeting_timeout: Duration::from_secs(5 * 60),
            command_timeout: Duration::from_secs(5 * 60),
            data_timeout: Duration::from_secs(10 * 60),
            extra_ca_file: None,
            routes: Vec::new(),
            smtp_port: 25,
            max_messages_per_connection: 20,
            policy: PolicySettings::default(),
            tls_required_no: TlsRequiredNoPermission::default(),
            never_deliver_to: default_never_deliver_to(),
            own_listeners: Vec::new(),
        }
    }
}

impl TransportSettings {
    /// The routes the transport was built with, indexed (`Transport::replace_routes` may have
    /// replaced them since).
    pub fn route_table(&self) -> RouteTable {
        RouteTable::new(self.routes.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(domain: &str) -> Route {
        Route {
            domain: domain.to_owned(),
            host: format!("relay-for-{domain}"),
            port: 25,
            credentials: None,
        }
    }

    fn table_of(routes: &[Route]) -> RouteTable {
        RouteTable::new(routes.to_vec())
    }

    #[test]
    fn exact_routes_win_over_wildcards_and_the_longest_wildcard_over_the_catch_all() {
        let routes = [
            route("*"),
            route("*.example.org"),
            route("*.eu.example.org"),
            route("eu.example.org"),
        ];
        let table = [
            ("eu.example.org", "eu.example.org"),
            ("EU.Example.Org.", "eu.example.org"),
            ("a.eu.example.org", "*.eu.example.org"),
            ("b.example.org", "*.example.org"),
            // A wildcard takes subdomains only, and only at a label boundary.
            ("example.org", "*"),
            ("badexample.org", "*"),
            ("other.test", "*"),
        ];
        let indexed = table_of(&routes);
        for (domain, want) in table {
            let found = indexed.get(domain).map(|r| r.domain.as_str());
            assert_eq!(found, Some(want), "{domain}");
        }
        assert!(table_of(&routes[1..]).get("other.test").is_none());
    }

    #[test]
    fn credentials_show_the_user_but_never_the_password() {
        let credentials = RouteCredentials {
            user: "relay-user".to_owned(),
            password: "hunter2-secret".to_owned(),
            password_file: PathBuf::new(),
        };
        let debug = format!("{credentials:?}");
        assert!(debug.contains("relay-user") && !debug.contains("hunter2"));
    }
}

//! Settings of the outbound SMTP client, with defaults taken from RFC 5321 §4.5.3.2.
//!
//! `strictmx-config` builds these from TOML; the transport only reads them.

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

/// Sends one destination domain to a fixed next hop instead of its MX hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The recipient domain, lowercase ASCII.
    pub domain: String,
    /// An IP address, or a host name resolved with A/AAAA.
    pub host: String,
    pub port: u16,
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
    /// The route for `domain`, if one is configured (domains compare case-insensitively).
    pub fn route_for(&self, domain: &str) -> Option<&Route> {
        let domain = domain.trim_end_matches('.');
        self.routes.iter().find(|route| {
            route
                .domain
                .trim_end_matches('.')
                .eq_ignore_ascii_case(domain)
        })
    }
}

//! The inbound settings type and its defaults. Reading them from TOML and validating the file is
//! left to `strictmx-config`; checks that need the filesystem happen in `Inbound::bind`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use strictmx_protocol::SenderPattern;

use crate::dkim::DkimKey;

/// Everything the listeners need to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundSettings {
    pub listeners: Vec<ListenerSettings>,
    /// Our name in the greeting, EHLO reply and `Received:` header.
    pub hostname: String,
    /// Clients in these networks may relay on a `Relay` listener without AUTH.
    pub trusted_networks: Vec<IpNet>,
    pub users: Vec<User>,
    pub limits: Limits,
    /// The certificate for STARTTLS and implicit TLS; `None` offers no TLS.
    pub tls: Option<ServerTlsSettings>,
    /// After shutdown begins, how long sessions with a transaction in progress may continue.
    pub shutdown_grace: Duration,
    /// DKIM keys, at most one per `From:` domain; a message whose domain has none is not signed.
    pub dkim: Vec<DkimKey>,
}

/// One listening socket and what it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSettings {
    pub address: SocketAddr,
    pub role: Role,
    /// Offer AUTH on an unencrypted connection. Passwords then cross the network in clear.
    pub insecure_allow_plaintext_auth: bool,
}

/// What a listener is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Port 25 style: STARTTLS offered when a certificate exists; trusted networks or
    /// authenticated users may relay.
    Relay,
    /// Port 587 (RFC 6409): STARTTLS before AUTH, AUTH before relaying.
    Submission,
    /// Port 465 (RFC 8314): TLS from the first byte, AUTH before relaying.
    Submissions,
}

impl Role {
    /// The role's name, as in the configuration and the logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Relay => "relay",
            Role::Submission => "submission",
            Role::Submissions => "submissions",
        }
    }
}

/// A user allowed to authenticate, with an argon2 PHC string from [`crate::hash_password`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub argon2_phc_hash: String,
    /// The envelope senders this user may use once authenticated (Postfix's sender login
    /// maps): addresses or `@domain`s. Empty: any sender.
    pub senders: Vec<SenderPattern>,
    /// The TLS floor every message this user submits is delivered under (`require_tls`).
    pub require_tls: Option<strictmx_spool::TlsFloor>,
}

/// Limits that protect the server and the mail, each with its reply in `docs/inbound.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest message in octets, advertised with SIZE (RFC 1870).
    pub max_message_size: u64,
    pub max_recipients: usize,
    /// How long to wait for a command line (RFC 5321 §4.5.3.2.7 suggests 5 minutes).
    pub command_timeout: Duration,
    /// How long to wait for more DATA content (RFC 5321 §4.5.3.2.5 suggests 3 minutes per
    /// block; we allow more for slow submitters).
    pub data_timeout: Duration,
    pub max_sessions: usize,
    pub max_sessions_per_ip: usize,
    /// Rejected commands (syntax, sequence, unknown) before the session is closed.
    pub max_bad_commands: usize,
    /// Failed AUTH attempts before the session is closed.
    pub max_auth_failures: usize,
    /// Pause before answering the first failed AUTH from a client network; it doubles with each
    /// further failure within `auth_failure_window`, up to a minute.
    pub auth_failure_delay: Duration,
    /// Failed AUTH attempts a client (an IPv4 address or an IPv6 /64) may make within
    /// `auth_failure_window`, across sessions, before AUTH is refused with 454 4.7.0.
    pub auth_failures_per_client: u32,
    /// How long a failed AUTH counts against its client.
    pub auth_failure_window: Duration,
    /// Password checks (argon2, about 19 MiB and a core each) that may run at once; AUTH beyond
    /// that is answered 454 4.7.0.
    pub max_concurrent_auth: usize,
    /// A message with more `Received:` fields than this is refused as a loop (RFC 5321 §6.3).
    pub max_received_headers: usize,
    /// Octets of message content all sessions together may hold in memory while they read
    /// DATA and wait for the spool; a message that finds it spent is refused with 452 4.3.1.
    pub max_body_memory: u64,
}

/// Where the server certificate chain and private key are, both PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsSettings {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl Default for InboundSettings {
    fn default() -> Self {
        InboundSettings {
            listeners: vec![ListenerSettings {
                address: SocketAddr::from(([127, 0, 0, 1], 2525)),
                role: Role::Relay,
                insecure_allow_plaintext_auth: false,
            }],
            hostname: "localhost".to_owned(),
            trusted_networks: vec![loopback_v4()],
            users: Vec::new(),
            limits: Limits::default(),
            tls: None,
            shutdown_grace: Duration::from_secs(30),
            dkim: Vec::new(),
        }
    }
}

fn loopback_v4() -> IpNet {
    IpNet::V4(
        ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(127, 0, 0, 0), 8)
            .expect("invariant: 8 is a valid IPv4 prefix length"),
    )
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            command_timeout: Duration::from_secs(5 * 60),
            data_timeout: Duration::from_secs(10 * 60),
            max_sessions: 200,
            max_sessions_per_ip: 20,
            max_bad_commands: 10,
            max_auth_failures: 3,
            auth_failure_delay: Duration::from_secs(2),
            auth_failures_per_client: 10,
            auth_failure_window: Duration::from_secs(3600),
            max_concurrent_auth: 4,
            max_received_headers: 100,
            max_body_memory: 256 * 1024 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_listen_on_loopback_and_trust_only_loopback() {
        let settings = InboundSettings::default();
        assert_eq!(settings.listeners.len(), 1);
        assert_eq!(
            settings.listeners[0].address,
            SocketAddr::from(([127, 0, 0, 1], 2525))
        );
        assert_eq!(settings.listeners[0].role, Role::Relay);
        assert_eq!(settings.trusted_networks, vec![loopback_v4()]);
        assert_eq!(settings.limits.max_message_size, 25 * 1024 * 1024);
        assert_eq!(settings.limits.max_recipients, 100);
    }
}

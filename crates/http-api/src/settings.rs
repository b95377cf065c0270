//! The HTTP API's settings and their defaults. Reading them from `[http_api]` and checking the
//! transport rule (plain HTTP only on loopback) is `strictmx-config`'s.

use std::net::SocketAddr;
use std::time::Duration;

use strictmx_protocol::SenderPattern;

/// `[http_api]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpApiSettings {
    pub listen: SocketAddr,
    /// Serve plain HTTP on an address that is not loopback (tokens and mail in clear).
    pub insecure_plaintext: bool,
    pub tokens: Vec<Token>,
    /// Largest request body in octets (the JSON, with `raw` in base64).
    pub max_request_size: usize,
    /// Most addresses in `to`.
    pub max_recipients: usize,
    /// Failed authentications a client address may make within `auth_failure_window`
    /// before it gets 429.
    pub auth_failures_per_client: u32,
    pub auth_failure_window: Duration,
    /// How long a client has to send its request headers.
    pub header_timeout: Duration,
}

impl Default for HttpApiSettings {
    fn default() -> Self {
        HttpApiSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8025)),
            insecure_plaintext: false,
            tokens: Vec::new(),
            max_request_size: 20 * 1024 * 1024,
            max_recipients: 100,
            auth_failures_per_client: 10,
            auth_failure_window: Duration::from_secs(300),
            header_timeout: Duration::from_secs(30),
        }
    }
}

/// One `[[http_api.token]]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub name: String,
    /// argon2 PHC string of the bearer token (`strictmx hash-password`).
    pub argon2_phc_hash: String,
    /// The envelope senders it may use (addresses or `@domain`s); empty: none.
    pub senders: Vec<SenderPattern>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("senders", &self.senders)
            .finish_non_exhaustive()
    }
}

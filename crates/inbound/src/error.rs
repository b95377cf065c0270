//! The inbound crate's error type: everything that stops `Inbound::bind` before serving.
//! Per-session failures never become errors here; a session answers its client and ends.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::Role;

/// Why the listeners could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    #[error("cannot listen on {address}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the certificate chain from {path}")]
    Certificate {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("no certificate in {path}")]
    NoCertificate { path: PathBuf },
    #[error("cannot read the private key from {path}")]
    PrivateKey {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("certificate {cert_path} and key {key_path} do not make a tls configuration")]
    TlsConfig {
        cert_path: PathBuf,
        key_path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("listener {address} with role {} needs a tls certificate", role.as_str())]
    TlsRequired { address: SocketAddr, role: Role },
    #[error("user {user} has a password hash that is not an argon2 phc string")]
    InvalidPasswordHash { user: String },
    #[error("user {user} is listed more than once")]
    DuplicateUser { user: String },
    #[error("no listeners configured")]
    NoListeners,
}

impl InboundError {
    /// Whether retrying later may succeed without a configuration change: only a port still held
    /// by another process.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Bind { source, .. } if source.kind() == io::ErrorKind::AddrInUse)
    }
}

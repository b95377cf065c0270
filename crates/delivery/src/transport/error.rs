//! The transport's error type: building the TLS setup, and everything that ends an SMTP session.
//!
//! Each variant carries the facts and classifies itself; turning a failure into a recipient
//! outcome (defer, bounce, next host) is done by the delivery run, never from the text.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use strictmx_policy::report::ResultType;
use strictmx_protocol::{EnhancedStatus, ProtocolError, Reply, status};

/// The step of the SMTP dialogue where something went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    Handshake,
    Mail,
    Rcpt,
    Data,
    EndOfData,
    Rset,
    Auth,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Greeting => "greeting",
            Stage::Ehlo => "ehlo",
            Stage::Helo => "helo",
            Stage::StartTls => "starttls",
            Stage::Handshake => "tls handshake",
            Stage::Mail => "mail from",
            Stage::Rcpt => "rcpt to",
            Stage::Data => "data",
            Stage::EndOfData => "end of data",
            Stage::Rset => "rset",
            Stage::Auth => "auth",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The extra CA bundle could not be read or holds no usable certificate.
    #[error("cannot load ca bundle {path}")]
    CaBundle {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },

    /// A certificate of the extra CA bundle was rejected as a trust anchor.
    #[error("ca bundle {path} holds an unusable certificate")]
    CaCertificate {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },

    /// The certificate verifier could not be built from the root store.
    #[error("cannot build the certificate verifier")]
    Verifier(#[from] rustls::client::VerifierBuilderError),

    /// The TLS client configuration could not be built (no usable protocol version).
    #[error("cannot build the tls client configuration")]
    TlsConfig(#[source] rustls::Error),

    /// TCP connect failed (refused, unreachable, bind of the source address failed).
    #[error("connect to {addr} failed")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },

    /// The peer did not answer within the configured time.
    #[error("timeout at {stage} after {}", strictmx_protocol::HumanDuration(*after))]
    Timeout { stage: Stage, after: Duration },

    /// Reading or writing the connection failed.
    #[error("i/o error at {stage}")]
    Io {
        stage: Stage,
        #[source]
        source: io::Error,
    },

    /// The peer closed the connection.
    #[error("connection closed by the server at {stage}")]
    Closed { stage: Stage },

    /// The peer sent something that is not an SMTP reply (or one beyond our bounds).
    #[error("malformed reply at {stage}")]
    MalformedReply {
        stage: Stage,
        #[source]
        source: ProtocolError,
    },

    /// The server answered a session-level command with a failure (greeting, EHLO, STARTTLS,
    /// RSET), or with a code that makes no sense at that step.
    #[error("server replied {} at {stage}", .reply.code)]
    Rejected { stage: Stage, reply: Reply },

    /// An address of the message cannot be written on a command line (a CR, LF or angle
    /// bracket would forge commands); nothing of the transaction was sent.
    #[error("the message has an address that cannot be sent")]
    UnsafeAddress {
        #[source]
        source: ProtocolError,
    },

    /// The plan requires TLS and the server does not offer STARTTLS.
    #[error("the server does not offer starttls and the plan requires tls")]
    StartTlsNotOffered,

    /// The server sent data after its 220 to STARTTLS, before the handshake: a command
    /// injection attempt (CVE-2011-0411 class); the connection is dropped.
    #[error("the server sent data before the tls handshake")]
    DataBeforeHandshake,

    /// The TLS handshake failed; under a `Verified` plan this includes certificate failures.
    #[error("tls handshake failed")]
    Handshake(#[source] io::Error),

    /// A session that does not meet the plan's TLS requirement was asked to carry mail.
    #[error("the session does not meet the {requirement} tls requirement")]
    RequirementNotMet { requirement: &'static str },

    /// The policy refused the peer after the handshake (DANE mismatch, certificate, pins,
    /// TLS version floor); nothing but QUIT was sent over the session.
    #[error("the peer does not meet the {requirement} requirement: {reason}")]
    PeerRefused {
        requirement: &'static str,
        result_type: ResultType,
        reason: String,
    },

    /// RFC 8689 §4.2.1: the message requires REQUIRETLS and the server did not advertise it
    /// after STARTTLS.
    #[error("the server does not advertise requiretls after starttls")]
    RequireTlsNotOffered,

    /// A route's credentials were about to go to a peer the policy did not authenticate;
    /// they were withheld (the plan of such a route demands `Verified`, so this is a bug
    /// guard, not a path configuration can reach).
    #[error("credentials of user {user} withheld: {host} is not an authenticated tls peer")]
    AuthUnauthenticatedPeer { host: String, user: String },

    /// RFC 4954 §3: the next hop offers neither AUTH PLAIN nor AUTH LOGIN after STARTTLS.
    #[error("{host} offers no auth mechanism strictmx speaks (plain, login) after starttls")]
    AuthNotOffered { host: String },

    /// RFC 4954 §6: the next hop refused the route's credentials (535 5.7.8, or another
    /// failure). Our configuration's problem, never the message's: it defers.
    #[error("{host} refused the credentials of user {user}: {}", reply_text(.reply))]
    AuthRefused {
        host: String,
        user: String,
        reply: Reply,
    },
}

impl TransportError {
    /// Whether this failure ends the session without any final answer about the mail.
    ///
    /// Every session failure is transient: the next host or a later attempt may succeed. Only
    /// setup errors (CA bundle, verifier) are not, and those stop the transport from starting.
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            TransportError::CaBundle { .. }
                | TransportError::CaCertificate { .. }
                | TransportError::Verifier(_)
                | TransportError::TlsConfig(_)
        )
    }

    /// The server's reply that caused this error, when there was one.
    pub fn smtp_reply(&self) -> Option<&Reply> {
        match self {
            TransportError::Rejected { reply, .. } => Some(reply),
            _ => None,
        }
    }

    /// Whether no SMTP session was reached: nothing (or no greeting) came from the host.
    pub fn is_unreachable(&self) -> bool {
        match self {
            TransportError::Connect { .. } => true,
            TransportError::Timeout { stage, .. }
            | TransportError::Io { stage, .. }
            | TransportError::Closed { stage } => {
                matches!(stage, Stage::Connect | Stage::Greeting)
            }
            _ => false,
        }
    }

    /// The enhanced status code (RFC 3463) that describes this failure for a DSN.
    pub fn status(&self) -> EnhancedStatus {
        if let Some(reply) = self.smtp_reply() {
            return reply_status(reply);
        }
        match self {
            TransportError::Connect { .. } => status::NO_ANSWER,
            TransportError::Timeout { stage, .. } if *stage == Stage::Connect => status::NO_ANSWER,
            TransportError::StartTlsNotOffered | TransportError::RequirementNotMet { .. } => {
                status::SECURITY_NOT_SUPPORTED
            }
            TransportError::Handshake(_)
            | TransportError::DataBeforeHandshake
            | TransportError::PeerRefused { .. } => status::CRYPTOGRAPHIC_FAILURE,
            // RFC 8689 §4.2.1: "REQUIRETLS not supported by server: 5.7.30 REQUIRETLS needed";
            // class 4 while other hosts or a later attempt may still meet it.
            TransportError::RequireTlsNotOffered => status::REQUIRETLS_NEEDED,
            // Class 4 since mail must not bounce because our own credentials are wrong
            // (RFC 4954 §6's 5.7.8 is about the client, not the mail).
            TransportError::AuthUnauthenticatedPeer { .. }
            | TransportError::AuthNotOffered { .. }
            | TransportError::AuthRefused { .. } => status::SECURITY_OTHER,
            _ => status::BAD_CONNECTION,
        }
    }

    /// The RFC 8460 §4.3 result type when this failure is one of the TLS policy.
    pub fn tlsrpt_result(&self) -> Option<ResultType> {
        match self {
            TransportError::StartTlsNotOffered => Some(ResultType::StarttlsNotSupported),
            TransportError::PeerRefused { result_type, .. } => Some(*result_type),
            // RFC 8460 §4.3.1: a failed negotiation outside the named categories.
            TransportError::Handshake(_)
            | TransportError::Timeout {
                stage: Stage::Handshake,
                ..
            } => Some(ResultType::ValidationFailure),
            _ => None,
        }
    }

    /// RFC 8689 §4.2.1: whether this host failed one of REQUIRETLS's conditions (STARTTLS,
    /// certificate, REQUIRETLS advertised) rather than for a reason that may pass.
    pub fn fails_requiretls(&self) -> bool {
        matches!(
            self,
            TransportError::StartTlsNotOffered
                | TransportError::RequirementNotMet { .. }
                | TransportError::PeerRefused { .. }
                | TransportError::RequireTlsNotOffered
                | TransportError::Handshake(_)
                | TransportError::Rejected {
                    stage: Stage::StartTls,
                    ..
                }
        )
    }
}

/// The enhanced status of a reply, or the class default (`4.0.0`, `5.0.0`) when it has none.
pub(crate) fn reply_status(reply: &Reply) -> EnhancedStatus {
    match reply.status {
        Some(status) => status,
        // RFC 3463 §3.1: X.0.0 of the reply's class.
        None => match reply.code / 100 {
            2 => status::SUCCESS,
            4 => status::OTHER_TRANSIENT,
            _ => status::OTHER_PERMANENT,
        },
    }
}

/// A reply in wire form without the final CRLF, multi-line replies joined by `\n`.
pub(crate) fn reply_text(reply: &Reply) -> String {
    reply.to_string().trim_end().replace("\r\n", "\n")
}

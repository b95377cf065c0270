//! What establishing one session showed: the facts of the connection and of its TLS
//! negotiation, as the I/O ladder (`run::establish`) found them.
//!
//! One value per connection, taken in once by the TLSRPT session log
//! (`SessionLog::negotiated`) and once by the attempt record (`AttemptScope::negotiated`), so
//! the two can never tell different stories about the same handshake.

use std::net::IpAddr;

use strictmx_policy::{NoTls, PeerAuth, PeerFacts, PeerFailure};

use crate::transport::tls::TlsInfo;

/// One connection up to the point where it could carry mail (or failed to).
#[derive(Debug, Clone)]
pub(crate) struct Negotiation {
    /// Our address on the connection (TLSRPT's sending-mta-ip).
    pub(crate) local_ip: Option<IpAddr>,
    /// The name the server gave in its EHLO reply or greeting (TLSRPT's receiving-mx-helo).
    pub(crate) peer_helo: Option<String>,
    pub(crate) tls: TlsOutcome,
}

/// What became of TLS on the connection.
#[derive(Debug, Clone)]
pub(crate) enum TlsOutcome {
    /// Not attempted: the plaintext retry after a failed handshake, reported already.
    Skipped,
    /// The connection failed during STARTTLS before any handshake result (an I/O error, data
    /// sent ahead of the handshake): nothing to report as a TLS session.
    Interrupted,
    /// No TLS: STARTTLS not offered or refused, or the handshake failed.
    Without(NoTls),
    /// TLS established, and the policy's judgement of the peer.
    Established {
        info: TlsInfo,
        peer: Box<PeerFacts>,
        verdict: Result<PeerAuth, PeerFailure>,
        /// Whether EHLO over TLS advertised REQUIRETLS; `None` when it was not reached.
        requiretls_offered: Option<bool>,
    },
}

impl TlsOutcome {
    /// Whether the server offered STARTTLS; `None` when nothing was learnt about it.
    pub(crate) fn starttls_offered(&self) -> Option<bool> {
        match self {
            TlsOutcome::Skipped | TlsOutcome::Interrupted => None,
            TlsOutcome::Without(NoTls::NotOffered) => Some(false),
            TlsOutcome::Without(NoTls::HandshakeFailed { .. }) | TlsOutcome::Established { .. } => {
                Some(true)
            }
        }
    }
}

impl Negotiation {
    /// The TLS session's facts, when one was established.
    pub(crate) fn tls_info(&self) -> Option<&TlsInfo> {
        match &self.tls {
            TlsOutcome::Established { info, .. } => Some(info),
            _ => None,
        }
    }

    /// How the policy authenticated the peer: only an accepted TLS peer counts.
    pub(crate) fn auth(&self) -> PeerAuth {
        match &self.tls {
            TlsOutcome::Established {
                verdict: Ok(auth), ..
            } => *auth,
            _ => PeerAuth::None,
        }
    }
}

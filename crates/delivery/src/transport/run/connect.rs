//! One connection to one address: connect, greet, STARTTLS, the policy's judgement, the
//! route's login and the REQUIRETLS check, until the session may carry mail. What it saw is
//! one `Negotiation`, taken in once by the session log and once by the attempt scope.

use std::collections::VecDeque;

use strictmx_policy::NoTls;
use strictmx_protocol::ErrorChain;

use super::{Established, Reach, Via, host_scope};
use crate::transport::attempt::AttemptScope;
use crate::transport::error::{Stage, TransportError};
use crate::transport::facts::FactSource;
use crate::transport::negotiation::{Negotiation, TlsOutcome};
use crate::transport::outcome;
use crate::transport::pending::{Pending, fail_message};
use crate::transport::session::{
    Endpoint, Judgement, PlainSession, SessionPlan, StartTlsError, Timeouts, checks_for,
};
use crate::transport::sessions::SessionLog;
use crate::transport::{RouteCredentials, Transport};

/// What one connection attempt gave.
pub(super) enum Connected {
    Session(Established, Box<AttemptScope>),
    /// The handshake failed and the plan allows plaintext: try again without STARTTLS.
    PlaintextFallback(Reach),
    /// The host failed; the messages were failed over.
    Failed(Reach),
}

/// Opens a session to the address for the queued messages, or fails them over. The
/// negotiation goes once to the session log and once to the attempt scope.
pub(super) async fn connect<F: FactSource>(
    transport: &Transport<F>,
    via: &Via<'_>,
    plaintext_only: bool,
    queue: &VecDeque<usize>,
    pending: &mut [Pending<'_>],
    sessions: &mut SessionLog,
) -> Connected {
    let Via {
        planned,
        host,
        addr,
        ..
    } = *via;
    let plan = planned.plan;
    let mut scope = host_scope(planned, host, Some(addr.ip()));
    let mut attempted = establish(transport, via, plaintext_only).await;
    if attempted.refused_after_resumption() {
        // The resumed session showed the chain of an older handshake; the server may have
        // changed its certificate since. Judge the current one: a full handshake, once.
        tracing::info!(domain = %plan.domain, mx = %host.host, ip = %addr.ip(), "resumed tls session refused by policy: connecting again with a full handshake");
        transport.tls.forget(&host.host);
        attempted = establish(transport, via, plaintext_only).await;
    }
    if let Some(negotiation) = &attempted.negotiation {
        scope.negotiated(negotiation);
        // What a shadow rule or an exception would make of this peer: its host entry's own
        // certificate checks, run on the chain the peer presented.
        let judged_with = checks_for(host);
        scope.judge_alternatives(negotiation, |other, peer| {
            let checks = checks_for(other);
            (checks != judged_with).then(|| transport.tls.recheck(checks, &other.host, peer))
        });
        sessions.negotiated(Some(addr.ip()), host, negotiation);
    }
    let error = match attempted.session {
        Ok(session) => return Connected::Session(session, Box::new(scope)),
        Err(error) => error,
    };
    let reach = if error.is_unreachable() {
        Reach::Unreachable
    } else {
        Reach::Reached
    };
    scope.result_type = error.tlsrpt_result();
    let failure = outcome::failure_from(&host.host, &error);
    for &index in queue {
        fail_message(&scope, &mut pending[index], &failure);
    }
    let handshake_failed = matches!(
        error,
        TransportError::Handshake(_)
            | TransportError::Timeout {
                stage: Stage::Handshake,
                ..
            }
    );
    if handshake_failed && !plaintext_only && plan.allows_plaintext_after_failed_handshake(host) {
        tracing::warn!(domain = %plan.domain, mx = %host.host, ip = %addr.ip(), "tls handshake failed: retrying in plaintext as configured");
        return Connected::PlaintextFallback(reach);
    }
    Connected::Failed(reach)
}

/// What `establish` saw, and the session when it may carry mail. No negotiation when the
/// connection, the greeting or EHLO failed.
struct Attempted {
    negotiation: Option<Negotiation>,
    session: Result<Established, TransportError>,
}

impl Attempted {
    /// The policy refused the peer of a resumed TLS session.
    fn refused_after_resumption(&self) -> bool {
        matches!(
            &self.negotiation,
            Some(Negotiation {
                tls: TlsOutcome::Established {
                    info,
                    verdict: Err(_),
                    ..
                },
                ..
            }) if info.resumed
        )
    }
}

/// Connects and brings the session to the point where the plan lets it carry mail: the TLS
/// negotiation and the policy's judgement of the peer.
async fn establish<F: FactSource>(
    transport: &Transport<F>,
    via: &Via<'_>,
    plaintext_only: bool,
) -> Attempted {
    let endpoint = Endpoint {
        addr: via.addr,
        helo_name: &transport.settings.helo_name,
        source: transport.source_for(via.addr.ip()),
    };
    let plan = SessionPlan {
        host: via.host.clone(),
        requiretls: via.planned.plan.requiretls,
    };
    let timeouts = Timeouts::from_settings(&transport.settings);
    let plain = match PlainSession::open(&endpoint, plan, timeouts).await {
        Ok(plain) => plain,
        Err(error) => {
            return Attempted {
                negotiation: None,
                session: Err(error),
            };
        }
    };
    let mut negotiation = Negotiation {
        local_ip: plain.local_ip(),
        peer_helo: plain.peer_name().map(str::to_owned),
        tls: TlsOutcome::Skipped,
    };
    let session = if plaintext_only {
        // The failed handshake before this retry was reported already.
        plaintext(plain, TransportError::StartTlsNotOffered).await
    } else if !plain.capabilities().starttls {
        negotiation.tls = TlsOutcome::Without(NoTls::NotOffered);
        plaintext(plain, TransportError::StartTlsNotOffered).await
    } else {
        secure(transport, plain, via.credentials, &mut negotiation.tls).await
    };
    Attempted {
        negotiation: Some(negotiation),
        session,
    }
}

/// STARTTLS, the policy's judgement, the route's login and the REQUIRETLS check; what the TLS
/// negotiation gave is left in `tls`.
async fn secure<F: FactSource>(
    transport: &Transport<F>,
    plain: PlainSession,
    credentials: Option<&RouteCredentials>,
    tls: &mut TlsOutcome,
) -> Result<Established, TransportError> {
    let host = plain.host().host.clone();
    let session = match plain.starttls(&transport.tls).await {
        Ok(session) => session,
        Err(StartTlsError::Refused { session, reply }) => {
            *tls = TlsOutcome::Without(NoTls::NotOffered);
            let refused = TransportError::Rejected {
                stage: Stage::StartTls,
                reply,
            };
            return plaintext(*session, refused).await;
        }
        Err(StartTlsError::Broken(error)) => {
            *tls = if error.tlsrpt_result().is_some() {
                TlsOutcome::Without(NoTls::HandshakeFailed {
                    reason: ErrorChain(&error).to_string(),
                })
            } else {
                TlsOutcome::Interrupted
            };
            return Err(error);
        }
    };
    let info = session.tls().clone();
    let peer = Box::new(session.peer().clone());
    let requirement = session.host().requirement.as_str();
    let mut requiretls_offered = None;
    let (verdict, judged) = match session.judge().await {
        Ok(secure) => {
            requiretls_offered = Some(secure.capabilities().requiretls);
            (Ok(secure.auth()), Ok(secure))
        }
        Err(Judgement::Refused { session, failure }) => {
            tracing::warn!(mx = %host, requirement, result_type = failure.result_type.as_str(), reason = %failure.reason, "peer refused by policy");
            session.quit().await;
            let error = TransportError::PeerRefused {
                requirement,
                result_type: failure.result_type,
                reason: failure.reason.clone(),
            };
            (Err(failure), Err(error))
        }
        Err(Judgement::Broken { auth, error }) => (Ok(auth), Err(error)),
    };
    *tls = TlsOutcome::Established {
        info,
        peer,
        verdict,
        requiretls_offered,
    };
    // The plan of a route with credentials demands an authenticated peer (see
    // `plan_route_delivery`); `authenticate` checks it once more before sending them.
    let secure = match credentials {
        Some(credentials) => judged?.authenticate(credentials).await?,
        None => judged?,
    };
    match secure.into_mail_session() {
        Ok(session) => Ok(Established::Tls(Box::new(session))),
        Err((secure, error)) => {
            secure.quit().await;
            Err(error)
        }
    }
}

/// A plaintext mail session when the plan allows it; otherwise `instead`, the reason TLS was
/// not reached, once the connection is closed.
async fn plaintext(
    plain: PlainSession,
    instead: TransportError,
) -> Result<Established, TransportError> {
    match plain.into_mail_session_if_allowed() {
        Ok(session) => Ok(Established::Plain(session)),
        Err((plain, _)) => {
            plain.quit().await;
            Err(instead)
        }
    }
}

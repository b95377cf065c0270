//! Handing queued messages to another strictmx node over SMTP (`strictmx queue xfer`,
//! `serve --drain --to`): one connection, STARTTLS whenever the node offers it, each message
//! with its envelope as queued (sender, the recipients given, DSN parameters, SMTPUTF8,
//! 8BITMIME, REQUIRETLS) and its transfer id in `TRANSID=<...>`.
//!
//! Only a node that advertises the transfer extension to us is used: it is a strictmx that
//! trusts this one, and it remembers transfer ids, so a message sent again after a crash is
//! answered `250` without being queued twice. Leasing, and what the spool does with each
//! outcome, are the caller's; whether a message may take this hop at all is [`hop_refusal`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use strictmx_policy::report::{PolicyType, ReportPolicy};
use strictmx_policy::{PlannedHost, TlsRequirement};
use strictmx_protocol::{ErrorChain, is_8bit, needs_smtputf8};
use strictmx_spool::{AttemptOutcome, AttemptRecord, Envelope, MessageId, PeerAuth};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::transport::error::TransportError;
use crate::transport::facts::FactSource;
use crate::transport::session::{
    Endpoint, Judgement, MailSession, Outgoing, PlainSession, SessionPlan, Timeouts,
};
use crate::transport::{StartTlsError, TlsInfo, Transport};

/// One queued message to hand over, with the recipients leased for it.
#[derive(Debug, Clone)]
pub struct TransferMessage {
    pub id: MessageId,
    /// `Spool::transfer_id`: the same for every attempt to move this message.
    pub transfer_id: String,
    pub envelope: Arc<Envelope>,
    /// Indexes into `envelope.recipients`.
    pub recipients: Vec<usize>,
    pub body: Arc<Vec<u8>>,
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferOutcome {
    /// The other node answered the end of data with 2xx: it has `accepted`; `refused` (index,
    /// reply) it did not take. `record` describes the hop for the attempt log and the audit.
    Taken {
        accepted: Vec<usize>,
        refused: Vec<(usize, String)>,
        reply: String,
        record: Box<AttemptRecord>,
    },
    /// Not handed over: every recipient stays queued here.
    Kept { reason: String },
}

/// Why no message could be handed over on this connection.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("cannot open an SMTP session with {peer}")]
    Session {
        peer: SocketAddr,
        #[source]
        source: TransportError,
    },
    #[error(
        "{peer} does not take transfers from this node (no {keyword} in its EHLO reply): it must be strictmx with this node in its trusted networks",
        keyword = strictmx_protocol::TRANSFER_KEYWORD
    )]
    NotOffered { peer: SocketAddr },
    #[error("STARTTLS with {peer} failed")]
    Tls {
        peer: SocketAddr,
        #[source]
        source: TransportError,
    },
}

/// What this hop offers a message: TLS (and whether the certificate verified) and extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    /// `None` without TLS; `Some(verified)` with it.
    pub tls_verified: Option<bool>,
    pub requiretls: bool,
    pub smtputf8: bool,
    pub eight_bit_mime: bool,
}

/// Why a message may not take this hop, if it may not; it then stays queued here.
pub fn hop_refusal(envelope: &Envelope, body: &[u8], hop: &Hop) -> Option<String> {
    // RFC 8689 §4.2.1: a REQUIRETLS message goes only over TLS whose certificate verified, to
    // a server that advertises REQUIRETLS.
    if envelope.params.requiretls {
        match hop.tls_verified {
            None => return Some("REQUIRETLS: the other node offered no STARTTLS".to_owned()),
            Some(false) => {
                return Some(
                    "REQUIRETLS: the other node's certificate did not verify (web PKI or [delivery] extra_ca_file)"
                        .to_owned(),
                );
            }
            Some(true) if !hop.requiretls => {
                return Some("REQUIRETLS: the other node does not offer it".to_owned());
            }
            Some(true) => {}
        }
    }
    // A floor set by the submitter (HTTP `require_tls`, an SMTP user's) has no SMTP parameter
    // to travel in; the other node would deliver the message without it.
    if let Some(floor) = envelope.require_tls {
        return Some(format!(
            "its TLS floor ({}) cannot travel with it over SMTP",
            floor.as_str()
        ));
    }
    // RFC 6531 §3.4, RFC 6152 §3: what the message needs, the hop must offer.
    let addresses = std::iter::once(envelope.mail_from.as_str())
        .chain(envelope.recipients.iter().map(|r| r.address.as_str()));
    if (envelope.params.smtputf8 || needs_smtputf8(addresses)) && !hop.smtputf8 {
        return Some("the other node does not offer SMTPUTF8".to_owned());
    }
    if is_8bit(body) && !hop.eight_bit_mime {
        return Some("the other node does not offer 8BITMIME".to_owned());
    }
    None
}

impl<F: FactSource> Transport<F> {
    /// Hands `messages` to the strictmx node at `addr` (`name` is what the administrator gave,
    /// checked against its certificate) over one connection, in order. An error means none was
    /// handed over; otherwise each message has its outcome.
    pub async fn transfer(
        &self,
        name: &str,
        addr: SocketAddr,
        messages: &[TransferMessage],
    ) -> Result<Vec<(MessageId, TransferOutcome)>, TransferError> {
        let endpoint = Endpoint {
            addr,
            helo_name: &self.settings.helo_name,
            source: self.source_for(addr.ip()),
        };
        let plan = SessionPlan {
            host: transfer_host(name),
            requiretls: false,
        };
        let timeouts = Timeouts::from_settings(&self.settings);
        let session = |source| TransferError::Session { peer: addr, source };
        let plain = PlainSession::open(&endpoint, plan, timeouts)
            .await
            .map_err(session)?;
        let tls_error = |source| TransferError::Tls { peer: addr, source };
        if !plain.capabilities().starttls {
            if !plain.capabilities().transfer {
                plain.quit().await;
                return Err(TransferError::NotOffered { peer: addr });
            }
            let caps = plain.capabilities().clone();
            let mut mail = plain
                .into_mail_session_if_allowed()
                .map_err(|(_, e)| session(e))?;
            let hop = Hop {
                tls_verified: None,
                requiretls: false,
                smtputf8: caps.smtputf8,
                eight_bit_mime: caps.eight_bit_mime,
            };
            let outcomes = carry(&mut mail, name, addr, None, hop, messages).await;
            mail.quit().await;
            return Ok(outcomes);
        }
        let tls = match plain.starttls(&self.tls).await {
            Ok(tls) => tls,
            Err(StartTlsError::Broken(e)) => return Err(tls_error(e)),
            Err(StartTlsError::Refused { session, reply }) => {
                session.quit().await;
                return Err(tls_error(TransportError::Rejected {
                    stage: crate::transport::Stage::StartTls,
                    reply,
                }));
            }
        };
        let secure = match tls.judge().await {
            Ok(secure) => secure,
            Err(Judgement::Broken { error, .. }) => return Err(tls_error(error)),
            Err(Judgement::Refused { session, .. }) => {
                session.quit().await;
                return Err(tls_error(TransportError::RequirementNotMet {
                    requirement: "opportunistic",
                }));
            }
        };
        if !secure.capabilities().transfer {
            secure.quit().await;
            return Err(TransferError::NotOffered { peer: addr });
        }
        let info = secure.tls().clone();
        let caps = secure.capabilities().clone();
        let hop = Hop {
            tls_verified: Some(info.cert_verified()),
            requiretls: caps.requiretls,
            smtputf8: caps.smtputf8,
            eight_bit_mime: caps.eight_bit_mime,
        };
        let mut mail = secure.into_mail_session().map_err(|(_, e)| session(e))?;
        let outcomes = carry(&mut mail, name, addr, Some(&info), hop, messages).await;
        mail.quit().await;
        Ok(outcomes)
    }
}

/// The other node as a planned host: opportunistic TLS (STARTTLS when offered, any
/// certificate); REQUIRETLS messages are held to more by [`hop_refusal`].
fn transfer_host(name: &str) -> PlannedHost {
    PlannedHost {
        host: name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        preference: 0,
        requirement: TlsRequirement::Opportunistic,
        pins: Vec::new(),
        min_tls_version: None,
        report: ReportPolicy {
            policy_type: PolicyType::NoPolicyFound,
            policy_string: Vec::new(),
            policy_domain: name.to_owned(),
            mx_host: Vec::new(),
        },
        testing: None,
    }
}

/// Sends each message in one transaction, RSET between them (in the same pipelined group as
/// the next transaction when the other node offers PIPELINING, so it costs no round trip). A
/// broken connection keeps the message it broke on and every later one.
async fn carry<S: AsyncRead + AsyncWrite + Unpin>(
    mail: &mut MailSession<S>,
    name: &str,
    addr: SocketAddr,
    tls: Option<&TlsInfo>,
    hop: Hop,
    messages: &[TransferMessage],
) -> Vec<(MessageId, TransferOutcome)> {
    let mut outcomes = Vec::with_capacity(messages.len());
    let mut broken: Option<String> = None;
    for (n, message) in messages.iter().enumerate() {
        if let Some(reason) = &broken {
            outcomes.push((message.id, kept(reason.clone())));
            continue;
        }
        if let Some(reason) = hop_refusal(&message.envelope, &message.body, &hop) {
            outcomes.push((message.id, kept(reason)));
            continue;
        }
        let started = Instant::now();
        let envelope = &message.envelope;
        let recipients: Vec<(usize, &str, &strictmx_protocol::RcptParams)> = message
            .recipients
            .iter()
            .filter_map(|&i| {
                let r = envelope.recipients.get(i)?;
                Some((i, r.address.as_str(), &r.params))
            })
            .collect();
        let outgoing = Outgoing {
            mail_from: &envelope.mail_from,
            params: &envelope.params,
            smtputf8: envelope.params.smtputf8
                || needs_smtputf8(
                    std::iter::once(envelope.mail_from.as_str())
                        .chain(recipients.iter().map(|r| r.1)),
                ),
            eight_bit: is_8bit(&message.body),
            recipients,
            body: &message.body,
            transfer: Some(&message.transfer_id),
        };
        let sent = if n > 0 {
            mail.reset_and_transaction(&outgoing)
                .await
                .and_then(|done| done)
        } else {
            mail.transaction(&outgoing).await
        };
        let replies = match sent {
            Ok(replies) => replies,
            Err(e) => {
                // Whether the other node committed the message is unknown: kept here, and sent
                // again under the same transfer id it is not queued twice there.
                let reason = format!("the connection failed: {}", ErrorChain(&e));
                broken = Some(reason.clone());
                outcomes.push((message.id, kept(reason)));
                continue;
            }
        };
        let end = match &replies.end {
            Some(end) if end.is_positive() => end.to_string(),
            Some(end) => {
                outcomes.push((message.id, kept(format!("refused: {end}"))));
                continue;
            }
            None => {
                let refusal = [Some(&replies.mail), replies.data.as_ref()]
                    .into_iter()
                    .flatten()
                    .chain(replies.rcpts.iter().map(|(_, r)| r))
                    .find(|r| !r.is_positive())
                    .map_or_else(|| "no reply".to_owned(), ToString::to_string);
                outcomes.push((message.id, kept(format!("refused: {refusal}"))));
                continue;
            }
        };
        let accepted: Vec<usize> = replies
            .rcpts
            .iter()
            .filter(|(_, r)| r.is_positive())
            .map(|(i, _)| *i)
            .collect();
        let refused: Vec<(usize, String)> = replies
            .rcpts
            .iter()
            .filter(|(_, r)| !r.is_positive())
            .map(|(i, r)| (*i, r.to_string()))
            .collect();
        let record = AttemptRecord {
            at: SystemTime::now(),
            domain: name.to_owned(),
            mx: Some(name.to_owned()),
            ip: Some(addr.ip()),
            tls_version: tls.map(|t| t.version.clone()),
            cipher: tls.map(|t| t.cipher.clone()),
            cert_verified: tls.map(TlsInfo::cert_verified),
            auth: PeerAuth::None,
            policy: "transfer".to_owned(),
            rules: Vec::new(),
            requirement: Some("opportunistic".to_owned()),
            result_type: None,
            recipients: accepted.clone(),
            outcome: AttemptOutcome::Delivered,
            reply: end.clone(),
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            exceptions: Vec::new(),
            shadow: Vec::new(),
        };
        outcomes.push((
            message.id,
            TransferOutcome::Taken {
                accepted,
                refused,
                reply: end,
                record: Box::new(record),
            },
        ));
    }
    outcomes
}

fn kept(reason: String) -> TransferOutcome {
    TransferOutcome::Kept { reason }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use strictmx_protocol::{MailParams, RcptParams};
    use strictmx_spool::{ClientInfo, EnvelopeRecipient, MessageKind, TlsFloor};

    use super::*;

    fn envelope(requiretls: bool, floor: Option<TlsFloor>, to: &str) -> Envelope {
        Envelope {
            mail_from: "app@origin.test".to_owned(),
            params: MailParams {
                requiretls,
                ..MailParams::default()
            },
            recipients: vec![EnvelopeRecipient {
                address: to.to_owned(),
                params: RcptParams::default(),
            }],
            received_at: SystemTime::now(),
            client: ClientInfo {
                ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                helo: "client.test".to_owned(),
                auth_user: None,
                tls: None,
            },
            kind: MessageKind::Normal,
            require_tls: floor,
        }
    }

    const FULL: Hop = Hop {
        tls_verified: Some(true),
        requiretls: true,
        smtputf8: true,
        eight_bit_mime: true,
    };

    #[test]
    fn a_message_takes_the_hop_to_another_node_only_with_what_it_needs() {
        let plain = Hop {
            tls_verified: None,
            ..FULL
        };
        let unverified = Hop {
            tls_verified: Some(false),
            ..FULL
        };
        let no_requiretls = Hop {
            requiretls: false,
            ..FULL
        };
        let ascii_only = Hop {
            smtputf8: false,
            eight_bit_mime: false,
            ..FULL
        };
        let ordinary = envelope(false, None, "a@far.test");
        let requiretls = envelope(true, None, "a@far.test");
        let rows: [(&str, &Envelope, &[u8], Hop, bool); 9] = [
            (
                "an ordinary message over plaintext",
                &ordinary,
                b"x",
                plain,
                true,
            ),
            (
                "RFC 8689 §4.2.1: REQUIRETLS needs TLS",
                &requiretls,
                b"x",
                plain,
                false,
            ),
            (
                "RFC 8689 §4.2.1: and a verified certificate",
                &requiretls,
                b"x",
                unverified,
                false,
            ),
            (
                "RFC 8689 §4.2.1: and the server's REQUIRETLS",
                &requiretls,
                b"x",
                no_requiretls,
                false,
            ),
            (
                "RFC 8689 §4.2.1: all three: it goes",
                &requiretls,
                b"x",
                FULL,
                true,
            ),
            (
                "a submitter's TLS floor has no parameter to travel in",
                &envelope(false, Some(TlsFloor::Verified), "a@far.test"),
                b"x",
                FULL,
                false,
            ),
            (
                "RFC 6531 §3.4: a UTF-8 address needs SMTPUTF8",
                &envelope(false, None, "jörg@far.test"),
                b"x",
                ascii_only,
                false,
            ),
            (
                "RFC 6152 §3: 8-bit content needs 8BITMIME",
                &ordinary,
                "é".as_bytes(),
                ascii_only,
                false,
            ),
            ("ASCII to a plain hop", &ordinary, b"x", ascii_only, true),
        ];
        for (rule, envelope, body, hop, goes) in rows {
            assert_eq!(hop_refusal(envelope, body, &hop).is_none(), goes, "{rule}");
        }
    }
}

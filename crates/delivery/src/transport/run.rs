//! One delivery run: executes a plan over the candidate hosts and their addresses, reusing
//! connections across the job's messages, and turns replies into recipient outcomes.
//!
//! The plan decides which hosts and what TLS; the session types enforce it; this module decides
//! only the order of attempts and what each reply means for each recipient.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use strictmx_policy::{DeliveryPlan, PlanOutcome, PlannedHost};
use strictmx_protocol::{Reply, is_8bit, needs_smtputf8};
use strictmx_spool::{AttemptOutcome, AttemptRecord};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tracing::Instrument;

use crate::job::{
    DeliveryJob, DeliveryReport, Diagnostic, JobMessage, MessageReport, RecipientOutcome,
    RecipientResult,
};
use crate::transport::Transport;
use crate::transport::attempt::{AttemptScope, record_attempt};
use crate::transport::error::{Stage, TransportError, reply_status, reply_text};
use crate::transport::session::{
    Endpoint, MailSession, Outgoing, PlainSession, StartTlsError, Timeouts, TransactionReplies,
};
use crate::transport::wire::Capabilities;

/// A message of the job and what has become of its recipients so far.
struct Pending<'j> {
    message: &'j JobMessage,
    /// (envelope index, address, outcome once decided)
    recipients: Vec<(usize, &'j str, Option<RecipientOutcome>)>,
    attempts: Vec<AttemptRecord>,
    /// Why the last host could not take it: used when no host is left.
    last_failure: Option<Failure>,
}

#[derive(Debug, Clone)]
struct Failure {
    mx: Option<String>,
    diagnostic: Diagnostic,
    status: String,
}

impl<'j> Pending<'j> {
    fn new(message: &'j JobMessage) -> Self {
        Pending {
            message,
            recipients: message
                .recipients
                .iter()
                .map(|r| (r.index, r.address.as_str(), None))
                .collect(),
            attempts: Vec::new(),
            last_failure: None,
        }
    }

    fn open(&self) -> Vec<usize> {
        self.recipients
            .iter()
            .filter(|(_, _, outcome)| outcome.is_none())
            .map(|(index, _, _)| *index)
            .collect()
    }

    fn is_done(&self) -> bool {
        self.recipients.iter().all(|(_, _, o)| o.is_some())
    }

    fn decide(&mut self, index: usize, outcome: RecipientOutcome) {
        if let Some(slot) = self.recipients.iter_mut().find(|(i, _, _)| *i == index) {
            slot.2 = Some(outcome);
        }
    }

    /// Gives every open recipient the same outcome.
    fn decide_open(&mut self, outcome: &RecipientOutcome) {
        for slot in self.recipients.iter_mut().filter(|s| s.2.is_none()) {
            slot.2 = Some(outcome.clone());
        }
    }

    fn into_report(self) -> MessageReport {
        MessageReport {
            id: self.message.id,
            recipients: self
                .recipients
                .into_iter()
                .filter_map(|(index, _, outcome)| {
                    outcome.map(|outcome| RecipientResult { index, outcome })
                })
                .collect(),
            attempts: self.attempts,
        }
    }
}

pub(crate) async fn deliver(transport: &Transport, job: &DeliveryJob) -> DeliveryReport {
    let mut pending: Vec<Pending<'_>> = job.messages.iter().map(Pending::new).collect();
    let mut unreachable = false;
    for message in &mut pending {
        if let Some((status, reason)) = unsendable(message.message) {
            let scope = AttemptScope::new(&job.domain, "local");
            message.decide_open(&RecipientOutcome::Bounced {
                remote_mta: None,
                diagnostic: Diagnostic::Local(reason.clone()),
                status,
            });
            let recipients = message.recipients.iter().map(|r| r.0).collect();
            let record = record_attempt(
                &scope,
                message.message.id,
                recipients,
                AttemptOutcome::Bounced,
                &reason,
            );
            message.attempts.push(record);
        }
    }
    if pending.iter().any(|p| !p.is_done()) {
        match transport.plan(&job.domain).await {
            PlanOutcome::Deliver(plan) => {
                unreachable = deliver_plan(transport, &plan, &mut pending).await;
            }
            PlanOutcome::Bounce { status, reason } => {
                let outcome = RecipientOutcome::Bounced {
                    remote_mta: None,
                    diagnostic: Diagnostic::Local(reason.clone()),
                    status,
                };
                settle_without_connection(&job.domain, &mut pending, &outcome, &reason);
            }
            PlanOutcome::Defer { reason } => {
                // X.4.3: directory server failure (RFC 3463).
                let outcome = RecipientOutcome::Deferred {
                    remote_mta: None,
                    diagnostic: Diagnostic::Local(reason.clone()),
                    status: "4.4.3".to_owned(),
                };
                settle_without_connection(&job.domain, &mut pending, &outcome, &reason);
                unreachable = true;
            }
        }
    }
    DeliveryReport {
        messages: pending.into_iter().map(Pending::into_report).collect(),
        destination_unreachable: unreachable,
    }
}

/// A message this relay must not send anywhere, whatever the server: (status, reason).
fn unsendable(message: &JobMessage) -> Option<(String, String)> {
    let envelope = &message.envelope;
    // RFC 8689 §4: a REQUIRETLS message may only travel over a path this relay cannot yet
    // establish (authenticated MX choice, verified TLS, REQUIRETLS at the next hop).
    if envelope.params.requiretls {
        return Some((
            "5.7.30".to_owned(),
            "requiretls is not supported by this relay".to_owned(),
        ));
    }
    // Addresses go into command lines: a CR, LF or angle bracket would forge commands.
    let unsafe_address = |a: &str| {
        a.bytes()
            .any(|b| b.is_ascii_control() || b == b'<' || b == b'>')
    };
    if unsafe_address(&envelope.mail_from) {
        return Some(("5.1.7".to_owned(), "invalid sender address".to_owned()));
    }
    if message
        .recipients
        .iter()
        .any(|r| unsafe_address(&r.address))
    {
        return Some(("5.1.3".to_owned(), "invalid recipient address".to_owned()));
    }
    None
}

/// What this server cannot take from this message: (status, reason).
fn refused_by_capabilities(
    caps: &Capabilities,
    message: &Outgoing<'_>,
) -> Option<(String, String)> {
    // RFC 6531 §3.4: without SMTPUTF8 at the server, a message that needs it cannot be sent.
    if message.smtputf8 && !caps.smtputf8 {
        return Some((
            "5.6.7".to_owned(),
            "the server does not support SMTPUTF8, required by the addresses".to_owned(),
        ));
    }
    // RFC 6152 §3: 8-bit content only to a server that advertises 8BITMIME.
    if message.eight_bit && !caps.eight_bit_mime {
        return Some((
            "5.6.3".to_owned(),
            "the server does not support 8BITMIME, required by the content".to_owned(),
        ));
    }
    // RFC 1870 §6: do not send a message larger than the server's declared maximum.
    if let Some(limit) = caps.size_limit
        && u64::try_from(message.body.len()).unwrap_or(u64::MAX) > limit
    {
        return Some((
            "5.3.4".to_owned(),
            format!("the message is larger than the server's limit of {limit} octets"),
        ));
    }
    None
}

fn settle_without_connection(
    domain: &str,
    pending: &mut [Pending<'_>],
    outcome: &RecipientOutcome,
    reason: &str,
) {
    let attempt_outcome = match outcome {
        RecipientOutcome::Bounced { .. } => AttemptOutcome::Bounced,
        _ => AttemptOutcome::Deferred,
    };
    let scope = AttemptScope::new(domain, "mx-lookup");
    for message in pending.iter_mut().filter(|p| !p.is_done()) {
        let recipients = message.open();
        message.decide_open(outcome);
        let record = record_attempt(
            &scope,
            message.message.id,
            recipients,
            attempt_outcome,
            reason,
        );
        message.attempts.push(record);
    }
}

/// Tries the plan's hosts in order; returns whether the destination was unreachable.
async fn deliver_plan(
    transport: &Transport,
    plan: &DeliveryPlan,
    pending: &mut [Pending<'_>],
) -> bool {
    let port = transport.port_for(&plan.domain);
    let mut reached = false;
    let mut only_permanent_dns_failures = true;
    for host in &plan.candidates {
        if pending.iter().all(Pending::is_done) {
            break;
        }
        let addresses = match host_addresses(transport, &host.host).await {
            Ok(addresses) => addresses,
            Err(error) => {
                only_permanent_dns_failures &= !error.is_transient();
                let scope = host_scope(plan, host, None);
                let failure = Failure {
                    mx: Some(host.host.clone()),
                    diagnostic: Diagnostic::Local(error.to_string()),
                    status: if error.is_transient() {
                        "4.4.3"
                    } else {
                        "4.4.4"
                    }
                    .to_owned(),
                };
                fail_open(&scope, pending, &failure);
                continue;
            }
        };
        only_permanent_dns_failures = false;
        for ip in addresses {
            if pending.iter().all(Pending::is_done) {
                break;
            }
            let addr = SocketAddr::new(ip, port);
            reached |= deliver_to_address(transport, plan, host, addr, pending).await;
        }
    }
    // RFC 5321 §5.1: MX records present but none usable "MUST be reported as an error".
    if only_permanent_dns_failures && plan.policy != strictmx_policy::PolicyLabel::Route {
        for message in pending.iter_mut() {
            message.decide_open(&RecipientOutcome::Bounced {
                remote_mta: None,
                diagnostic: Diagnostic::Local(format!(
                    "no MX host of {} has an address",
                    plan.domain
                )),
                status: "5.4.4".to_owned(),
            });
        }
    }
    for message in pending.iter_mut() {
        let failure = message.last_failure.clone().unwrap_or_else(|| Failure {
            mx: None,
            diagnostic: Diagnostic::Local("no host could be tried".to_owned()),
            status: "4.4.1".to_owned(),
        });
        message.decide_open(&RecipientOutcome::Deferred {
            remote_mta: failure.mx,
            diagnostic: failure.diagnostic,
            status: failure.status,
        });
    }
    !reached
}

async fn host_addresses(
    transport: &Transport,
    host: &str,
) -> Result<Vec<IpAddr>, strictmx_resolve::ResolveError> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    transport.resolver.addresses(host).await
}

fn host_scope(plan: &DeliveryPlan, host: &PlannedHost, ip: Option<IpAddr>) -> AttemptScope {
    AttemptScope::for_host(
        &plan.domain,
        plan.policy.as_str(),
        host.requirement.as_str(),
        &host.host,
        ip,
    )
}

/// Records `failure` for every message still open and remembers it as their latest failure.
fn fail_open(scope: &AttemptScope, pending: &mut [Pending<'_>], failure: &Failure) {
    for message in pending.iter_mut().filter(|p| !p.is_done()) {
        fail_message(scope, message, failure);
    }
}

fn fail_message(scope: &AttemptScope, message: &mut Pending<'_>, failure: &Failure) {
    let reply = match &failure.diagnostic {
        Diagnostic::Smtp(text) | Diagnostic::Local(text) => text.clone(),
    };
    let record = record_attempt(
        scope,
        message.message.id,
        message.open(),
        AttemptOutcome::Deferred,
        &reply,
    );
    message.attempts.push(record);
    message.last_failure = Some(failure.clone());
}

fn failure_from(host: &str, error: &TransportError) -> Failure {
    Failure {
        mx: Some(host.to_owned()),
        diagnostic: match error.smtp_reply() {
            Some(reply) => Diagnostic::Smtp(reply_text(reply)),
            None => Diagnostic::Local(error.to_string()),
        },
        status: error.status(),
    }
}

/// A session that may carry mail, over plaintext or TLS.
enum Established {
    Plain(MailSession<TcpStream>),
    Tls(Box<MailSession<TlsStream<TcpStream>>>),
}

/// Delivers what it can through one address, opening as many connections as
/// `max_messages_per_connection` needs. Returns whether any SMTP greeting was received.
async fn deliver_to_address(
    transport: &Transport,
    plan: &DeliveryPlan,
    host: &PlannedHost,
    addr: SocketAddr,
    pending: &mut [Pending<'_>],
) -> bool {
    let mut queue: VecDeque<usize> = (0..pending.len())
        .filter(|i| !pending[*i].is_done())
        .collect();
    let mut reached = false;
    let mut plaintext_only = false;
    while !queue.is_empty() {
        let mut scope = host_scope(plan, host, Some(addr.ip()));
        let session = match establish(transport, host, addr, &mut scope, plaintext_only).await {
            Ok(session) => session,
            Err(error) => {
                reached |= !error.is_unreachable();
                let failure = failure_from(&host.host, &error);
                let open: Vec<usize> = queue.iter().copied().collect();
                for index in open {
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
                if handshake_failed
                    && !plaintext_only
                    && plan.allows_plaintext_after_failed_handshake(host)
                {
                    tracing::warn!(domain = %plan.domain, mx = %host.host, ip = %addr.ip(), "tls handshake failed: retrying in plaintext as configured");
                    plaintext_only = true;
                    continue;
                }
                return reached;
            }
        };
        reached = true;
        let span = tracing::info_span!(
            "delivery_attempt",
            domain = %plan.domain,
            mx = %host.host,
            ip = %addr.ip(),
            tls = scope.tls.as_ref().map_or("none", |tls| tls.version.as_str()),
        );
        let keep_going = match session {
            Established::Plain(session) => {
                use_session(transport, session, &scope, &host.host, &mut queue, pending)
                    .instrument(span)
                    .await
            }
            Established::Tls(session) => {
                use_session(transport, *session, &scope, &host.host, &mut queue, pending)
                    .instrument(span)
                    .await
            }
        };
        if !keep_going {
            return reached;
        }
    }
    reached
}

/// Connects and brings the session to the point where the plan lets it carry mail.
async fn establish(
    transport: &Transport,
    host: &PlannedHost,
    addr: SocketAddr,
    scope: &mut AttemptScope,
    plaintext_only: bool,
) -> Result<Established, TransportError> {
    let requirement = &host.requirement;
    let endpoint = Endpoint {
        addr,
        helo_name: &transport.settings.helo_name,
        source: transport.source_for(addr.ip()),
        allow_helo: requirement.allows_plaintext(),
    };
    let timeouts = Timeouts::from_settings(&transport.settings);
    let plain = PlainSession::open(&endpoint, timeouts).await?;
    if plaintext_only || !plain.capabilities().starttls {
        return plaintext(plain, requirement).await;
    }
    let names = requirement
        .required_names()
        .map_or_else(|| vec![host.host.clone()], <[String]>::to_vec);
    let enforce = requirement.required_names().is_some();
    match plain
        .starttls(&transport.tls, &host.host, &names, enforce)
        .await
    {
        Ok(secure) => {
            scope.tls = Some(secure.tls().clone());
            match secure.into_mail_session(requirement) {
                Ok(session) => Ok(Established::Tls(Box::new(session))),
                Err((secure, error)) => {
                    secure.quit().await;
                    Err(error)
                }
            }
        }
        Err(StartTlsError::Refused { session, reply }) => {
            if requirement.allows_plaintext() {
                return plaintext(*session, requirement).await;
            }
            session.quit().await;
            Err(TransportError::Rejected {
                stage: Stage::StartTls,
                reply,
            })
        }
        Err(StartTlsError::Broken(error)) => Err(error),
    }
}

async fn plaintext(
    plain: PlainSession,
    requirement: &strictmx_policy::TlsRequirement,
) -> Result<Established, TransportError> {
    match plain.into_mail_session_if_allowed(requirement) {
        Ok(session) => Ok(Established::Plain(session)),
        Err((plain, error)) => {
            plain.quit().await;
            // Under a TLS requirement a plaintext session fails because STARTTLS was missing.
            Err(match error {
                TransportError::RequirementNotMet { .. } => TransportError::StartTlsNotOffered,
                other => other,
            })
        }
    }
}

/// Sends queued messages over one session, up to the per-connection limit. Returns false when
/// the host must be left (421, connection lost): the messages left go to the next host.
async fn use_session<S: AsyncRead + AsyncWrite + Unpin>(
    transport: &Transport,
    mut session: MailSession<S>,
    scope: &AttemptScope,
    host: &str,
    queue: &mut VecDeque<usize>,
    pending: &mut [Pending<'_>],
) -> bool {
    let limit = transport.settings.max_messages_per_connection.max(1);
    let mut sent = 0;
    while sent < limit {
        let Some(index) = queue.pop_front() else {
            break;
        };
        if sent > 0
            && let Err(error) = session.reset().await
        {
            tracing::debug!(mx = host, %error, "rset failed: new connection");
            queue.push_front(index);
            return true;
        }
        sent += 1;
        match send_one(&mut session, scope, host, &mut pending[index]).await {
            Ok(true) => {}
            Ok(false) => {
                leave_host(
                    scope,
                    host,
                    queue,
                    pending,
                    "the server is closing the connection",
                );
                session.quit().await;
                return false;
            }
            Err(error) => {
                let failure = failure_from(host, &error);
                fail_message(scope, &mut pending[index], &failure);
                leave_host(scope, host, queue, pending, &error.to_string());
                return false;
            }
        }
    }
    session.quit().await;
    true
}

/// The messages still queued for this host go to the next one.
fn leave_host(
    scope: &AttemptScope,
    host: &str,
    queue: &mut VecDeque<usize>,
    pending: &mut [Pending<'_>],
    reason: &str,
) {
    let failure = Failure {
        mx: Some(host.to_owned()),
        diagnostic: Diagnostic::Local(reason.to_owned()),
        status: "4.4.2".to_owned(),
    };
    for index in queue.drain(..) {
        fail_message(scope, &mut pending[index], &failure);
    }
}

/// One message over an established session. Ok(false) when the server said 421.
async fn send_one<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut MailSession<S>,
    scope: &AttemptScope,
    host: &str,
    message: &mut Pending<'_>,
) -> Result<bool, TransportError> {
    let envelope = &message.message.envelope;
    let open = message.open();
    let recipients: Vec<(usize, &str, &strictmx_protocol::RcptParams)> = message
        .recipients
        .iter()
        .filter(|(_, _, outcome)| outcome.is_none())
        .filter_map(|(index, address, _)| {
            let params = &envelope.recipients.get(*index)?.params;
            Some((*index, *address, params))
        })
        .collect();
    let body = message.message.body.as_slice();
    let outgoing = Outgoing {
        mail_from: &envelope.mail_from,
        params: &envelope.params,
        smtputf8: needs_smtputf8(
            std::iter::once(envelope.mail_from.as_str()).chain(recipients.iter().map(|r| r.1)),
        ),
        eight_bit: is_8bit(body),
        recipients,
        body,
    };
    if let Some((status, reason)) = refused_by_capabilities(session.capabilities(), &outgoing) {
        message.decide_open(&RecipientOutcome::Bounced {
            remote_mta: Some(host.to_owned()),
            diagnostic: Diagnostic::Local(reason.clone()),
            status,
        });
        let record = record_attempt(
            scope,
            message.message.id,
            open,
            AttemptOutcome::Bounced,
            &reason,
        );
        message.attempts.push(record);
        return Ok(true);
    }
    let replies = session.transaction(&outgoing).await?;
    let closing = [
        Some(&replies.mail),
        replies.data.as_ref(),
        replies.end.as_ref(),
    ]
    .into_iter()
    .flatten()
    .chain(replies.rcpts.iter().map(|(_, r)| r))
    .any(|reply| reply.code == 421);
    let verdict = judge(host, &replies);
    let last = last_reply(&replies);
    match verdict {
        Verdict::NextHost(failure) => {
            fail_message(scope, message, &failure);
        }
        Verdict::Decided(outcomes) => {
            let summary = summarise(&outcomes);
            for (index, outcome) in outcomes {
                message.decide(index, outcome);
            }
            let record = record_attempt(scope, message.message.id, open, summary, &last);
            message.attempts.push(record);
        }
    }
    Ok(!closing)
}

/// What the replies of one transaction mean.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// The server did not take the message at all for a transient reason: try the next host.
    NextHost(Failure),
    /// Final answers (or deferrals) for the recipients sent.
    Decided(Vec<(usize, RecipientOutcome)>),
}

impl PartialEq for Failure {
    fn eq(&self, other: &Self) -> bool {
        self.mx == other.mx && self.diagnostic == other.diagnostic && self.status == other.status
    }
}
impl Eq for Failure {}

fn judge(host: &str, replies: &TransactionReplies) -> Verdict {
    let mail = &replies.mail;
    if !mail.is_positive() {
        if mail.is_permanent() {
            let outcome = refused(host, mail);
            return Verdict::Decided(
                replies_indexes(replies)
                    .map(|i| (i, outcome.clone()))
                    .collect(),
            );
        }
        return Verdict::NextHost(Failure {
            mx: Some(host.to_owned()),
            diagnostic: Diagnostic::Smtp(reply_text(mail)),
            status: reply_status_transient(mail),
        });
    }
    let mut outcomes = Vec::new();
    let mut accepted = Vec::new();
    for (index, reply) in &replies.rcpts {
        if reply.is_positive() {
            accepted.push(*index);
        } else {
            outcomes.push((*index, refused(host, reply)));
        }
    }
    if accepted.is_empty() {
        return Verdict::Decided(outcomes);
    }
    let after_data = match (&replies.data, &replies.end) {
        (_, Some(end)) if end.is_positive() => RecipientOutcome::Delivered {
            remote_mta: host.to_owned(),
            reply: reply_text(end),
        },
        (_, Some(end)) => refused(host, end),
        (Some(data), None) if data.code != 354 => refused(host, data),
        _ => RecipientOutcome::Deferred {
            remote_mta: Some(host.to_owned()),
            diagnostic: Diagnostic::Local("no reply to the end of data".to_owned()),
            status: "4.4.2".to_owned(),
        },
    };
    outcomes.extend(accepted.into_iter().map(|i| (i, after_data.clone())));
    Verdict::Decided(outcomes)
}

fn replies_indexes(replies: &TransactionReplies) -> impl Iterator<Item = usize> + '_ {
    replies.rcpts.iter().map(|(i, _)| *i)
}

/// A negative reply as a recipient outcome: 5xx bounces, anything else defers.
fn refused(host: &str, reply: &Reply) -> RecipientOutcome {
    if reply.is_permanent() {
        RecipientOutcome::Bounced {
            remote_mta: Some(host.to_owned()),
            diagnostic: Diagnostic::Smtp(reply_text(reply)),
            status: reply_status(reply),
        }
    } else {
        RecipientOutcome::Deferred {
            remote_mta: Some(host.to_owned()),
            diagnostic: Diagnostic::Smtp(reply_text(reply)),
            status: reply_status_transient(reply),
        }
    }
}

/// A status of class 4 for a reply that is not final (a 2xx or 3xx where a failure was due
/// is a protocol error and counts as transient).
fn reply_status_transient(reply: &Reply) -> String {
    if reply.is_transient() {
        reply_status(reply)
    } else {
        "4.5.0".to_owned()
    }
}

fn summarise(outcomes: &[(usize, RecipientOutcome)]) -> AttemptOutcome {
    let any = |f: fn(&RecipientOutcome) -> bool| outcomes.iter().any(|(_, o)| f(o));
    if any(|o| matches!(o, RecipientOutcome::Deferred { .. })) {
        AttemptOutcome::Deferred
    } else if any(|o| matches!(o, RecipientOutcome::Delivered { .. })) {
        AttemptOutcome::Delivered
    } else {
        AttemptOutcome::Bounced
    }
}

/// The most telling reply of a transaction, for the attempt record.
/// The reply that best explains the transaction's outcome for the attempt record: the reply to
/// the end of data, or to DATA when it was refused; when no recipient was accepted, the last
/// recipient's refusal (a pipelined DATA is then refused for want of recipients, which says
/// nothing); the MAIL reply when that was refused.
fn last_reply(replies: &TransactionReplies) -> String {
    let last_rcpt = replies.rcpts.last().map(|(_, r)| r);
    let any_accepted = replies.rcpts.iter().any(|(_, r)| r.is_positive());
    let chosen = if !replies.mail.is_positive() {
        &replies.mail
    } else if !any_accepted {
        last_rcpt.unwrap_or(&replies.mail)
    } else {
        replies
            .end
            .as_ref()
            .or(replies.data.as_ref().filter(|d| d.code != 354))
            .or(last_rcpt)
            .unwrap_or(&replies.mail)
    };
    chosen.to_string().trim_end().replace("\r\n", "\n")
}

#[cfg(test)]
mod tests;

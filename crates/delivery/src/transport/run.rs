//! One delivery run: executes a plan over the candidate hosts and their addresses, reusing
//! connections across the job's messages, and turns replies into recipient outcomes.
//!
//! The plan decides which hosts and what TLS; the session types enforce it; this module decides
//! only the order of attempts and what each reply means for each recipient.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use strictmx_policy::{
    AddressFailure, DeliveryPlan, MessageFacts, NoTls, PeerAuth, PlanOutcome, PlannedHost,
    PolicySettings, plan_delivery, plan_route_delivery,
};
use strictmx_protocol::{
    EnhancedStatus, ErrorChain, Reply, is_8bit, needs_smtputf8, path_is_safe, status,
};
use strictmx_spool::{AttemptOutcome, AttemptRecord, MessageKind};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tracing::Instrument;

use crate::job::{
    DeliveryJob, DeliveryReport, Diagnostic, JobMessage, MessageReport, RecipientOutcome,
    RecipientResult,
};
use crate::transport::attempt::{AttemptScope, record_attempt};
use crate::transport::error::{Stage, TransportError, reply_status, reply_text};
use crate::transport::facts::{self, Destination, FactSource};
use crate::transport::idle::{self, IdleKey, Spare};
use crate::transport::loops;
use crate::transport::message::message_facts;
use crate::transport::session::{
    Endpoint, Judgement, MailSession, Outgoing, PlainSession, SecureSession, StartTlsError,
    Timeouts, TlsSession, TransactionReplies,
};
use crate::transport::sessions::SessionLog;
use crate::transport::wire::Capabilities;
use crate::transport::{LivePolicy, RouteCredentials, Transport};

/// A message of the job and what has become of its recipients so far.
struct Pending<'j> {
    message: &'j JobMessage,
    /// (envelope index, address, outcome once decided)
    recipients: Vec<(usize, &'j str, Option<RecipientOutcome>)>,
    attempts: Vec<AttemptRecord>,
    /// Why the last host could not take it: used when no host is left.
    last_failure: Option<Failure>,
    /// Whether any host failed for a reason other than a REQUIRETLS condition.
    transient_failure: bool,
}

#[derive(Debug, Clone)]
struct Failure {
    mx: Option<String>,
    diagnostic: Diagnostic,
    status: EnhancedStatus,
    /// RFC 8689 §4.2.1: the host failed a REQUIRETLS condition (not reachability).
    requiretls: bool,
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
            transient_failure: false,
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

pub(crate) async fn deliver<F: FactSource>(
    transport: &Transport<F>,
    job: &DeliveryJob,
) -> DeliveryReport {
    let mut pending: Vec<Pending<'_>> = job.messages.iter().map(Pending::new).collect();
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
    let mut sessions = SessionLog::new(&job.domain);
    let mut unreachable = false;
    if pending.iter().any(|p| !p.is_done()) {
        let live = transport.live();
        let destination = transport.destination(&job.domain).await;
        let groups = group_by_plan(&pending, &destination, &live);
        // RFC 8460 §3: reports about our own reports would feed on themselves.
        sessions.counted = pending
            .iter()
            .any(|p| !p.is_done() && p.message.envelope.kind != MessageKind::TlsReport);
        sessions.policy_failures(&destination);
        let mut slots: Vec<Option<Pending<'_>>> = pending.into_iter().map(Some).collect();
        let mut reached = false;
        let mut tried = false;
        for (outcome, members) in groups {
            let mut group: Vec<Pending<'_>> =
                members.iter().filter_map(|i| slots[*i].take()).collect();
            match outcome {
                PlanOutcome::Deliver(plan) => {
                    tried = true;
                    sessions.refused_hosts(&plan.policy_failures);
                    reached |=
                        !deliver_plan(transport, &plan, &destination, &mut group, &mut sessions)
                            .await;
                }
                PlanOutcome::Bounce { status, reason, .. } => {
                    let outcome = RecipientOutcome::Bounced {
                        remote_mta: None,
                        diagnostic: Diagnostic::Local(reason.clone()),
                        status,
                    };
                    settle_without_connection(&job.domain, &mut group, &outcome, &reason);
                }
                PlanOutcome::Defer {
                    reason,
                    policy_failures,
                    ..
                } => {
                    tried = true;
                    sessions.refused_hosts(&policy_failures);
                    let outcome = RecipientOutcome::Deferred {
                        remote_mta: None,
                        diagnostic: Diagnostic::Local(reason.clone()),
                        status: status::DIRECTORY_FAILURE.to_string(),
                    };
                    settle_without_connection(&job.domain, &mut group, &outcome, &reason);
                }
            }
            for (index, message) in members.into_iter().zip(group) {
                slots[index] = Some(message);
            }
        }
        unreachable = tried && !reached;
        pending = slots.into_iter().flatten().collect();
    }
    DeliveryReport {
        messages: pending.into_iter().map(Pending::into_report).collect(),
        destination_unreachable: unreachable,
        sessions: sessions.into_results(),
    }
}

/// The plan for one message to `destination` under `policy`.
pub(crate) fn plan_for(
    destination: &Destination,
    message: &MessageFacts,
    policy: &PolicySettings,
) -> PlanOutcome {
    match destination {
        Destination::Mx(facts) => plan_delivery(facts, message, policy),
        Destination::Route {
            domain,
            host,
            credentials,
            ..
        } => plan_route_delivery(domain, host, credentials.is_some(), message, policy),
    }
}

/// The job's open messages grouped by equal plans (indexes into `pending`, in job order), so
/// that messages with the same plan share connections.
fn group_by_plan(
    pending: &[Pending<'_>],
    destination: &Destination,
    live: &LivePolicy,
) -> Vec<(PlanOutcome, Vec<usize>)> {
    let mut groups: Vec<(PlanOutcome, Vec<usize>)> = Vec::new();
    for (index, message) in pending.iter().enumerate().filter(|(_, p)| !p.is_done()) {
        let facts = message_facts(message.message, &live.tls_required_no);
        let outcome = plan_for(destination, &facts, &live.policy);
        match groups.iter_mut().find(|(plan, _)| *plan == outcome) {
            Some((_, members)) => members.push(index),
            None => groups.push((outcome, vec![index])),
        }
    }
    groups
}

/// A message this relay must not send anywhere, whatever the server: (status, reason).
fn unsendable(message: &JobMessage) -> Option<(String, String)> {
    let envelope = &message.envelope;
    // Addresses go into command lines: a CR, LF or angle bracket would forge commands. The
    // command builders refuse them too; here the message bounces before any connection.
    let unsafe_address = |a: &str| !path_is_safe(a);
    if unsafe_address(&envelope.mail_from) {
        return Some((
            status::BAD_SENDER_SYNTAX.to_string(),
            "invalid sender address".to_owned(),
        ));
    }
    if message
        .recipients
        .iter()
        .any(|r| unsafe_address(&r.address))
    {
        return Some((
            status::BAD_DESTINATION_SYNTAX.to_string(),
            "invalid recipient address".to_owned(),
        ));
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
            status::NON_ASCII_ADDRESS.to_string(),
            "the server does not support SMTPUTF8, required by the addresses".to_owned(),
        ));
    }
    // RFC 6152 §3: 8-bit content only to a server that advertises 8BITMIME.
    if message.eight_bit && !caps.eight_bit_mime {
        return Some((
            status::CONVERSION_NOT_SUPPORTED.to_string(),
            "the server does not support 8BITMIME, required by the content".to_owned(),
        ));
    }
    // RFC 1870 §6: do not send a message larger than the server's declared maximum.
    if let Some(limit) = caps.size_limit
        && u64::try_from(message.body.len()).unwrap_or(u64::MAX) > limit
    {
        return Some((
            status::MESSAGE_TOO_BIG.to_string(),
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
async fn deliver_plan<F: FactSource>(
    transport: &Transport<F>,
    plan: &DeliveryPlan,
    destination: &Destination,
    pending: &mut [Pending<'_>],
    sessions: &mut SessionLog,
) -> bool {
    let port = destination.port(transport.settings.smtp_port);
    let routed = matches!(destination, Destination::Route { .. });
    let mut reached = false;
    let mut only_permanent_dns_failures = true;
    let mut looped = false;
    for host in &plan.candidates {
        if pending.iter().all(Pending::is_done) {
            break;
        }
        let addresses = match host_addresses(transport, destination, &host.host, port).await {
            Ok(addresses) => addresses,
            Err(failure) => {
                only_permanent_dns_failures &= !failure.transient;
                let scope = host_scope(plan, host, None);
                let failure = Failure {
                    mx: Some(host.host.clone()),
                    diagnostic: Diagnostic::Local(failure.reason),
                    status: if failure.transient {
                        status::DIRECTORY_FAILURE
                    } else {
                        status::UNABLE_TO_ROUTE
                    },
                    requiretls: false,
                };
                fail_open(&scope, pending, &failure);
                continue;
            }
        };
        let (addresses, refused) = screen(transport, routed, addresses, port);
        if let (true, Some((target, refusal))) = (addresses.is_empty(), refused.first()) {
            // Every address of this host is refused: as permanent as a host without one.
            let loops_back = matches!(refusal, loops::Refusal::OwnListener(_));
            looped |= loops_back;
            let reason = refusal.reason(*target);
            tracing::warn!(domain = %plan.domain, mx = %host.host, reason = %reason, outcome = "refused", "no address of this host may be connected to");
            let failure = Failure {
                mx: Some(host.host.clone()),
                diagnostic: Diagnostic::Local(reason),
                status: if loops_back {
                    status::ROUTING_LOOP
                } else {
                    status::UNABLE_TO_ROUTE
                },
                requiretls: false,
            };
            fail_open(&host_scope(plan, host, None), pending, &failure);
            continue;
        }
        only_permanent_dns_failures = false;
        for ip in addresses {
            if pending.iter().all(Pending::is_done) {
                break;
            }
            let addr = SocketAddr::new(ip, port);
            let via = Via {
                plan,
                host,
                addr,
                credentials: destination.credentials(),
            };
            reached |= deliver_to_address(transport, &via, pending, sessions).await;
        }
    }
    // RFC 5321 §5.1: MX records present but none usable "MUST be reported as an error". A
    // destination that only leads back to this server is a loop (RFC 3463 X.4.6), routed
    // or not.
    if only_permanent_dns_failures && (looped || plan.policy != strictmx_policy::PolicyLabel::Route)
    {
        let (code, text) = if looped {
            (
                status::ROUTING_LOOP,
                format!("mail for {} loops back to myself", plan.domain),
            )
        } else {
            (
                status::UNABLE_TO_ROUTE,
                format!("no MX host of {} has a usable address", plan.domain),
            )
        };
        for message in pending.iter_mut() {
            message.decide_open(&RecipientOutcome::Bounced {
                remote_mta: None,
                diagnostic: Diagnostic::Local(text.clone()),
                status: code.to_string(),
            });
        }
    }
    for message in pending.iter_mut() {
        let failure = message.last_failure.clone().unwrap_or_else(|| Failure {
            mx: None,
            diagnostic: Diagnostic::Local("no host could be tried".to_owned()),
            status: status::NO_ANSWER,
            requiretls: false,
        });
        message.decide_open(&final_outcome(plan, failure, message.transient_failure));
    }
    !reached
}

/// What becomes of recipients no host took: the plan decides whether a REQUIRETLS message
/// bounces (`DeliveryPlan::requiretls_bounce`, RFC 8689 §4.2.1); otherwise it defers.
fn final_outcome(plan: &DeliveryPlan, failure: Failure, transient_seen: bool) -> RecipientOutcome {
    match plan.requiretls_bounce(failure.status, failure.requiretls, transient_seen) {
        Some(bounced) => RecipientOutcome::Bounced {
            remote_mta: failure.mx,
            diagnostic: failure.diagnostic,
            status: bounced.to_string(),
        },
        None => RecipientOutcome::Deferred {
            remote_mta: failure.mx,
            diagnostic: failure.diagnostic,
            status: failure.status.to_string(),
        },
    }
}

/// The addresses that may be connected to, and the refused ones with the reason.
fn screen<F: FactSource>(
    transport: &Transport<F>,
    routed: bool,
    addresses: Vec<IpAddr>,
    port: u16,
) -> (Vec<IpAddr>, Vec<(SocketAddr, loops::Refusal)>) {
    let mut usable = Vec::with_capacity(addresses.len());
    let mut refused = Vec::new();
    for ip in addresses {
        let target = SocketAddr::new(ip, port);
        match transport.refusal(routed, target) {
            Some(refusal) => refused.push((target, refusal)),
            None => usable.push(ip),
        }
    }
    (usable, refused)
}

/// The addresses of a candidate: from the gathered facts, else looked up now.
async fn host_addresses<F: FactSource>(
    transport: &Transport<F>,
    destination: &Destination,
    host: &str,
    port: u16,
) -> Result<Vec<IpAddr>, AddressFailure> {
    if let Some(literal) = facts::literal_host(host) {
        return literal.addresses;
    }
    match destination.host(host) {
        Some(facts) => facts.addresses.clone(),
        None => transport.facts.host_facts(host, port).await.addresses,
    }
}

fn host_scope(plan: &DeliveryPlan, host: &PlannedHost, ip: Option<IpAddr>) -> AttemptScope {
    AttemptScope::for_host(
        &plan.domain,
        plan.policy.as_str(),
        &plan.rules,
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
    message.transient_failure |= !failure.requiretls;
    message.last_failure = Some(failure.clone());
}

fn failure_from(host: &str, error: &TransportError) -> Failure {
    Failure {
        mx: Some(host.to_owned()),
        diagnostic: match error.smtp_reply() {
            Some(reply) => Diagnostic::Smtp(reply_text(reply)),
            None => Diagnostic::Local(ErrorChain(error).to_string()),
        },
        status: error.status(),
        requiretls: error.fails_requiretls(),
    }
}

/// One address of one planned host, and the login a route sends there.
#[derive(Clone, Copy)]
struct Via<'a> {
    plan: &'a DeliveryPlan,
    host: &'a PlannedHost,
    addr: SocketAddr,
    credentials: Option<&'a RouteCredentials>,
}

/// A session that may carry mail, over plaintext or TLS.
#[derive(Debug)]
pub(crate) enum Established {
    Plain(MailSession<TcpStream>),
    Tls(Box<MailSession<TlsStream<TcpStream>>>),
}

impl Established {
    async fn quit(self) {
        match self {
            Established::Plain(session) => session.quit().await,
            Established::Tls(session) => session.quit().await,
        }
    }
}

/// How `use_session` left the session.
enum SessionEnd<S> {
    /// Go on with the queue on a new connection (limit reached, or RSET failed).
    Again,
    /// Leave this host: the messages left were failed over to the next one.
    Leave,
    /// The queue is empty and the session can carry more: a spare, with its message count.
    Spare(MailSession<S>, usize),
}

/// Keeps a spare session for the next job to the same host under the same demands; the
/// pool's sweeper says QUIT to it if none takes it within `idle::IDLE_FOR`.
fn park<F>(transport: &Transport<F>, key: IdleKey, spare: Box<Spare<Established>>) {
    if let Err(spare) = transport.idle.park(key, spare) {
        tokio::spawn(spare.session.quit());
        return;
    }
    if transport.idle.claim_sweeper() {
        let pool = Arc::downgrade(&transport.idle);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(idle::SWEEP_EVERY).await;
                // The transport is gone: so are its spare sessions.
                let Some(pool) = pool.upgrade() else { return };
                let expired = pool.expired(std::time::Instant::now());
                drop(pool);
                for spare in expired {
                    // Each on its own: a server slow to answer QUIT holds up no other.
                    tokio::spawn(spare.session.quit());
                }
            }
        });
    }
}

/// Delivers what it can through one address, opening as many connections as
/// `max_messages_per_connection` needs. Returns whether any SMTP greeting was received.
async fn deliver_to_address<F: FactSource>(
    transport: &Transport<F>,
    via: &Via<'_>,
    pending: &mut [Pending<'_>],
    sessions: &mut SessionLog,
) -> bool {
    let Via {
        plan, host, addr, ..
    } = *via;
    let mut queue: VecDeque<usize> = (0..pending.len())
        .filter(|i| !pending[*i].is_done())
        .collect();
    let mut reached = false;
    let mut plaintext_only = false;
    let key = IdleKey {
        domain: plan.domain.clone(),
        host: host.clone(),
        addr,
        requiretls: plan.requiretls,
        login: via.credentials.map(|c| c.user.clone()),
    };
    while !queue.is_empty() {
        let (session, scope, sent) = match transport.idle.take(&key) {
            Some(spare) => (spare.session, spare.scope.restarted(), spare.sent),
            None => {
                match connect(transport, via, plaintext_only, &queue, pending, sessions).await {
                    Connected::Session(session, scope) => (session, *scope, 0),
                    Connected::PlaintextFallback(reached_host) => {
                        reached |= reached_host;
                        plaintext_only = true;
                        continue;
                    }
                    Connected::Failed(reached_host) => return reached || reached_host,
                }
            }
        };
        reached = true;
        match carry(transport, session, &scope, host, sent, &mut queue, pending).await {
            Some(Some(spare)) => {
                park(transport, key, spare);
                return reached;
            }
            Some(None) => {}
            None => return reached,
        }
    }
    reached
}

/// What one connection attempt gave.
enum Connected {
    Session(Established, Box<AttemptScope>),
    /// The handshake failed and the plan allows plaintext: try again without STARTTLS.
    /// Whether a greeting was received.
    PlaintextFallback(bool),
    /// The host failed; the messages were failed over. Whether a greeting was received.
    Failed(bool),
}

/// Opens a session to the address for the queued messages, or fails them over.
async fn connect<F: FactSource>(
    transport: &Transport<F>,
    via: &Via<'_>,
    plaintext_only: bool,
    queue: &VecDeque<usize>,
    pending: &mut [Pending<'_>],
    sessions: &mut SessionLog,
) -> Connected {
    let Via {
        plan, host, addr, ..
    } = *via;
    let mut scope = host_scope(plan, host, Some(addr.ip()));
    let established = establish(transport, via, &mut scope, plaintext_only, sessions).await;
    match established {
        Ok(session) => Connected::Session(session, Box::new(scope)),
        Err(error) => {
            let reached = !error.is_unreachable();
            scope.result_type = error.tlsrpt_result();
            let failure = failure_from(&host.host, &error);
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
            if handshake_failed
                && !plaintext_only
                && plan.allows_plaintext_after_failed_handshake(host)
            {
                tracing::warn!(domain = %plan.domain, mx = %host.host, ip = %addr.ip(), "tls handshake failed: retrying in plaintext as configured");
                return Connected::PlaintextFallback(reached);
            }
            Connected::Failed(reached)
        }
    }
}

/// Sends queued messages over `session` (which already carried `sent`). `None`: leave the
/// host; `Some(None)`: go on with a new connection; `Some(Some(spare))`: done, and the
/// session can take more.
async fn carry<F: FactSource>(
    transport: &Transport<F>,
    session: Established,
    scope: &AttemptScope,
    host: &PlannedHost,
    sent: usize,
    queue: &mut VecDeque<usize>,
    pending: &mut [Pending<'_>],
) -> Option<Option<Box<Spare<Established>>>> {
    let span = tracing::info_span!(
        "delivery_attempt",
        domain = %scope.domain,
        mx = %host.host,
        ip = %scope.ip.map_or_else(|| "-".to_owned(), |ip| ip.to_string()),
        tls = scope.tls.as_ref().map_or("none", |tls| tls.version.as_str()),
        auth = scope.auth.as_str(),
    );
    let spare = |session, sent| {
        Box::new(Spare {
            session,
            scope: scope.clone(),
            sent,
        })
    };
    match session {
        Established::Plain(session) => {
            match use_session(transport, session, scope, &host.host, sent, queue, pending)
                .instrument(span)
                .await
            {
                SessionEnd::Again => Some(None),
                SessionEnd::Leave => None,
                SessionEnd::Spare(session, sent) => {
                    Some(Some(spare(Established::Plain(session), sent)))
                }
            }
        }
        Established::Tls(session) => {
            match use_session(transport, *session, scope, &host.host, sent, queue, pending)
                .instrument(span)
                .await
            {
                SessionEnd::Again => Some(None),
                SessionEnd::Leave => None,
                SessionEnd::Spare(session, sent) => {
                    Some(Some(spare(Established::Tls(Box::new(session)), sent)))
                }
            }
        }
    }
}

/// Connects and brings the session to the point where the plan lets it carry mail: the TLS
/// negotiation and the policy's judgement of the peer, each reported to TLSRPT once.
async fn establish<F: FactSource>(
    transport: &Transport<F>,
    via: &Via<'_>,
    scope: &mut AttemptScope,
    plaintext_only: bool,
    sessions: &mut SessionLog,
) -> Result<Established, TransportError> {
    let Via {
        plan, host, addr, ..
    } = *via;
    let requirement = &host.requirement;
    let endpoint = Endpoint {
        addr,
        helo_name: &transport.settings.helo_name,
        source: transport.source_for(addr.ip()),
        allow_helo: requirement.allows_plaintext(),
    };
    let timeouts = Timeouts::from_settings(&transport.settings);
    let plain = PlainSession::open(&endpoint, timeouts).await?;
    scope.local_ip = plain.local_ip();
    scope.peer_helo = plain.peer_name().map(str::to_owned);
    if plaintext_only {
        // The failed handshake before this fallback was reported already.
        return plaintext(plain, requirement).await;
    }
    if !plain.capabilities().starttls {
        sessions.without_tls(scope, host, &NoTls::NotOffered);
        return plaintext(plain, requirement).await;
    }
    let secure = match plain.starttls(&transport.tls, host).await {
        Ok(tls) => {
            scope.tls = Some(tls.tls().clone());
            sessions.testing(scope, host, tls.peer());
            judged(tls, host, scope, sessions).await?
        }
        Err(StartTlsError::Refused { session, reply }) => {
            sessions.without_tls(scope, host, &NoTls::NotOffered);
            if requirement.allows_plaintext() {
                return plaintext(*session, requirement).await;
            }
            session.quit().await;
            return Err(TransportError::Rejected {
                stage: Stage::StartTls,
                reply,
            });
        }
        Err(StartTlsError::Broken(error)) => {
            if error.tlsrpt_result().is_some() {
                let what = NoTls::HandshakeFailed {
                    reason: ErrorChain(&error).to_string(),
                };
                sessions.without_tls(scope, host, &what);
            }
            return Err(error);
        }
    };
    // The plan of a route with credentials demands an authenticated peer (see
    // `plan_route_delivery`); `authenticate` checks it once more before sending them.
    let secure = match via.credentials {
        Some(credentials) => secure.authenticate(credentials, &host.host).await?,
        None => secure,
    };
    match secure.into_mail_session(plan.requiretls) {
        Ok(session) => Ok(Established::Tls(Box::new(session))),
        Err((secure, error)) => {
            secure.quit().await;
            Err(error)
        }
    }
}

/// The policy's judgement of a TLS session, reported, and the session it yields.
async fn judged(
    tls: TlsSession,
    host: &PlannedHost,
    scope: &mut AttemptScope,
    sessions: &mut SessionLog,
) -> Result<SecureSession, TransportError> {
    match tls.judge(host).await {
        Ok(secure) => {
            scope.auth = spool_auth(secure.auth());
            sessions.judged(scope, host, None);
            Ok(secure)
        }
        Err(Judgement::Refused { session, failure }) => {
            tracing::warn!(mx = %host.host, requirement = host.requirement.as_str(), result_type = failure.result_type.as_str(), reason = %failure.reason, "peer refused by policy");
            sessions.judged(scope, host, Some(&failure));
            session.quit().await;
            Err(TransportError::PeerRefused {
                requirement: host.requirement.as_str(),
                result_type: failure.result_type,
                reason: failure.reason,
            })
        }
        Err(Judgement::Broken(error)) => Err(error),
    }
}

/// The spool's name for how the policy authenticated the peer.
fn spool_auth(auth: PeerAuth) -> strictmx_spool::PeerAuth {
    match auth {
        PeerAuth::Dane => strictmx_spool::PeerAuth::Dane,
        PeerAuth::Sts => strictmx_spool::PeerAuth::Sts,
        PeerAuth::Webpki => strictmx_spool::PeerAuth::Webpki,
        PeerAuth::None => strictmx_spool::PeerAuth::None,
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

/// Sends queued messages over one session that already carried `sent`, up to the
/// per-connection limit. Leaves the host on 421 or a lost connection (the messages left go to
/// the next host); hands the session back when the queue ran out first.
async fn use_session<F: FactSource, S: AsyncRead + AsyncWrite + Unpin>(
    transport: &Transport<F>,
    mut session: MailSession<S>,
    scope: &AttemptScope,
    host: &str,
    mut sent: usize,
    queue: &mut VecDeque<usize>,
    pending: &mut [Pending<'_>],
) -> SessionEnd<S> {
    let limit = transport.settings.max_messages_per_connection.max(1);
    while sent < limit {
        let Some(index) = queue.pop_front() else {
            return SessionEnd::Spare(session, sent);
        };
        // RFC 5321 §4.1.1.5: a clean state before each further transaction. On a spare
        // session this is also the check that the server still listens.
        if sent > 0
            && let Err(error) = session.reset().await
        {
            tracing::debug!(mx = host, error = %ErrorChain(&error), "rset failed: new connection");
            queue.push_front(index);
            return SessionEnd::Again;
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
                return SessionEnd::Leave;
            }
            Err(error) => {
                let failure = failure_from(host, &error);
                fail_message(scope, &mut pending[index], &failure);
                leave_host(scope, host, queue, pending, &ErrorChain(&error).to_string());
                return SessionEnd::Leave;
            }
        }
    }
    session.quit().await;
    SessionEnd::Again
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
        status: status::BAD_CONNECTION,
        requiretls: false,
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
        self.mx == other.mx
            && self.diagnostic == other.diagnostic
            && self.status == other.status
            && self.requiretls == other.requiretls
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
            requiretls: false,
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
            status: status::BAD_CONNECTION.to_string(),
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
            status: reply_status(reply).to_string(),
        }
    } else {
        RecipientOutcome::Deferred {
            remote_mta: Some(host.to_owned()),
            diagnostic: Diagnostic::Smtp(reply_text(reply)),
            status: reply_status_transient(reply).to_string(),
        }
    }
}

/// A status of class 4 for a reply that is not final (a 2xx or 3xx where a failure was due
/// is a protocol error and counts as transient).
fn reply_status_transient(reply: &Reply) -> EnhancedStatus {
    if reply.is_transient() {
        reply_status(reply)
    } else {
        status::PROTOCOL_ERROR
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

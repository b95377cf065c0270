//! One delivery run, the I/O ladder: plan per message, then for each planned host and address
//! connect, negotiate, carry the messages, and hand what was seen to the pure parts.
//!
//! The plan decides which hosts and what TLS (`strictmx-policy`); the session types enforce it;
//! what the replies and failures mean for each recipient is `outcome`'s; what a negotiation
//! means for TLSRPT is the policy's, written down by `sessions`. This module only orders the
//! attempts and moves the facts between them.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use strictmx_policy::posture::{History, posture_of, posture_of_route};
use strictmx_policy::{
    AddressFailure, Alternatives, DeliveryPlan, Evaluation, MessageFacts, PlanOutcome, PlannedHost,
    PolicySettings, evaluate, plan_delivery, plan_route_delivery,
};
use strictmx_protocol::status;
use strictmx_spool::{AttemptOutcome, MessageKind};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tracing::Instrument;

use crate::job::{DeliveryJob, DeliveryReport, Diagnostic, RecipientOutcome};
use crate::transport::attempt::{AttemptScope, WhatIf, record_attempt};
use crate::transport::facts::{self, Destination, FactSource};
use crate::transport::idle::{self, IdleKey, Spare};
use crate::transport::loops;
use crate::transport::message::message_facts;
use crate::transport::outcome::{self, HostsTried};
use crate::transport::pending::{Pending, fail_open, settle_without_connection};
use crate::transport::session::MailSession;
use crate::transport::sessions::SessionLog;
use crate::transport::{LivePolicy, RouteCredentials, Transport};

mod carry;
mod connect;

use carry::{Carried, carry};
use connect::{Connected, connect};

/// Whether any SMTP greeting was received from the addresses tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    Reached,
    Unreachable,
}

impl Reach {
    fn join(&mut self, other: Reach) {
        if other == Reach::Reached {
            *self = Reach::Reached;
        }
    }
}

pub(crate) async fn deliver<F: FactSource>(
    transport: &Transport<F>,
    job: &DeliveryJob,
) -> DeliveryReport {
    let mut pending: Vec<Pending<'_>> = job.messages.iter().map(Pending::new).collect();
    for message in &mut pending {
        if let Some((status, reason)) = outcome::unsendable(message.message) {
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
    // None until a plan called for hosts (delivery, or a deferral for want of one).
    let mut reach: Option<Reach> = None;
    let mut posture = None;
    if pending.iter().any(|p| !p.is_done()) {
        let live = transport.live();
        let now = unix_now();
        transport.note_expired(&live.policy.rules, now);
        let destination = transport.destination(&job.domain).await;
        let history = transport.history(&job.domain);
        let groups = group_by_plan(&pending, &destination, &live, now, &history);
        // RFC 8460 §3: reports about our own reports would feed on themselves.
        sessions.counted = pending
            .iter()
            .any(|p| !p.is_done() && p.message.envelope.kind != MessageKind::TlsReport);
        sessions.policy_failures(&destination);
        let mut slots: Vec<Option<Pending<'_>>> = pending.into_iter().map(Some).collect();
        for (evaluation, members) in groups {
            let mut group: Vec<Pending<'_>> =
                members.iter().filter_map(|i| slots[*i].take()).collect();
            let alternatives = &evaluation.alternatives;
            match evaluation.outcome {
                PlanOutcome::Deliver(plan) => {
                    sessions.refused_hosts(&plan.policy_failures);
                    let planned = Planned {
                        plan: &plan,
                        alternatives,
                    };
                    let got =
                        deliver_plan(transport, planned, &destination, &mut group, &mut sessions)
                            .await;
                    reach.get_or_insert(Reach::Unreachable).join(got);
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
                    reach.get_or_insert(Reach::Unreachable);
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
        pending = slots.into_iter().flatten().collect();
        let mut seen = match &destination {
            Destination::Mx(facts) => posture_of(facts),
            Destination::Route { host, .. } => posture_of_route(host),
        };
        let offered = std::mem::take(&mut sessions.offered);
        seen.starttls = offered.starttls;
        seen.requiretls = offered.requiretls;
        posture = Some(seen);
    }
    DeliveryReport {
        messages: pending.into_iter().map(Pending::into_report).collect(),
        destination_unreachable: reach == Some(Reach::Unreachable),
        sessions: sessions.into_results(),
        posture,
    }
}

/// The plan for one message to `destination` under `policy` at `now` (unix seconds), with what
/// each matching shadow rule and exception would change; `history` is what the destination
/// offered before, for rules that pin the last good policy.
pub(crate) fn evaluate_for(
    destination: &Destination,
    message: &MessageFacts,
    policy: &PolicySettings,
    now: u64,
    history: &History,
) -> Evaluation {
    let domain = match destination {
        Destination::Mx(facts) => facts.domain.as_str(),
        Destination::Route { domain, .. } => domain.as_str(),
    };
    evaluate(policy, domain, &message.sender, now, history, |settings| {
        plan_for(destination, message, settings)
    })
}

/// The current time in unix seconds, the moment rules are evaluated at.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The plan for one message to `destination` under `policy`.
fn plan_for(
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

/// The job's open messages grouped by equal plans, and equal plans of their shadow rules and
/// exceptions (indexes into `pending`, in job order), so that messages with the same plan share
/// connections.
fn group_by_plan(
    pending: &[Pending<'_>],
    destination: &Destination,
    live: &LivePolicy,
    now: u64,
    history: &History,
) -> Vec<(Evaluation, Vec<usize>)> {
    let mut groups: Vec<(Evaluation, Vec<usize>)> = Vec::new();
    for (index, message) in pending.iter().enumerate().filter(|(_, p)| !p.is_done()) {
        let facts = message_facts(message.message, &live.tls_required_no);
        let outcome = evaluate_for(destination, &facts, &live.policy, now, history);
        match groups.iter_mut().find(|(plan, _)| *plan == outcome) {
            Some((_, members)) => members.push(index),
            None => groups.push((outcome, vec![index])),
        }
    }
    groups
}

/// A plan to deliver, with the plans of the matching shadow rules and exceptions.
#[derive(Clone, Copy)]
struct Planned<'a> {
    plan: &'a DeliveryPlan,
    alternatives: &'a Alternatives,
}

/// Tries the plan's hosts in order, then settles what no host took.
async fn deliver_plan<F: FactSource>(
    transport: &Transport<F>,
    planned: Planned<'_>,
    destination: &Destination,
    pending: &mut [Pending<'_>],
    sessions: &mut SessionLog,
) -> Reach {
    let plan = planned.plan;
    let port = destination.port(transport.settings.smtp_port);
    let routed = matches!(destination, Destination::Route { .. });
    let mut reach = Reach::Unreachable;
    let mut tried = HostsTried::NoneUsable { looped: false };
    for host in &plan.candidates {
        if pending.iter().all(Pending::is_done) {
            break;
        }
        let addresses = match host_addresses(transport, destination, &host.host, port).await {
            Ok(addresses) => addresses,
            Err(failure) => {
                if failure.transient {
                    tried = HostsTried::SomeUsable;
                }
                let failure = outcome::address_failure(&host.host, failure);
                fail_open(&host_scope(planned, host, None), pending, &failure);
                continue;
            }
        };
        let (addresses, refused) = screen(transport, routed, addresses, port);
        if let (true, Some((target, refusal))) = (addresses.is_empty(), refused.first()) {
            // Every address of this host is refused: as permanent as a host without one.
            let loops_back = matches!(refusal, loops::Refusal::OwnListener(_));
            if let HostsTried::NoneUsable { looped } = &mut tried {
                *looped |= loops_back;
            }
            let reason = refusal.reason(*target);
            tracing::warn!(domain = %plan.domain, mx = %host.host, reason = %reason, outcome = "refused", "no address of this host may be connected to");
            let failure = outcome::refused_host(&host.host, reason, loops_back);
            fail_open(&host_scope(planned, host, None), pending, &failure);
            continue;
        }
        tried = HostsTried::SomeUsable;
        for ip in addresses {
            if pending.iter().all(Pending::is_done) {
                break;
            }
            let via = Via {
                planned,
                host,
                addr: SocketAddr::new(ip, port),
                credentials: destination.credentials(),
            };
            reach.join(deliver_to_address(transport, &via, pending, sessions).await);
        }
    }
    if let Some(bounce) = outcome::unusable_destination(plan, tried) {
        for message in pending.iter_mut() {
            message.decide_open(&bounce);
        }
    }
    for message in pending.iter_mut() {
        let last = message.last_failure.clone();
        message.decide_open(&outcome::no_host_took(
            plan,
            last,
            message.transient_failure,
        ));
    }
    reach
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
        // Boxed, as every lookup, opening and closing is: the job's future holds only the
        // path every message takes, and is copied whole when the job starts.
        None => {
            Box::pin(transport.facts.host_facts(host, port))
                .await
                .addresses
        }
    }
}

fn host_scope(planned: Planned<'_>, host: &PlannedHost, ip: Option<IpAddr>) -> AttemptScope {
    let plan = planned.plan;
    AttemptScope::for_host(
        &plan.domain,
        plan.policy.as_str(),
        &plan.rules,
        host.requirement.as_str(),
        &host.host,
        ip,
        WhatIf::at_host(planned.alternatives, &host.host),
    )
}

/// One address of one planned host, and the login a route sends there.
#[derive(Clone, Copy)]
struct Via<'a> {
    planned: Planned<'a>,
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
/// `max_messages_per_connection` needs, all inside one `delivery_attempt` span.
async fn deliver_to_address<F: FactSource>(
    transport: &Transport<F>,
    via: &Via<'_>,
    pending: &mut [Pending<'_>],
    sessions: &mut SessionLog,
) -> Reach {
    let span = tracing::info_span!(
        "delivery_attempt",
        domain = %via.planned.plan.domain,
        mx = %via.host.host,
        ip = %via.addr.ip(),
        tls = tracing::field::Empty,
        auth = tracing::field::Empty,
    );
    carry_through_address(transport, via, pending, sessions)
        .instrument(span)
        .await
}

async fn carry_through_address<F: FactSource>(
    transport: &Transport<F>,
    via: &Via<'_>,
    pending: &mut [Pending<'_>],
    sessions: &mut SessionLog,
) -> Reach {
    let Via {
        planned,
        host,
        addr,
        ..
    } = *via;
    let plan = planned.plan;
    let mut queue: VecDeque<usize> = (0..pending.len())
        .filter(|i| !pending[*i].is_done())
        .collect();
    let mut reach = Reach::Unreachable;
    let mut plaintext_only = false;
    let key = IdleKey {
        domain: plan.domain.clone(),
        host: host.clone(),
        addr,
        requiretls: plan.requiretls,
        login: via.credentials.map(|c| c.user.clone()),
        what_if: WhatIf::at_host(planned.alternatives, &host.host),
    };
    while !queue.is_empty() {
        let (session, scope, sent) = match transport.idle.take(&key) {
            Some(spare) => (spare.session, spare.scope.restarted(), spare.sent),
            None => {
                let connecting = connect(transport, via, plaintext_only, &queue, pending, sessions);
                match Box::pin(connecting).await {
                    Connected::Session(session, scope) => (session, *scope, 0),
                    Connected::PlaintextFallback(got) => {
                        reach.join(got);
                        plaintext_only = true;
                        continue;
                    }
                    Connected::Failed(got) => {
                        reach.join(got);
                        return reach;
                    }
                }
            }
        };
        reach = Reach::Reached;
        let span = tracing::Span::current();
        span.record(
            "tls",
            scope
                .tls
                .as_ref()
                .map_or("none", |tls| tls.version.as_str()),
        );
        span.record("auth", scope.auth.as_str());
        match carry(
            transport, session, &scope, &host.host, sent, &mut queue, pending,
        )
        .await
        {
            Carried::Spare(spare) => {
                park(transport, key, spare);
                return reach;
            }
            Carried::Again => {}
            Carried::Left => return reach,
        }
    }
    reach
}

//! The one place where a delivery attempt becomes an `AttemptRecord`, a log record and a metric.
//!
//! Deciding the outcome is the delivery run's job; this module only writes it down, the same way
//! every time, so that the spool, the logs and the metrics can never disagree.

use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use strictmx_policy::report::ResultType;
use strictmx_spool::{AttemptOutcome, AttemptRecord, MessageId, MessageIdDisplay, PeerAuth};

use crate::transport::negotiation::Negotiation;
use crate::transport::tls::TlsInfo;

/// What is known about one connection attempt while it runs.
#[derive(Debug, Clone)]
pub(crate) struct AttemptScope {
    pub(crate) domain: String,
    pub(crate) policy: &'static str,
    /// The names of the rules that matched (the plan's `rules`).
    pub(crate) rules: Vec<String>,
    /// The TLS requirement applied to this host, for the log.
    pub(crate) requirement: Option<&'static str>,
    pub(crate) mx: Option<String>,
    pub(crate) ip: Option<IpAddr>,
    pub(crate) tls: Option<TlsInfo>,
    /// How the peer was authenticated, once the session passed the plan's checks.
    pub(crate) auth: PeerAuth,
    /// The RFC 8460 result type of a TLS policy failure on this attempt.
    pub(crate) result_type: Option<ResultType>,
    /// Our address on the connection, and the name the server gave (for TLSRPT).
    pub(crate) local_ip: Option<IpAddr>,
    pub(crate) peer_helo: Option<String>,
    at: SystemTime,
    started: Instant,
}

impl AttemptScope {
    pub(crate) fn new(domain: &str, policy: &'static str) -> Self {
        AttemptScope {
            domain: domain.to_owned(),
            policy,
            rules: Vec::new(),
            requirement: None,
            mx: None,
            ip: None,
            tls: None,
            auth: PeerAuth::None,
            result_type: None,
            local_ip: None,
            peer_helo: None,
            at: SystemTime::now(),
            started: Instant::now(),
        }
    }

    pub(crate) fn for_host(
        domain: &str,
        policy: &'static str,
        rules: &[String],
        requirement: &'static str,
        mx: &str,
        ip: Option<IpAddr>,
    ) -> Self {
        AttemptScope {
            rules: rules.to_vec(),
            requirement: Some(requirement),
            mx: Some(mx.to_owned()),
            ip,
            ..AttemptScope::new(domain, policy)
        }
    }
}

impl AttemptScope {
    /// Takes in what establishing the connection showed: addresses, TLS, authentication.
    pub(crate) fn negotiated(&mut self, negotiation: &Negotiation) {
        self.local_ip = negotiation.local_ip;
        self.peer_helo.clone_from(&negotiation.peer_helo);
        self.tls = negotiation.tls_info().cloned();
        self.auth = spool_auth(negotiation.auth());
    }

    /// The same connection's facts for a new attempt on it (a spare session another job
    /// reuses): its time and duration start now.
    pub(crate) fn restarted(&self) -> Self {
        AttemptScope {
            result_type: None,
            at: SystemTime::now(),
            started: Instant::now(),
            ..self.clone()
        }
    }
}

/// The spool's name for how the policy authenticated the peer.
fn spool_auth(auth: strictmx_policy::PeerAuth) -> PeerAuth {
    match auth {
        strictmx_policy::PeerAuth::Dane => PeerAuth::Dane,
        strictmx_policy::PeerAuth::Sts => PeerAuth::Sts,
        strictmx_policy::PeerAuth::Webpki => PeerAuth::Webpki,
        strictmx_policy::PeerAuth::None => PeerAuth::None,
    }
}

/// Records what one attempt did for one message: the typed record, one `info!` line and the
/// `strictmx_delivery_attempts_total{outcome, tls}` counter.
pub(crate) fn record_attempt(
    scope: &AttemptScope,
    msg_id: MessageId,
    recipients: Vec<usize>,
    outcome: AttemptOutcome,
    reply: &str,
) -> AttemptRecord {
    let duration_ms = u64::try_from(scope.started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let outcome_label = match outcome {
        AttemptOutcome::Delivered => "delivered",
        AttemptOutcome::Deferred => "deferred",
        AttemptOutcome::Bounced => "bounced",
    };
    let tls_label = scope
        .tls
        .as_ref()
        .map_or("none", |tls| tls.version.as_str());
    tracing::info!(
        msg_id = %MessageIdDisplay(msg_id),
        domain = %scope.domain,
        mx = scope.mx.as_deref().unwrap_or("-"),
        ip = %scope.ip.map_or_else(|| "-".to_owned(), |ip| ip.to_string()),
        tls = tls_label,
        cipher = scope.tls.as_ref().map_or("-", |tls| tls.cipher.as_str()),
        // A JSON boolean; absent when there was no TLS session.
        cert_verified = scope.tls.as_ref().map(TlsInfo::cert_verified),
        requirement = scope.requirement.unwrap_or("-"),
        auth = scope.auth.as_str(),
        policy = scope.policy,
        rules = %RuleNames(&scope.rules),
        result_type = scope.result_type.map_or("-", ResultType::as_str),
        recipients = recipients.len(),
        outcome = outcome_label,
        reply,
        duration_ms,
        "delivery attempt"
    );
    metrics::counter!(
        "strictmx_delivery_attempts_total",
        "outcome" => outcome_label,
        "tls" => if scope.tls.is_some() { "tls" } else { "none" },
    )
    .increment(1);
    AttemptRecord {
        at: scope.at,
        domain: scope.domain.clone(),
        mx: scope.mx.clone(),
        ip: scope.ip,
        tls_version: scope.tls.as_ref().map(|tls| tls.version.clone()),
        cipher: scope.tls.as_ref().map(|tls| tls.cipher.clone()),
        cert_verified: scope.tls.as_ref().map(TlsInfo::cert_verified),
        auth: scope.auth,
        policy: scope.policy.to_owned(),
        rules: scope.rules.clone(),
        requirement: scope.requirement.map(str::to_owned),
        result_type: scope.result_type.map(|result| result.as_str().to_owned()),
        recipients,
        outcome,
        reply: reply.to_owned(),
        duration_ms,
    }
}

/// The matching rules' names for the log: comma-separated, `-` for none.
struct RuleNames<'a>(&'a [String]);

impl std::fmt::Display for RuleNames<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("-");
        }
        f.write_str(&self.0.join(","))
    }
}

//! What the facts of a delivery attempt mean for each recipient: pure functions from the
//! replies, capabilities and failures the I/O ladder (`run`) gathered to recipient outcomes and
//! the reply an attempt record quotes. No I/O here; every function is table-tested in
//! `outcome/tests.rs`.
//!
//! Which host may be used and under what TLS is the plan's (`strictmx-policy`); what a reply
//! or a failure means for the mail is decided here.

use strictmx_policy::{AddressFailure, DeliveryPlan, PolicyLabel};
use strictmx_protocol::{EnhancedStatus, ErrorChain, Reply, path_is_safe, status};
use strictmx_spool::AttemptOutcome;

use crate::job::{Diagnostic, JobMessage, RecipientOutcome};
use crate::transport::error::{TransportError, reply_status, reply_text};
use crate::transport::session::{Outgoing, TransactionReplies};
use crate::transport::wire::Capabilities;

/// Why a host could not take a message, kept until no host is left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) mx: Option<String>,
    pub(crate) diagnostic: Diagnostic,
    pub(crate) status: EnhancedStatus,
    /// RFC 8689 §4.2.1: the host failed a REQUIRETLS condition (not reachability).
    pub(crate) requiretls: bool,
}

/// A message this relay must not send anywhere, whatever the server: (status, reason).
pub(crate) fn unsendable(message: &JobMessage) -> Option<(String, String)> {
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
pub(crate) fn refused_by_capabilities(
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

pub(crate) fn failure_from(host: &str, error: &TransportError) -> Failure {
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

/// What the replies of one transaction mean.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The server did not take the message at all for a transient reason: try the next host.
    NextHost(Failure),
    /// Final answers (or deferrals) for the recipients sent.
    Decided(Vec<(usize, RecipientOutcome)>),
}

pub(crate) fn transaction_verdict(host: &str, replies: &TransactionReplies) -> Verdict {
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

/// RFC 5321 §3.8: a 421 to any command of the transaction means the server is closing the
/// connection; no further transaction goes over it.
pub(crate) fn server_is_closing(replies: &TransactionReplies) -> bool {
    [
        Some(&replies.mail),
        replies.data.as_ref(),
        replies.end.as_ref(),
    ]
    .into_iter()
    .flatten()
    .chain(replies.rcpts.iter().map(|(_, r)| r))
    .any(|reply| reply.code == 421)
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

pub(crate) fn summarise(outcomes: &[(usize, RecipientOutcome)]) -> AttemptOutcome {
    let any = |f: fn(&RecipientOutcome) -> bool| outcomes.iter().any(|(_, o)| f(o));
    if any(|o| matches!(o, RecipientOutcome::Deferred { .. })) {
        AttemptOutcome::Deferred
    } else if any(|o| matches!(o, RecipientOutcome::Delivered { .. })) {
        AttemptOutcome::Delivered
    } else {
        AttemptOutcome::Bounced
    }
}

/// The reply that best explains the transaction's outcome for the attempt record: the reply to
/// the end of data, or to DATA when it was refused; when no recipient was accepted, the last
/// recipient's refusal (a pipelined DATA is then refused for want of recipients, which says
/// nothing); the MAIL reply when that was refused.
pub(crate) fn last_reply(replies: &TransactionReplies) -> String {
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

/// A candidate whose addresses could not be found: transient failures defer (4.4.3), a host
/// that does not exist cannot be routed to (4.4.4, permanent only when every host is so).
pub(crate) fn address_failure(host: &str, failure: AddressFailure) -> Failure {
    Failure {
        mx: Some(host.to_owned()),
        diagnostic: Diagnostic::Local(failure.reason),
        status: if failure.transient {
            status::DIRECTORY_FAILURE
        } else {
            status::UNABLE_TO_ROUTE
        },
        requiretls: false,
    }
}

/// A candidate none of whose addresses may be connected to: one of our own listeners is a loop
/// (RFC 3463 X.4.6), a `never_deliver_to` network cannot be routed to (X.4.4).
pub(crate) fn refused_host(host: &str, reason: String, loops_back: bool) -> Failure {
    Failure {
        mx: Some(host.to_owned()),
        diagnostic: Diagnostic::Local(reason),
        status: if loops_back {
            status::ROUTING_LOOP
        } else {
            status::UNABLE_TO_ROUTE
        },
        requiretls: false,
    }
}

/// The messages still queued for a host that closed the connection or failed mid-session go
/// to the next host.
pub(crate) fn left_host(host: &str, reason: String) -> Failure {
    Failure {
        mx: Some(host.to_owned()),
        diagnostic: Diagnostic::Local(reason),
        status: status::BAD_CONNECTION,
        requiretls: false,
    }
}

/// How the candidates of a plan failed, as far as the bounce of a whole destination goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostsTried {
    /// At least one host had a usable address (or a lookup may yet succeed).
    SomeUsable,
    /// Every host had no address for good, or every usable one was refused.
    NoneUsable {
        /// Whether an address was refused as one of our own listeners.
        looped: bool,
    },
}

/// RFC 5321 §5.1: MX records present but none usable "MUST be reported as an error": the
/// bounce for every open recipient, when that is the case. A destination that only leads back
/// to this server is a loop (RFC 3463 X.4.6), routed or not; a route's next hop without an
/// address is left to retries (the administrator's configuration may be fixed).
pub(crate) fn unusable_destination(
    plan: &DeliveryPlan,
    tried: HostsTried,
) -> Option<RecipientOutcome> {
    let HostsTried::NoneUsable { looped } = tried else {
        return None;
    };
    let (code, text) = if looped {
        (
            status::ROUTING_LOOP,
            format!("mail for {} loops back to myself", plan.domain),
        )
    } else if plan.policy != PolicyLabel::Route {
        (
            status::UNABLE_TO_ROUTE,
            format!("no MX host of {} has a usable address", plan.domain),
        )
    } else {
        return None;
    };
    Some(RecipientOutcome::Bounced {
        remote_mta: None,
        diagnostic: Diagnostic::Local(text),
        status: code.to_string(),
    })
}

/// What becomes of a message no host took, from its last failure (none when no host could
/// be tried at all).
pub(crate) fn no_host_took(
    plan: &DeliveryPlan,
    last: Option<Failure>,
    transient_seen: bool,
) -> RecipientOutcome {
    let failure = last.unwrap_or_else(|| Failure {
        mx: None,
        diagnostic: Diagnostic::Local("no host could be tried".to_owned()),
        status: status::NO_ANSWER,
        requiretls: false,
    });
    final_outcome(plan, failure, transient_seen)
}

#[cfg(test)]
mod tests;

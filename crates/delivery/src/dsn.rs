//! Delivery status notifications: who gets one (RFC 3461 §4.1–§4.3, §6.2) and what it says
//! (an RFC 3464 multipart/report, or its RFC 6533 global form for SMTPUTF8 messages).
//!
//! Pure composition: the runner decides when a recipient is final or delayed, gathers the facts
//! and submits the result through the spool.

mod fields;

use std::net::{IpAddr, Ipv6Addr};
use std::time::{SystemTime, UNIX_EPOCH};

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::{BodyPart, MimePart};
use mail_parser::MessageParser;
use strictmx_protocol::{BodyType, DsnRet, MailParams, Notify, Orcpt, RcptParams};
use strictmx_spool::{ClientInfo, Envelope, EnvelopeRecipient, MessageId, MessageKind};

use crate::job::Diagnostic;
use fields::{StatusFields, is_status_code};

/// The three events a sender can ask to hear about (RFC 3461 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DsnKind {
    /// The recipient will never get the message.
    Failure,
    /// The message is still queued after the delay threshold.
    Delay,
    /// The message left strictmx for the recipient's MX.
    Success,
}

impl DsnKind {
    /// The `Action` field (RFC 3464 §2.3.3). Success is `relayed`: strictmx hands mail to the
    /// recipient's MX, it never delivers to a mailbox itself.
    pub fn action(self) -> &'static str {
        match self {
            DsnKind::Failure => "failed",
            DsnKind::Delay => "delayed",
            DsnKind::Success => "relayed",
        }
    }

    /// The value of the `kind` label of `strictmx_dsn_sent_total`.
    pub fn label(self) -> &'static str {
        match self {
            DsnKind::Failure => "failure",
            DsnKind::Delay => "delay",
            DsnKind::Success => "success",
        }
    }

    fn subject(self) -> &'static str {
        match self {
            DsnKind::Failure => "Undelivered Mail Returned to Sender",
            DsnKind::Delay => "Delayed Mail (still being retried)",
            DsnKind::Success => "Successful Mail Relay Report",
        }
    }

    /// The status used when the outcome carried none that parses (RFC 3463 §3.1, "other").
    fn fallback_status(self) -> strictmx_protocol::EnhancedStatus {
        use strictmx_protocol::status;
        match self {
            DsnKind::Failure => status::OTHER_PERMANENT,
            DsnKind::Delay => status::OTHER_TRANSIENT,
            DsnKind::Success => status::SUCCESS,
        }
    }
}

/// Whether the sender of `envelope` wants a DSN of `kind` about the recipient with `params`.
pub fn requested(envelope: &Envelope, params: &RcptParams, kind: DsnKind) -> bool {
    // RFC 5321 §4.5.5 and RFC 3461 §6.2: a notification is never sent to the null sender, and
    // strictmx's own DSNs never produce further DSNs (mail loops).
    if envelope.mail_from.is_empty() || envelope.kind == MessageKind::Dsn {
        return false;
    }
    match params.notify {
        // RFC 3461 §4.1: without NOTIFY, "FAILURE" or "FAILURE,DELAY" at the MTA's choice;
        // strictmx, like most MTAs, reports delays too.
        None => matches!(kind, DsnKind::Failure | DsnKind::Delay),
        // RFC 3461 §4.1: NEVER excludes every other keyword.
        Some(Notify { never: true, .. }) => false,
        Some(notify) => match kind {
            DsnKind::Failure => notify.failure,
            DsnKind::Delay => notify.delay,
            DsnKind::Success => notify.success,
        },
    }
}

/// What a DSN says about one recipient (RFC 3464 §2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnRecipient {
    /// The address strictmx tried (`Final-Recipient`).
    pub address: String,
    /// From ORCPT, when the submitter gave one (`Original-Recipient`).
    pub orcpt: Option<Orcpt>,
    /// Enhanced status code such as `5.1.1` (RFC 3463).
    pub status: String,
    /// The MX host that answered, when one did.
    pub remote_mta: Option<String>,
    pub diagnostic: Option<Diagnostic>,
    pub last_attempt: Option<SystemTime>,
}

/// Everything a DSN about one message needs.
#[derive(Debug, Clone, Copy)]
pub struct DsnRequest<'a> {
    pub kind: DsnKind,
    /// strictmx's host name: `Reporting-MTA`, `From: MAILER-DAEMON@…`, `Message-ID`.
    pub hostname: &'a str,
    pub original_id: MessageId,
    pub original: &'a Envelope,
    pub original_body: &'a [u8],
    /// All recipients of this message in the state `kind` reports, in envelope order.
    pub recipients: &'a [DsnRecipient],
    /// For delay DSNs: when strictmx gives up (`Will-Retry-Until`).
    pub retry_until: Option<SystemTime>,
    /// With RET=FULL, a larger original is returned as headers only.
    pub full_body_limit: usize,
    pub now: SystemTime,
}

/// A composed DSN, ready for `Spool::submit`.
#[derive(Debug, Clone)]
pub struct Dsn {
    pub envelope: Envelope,
    pub body: Vec<u8>,
}

/// How much of the original message goes back to the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Returned {
    Full,
    Headers,
    /// Only the fields that identify the original (`Date`, `Message-ID`): a REQUIRETLS message.
    Identifying,
}

/// Composes the DSN for `request`: a multipart/report from the null sender to the sender.
pub fn compose(request: &DsnRequest<'_>) -> Dsn {
    let original = request.original;
    let global = original.params.smtputf8;
    let parsed = MessageParser::new().parse_headers(request.original_body);
    let subject = parsed.as_ref().and_then(|message| message.subject());
    let header_end = parsed
        .as_ref()
        .map_or(0, |message| message.root_part().offset_body as usize);
    let returned = returned_content(request);
    let human = human_readable(request, subject, returned);
    let status = StatusFields::new(request, global).render();

    // RFC 3464 §2.1: the third part is optional; an original without any header section is
    // not returned at all.
    let returned_part = match returned {
        Returned::Full => Some(returned_part(
            if global {
                "message/global"
            } else {
                "message/rfc822"
            },
            request.original_body,
        )),
        Returned::Headers | Returned::Identifying if header_end == 0 => None,
        Returned::Headers => Some(returned_part(
            headers_type(global),
            headers_only(request.original_body, header_end),
        )),
        Returned::Identifying => {
            let fields = identifying_fields(headers_only(request.original_body, header_end));
            (!fields.is_empty()).then(|| returned_part(headers_type(global), &fields))
        }
    };
    let status_type = if global {
        "message/global-delivery-status"
    } else {
        "message/delivery-status"
    };
    let eight_bit = !status.is_ascii() || returned_part.as_ref().is_some_and(|part| !part.1);
    let mut parts = vec![
        MimePart::new("text/plain", human),
        leaf(status_type, status.into_bytes()),
    ];
    parts.extend(returned_part.map(|part| part.0));

    // RFC 3462 (now RFC 6522 §3): multipart/report with report-type, human part first.
    let report = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
        parts,
    );
    let mut builder = MessageBuilder::new()
        .from(Address::new_address(
            Some("Mail Delivery System"),
            format!("MAILER-DAEMON@{}", request.hostname),
        ))
        .to(Address::new_address(
            None::<&str>,
            original.mail_from.clone(),
        ))
        .subject(request.kind.subject())
        .date(Date::new(unix_seconds(request.now)))
        .message_id(format!(
            "dsn.{}.{:016x}.{}@{}",
            request.kind.label(),
            request.original_id,
            unix_nanos(request.now),
            request.hostname
        ))
        // RFC 3834 §5: machine-generated replies say so, so that responders stay quiet.
        .header("Auto-Submitted", Raw::new("auto-replied"));
    if let Some(id) = parsed.as_ref().and_then(|message| message.message_id()) {
        builder = builder.references(id.to_owned());
    }
    let mut body = Vec::new();
    builder.body(report).serialize(&mut body);
    Dsn {
        envelope: dsn_envelope(request, eight_bit),
        body,
    }
}

/// RFC 3461 §4.3: RET=FULL returns the message with a failure report; RET=HDRS, no RET and
/// every other kind of report return the headers only. A binary body (BINARYMIME) or one above
/// the limit goes back as headers too: it would need BINARYMIME or an oversized DSN on the way
/// back.
///
/// RFC 8689 §5: a REQUIRETLS message is reported as if RET=HDRS were given ("If both RET=FULL
/// and REQUIRETLS are present, the RET=FULL MUST be disregarded"), and its report may be
/// carried to a next hop that does not advertise REQUIRETLS, from where nothing protects it. So
/// of the headers only those that identify the message go back: not its Subject, addresses or
/// anything else the sender asked to keep off unprotected paths.
fn returned_content(request: &DsnRequest<'_>) -> Returned {
    let params = &request.original.params;
    if params.requiretls {
        return Returned::Identifying;
    }
    if request.kind == DsnKind::Failure
        && params.ret == Some(DsnRet::Full)
        && params.body != BodyType::BinaryMime
        && request.original_body.len() <= request.full_body_limit
    {
        Returned::Full
    } else {
        Returned::Headers
    }
}

fn headers_type(global: bool) -> &'static str {
    if global {
        "message/global-headers"
    } else {
        "text/rfc822-headers"
    }
}

/// The `Date` and `Message-ID` fields of a header section, with their continuation lines
/// (RFC 5322 §2.2.3), as they were written; every other field is left out.
fn identifying_fields(headers: &[u8]) -> Vec<u8> {
    let mut fields = Vec::new();
    let mut keep = false;
    for line in headers.split_inclusive(|byte| *byte == b'\n') {
        if !matches!(line.first(), Some(b' ' | b'\t')) {
            keep = line
                .iter()
                .position(|byte| *byte == b':')
                .is_some_and(|colon| {
                    let name = line[..colon].trim_ascii();
                    name.eq_ignore_ascii_case(b"Date") || name.eq_ignore_ascii_case(b"Message-ID")
                });
        }
        if keep {
            fields.extend_from_slice(line);
        }
    }
    fields
}

/// The header section of `body`, ending with one CRLF.
fn headers_only(body: &[u8], header_end: usize) -> &[u8] {
    let headers = body.get(..header_end).unwrap_or(body);
    let mut end = headers.len();
    while end > 0 && matches!(headers.get(end - 1), Some(b'\r' | b'\n')) {
        end -= 1;
    }
    // Keep the line break that ends the last header field.
    let with_break = headers.get(end..).map_or(0, |rest| {
        if rest.starts_with(b"\r\n") {
            2
        } else {
            usize::from(rest.starts_with(b"\n"))
        }
    });
    headers.get(..end + with_break).unwrap_or(headers)
}

/// A returned-content part; the flag says whether it is 7-bit clean.
fn returned_part<'x>(content_type: &'x str, content: &[u8]) -> (MimePart<'x>, bool) {
    let seven_bit = content.is_ascii();
    (leaf(content_type, content.to_vec()), seven_bit)
}

/// A part written as is: message/* parts may not be base64 or quoted-printable encoded
/// (RFC 2046 §5.2.1), and delivery-status fields must stay readable.
fn leaf(content_type: &str, content: Vec<u8>) -> MimePart<'_> {
    let encoding = if content.is_ascii() { "7bit" } else { "8bit" };
    MimePart::new(
        ContentType::new(content_type),
        BodyPart::Binary(content.into()),
    )
    .transfer_encoding(encoding)
}

fn human_readable(request: &DsnRequest<'_>, subject: Option<&str>, returned: Returned) -> String {
    let mut text = String::new();
    let host = request.hostname;
    let intro = match request.kind {
        DsnKind::Failure => format!(
            "This is the mail system at host {host}.\r\n\r\n\
             Your message could not be delivered to one or more recipients.\r\n\
             It has been returned; the reasons are below.\r\n"
        ),
        DsnKind::Delay => format!(
            "This is the mail system at host {host}.\r\n\r\n\
             Your message has not been delivered yet to one or more recipients.\r\n\
             This is a warning only: it will be retried, you need not send it again.\r\n"
        ),
        DsnKind::Success => format!(
            "This is the mail system at host {host}.\r\n\r\n\
             Your message was passed on to the mail servers of the recipients below,\r\n\
             as you asked. Those servers may not send further notifications.\r\n"
        ),
    };
    text.push_str(&intro);
    if returned == Returned::Identifying {
        text.push_str(
            "\r\nYour message was sent with REQUIRETLS. To keep its content private, this\r\n\
             report returns only its Date and Message-ID, not its subject or other header\r\n\
             fields (RFC 8689 section 5).\r\n",
        );
    } else if let Some(subject) = subject {
        text.push_str(&format!(
            "\r\nSubject: {}\r\n",
            fields::printable(subject, true)
        ));
    }
    text.push_str(&format!("Queue ID: {:016x}\r\n\r\n", request.original_id));
    for recipient in request.recipients {
        text.push_str(&format!(
            "<{}>: {}\r\n",
            fields::printable(&recipient.address, true),
            explanation(recipient)
        ));
    }
    if request.kind == DsnKind::Delay
        && let Some(until) = request.retry_until
    {
        text.push_str(&format!(
            "\r\nDelivery will be retried until {}.\r\n",
            Date::new(unix_seconds(until)).to_rfc822()
        ));
    }
    if request.kind == DsnKind::Failure
        && request.original.params.ret == Some(DsnRet::Full)
        && returned == Returned::Headers
    {
        text.push_str("\r\nOnly the headers of your message are returned.\r\n");
    }
    text
}

fn explanation(recipient: &DsnRecipient) -> String {
    let by = recipient
        .remote_mta
        .as_deref()
        .map(|mta| format!("host {} said: ", fields::printable(mta, true)));
    match &recipient.diagnostic {
        Some(Diagnostic::Smtp(reply)) => format!(
            "{}{}",
            by.unwrap_or_default(),
            fields::printable(&reply.replace('\n', " "), true)
        ),
        Some(Diagnostic::Local(reason)) => fields::printable(reason, true),
        None => format!("status {}", status_or(recipient, "unknown")),
    }
}

fn status_or<'a>(recipient: &'a DsnRecipient, fallback: &'a str) -> &'a str {
    if is_status_code(&recipient.status) {
        &recipient.status
    } else {
        fallback
    }
}

/// The envelope of a DSN (RFC 3461 §6.2): from the null sender to the original sender.
fn dsn_envelope(request: &DsnRequest<'_>, eight_bit: bool) -> Envelope {
    let original = request.original;
    Envelope {
        mail_from: String::new(),
        params: MailParams {
            size: None,
            body: if eight_bit {
                BodyType::EightBitMime
            } else {
                BodyType::SevenBit
            },
            smtputf8: original.params.smtputf8,
            // RFC 8689 §5: the report about a REQUIRETLS message is protected like the message:
            // planned under REQUIRETLS (authenticated MX choice, verified TLS). From the null
            // sender it may still go to a next hop that does not advertise REQUIRETLS, without
            // the parameter there (`DeliveryPlan::requiretls`).
            requiretls: original.params.requiretls,
            ret: None,
            envid: None,
        },
        recipients: vec![EnvelopeRecipient {
            address: original.mail_from.clone(),
            params: RcptParams {
                notify: Some(Notify {
                    never: true,
                    ..Notify::default()
                }),
                orcpt: None,
            },
        }],
        received_at: request.now,
        client: ClientInfo {
            ip: IpAddr::V6(Ipv6Addr::LOCALHOST),
            helo: request.hostname.to_owned(),
            auth_user: None,
            tls: None,
        },
        kind: MessageKind::Dsn,
        require_tls: None,
    }
}

fn unix_seconds(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
    })
}

fn unix_nanos(at: SystemTime) -> u128 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos())
}

#[cfg(test)]
mod tests;

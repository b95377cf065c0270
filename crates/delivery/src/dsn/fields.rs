//! The `message/delivery-status` body (RFC 3464 §2.2–§2.3, RFC 6533 §3 for its global form):
//! field values made safe, folded and ordered; the MIME structure around it is `dsn`'s.

use std::time::SystemTime;

use mail_builder::headers::date::Date;
use strictmx_protocol::xtext_encode;

use super::{DsnKind, DsnRecipient, DsnRequest, unix_seconds};
use crate::job::Diagnostic;

/// Lines longer than this are folded at a space (RFC 5322 §2.1.1).
const FOLD_AT: usize = 78;
/// A diagnostic longer than this is cut: a remote server chooses its reply's length.
const MAX_DIAGNOSTIC: usize = 900;

/// The per-message and per-recipient fields of one report.
#[derive(Debug)]
pub(super) struct StatusFields {
    text: String,
}

impl StatusFields {
    pub(super) fn new(request: &DsnRequest<'_>, global: bool) -> StatusFields {
        let mut fields = StatusFields {
            text: String::new(),
        };
        let original = request.original;
        // RFC 3464 §2.2: per-message fields first.
        fields.push("Reporting-MTA", &format!("dns; {}", request.hostname));
        if let Some(envid) = &original.params.envid {
            // RFC 3464 §2.2.1: the ENVID as the sender gave it (xtext-decoded by protocol).
            fields.push("Original-Envelope-Id", &envelope_text(envid, global));
        }
        fields.push("Arrival-Date", &rfc822_date(original.received_at));
        for recipient in request.recipients {
            // RFC 3464 §2.1: each recipient block follows an empty line.
            fields.text.push_str("\r\n");
            fields.recipient(request, recipient, global);
        }
        fields
    }

    fn recipient(&mut self, request: &DsnRequest<'_>, recipient: &DsnRecipient, global: bool) {
        if let Some(orcpt) = &recipient.orcpt {
            // RFC 3464 §2.3.1: only when ORCPT was given; the address type is an atom.
            let addr_type: String = orcpt
                .addr_type
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            self.push(
                "Original-Recipient",
                &format!("{addr_type}; {}", envelope_text(&orcpt.address, global)),
            );
        }
        // RFC 3464 §2.3.2; RFC 6533 §3: a non-ASCII address uses the "utf-8" address type.
        let address = &recipient.address;
        let final_recipient = if global && !address.is_ascii() {
            format!("utf-8; {}", printable(address, true))
        } else {
            format!("rfc822; {}", envelope_text(address, false))
        };
        self.push("Final-Recipient", &final_recipient);
        self.push("Action", request.kind.action());
        self.push("Status", &status_for(request.kind, &recipient.status));
        if let Some(mta) = &recipient.remote_mta {
            // RFC 3464 §2.3.5: an MX host name, so `dns`.
            self.push("Remote-MTA", &format!("dns; {}", printable(mta, false)));
        }
        if let Some(Diagnostic::Smtp(reply)) = &recipient.diagnostic {
            // RFC 3464 §2.3.6: the remote reply, multi-line replies on one logical line.
            let mut reply = printable(&reply.replace('\n', " "), global);
            truncate(&mut reply, MAX_DIAGNOSTIC);
            self.push("Diagnostic-Code", &format!("smtp; {reply}"));
        }
        if let Some(at) = recipient.last_attempt {
            self.push("Last-Attempt-Date", &rfc822_date(at));
        }
        if request.kind == DsnKind::Delay
            && let Some(until) = request.retry_until
        {
            // RFC 3464 §2.3.9: only for delayed recipients.
            self.push("Will-Retry-Until", &rfc822_date(until));
        }
    }

    pub(super) fn render(self) -> String {
        self.text
    }

    /// Appends `name: value`, folded at spaces so that lines stay short.
    fn push(&mut self, name: &str, value: &str) {
        let mut line_len = name.len() + 1;
        self.text.push_str(name);
        self.text.push(':');
        for word in value.split(' ').filter(|word| !word.is_empty()) {
            if line_len + 1 + word.len() > FOLD_AT && line_len > name.len() + 1 {
                self.text.push_str("\r\n");
                line_len = 0;
            }
            self.text.push(' ');
            self.text.push_str(word);
            line_len += 1 + word.len();
        }
        self.text.push_str("\r\n");
    }
}

/// Whether `status` is an enhanced status code `class.subject.detail` (RFC 3463 §2).
pub(super) fn is_status_code(status: &str) -> bool {
    let mut parts = status.split('.');
    let class_ok = parts
        .next()
        .is_some_and(|class| matches!(class, "2" | "4" | "5"));
    let number = |part: Option<&str>| {
        part.is_some_and(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
    };
    class_ok && number(parts.next()) && number(parts.next()) && parts.next().is_none()
}

/// The status to report: the recipient's, with the class the action implies (RFC 3464 §2.3.4:
/// a failed recipient carries a 5.x.x status even when the last attempt said 4.x.x).
fn status_for(kind: DsnKind, status: &str) -> String {
    if !is_status_code(status) {
        return kind.fallback_status().to_string();
    }
    let class = match kind {
        DsnKind::Failure => '5',
        DsnKind::Delay => '4',
        DsnKind::Success => '2',
    };
    let rest = status.get(1..).unwrap_or_default();
    let mut fixed = String::with_capacity(status.len());
    fixed.push(class);
    fixed.push_str(rest);
    fixed
}

/// Text from a sender or a peer made safe for one field or text line: control characters
/// (CR and LF above all) become spaces, and outside UTF-8 reports non-ASCII becomes `?`.
pub(super) fn printable(text: &str, allow_utf8: bool) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                ' '
            } else if !allow_utf8 && !c.is_ascii() {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// An envelope value (ENVID, ORCPT address, recipient) as it may appear in a field: as is when
/// it is printable, xtext-encoded (RFC 3461 §4) when it holds anything else.
fn envelope_text(value: &str, allow_utf8: bool) -> String {
    let safe = value
        .chars()
        .all(|c| !c.is_control() && c != ' ' && (allow_utf8 || c.is_ascii()));
    if safe {
        value.to_owned()
    } else {
        xtext_encode(value)
    }
}

fn rfc822_date(at: SystemTime) -> String {
    Date::new(unix_seconds(at)).to_rfc822()
}

fn truncate(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(" ...");
}

//! What one queued message asks of its delivery: the `MessageFacts` the planner reads, taken
//! from the envelope (REQUIRETLS), the header section (`TLS-Required: No`) and the submitter.
//!
//! What the facts lead to is the planner's decision (`strictmx-policy`); who may relax policy is
//! configuration (`TlsRequiredNoPermission`).

use strictmx_policy::MessageFacts;

use crate::job::JobMessage;
use crate::transport::settings::TlsRequiredNoPermission;

/// The facts of `message` for the planner.
pub(crate) fn message_facts(
    message: &JobMessage,
    permission: &TlsRequiredNoPermission,
) -> MessageFacts {
    let envelope = &message.envelope;
    MessageFacts {
        sender: envelope.mail_from.clone(),
        // RFC 8689 §5: a non-delivery report about a REQUIRETLS message carries REQUIRETLS and
        // is protected like the message; that it may go to a next hop without the extension
        // (an empty return path) is the planner's decision (`DeliveryPlan::requiretls`).
        requiretls: envelope.params.requiretls,
        tls_required_no: has_tls_required_no(&message.body),
        submitter_may_relax: permission.allows(&envelope.client),
        floor: envelope.require_tls.map(floor_of),
    }
}

/// The planner's name for a message's TLS floor.
pub fn floor_of(floor: strictmx_spool::TlsFloor) -> strictmx_policy::rules::MinRequirement {
    use strictmx_policy::rules::MinRequirement;
    match floor {
        strictmx_spool::TlsFloor::Encrypted => MinRequirement::Encrypted,
        strictmx_spool::TlsFloor::Verified => MinRequirement::Verified,
        strictmx_spool::TlsFloor::Dane => MinRequirement::DaneOnly,
    }
}

/// RFC 8689 §3: whether the header section holds `TLS-Required: No`. The field name compares
/// case-insensitively (RFC 5322 §1.2.2); "No" is the only value the RFC defines, compared
/// case-insensitively after unfolding. The body is never looked at.
///
/// Run for every message of every job, so only a field that can be `TLS-Required` is unfolded:
/// a continuation line starts with white space, so the name, once unfolded, begins on the
/// field's first line (unless that line is white space alone).
pub(crate) fn has_tls_required_no(message: &[u8]) -> bool {
    const NAME: &[u8] = b"TLS-Required";
    let mut lines = message
        .split(|byte| *byte == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .peekable();
    let continues = |line: &[u8]| matches!(line.first(), Some(b' ' | b'\t'));
    let mut first = true;
    let mut field = Vec::new();
    while let Some(line) = lines.next() {
        if line.is_empty() {
            break;
        }
        // RFC 5322 §2.2.3: a line starting with white space continues the previous field.
        if continues(line) && !std::mem::take(&mut first) {
            continue;
        }
        first = false;
        let start = line.trim_ascii_start();
        let candidate = start.is_empty()
            || start
                .get(..NAME.len())
                .is_some_and(|name| name.eq_ignore_ascii_case(NAME));
        if !candidate {
            continue;
        }
        field.clear();
        field.extend_from_slice(line);
        while let Some(next) = lines.next_if(|next| continues(next)) {
            field.extend_from_slice(next);
        }
        let Some(colon) = field.iter().position(|byte| *byte == b':') else {
            continue;
        };
        let (name, value) = field.split_at(colon);
        if name.trim_ascii().eq_ignore_ascii_case(NAME)
            && value[1..].trim_ascii().eq_ignore_ascii_case(b"No")
        {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;
    use std::time::SystemTime;

    use strictmx_protocol::MailParams;
    use strictmx_spool::{ClientInfo, Envelope, MessageKind};

    use super::*;

    #[test]
    fn tls_required_no_is_found_only_in_the_header_section() {
        let cases: [(&str, &[u8], bool); 11] = [
            (
                "RFC 8689 §3: the field as written",
                b"Subject: x\r\nTLS-Required: No\r\n\r\nbody\r\n",
                true,
            ),
            (
                "RFC 5322 §1.2.2: field names are case-insensitive",
                b"tls-required:no\r\n\r\n",
                true,
            ),
            (
                "RFC 5322 §2.2.3: a folded value is unfolded",
                b"TLS-Required:\r\n No\r\nSubject: x\r\n\r\n",
                true,
            ),
            ("LF line ends are accepted", b"TLS-Required: NO\n\n", true),
            (
                "RFC 8689 §3: no other value relaxes anything",
                b"TLS-Required: Yes\r\n\r\n",
                false,
            ),
            (
                "the body is not the header section",
                b"Subject: x\r\n\r\nTLS-Required: No\r\n",
                false,
            ),
            (
                "a longer field name is another field",
                b"X-TLS-Required: No\r\n\r\n",
                false,
            ),
            (
                "a value that merely starts with No is not No",
                b"TLS-Required: Nope\r\n\r\n",
                false,
            ),
            (
                "RFC 5322 §2.2.3: the name may be followed by folding white space",
                b"Subject: x\r\nTLS-Required\r\n : No\r\n\r\n",
                true,
            ),
            (
                "a folded field after the one that matters is read to its end",
                b"TLS-Required: No\r\n please\r\n\r\n",
                false,
            ),
            (
                "a continuation of another field is not a field",
                b"Subject: x\r\n TLS-Required: No\r\n\r\n",
                false,
            ),
        ];
        for (rule, message, expected) in cases {
            assert_eq!(has_tls_required_no(message), expected, "{rule}");
        }
    }

    fn job_message(mail_from: &str, requiretls: bool, auth_user: Option<&str>) -> JobMessage {
        JobMessage {
            id: 1,
            envelope: Arc::new(Envelope {
                mail_from: mail_from.to_owned(),
                params: MailParams {
                    requiretls,
                    ..MailParams::default()
                },
                recipients: Vec::new(),
                received_at: SystemTime::now(),
                client: ClientInfo {
                    ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
                    helo: "client".to_owned(),
                    auth_user: auth_user.map(str::to_owned),
                    tls: None,
                },
                kind: MessageKind::Normal,
                require_tls: None,
            }),
            recipients: Vec::new(),
            body: Arc::new(b"TLS-Required: No\r\n\r\nhi\r\n".to_vec()),
        }
    }

    #[test]
    fn only_configured_users_and_networks_may_relax() {
        let permission = TlsRequiredNoPermission {
            users: vec!["app".to_owned()],
            networks: vec!["192.0.2.0/24".parse().expect("net")],
        };
        let nobody = TlsRequiredNoPermission::default();
        let by_user = job_message("a@x.test", false, Some("app"));
        let facts = message_facts(&by_user, &permission);
        assert!(facts.tls_required_no && facts.submitter_may_relax);
        assert!(!message_facts(&by_user, &nobody).submitter_may_relax);
        let by_network = TlsRequiredNoPermission {
            users: Vec::new(),
            ..permission
        };
        assert!(message_facts(&by_user, &by_network).submitter_may_relax);
    }

    #[test]
    fn requiretls_comes_from_the_envelope_for_null_sender_reports_too() {
        let nobody = TlsRequiredNoPermission::default();
        assert!(message_facts(&job_message("a@x.test", true, None), &nobody).requiretls);
        assert!(!message_facts(&job_message("a@x.test", false, None), &nobody).requiretls);
        // RFC 8689 §5 (issue 14, item 9): the report about a REQUIRETLS message is protected
        // like the message; it used to be planned as ordinary, opportunistic mail.
        assert!(message_facts(&job_message("", true, None), &nobody).requiretls);
    }
}

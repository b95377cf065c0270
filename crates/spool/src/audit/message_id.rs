//! The `Message-ID:` field of a message, found in its header section when the message is
//! submitted (so the audit trail never reads a body again), and the form it is looked up by.
//! Pure: bytes in, text out; adding a missing field is inbound's job.

/// The longest field value kept: the line length limit of RFC 5322 §2.1.1.
const MAX_VALUE: usize = 998;

/// The first `Message-ID:` field's value (RFC 5322 §3.6.4), unfolded (§2.2.3) and trimmed;
/// `None` when the header section has none, or only an empty or overlong one.
pub(crate) fn message_id_header(message: &[u8]) -> Option<String> {
    let mut lines = message.split(|&b| b == b'\n').map(|line| match line {
        [rest @ .., b'\r'] => rest,
        line => line,
    });
    while let Some(line) = lines.next() {
        // RFC 5322 §2.1: the header section ends at the first empty line.
        if line.is_empty() {
            return None;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        // RFC 5322 §4.5.3 (obsolete syntax): white space may precede the colon.
        let name = line[..colon].trim_ascii_end();
        if !name.eq_ignore_ascii_case(b"Message-ID") {
            continue;
        }
        let mut value = line[colon + 1..].to_vec();
        // Continuation lines start with white space; the first other line ends the field.
        for next in lines.by_ref() {
            if !next.starts_with(b" ") && !next.starts_with(b"\t") {
                break;
            }
            value.extend_from_slice(next);
        }
        let value = String::from_utf8_lossy(value.trim_ascii()).into_owned();
        return (!value.is_empty() && value.len() <= MAX_VALUE).then_some(value);
    }
    None
}

/// The form a Message-ID is indexed and looked up by: without white space around it and
/// without its angle brackets, so `<a@b>` and `a@b` find the same message. Case is kept: the
/// id's left part is case-sensitive (RFC 5322 §3.6.4).
pub fn message_id_key(text: &str) -> &str {
    let text = text.trim();
    let text = text.strip_prefix('<').unwrap_or(text);
    text.strip_suffix('>').unwrap_or(text).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_id_field_is_found_unfolded_in_the_header_section_only() {
        let rows: [(&str, &[u8], Option<&str>); 8] = [
            (
                "RFC 5322 §3.6.4: the field as usually written",
                b"From: a@b\r\nMessage-ID: <1@example.org>\r\nSubject: x\r\n\r\nbody",
                Some("<1@example.org>"),
            ),
            (
                "RFC 5322 §1.2.2: field names are case-insensitive",
                b"message-id:<2@example.org>\r\n\r\n",
                Some("<2@example.org>"),
            ),
            (
                "RFC 5322 §2.2.3: a folded value is unfolded",
                b"Message-ID:\r\n <3@example.org>\r\nTo: c@d\r\n\r\n",
                Some("<3@example.org>"),
            ),
            (
                "RFC 5322 §4.5.3: white space before the colon (obsolete syntax)",
                b"Message-ID : <4@example.org>\n\n",
                Some("<4@example.org>"),
            ),
            (
                "RFC 5322 §2.1: a field after the empty line is body text",
                b"Subject: x\r\n\r\nMessage-ID: <5@example.org>\r\n",
                None,
            ),
            (
                "RFC 5322 §3.6: only the first field counts",
                b"Message-ID: <6@example.org>\r\nMessage-ID: <7@example.org>\r\n\r\n",
                Some("<6@example.org>"),
            ),
            (
                "a field whose name only starts with Message-ID is another field",
                b"X-Message-ID: <8@example.org>\r\nMessage-IDs: <9@example.org>\r\n\r\n",
                None,
            ),
            ("an empty value is no id", b"Message-ID:   \r\n\r\n", None),
        ];
        for (why, message, expected) in rows {
            assert_eq!(message_id_header(message).as_deref(), expected, "{why}");
        }
    }

    #[test]
    fn an_overlong_or_binary_header_yields_no_panic() {
        let mut long = b"Message-ID: <".to_vec();
        long.extend(std::iter::repeat_n(b'a', 2000));
        long.extend_from_slice(b">\r\n\r\n");
        assert_eq!(message_id_header(&long), None);
        assert_eq!(
            message_id_header(b"Message-ID: <\xff@x>\r\n\r\n").as_deref(),
            Some("<\u{fffd}@x>")
        );
        assert_eq!(message_id_header(b""), None);
    }

    #[test]
    fn a_message_id_is_looked_up_with_or_without_its_angle_brackets() {
        for text in [
            "<a.B@example.org>",
            "a.B@example.org",
            "  <a.B@example.org> ",
        ] {
            assert_eq!(message_id_key(text), "a.B@example.org", "{text:?}");
        }
    }
}

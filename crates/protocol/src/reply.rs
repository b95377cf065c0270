//! SMTP replies: the `Reply` value, enhanced status codes (RFC 3463, RFC 2034), incremental
//! parsing of (multi-line) replies from the wire and rendering to the wire. The texts strictmx
//! sends live in `replies`; what a reply means for a delivery is left to delivery.

use std::fmt;

use crate::{MAX_LINE, ProtocolError};

/// More lines than this in one reply is treated as a broken peer.
const MAX_REPLY_LINES: usize = 100;

/// An enhanced mail system status code `class.subject.detail` (RFC 3463 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedStatus {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl EnhancedStatus {
    pub const fn new(class: u8, subject: u16, detail: u16) -> Self {
        Self {
            class,
            subject,
            detail,
        }
    }

    /// The same condition as a permanent failure (class 5, RFC 3463 §3.1).
    pub const fn permanent(self) -> Self {
        Self { class: 5, ..self }
    }

    /// Parse `c.sss.ddd`: class 2, 4 or 5, subject and detail of one to three digits.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('.');
        let class = parts.next()?;
        let subject = parts.next()?;
        let detail = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        let digits = |s: &str, max: usize| {
            (1..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
        };
        if !digits(class, 1) || !digits(subject, 3) || !digits(detail, 3) {
            return None;
        }
        let class: u8 = class.parse().ok()?;
        if !matches!(class, 2 | 4 | 5) {
            return None;
        }
        Some(Self::new(
            class,
            subject.parse().ok()?,
            detail.parse().ok()?,
        ))
    }
}

impl fmt::Display for EnhancedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One SMTP reply: a code, an optional enhanced status and one or more text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub status: Option<EnhancedStatus>,
    pub lines: Vec<String>,
}

/// Outcome of trying to parse one reply from the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyParse {
    /// A complete reply that used `consumed` octets of the buffer.
    Complete { reply: Reply, consumed: usize },
    /// The buffer ends before the last line of the reply.
    Incomplete,
}

impl Reply {
    /// A reply with one line of text.
    pub fn new(code: u16, status: Option<EnhancedStatus>, text: impl Into<String>) -> Self {
        Self {
            code,
            status,
            lines: vec![text.into()],
        }
    }

    /// 2xx: the command succeeded.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 4xx: try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: do not retry.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// All text lines joined with a space, without codes: for logs and DSNs.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// Parse one reply from the start of `buf` (RFC 5321 §4.2.1): lines `code-text` followed
    /// by a last line `code text` (or just `code`), all with the same code. The enhanced status
    /// is taken from the first line when its class matches the code's first digit (RFC 2034).
    pub fn parse(buf: &[u8]) -> Result<ReplyParse, ProtocolError> {
        let mut consumed = 0;
        let mut code = None;
        let mut status = None;
        let mut lines = Vec::new();
        loop {
            let rest = &buf[consumed..];
            let Some(end) = rest.iter().take(MAX_LINE).position(|&b| b == b'\n') else {
                if rest.len() >= MAX_LINE {
                    return Err(ProtocolError::LineTooLong {
                        length: rest.len(),
                        limit: MAX_LINE,
                    });
                }
                return Ok(ReplyParse::Incomplete);
            };
            let raw = &rest[..end];
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            consumed += end + 1;
            let line_number = lines.len() + 1;
            let (line_code, last, text) = split_reply_line(raw, line_number)?;
            match code {
                None => code = Some(line_code),
                Some(first) if first != line_code => {
                    return Err(ProtocolError::ReplyCodeMismatch {
                        first,
                        other: line_code,
                    });
                }
                Some(_) => {}
            }
            let text = match (line_number, take_status(line_code, &text)) {
                (1, Some((found, rest))) => {
                    status = Some(found);
                    rest
                }
                (_, Some((found, rest))) if Some(found) == status => rest,
                _ => text,
            };
            lines.push(text);
            if last {
                let reply = Reply {
                    code: line_code,
                    status,
                    lines,
                };
                return Ok(ReplyParse::Complete { reply, consumed });
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(ProtocolError::ReplyTooManyLines {
                    limit: MAX_REPLY_LINES,
                });
            }
        }
    }
}

/// Split `250-text` into (250, false, "text"); `250 text` and `250` are last lines.
fn split_reply_line(raw: &[u8], line: usize) -> Result<(u16, bool, String), ProtocolError> {
    let malformed = ProtocolError::MalformedReply { line };
    let (digits, rest) = raw.split_at_checked(3).ok_or(malformed.clone())?;
    let valid_code = matches!(digits, [b'2'..=b'5', b'0'..=b'5', b'0'..=b'9']);
    if !valid_code {
        return Err(malformed);
    }
    let code = digits
        .iter()
        .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
    let (last, text) = match rest.split_first() {
        None => (true, &[][..]),
        Some((b' ', text)) => (true, text),
        Some((b'-', text)) => (false, text),
        Some(_) => return Err(malformed),
    };
    Ok((code, last, String::from_utf8_lossy(text).into_owned()))
}

/// Take a leading enhanced status from reply text when its class matches the reply code.
fn take_status(code: u16, text: &str) -> Option<(EnhancedStatus, String)> {
    let (candidate, rest) = text.split_once(' ').unwrap_or((text, ""));
    let status = EnhancedStatus::parse(candidate)?;
    (u16::from(status.class) == code / 100).then(|| (status, rest.to_owned()))
}

/// Wire form: every line carries the code and, when present, the enhanced status (RFC 2034 §4),
/// and ends with CRLF.
impl Reply {
    /// Appends the reply as sent on the wire: one line per text line, `-` after the code on
    /// all but the last (RFC 5321 §4.2.1), the enhanced status on each (RFC 2034 §4).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let count = self.lines.len().max(1);
        for index in 0..count {
            push_decimal(out, self.code);
            out.push(if index + 1 == count { b' ' } else { b'-' });
            if let Some(status) = self.status {
                push_decimal(out, u16::from(status.class));
                out.push(b'.');
                push_decimal(out, status.subject);
                out.push(b'.');
                push_decimal(out, status.detail);
                out.push(b' ');
            }
            let text = self.lines.get(index).map_or("", String::as_str);
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// `n` in decimal, without the formatting machinery: replies are written several times per
/// message.
fn push_decimal(out: &mut Vec<u8>, n: u16) {
    let mut digits = [0u8; 5];
    let mut rest = n;
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = Vec::with_capacity(64);
        self.write_to(&mut bytes);
        f.write_str(std::str::from_utf8(&bytes).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(input: &[u8]) -> (Reply, usize) {
        match Reply::parse(input) {
            Ok(ReplyParse::Complete { reply, consumed }) => (reply, consumed),
            other => panic!("expected a complete reply from {input:?}, got {other:?}"),
        }
    }

    // RFC 5321 §4.2.1, RFC 2034 §4: the wire form, with and without an enhanced status.
    #[test]
    fn replies_are_written_line_by_line_with_the_status_on_each() {
        let cases = [
            (Reply::new(250, None, "ok"), "250 ok\r\n"),
            (
                Reply::new(550, Some(EnhancedStatus::new(5, 7, 26)), "no"),
                "550 5.7.26 no\r\n",
            ),
            (
                Reply {
                    code: 421,
                    status: Some(EnhancedStatus::new(4, 10, 0)),
                    lines: vec!["going".into(), "".into(), "away".into()],
                },
                "421-4.10.0 going\r\n421-4.10.0 \r\n421 4.10.0 away\r\n",
            ),
            (
                Reply {
                    code: 0,
                    status: Some(EnhancedStatus::new(2, 65535, 100)),
                    lines: Vec::new(),
                },
                "0 2.65535.100 \r\n",
            ),
        ];
        for (reply, wire) in cases {
            let mut written = Vec::new();
            reply.write_to(&mut written);
            assert_eq!(String::from_utf8(written).as_deref(), Ok(wire));
            assert_eq!(reply.to_string(), wire);
        }
    }

    // RFC 5321 §4.2.1: multi-line replies use "-" after the code on all lines but the last.
    #[test]
    fn multi_line_replies_are_joined_into_one_reply() {
        let input = b"250-mx.example.org\r\n250-PIPELINING\r\n250 SIZE 1000\r\nNEXT";
        let (reply, consumed) = complete(input);
        assert_eq!(consumed, input.len() - 4);
        assert_eq!(reply.code, 250);
        assert_eq!(reply.status, None);
        assert_eq!(reply.lines, ["mx.example.org", "PIPELINING", "SIZE 1000"]);
    }

    // RFC 2034 §4: the enhanced code follows the reply code on each line.
    #[test]
    fn enhanced_status_is_taken_only_when_its_class_matches_the_code() {
        let cases: &[(&[u8], u16, Option<EnhancedStatus>, &str)] = &[
            (
                b"250 2.1.0 Ok\r\n",
                250,
                Some(EnhancedStatus::new(2, 1, 0)),
                "Ok",
            ),
            (
                b"550 5.7.1 no\r\n",
                550,
                Some(EnhancedStatus::new(5, 7, 1)),
                "no",
            ),
            (
                b"421 4.4.2 timeout\r\n",
                421,
                Some(EnhancedStatus::new(4, 4, 2)),
                "timeout",
            ),
            (b"550 2.1.0 odd\r\n", 550, None, "2.1.0 odd"),
            (b"250 1.2.3 x\r\n", 250, None, "1.2.3 x"),
            (b"250 2.1234.0 x\r\n", 250, None, "2.1234.0 x"),
            (b"220\r\n", 220, None, ""),
            (b"220 mx ESMTP\n", 220, None, "mx ESMTP"),
        ];
        for (input, code, status, text) in cases {
            let (reply, _) = complete(input);
            assert_eq!((reply.code, reply.status), (*code, *status), "{input:?}");
            assert_eq!(reply.lines, [*text], "{input:?}");
        }
    }

    #[test]
    fn broken_replies_are_errors_and_partial_ones_need_more() {
        let long = [b"250 ".to_vec(), vec![b'x'; MAX_LINE]].concat();
        let cases: &[(&[u8], Result<ReplyParse, ProtocolError>)] = &[
            (b"", Ok(ReplyParse::Incomplete)),
            (b"250-a\r\n250 b", Ok(ReplyParse::Incomplete)),
            (b"25\r\n", Err(ProtocolError::MalformedReply { line: 1 })),
            (
                b"abc def\r\n",
                Err(ProtocolError::MalformedReply { line: 1 }),
            ),
            (b"650 x\r\n", Err(ProtocolError::MalformedReply { line: 1 })),
            (b"250x\r\n", Err(ProtocolError::MalformedReply { line: 1 })),
            (
                b"250-a\r\n251 b\r\n",
                Err(ProtocolError::ReplyCodeMismatch {
                    first: 250,
                    other: 251,
                }),
            ),
            (
                &long,
                Err(ProtocolError::LineTooLong {
                    length: long.len(),
                    limit: MAX_LINE,
                }),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(&Reply::parse(input), expected, "{input:?}");
        }
    }

    #[test]
    fn replies_render_to_the_wire_and_parse_back() {
        let reply = Reply {
            code: 250,
            status: Some(EnhancedStatus::new(2, 0, 0)),
            lines: vec!["first".into(), "second".into()],
        };
        let wire = reply.to_string();
        assert_eq!(wire, "250-2.0.0 first\r\n250 2.0.0 second\r\n");
        assert_eq!(complete(wire.as_bytes()).0, reply);
        assert_eq!(Reply::new(354, None, "go").to_string(), "354 go\r\n");
    }

    #[test]
    fn reply_classes_follow_the_first_digit() {
        let cases = [
            (250, true, false, false),
            (354, false, false, false),
            (452, false, true, false),
            (550, false, false, true),
        ];
        for (code, positive, transient, permanent) in cases {
            let reply = Reply::new(code, None, "");
            assert_eq!(
                (
                    reply.is_positive(),
                    reply.is_transient(),
                    reply.is_permanent()
                ),
                (positive, transient, permanent),
                "{code}"
            );
        }
    }
}

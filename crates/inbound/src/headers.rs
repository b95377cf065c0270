//! Header work on accepted messages: the `Received:` trace field (RFC 5321 §4.4), and
//! `Message-ID:` and `Date:` when the submitter left them out (RFC 6409 §8.2, §8.3). Parsing of
//! MIME structure is left to others; only the header block's field names are read.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;

use crate::dkim::{self, DkimKey, Signing};

/// What the `Received:` field records about the session.
#[derive(Debug)]
pub(crate) struct Trace<'a> {
    pub(crate) helo: &'a str,
    pub(crate) ip: IpAddr,
    pub(crate) hostname: &'a str,
    /// RFC 3848 / RFC 6531 §3.7.3 protocol name: ESMTP, ESMTPSA, UTF8SMTPS, ...
    pub(crate) protocol: String,
    pub(crate) tls: Option<&'a str>,
    /// The queue id the message will be stored under (the `id` clause).
    pub(crate) queue_id: &'a str,
    pub(crate) now: SystemTime,
}

/// The `with` protocol name for `Received:` (RFC 3848, RFC 6531 §3.7.3).
pub(crate) fn protocol_name(extended: bool, tls: bool, authenticated: bool, utf8: bool) -> String {
    let base = match (extended, utf8) {
        (false, _) => "SMTP",
        (true, false) => "ESMTP",
        (true, true) => "UTF8SMTP",
    };
    let mut name = base.to_owned();
    if extended && tls {
        name.push('S');
    }
    if extended && authenticated {
        name.push('A');
    }
    name
}

/// Prepend `Received:` and add `Message-ID:`/`Date:` at the end of the header block if missing,
/// then sign with the `From:` domain's DKIM key, if any. The signature covers the added
/// `Message-ID:`/`Date:` but not `Received:`, a trace field that later hops add to (RFC 6376
/// §5.4.1 advises against signing it); `DKIM-Signature:` goes at the top of the block as
/// signed, just below our `Received:`, which RFC 5321 §4.4 puts first.
/// The content is edited in place, so a large message is never held twice.
pub(crate) fn prepare(
    mut body: Vec<u8>,
    trace: &Trace<'_>,
    dkim_keys: &[DkimKey],
) -> (Vec<u8>, Signing) {
    let header_end = header_block_end(&body);
    let present = |name: &str| has_field(&body[..header_end], name);
    let date = rfc5322_date(trace.now);
    let mut added = String::new();
    if !present("message-id") {
        added.push_str("Message-ID: ");
        added.push_str(&message_id(trace));
        added.push_str("\r\n");
    }
    if !present("date") {
        added.push_str("Date: ");
        added.push_str(&date);
        added.push_str("\r\n");
    }
    let mut top = received(trace, &date);
    body.reserve_exact(top.len() + added.len() + SIGNATURE_ROOM);
    let header_end = header_end + added.len();
    body.splice(
        header_end - added.len()..header_end - added.len(),
        added.into_bytes(),
    );
    let signing = dkim::sign(dkim_keys, &body, header_end);
    if let Signing::Signed(field) = &signing {
        top.push_str(field);
    }
    body.splice(0..0, top.into_bytes());
    (body, signing)
}

/// Room reserved for a `DKIM-Signature:` field, so that prepending it does not grow the
/// buffer a second time (an RSA-4096 field is about 900 octets).
const SIGNATURE_ROOM: usize = 1024;

/// The `Received:` field, stamped with `date` (the session's `now`, as [`rfc5322_date`] writes
/// it). Written piece by piece into one buffer: it is built for every accepted message.
fn received(trace: &Trace<'_>, date: &str) -> String {
    let tls_len = trace
        .tls
        .map_or(0, |tls| tls.len().min(MAX_HELO_IN_TRACE) + 3);
    let mut field = String::with_capacity(
        96 + trace.helo.len().min(MAX_HELO_IN_TRACE)
            + trace.hostname.len()
            + trace.protocol.len()
            + tls_len
            + trace.queue_id.len()
            + date.len(),
    );
    // RFC 5321 §4.4: Stamp = From-domain By-domain [With] [ID] ";" date-time; the queue id
    // (16 hex digits) is an Atom.
    // RFC 5321 §4.4: Extended-Domain may be the address literal alone; a submission without
    // HELO (the HTTP API) is named by its address.
    field.push_str("Received: from ");
    if trace.helo.is_empty() {
        push_address_literal(&mut field, trace.ip);
    } else {
        push_sanitized(&mut field, trace.helo);
        field.push_str(" (");
        push_address_literal(&mut field, trace.ip);
        field.push(')');
    }
    field.push_str("\r\n\tby ");
    field.push_str(trace.hostname);
    field.push_str(" (strictmx) with ");
    field.push_str(&trace.protocol);
    if let Some(tls) = trace.tls {
        field.push_str(" (");
        push_sanitized(&mut field, tls);
        field.push(')');
    }
    field.push_str("\r\n\tid ");
    field.push_str(trace.queue_id);
    field.push_str(";\r\n\t");
    field.push_str(date);
    field.push_str("\r\n");
    field
}

/// RFC 5321 §4.1.3 address literal: `[192.0.2.1]` or `[IPv6:2001:db8::1]`.
fn push_address_literal(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            out.push('[');
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(digits.format(octet));
            }
            out.push(']');
        }
        IpAddr::V6(v6) => {
            // Writing to a String cannot fail.
            let _ = write!(out, "[IPv6:{v6}]");
        }
    }
}

/// The longest HELO name written into `Received:`: a domain name is at most 253 octets
/// (RFC 1035 §2.3.4) and an address literal is shorter, so a longer one is cut, and the field's
/// first line stays far below the 998 octets RFC 5322 §2.1.1 allows.
const MAX_HELO_IN_TRACE: usize = 255;

/// The client's HELO name is peer input: keep only characters that cannot break the field, and
/// at most [`MAX_HELO_IN_TRACE`] of them.
fn push_sanitized(out: &mut String, text: &str) {
    out.extend(text.chars().take(MAX_HELO_IN_TRACE).map(|c| {
        if c.is_ascii_graphic() && !matches!(c, '(' | ')' | ';' | '\\') || c == ' ' {
            c
        } else {
            '?'
        }
    }));
}

/// Octet offset just past the last header line, before the empty line that ends the block
/// (RFC 5322 §2.1). The block also ends at the first line that is neither a field nor a
/// continuation, so a message without headers gets none misread.
fn header_block_end(body: &[u8]) -> usize {
    let mut offset = 0;
    while offset < body.len() {
        let rest = &body[offset..];
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(rest.len(), |pos| pos + 2);
        let line = &rest[..line_end];
        let is_continuation = offset > 0 && matches!(line.first(), Some(b' ' | b'\t'));
        if !is_continuation && field_name(line).is_none() {
            break;
        }
        offset += line_end;
    }
    offset
}

/// The name of a header field line: printable ASCII up to the colon (RFC 5322 §2.2).
fn field_name(line: &[u8]) -> Option<&[u8]> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = &line[..colon];
    let valid = !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b));
    valid.then_some(name)
}

fn has_field(headers: &[u8], wanted: &str) -> bool {
    count_fields(headers, wanted) > 0
}

fn count_fields(headers: &[u8], wanted: &str) -> usize {
    headers
        .split(|&b| b == b'\n')
        .filter_map(field_name)
        .filter(|name| name.eq_ignore_ascii_case(wanted.as_bytes()))
        .count()
}

/// How many `Received:` fields the message's header block has: its hop count, the loop
/// detector of RFC 5321 §6.3.
pub(crate) fn received_count(body: &[u8]) -> usize {
    count_fields(&body[..header_block_end(body)], "received")
}

fn message_id(trace: &Trace<'_>) -> String {
    let mut random = [0u8; 12];
    rand::rng().fill_bytes(&mut random);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let seconds = trace
        .now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let mut id = String::with_capacity(48 + trace.hostname.len());
    id.push('<');
    id.push_str(itoa::Buffer::new().format(seconds));
    id.push('.');
    for b in random {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    id.push('@');
    id.push_str(trace.hostname);
    id.push('>');
    id
}

/// RFC 5322 §3.3 date-time in UTC, e.g. `Sun, 22 Nov 2026 15:20:45 +0000`.
pub(crate) fn rfc5322_date(now: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let seconds = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let days = seconds / 86_400;
    let (year, month, day) = civil_from_days(days);
    let in_day = seconds % 86_400;
    let mut digits = itoa::Buffer::new();
    let mut date = String::with_capacity(32);
    date.push_str(DAYS[usize::try_from(days % 7).unwrap_or(0)]);
    date.push_str(", ");
    date.push_str(digits.format(day));
    date.push(' ');
    date.push_str(MONTHS[usize::try_from(month - 1).unwrap_or(0)]);
    date.push(' ');
    date.push_str(digits.format(year));
    for (i, part) in [in_day / 3600, in_day % 3600 / 60, in_day % 60]
        .into_iter()
        .enumerate()
    {
        date.push(if i == 0 { ' ' } else { ':' });
        // Each part is below 60: two digits.
        date.push(char::from(b'0' + (part / 10) as u8));
        date.push(char::from(b'0' + (part % 10) as u8));
    }
    date.push_str(" +0000");
    date
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31) in the proleptic Gregorian
/// calendar, by counting 400-year eras from 0000-03-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn trace(now: SystemTime) -> Trace<'static> {
        Trace {
            helo: "client.example",
            ip: IpAddr::from([192, 0, 2, 1]),
            hostname: "mx.example.org",
            protocol: "ESMTPSA".into(),
            tls: Some("TLSv1.3 TLS13_AES_256_GCM_SHA384"),
            queue_id: "01a2345231450006",
            now,
        }
    }

    #[test]
    fn dates_are_formatted_as_rfc5322_in_utc() {
        let cases = [
            (0, "Thu, 1 Jan 1970 00:00:00 +0000"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 +0000"),
            (1_795_360_845, "Sun, 22 Nov 2026 15:20:45 +0000"),
            (4_107_542_399, "Sun, 28 Feb 2100 23:59:59 +0000"),
        ];
        for (seconds, expected) in cases {
            let now = UNIX_EPOCH + Duration::from_secs(seconds);
            assert_eq!(rfc5322_date(now), expected, "{seconds}");
        }
    }

    // RFC 3848 and RFC 6531 §3.7.3 name the transmission types.
    #[test]
    fn protocol_names_follow_rfc_3848() {
        let cases = [
            ((false, false, false, false), "SMTP"),
            ((true, false, false, false), "ESMTP"),
            ((true, true, false, false), "ESMTPS"),
            ((true, false, true, false), "ESMTPA"),
            ((true, true, true, false), "ESMTPSA"),
            ((true, true, true, true), "UTF8SMTPSA"),
        ];
        for ((extended, tls, auth, utf8), name) in cases {
            assert_eq!(protocol_name(extended, tls, auth, utf8), name);
        }
    }

    #[test]
    fn missing_message_id_and_date_are_added_at_the_end_of_the_header_block() {
        let body = b"From: a@example.org\r\nSubject: hi\r\n there\r\n\r\nbody\r\n".to_vec();
        let out = String::from_utf8(prepare(body, &trace(UNIX_EPOCH), &[]).0).expect("ascii");
        assert!(out.starts_with("Received: from client.example ([192.0.2.1])\r\n\tby mx.example.org (strictmx) with ESMTPSA (TLSv1.3 TLS13_AES_256_GCM_SHA384)\r\n\tid 01a2345231450006;\r\n\tThu, 1 Jan 1970 00:00:00 +0000\r\n"), "{out}");
        let (headers, rest) = out.split_once("\r\n\r\n").expect("a header block");
        assert_eq!(rest, "body\r\n");
        assert!(
            headers.contains("\r\nSubject: hi\r\n there\r\nMessage-ID: <0."),
            "{headers}"
        );
        assert!(headers.ends_with("@mx.example.org>\r\nDate: Thu, 1 Jan 1970 00:00:00 +0000"));
        // RFC 5322 §3.6.4: id-left is a dot-atom; ours is the time and 96 random bits in hex.
        let id = headers
            .split_once("Message-ID: <0.")
            .and_then(|(_, id)| id.split_once('@'))
            .map(|(unique, _)| unique)
            .expect("an id");
        assert_eq!(id.len(), 24, "{id}");
        assert!(
            id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "{id}"
        );
    }

    #[test]
    fn present_message_id_and_date_are_kept_whatever_their_case() {
        let body = b"message-id: <x@y>\r\nDATE: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nb\r\n";
        let out = prepare(body.to_vec(), &trace(UNIX_EPOCH), &[]).0;
        let text = String::from_utf8(out).expect("ascii");
        assert_eq!(text.matches("essage-").count(), 1, "{text}");
        assert!(text.ends_with(std::str::from_utf8(body).expect("ascii")));
    }

    /// RFC 5321 §4.4: the From-domain is the HELO name with the address literal in a comment,
    /// or the literal alone (RFC 5321 §4.1.3 for both forms of literal); no TLS, no comment.
    #[test]
    fn the_received_field_names_the_client_by_helo_and_address_literal() {
        let mut plain = trace(SystemTime::UNIX_EPOCH);
        plain.helo = "";
        plain.ip = IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]);
        plain.protocol = "ESMTP".into();
        plain.tls = None;
        assert_eq!(
            received(&plain, "Thu, 1 Jan 1970 00:00:00 +0000"),
            "Received: from [IPv6:2001:db8::1]\r\n\tby mx.example.org (strictmx) with ESMTP\r\n\tid 01a2345231450006;\r\n\tThu, 1 Jan 1970 00:00:00 +0000\r\n"
        );
        plain.helo = "[10.0.0.255]";
        plain.ip = IpAddr::from([10, 0, 0, 255]);
        assert!(
            received(&plain, "d").starts_with("Received: from [10.0.0.255] ([10.0.0.255])\r\n"),
            "{}",
            received(&plain, "d")
        );
    }

    #[test]
    fn a_message_without_headers_gets_them_before_its_text() {
        let out = prepare(b"just text\r\n".to_vec(), &trace(UNIX_EPOCH), &[]).0;
        let text = String::from_utf8(out).expect("ascii");
        assert!(
            text.contains("Date: Thu, 1 Jan 1970 00:00:00 +0000\r\njust text\r\n"),
            "{text}"
        );
    }

    // RFC 5321 §6.3: loops are detected by counting Received: fields, in the header block only.
    #[test]
    fn received_fields_are_counted_in_the_header_block_only() {
        let cases: &[(&[u8], usize)] = &[
            (b"Subject: x\r\n\r\nReceived: in the body\r\n", 0),
            (
                b"Received: a\r\n\tcontinued\r\nRECEIVED: b\r\nX-Received: c\r\n\r\nb\r\n",
                2,
            ),
            (b"received:a\r\n\r\n", 1),
            (b"no header here\r\nReceived: x\r\n", 0),
        ];
        for (body, count) in cases {
            assert_eq!(
                received_count(body),
                *count,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    // RFC 5322 §2.1.1: no header line longer than 998 octets, whatever HELO the client sent.
    #[test]
    fn a_long_helo_name_is_cut_so_no_received_line_exceeds_998_octets() {
        let mut trace = trace(UNIX_EPOCH);
        let helo = "a".repeat(990);
        trace.helo = &helo;
        trace.ip = IpAddr::from([0xfe80, 0, 0, 0, 0xffff, 0xffff, 0xffff, 0xffff]);
        let text = received(&trace, &rfc5322_date(trace.now));
        let longest = text.split("\r\n").map(str::len).max().unwrap_or(0);
        assert!(longest <= 998, "{longest}: {text}");
        assert!(text.contains(&"a".repeat(MAX_HELO_IN_TRACE)), "{text}");
    }

    #[test]
    fn hostile_helo_names_cannot_break_the_received_field() {
        let mut trace = trace(UNIX_EPOCH);
        trace.helo = "evil) by fake;\u{7f}";
        let text = received(&trace, &rfc5322_date(trace.now));
        assert!(
            text.starts_with("Received: from evil? by fake?? ([192.0.2.1])"),
            "{text}"
        );
    }
}

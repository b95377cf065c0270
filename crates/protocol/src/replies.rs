//! The one catalogue of replies strictmx itself sends, with their enhanced status codes
//! (RFC 3463). Choosing which reply fits a situation is left to inbound; operator-facing log
//! text lives elsewhere.

use crate::{EnhancedStatus, Reply};

fn reply(code: u16, (class, subject, detail): (u8, u16, u16), text: &str) -> Reply {
    Reply::new(
        code,
        Some(EnhancedStatus::new(class, subject, detail)),
        text,
    )
}

/// 220 greeting (RFC 5321 §4.3.1). No enhanced code: the client has not said EHLO yet.
pub fn greeting(hostname: &str) -> Reply {
    Reply::new(220, None, format!("{hostname} ESMTP strictmx"))
}

/// 250 answer to EHLO: our name, then one capability per line (RFC 5321 §4.1.1.1).
pub fn ehlo(hostname: &str, capabilities: Vec<String>) -> Reply {
    let mut lines = Vec::with_capacity(capabilities.len() + 1);
    lines.push(hostname.to_owned());
    lines.extend(capabilities);
    Reply {
        code: 250,
        status: None,
        lines,
    }
}

/// 250 answer to HELO.
pub fn helo(hostname: &str) -> Reply {
    Reply::new(250, None, hostname)
}

/// 250 2.0.0 for NOOP and RSET.
pub fn ok() -> Reply {
    reply(250, (2, 0, 0), "Ok")
}

/// 250 2.1.0 sender accepted.
pub fn sender_ok() -> Reply {
    reply(250, (2, 1, 0), "Sender ok")
}

/// 250 2.1.5 recipient accepted.
pub fn recipient_ok() -> Reply {
    reply(250, (2, 1, 5), "Recipient ok")
}

/// 354 after DATA (RFC 5321 §4.1.1.4); intermediate replies carry no enhanced code.
pub fn start_data() -> Reply {
    Reply::new(354, None, "End data with <CR><LF>.<CR><LF>")
}

/// 250 2.0.0 only after the spool has committed the message.
pub fn queued(id: &str) -> Reply {
    reply(250, (2, 0, 0), &format!("Ok: queued as {id}"))
}

/// 250 2.0.0 for a message another node transferred again: this node queued it before.
pub fn transfer_repeated(id: &str) -> Reply {
    reply(
        250,
        (2, 0, 0),
        &format!("Ok: already queued, transfer {id}"),
    )
}

/// 550 5.7.1: `TRANSID` (a transfer between strictmx nodes) from a client this node does not
/// trust.
pub fn transfer_not_trusted() -> Reply {
    reply(
        550,
        (5, 7, 1),
        "Transfers are taken from trusted nodes only",
    )
}

/// 221 2.0.0 after QUIT.
pub fn closing() -> Reply {
    reply(221, (2, 0, 0), "Bye")
}

/// 214 2.0.0 for HELP.
pub fn help() -> Reply {
    reply(214, (2, 0, 0), "See RFC 5321")
}

/// 252 2.5.0: VRFY is not answered (RFC 5321 §3.5.3 allows 252).
pub fn cannot_verify() -> Reply {
    reply(
        252,
        (2, 5, 0),
        "Cannot VRFY user, but will accept message and attempt delivery",
    )
}

/// 502 5.5.1 for commands strictmx does not implement (EXPN, ETRN, BDAT, ...).
pub fn not_implemented() -> Reply {
    reply(502, (5, 5, 1), "Command not implemented")
}

/// 220 2.0.0 before the TLS handshake (RFC 3207 §4).
pub fn ready_to_start_tls() -> Reply {
    reply(220, (2, 0, 0), "Ready to start TLS")
}

/// 454 4.7.0 when the handshake cannot begin (RFC 3207 §4).
pub fn tls_unavailable() -> Reply {
    reply(454, (4, 7, 0), "TLS not available")
}

/// 334 AUTH challenge, base64 text (RFC 4954 §4).
pub fn auth_challenge(base64: &str) -> Reply {
    Reply::new(334, None, base64)
}

/// 235 2.7.0 (RFC 4954 §6).
pub fn auth_ok() -> Reply {
    reply(235, (2, 7, 0), "Authentication successful")
}

/// 535 5.7.8 (RFC 4954 §6).
pub fn auth_failed() -> Reply {
    reply(535, (5, 7, 8), "Authentication credentials invalid")
}

/// 530 5.7.0 (RFC 4954 §6).
pub fn auth_required() -> Reply {
    reply(530, (5, 7, 0), "Authentication required")
}

/// 530 5.7.0 when a submission port wants STARTTLS first (RFC 3207 §4).
pub fn starttls_required() -> Reply {
    reply(530, (5, 7, 0), "Must issue a STARTTLS command first")
}

/// 538 5.7.11 (RFC 4954 §6): the mechanism needs an encrypted session.
pub fn encryption_required() -> Reply {
    reply(
        538,
        (5, 7, 11),
        "Encryption required for requested authentication mechanism",
    )
}

/// 504 5.5.4 (RFC 4954 §4).
pub fn auth_mechanism_unsupported() -> Reply {
    reply(504, (5, 5, 4), "Unrecognized authentication type")
}

/// 501 5.7.0 when the client cancels with `*` (RFC 4954 §4).
pub fn auth_cancelled() -> Reply {
    reply(501, (5, 7, 0), "Authentication cancelled")
}

/// 501 5.5.2 for a response that is not valid base64 (RFC 4954 §4).
pub fn auth_bad_encoding() -> Reply {
    reply(501, (5, 5, 2), "Cannot decode response")
}

/// 503 5.5.1 AUTH after a successful AUTH (RFC 4954 §4).
pub fn already_authenticated() -> Reply {
    reply(503, (5, 5, 1), "Already authenticated")
}

/// 421 4.7.0 and disconnect after too many failed AUTH attempts.
pub fn too_many_auth_failures() -> Reply {
    reply(
        421,
        (4, 7, 0),
        "Too many authentication failures, closing connection",
    )
}

/// 550 5.7.1: not a trusted network and not authenticated; never an open relay.
pub fn relay_denied() -> Reply {
    reply(550, (5, 7, 1), "Relaying denied")
}

/// 452 4.3.1: the spool cannot take the message now.
pub fn storage_unavailable() -> Reply {
    reply(
        452,
        (4, 3, 1),
        "Insufficient system storage, try again later",
    )
}

/// 451 4.3.0: the spool failed in a way retrying the same session will not fix.
pub fn local_error() -> Reply {
    reply(451, (4, 3, 0), "Local error in processing, try again later")
}

/// 452 4.5.3 (RFC 5321 §4.5.3.1.10): the client should send the rest in another transaction.
pub fn too_many_recipients() -> Reply {
    reply(452, (4, 5, 3), "Too many recipients")
}

/// 552 5.3.4 (RFC 1870 §6): declared or actual size above the limit.
pub fn message_too_big() -> Reply {
    reply(
        552,
        (5, 3, 4),
        "Message size exceeds fixed maximum message size",
    )
}

/// 500 5.5.2 (RFC 5321 §4.5.3.1.4): command line too long.
pub fn line_too_long() -> Reply {
    reply(500, (5, 5, 2), "Line too long")
}

/// 500 5.5.6 (RFC 5321 §4.5.3.1.6): a text line in DATA was too long; the message is refused.
pub fn data_line_too_long() -> Reply {
    reply(500, (5, 5, 6), "Line too long in message content")
}

/// 550 5.6.0 (RFC 5321 §2.3.8): bare CR or LF in message content. The session is closed after
/// it: where hosts disagree on the end of DATA, a second message can be smuggled behind it.
pub fn bare_line_ending() -> Reply {
    reply(
        550,
        (5, 6, 0),
        "Bare CR or LF in message content not allowed; closing connection",
    )
}

/// 554 5.4.6 (RFC 5321 §6.3, RFC 3463 "routing loop detected"): the message carries more
/// `Received:` fields than a message that is not looping would.
pub fn too_many_hops(hops: usize) -> Reply {
    reply(
        554,
        (5, 4, 6),
        &format!("Too many hops ({hops} Received: fields); mail loop?"),
    )
}

/// 454 4.7.0 (RFC 4954 §6): the client has failed AUTH too often lately; no check was made.
pub fn auth_budget_spent() -> Reply {
    reply(
        454,
        (4, 7, 0),
        "Too many failed authentications from your address; try again later",
    )
}

/// 454 4.7.0 (RFC 4954 §6): every password-check slot is busy.
pub fn auth_busy() -> Reply {
    reply(
        454,
        (4, 7, 0),
        "Authentication temporarily unavailable; try again",
    )
}

/// 553 5.7.1 (RFC 3463 "delivery not authorized"): the authenticated user may not use this
/// envelope sender.
pub fn sender_not_owned() -> Reply {
    reply(553, (5, 7, 1), "Sender address not allowed for this user")
}

/// 500 5.5.1 unrecognised command (RFC 5321 §4.2.4).
pub fn command_unrecognized() -> Reply {
    reply(500, (5, 5, 1), "Command unrecognized")
}

/// 501 5.5.4 syntax error in arguments; `expected` is the grammar the command wants.
pub fn syntax_error(expected: &str) -> Reply {
    reply(
        501,
        (5, 5, 4),
        &format!("Syntax error, expected {expected}"),
    )
}

/// 501 5.5.4 a parameter value is malformed.
pub fn invalid_parameter(param: &str) -> Reply {
    reply(
        501,
        (5, 5, 4),
        &format!("Invalid value for parameter {param}"),
    )
}

/// 555 5.5.4 (RFC 5321 §4.1.1.11): a MAIL or RCPT parameter we do not implement.
pub fn unsupported_parameter(param: &str) -> Reply {
    reply(555, (5, 5, 4), &format!("Unsupported parameter {param}"))
}

/// 553 5.1.7 bad sender address syntax.
pub fn invalid_sender() -> Reply {
    reply(553, (5, 1, 7), "Invalid sender address")
}

/// 553 5.1.3 bad recipient address syntax.
pub fn invalid_recipient() -> Reply {
    reply(553, (5, 1, 3), "Invalid recipient address")
}

/// 501 5.1.3 (RFC 5321 §4.1.2, RFC 3463): the recipient's domain is not a host name.
pub fn invalid_recipient_domain() -> Reply {
    reply(501, (5, 1, 3), "Recipient domain is not a valid host name")
}

/// 553 5.6.7 (RFC 6531 §3.4): a non-ASCII address without SMTPUTF8.
pub fn smtputf8_required() -> Reply {
    reply(553, (5, 6, 7), "Non-ASCII address requires SMTPUTF8")
}

/// 503 5.5.1 bad sequence of commands; `what` says what must come first.
pub fn bad_sequence(what: &str) -> Reply {
    reply(503, (5, 5, 1), &format!("Bad sequence of commands: {what}"))
}

/// 421 4.4.2 the client was silent longer than the configured timeout.
pub fn timeout() -> Reply {
    reply(421, (4, 4, 2), "Timeout exceeded, closing connection")
}

/// 421 4.7.0 at connect: too many sessions in total or from this address.
pub fn too_many_sessions() -> Reply {
    reply(421, (4, 7, 0), "Too many connections, try again later")
}

/// 421 4.7.0 after too many rejected commands.
pub fn too_many_errors() -> Reply {
    reply(421, (4, 7, 0), "Too many errors, closing connection")
}

/// 421 4.3.2 the server is shutting down.
pub fn shutting_down() -> Reply {
    reply(421, (4, 3, 2), "Service shutting down, try again later")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogue_reply_has_the_documented_code_and_status() {
        let cases: Vec<(Reply, &str)> = vec![
            (relay_denied(), "550 5.7.1"),
            (storage_unavailable(), "452 4.3.1"),
            (local_error(), "451 4.3.0"),
            (too_many_recipients(), "452 4.5.3"),
            (message_too_big(), "552 5.3.4"),
            (line_too_long(), "500 5.5.2"),
            (data_line_too_long(), "500 5.5.6"),
            (bare_line_ending(), "550 5.6.0"),
            (too_many_hops(101), "554 5.4.6"),
            (auth_budget_spent(), "454 4.7.0"),
            (auth_busy(), "454 4.7.0"),
            (sender_not_owned(), "553 5.7.1"),
            (syntax_error("x"), "501 5.5.4"),
            (invalid_parameter("SIZE"), "501 5.5.4"),
            (unsupported_parameter("BY"), "555 5.5.4"),
            (bad_sequence("x"), "503 5.5.1"),
            (command_unrecognized(), "500 5.5.1"),
            (auth_required(), "530 5.7.0"),
            (starttls_required(), "530 5.7.0"),
            (encryption_required(), "538 5.7.11"),
            (auth_ok(), "235 2.7.0"),
            (auth_failed(), "535 5.7.8"),
            (auth_mechanism_unsupported(), "504 5.5.4"),
            (timeout(), "421 4.4.2"),
            (too_many_sessions(), "421 4.7.0"),
            (too_many_errors(), "421 4.7.0"),
            (too_many_auth_failures(), "421 4.7.0"),
            (shutting_down(), "421 4.3.2"),
            (smtputf8_required(), "553 5.6.7"),
            (invalid_recipient_domain(), "501 5.1.3"),
            (queued("00000000000000ff"), "250 2.0.0"),
            (ok(), "250 2.0.0"),
            (sender_ok(), "250 2.1.0"),
            (recipient_ok(), "250 2.1.5"),
            (closing(), "221 2.0.0"),
            (ready_to_start_tls(), "220 2.0.0"),
            (tls_unavailable(), "454 4.7.0"),
        ];
        for (reply, prefix) in cases {
            let wire = reply.to_string();
            assert!(
                wire.starts_with(prefix),
                "{wire:?} should start with {prefix}"
            );
            assert!(wire.ends_with("\r\n"), "{wire:?}");
        }
    }

    #[test]
    fn queued_reply_names_the_message_id() {
        assert_eq!(
            queued("00000000000000ff").to_string(),
            "250 2.0.0 Ok: queued as 00000000000000ff\r\n"
        );
    }

    #[test]
    fn ehlo_reply_lists_one_capability_per_line() {
        let reply = ehlo(
            "mx.example.org",
            vec!["PIPELINING".into(), "8BITMIME".into()],
        );
        assert_eq!(
            reply.to_string(),
            "250-mx.example.org\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
        );
    }
}

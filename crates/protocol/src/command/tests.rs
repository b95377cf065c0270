//! Table tests for the command parser; the grammar is RFC 5321 §4.1 plus the ESMTP extensions.

use super::*;

fn mail(from: &str, params: MailParams) -> Command {
    Command::Mail {
        from: from.into(),
        params,
        transfer: None,
    }
}

fn rcpt(to: &str, params: RcptParams) -> Command {
    Command::Rcpt {
        to: to.into(),
        params,
    }
}

#[test]
fn simple_commands_parse_case_insensitively() {
    let cases: &[(&str, Command)] = &[
        (
            "EHLO client.example\r\n",
            Command::Ehlo {
                host: "client.example".into(),
            },
        ),
        (
            "ehlo [127.0.0.1]\r\n",
            Command::Ehlo {
                host: "[127.0.0.1]".into(),
            },
        ),
        (
            "HELO client\r\n",
            Command::Helo {
                host: "client".into(),
            },
        ),
        ("DATA\r\n", Command::Data),
        ("rset\r\n", Command::Rset),
        ("NOOP\r\n", Command::Noop),
        ("NOOP anything\r\n", Command::Noop),
        ("QUIT\r\n", Command::Quit),
        ("STARTTLS\r\n", Command::StartTls),
        ("VRFY bob\r\n", Command::Vrfy),
        ("HELP\r\n", Command::Help),
        ("BDAT 10 LAST\r\n", Command::NotImplemented { verb: "BDAT" }),
        (
            "ETRN example.org\r\n",
            Command::NotImplemented { verb: "ETRN" },
        ),
        ("QUIT", Command::Quit),
    ];
    for (line, expected) in cases {
        assert_eq!(
            Command::parse(line.as_bytes()).as_ref(),
            Ok(expected),
            "{line:?}"
        );
    }
}

// RFC 5321 §4.1.1.2, RFC 1870 (SIZE), RFC 6152 (BODY), RFC 6531 (SMTPUTF8), RFC 8689
// (REQUIRETLS), RFC 3461 §4.3 and §4.4 (RET, ENVID).
#[test]
fn mail_parameters_are_parsed_into_mail_params() {
    let cases: &[(&str, Command)] = &[
        (
            "MAIL FROM:<a@example.org>\r\n",
            mail("a@example.org", MailParams::default()),
        ),
        ("MAIL FROM:<>\r\n", mail("", MailParams::default())),
        (
            "MAIL FROM:<a@example.org> SIZE=1000 BODY=8BITMIME\r\n",
            mail(
                "a@example.org",
                MailParams {
                    size: Some(1000),
                    body: BodyType::EightBitMime,
                    ..MailParams::default()
                },
            ),
        ),
        (
            "MAIL FROM:<a@example.org> SIZE=0\r\n",
            mail("a@example.org", MailParams::default()),
        ),
        (
            "MAIL FROM:<a@example.org> RET=HDRS ENVID=QQ+2B314159 REQUIRETLS SMTPUTF8\r\n",
            mail(
                "a@example.org",
                MailParams {
                    ret: Some(DsnRet::Headers),
                    envid: Some("QQ+314159".into()),
                    requiretls: true,
                    smtputf8: true,
                    ..MailParams::default()
                },
            ),
        ),
        (
            "MAIL FROM:<a@example.org> RET=FULL AUTH=<>\r\n",
            mail(
                "a@example.org",
                MailParams {
                    ret: Some(DsnRet::Full),
                    ..MailParams::default()
                },
            ),
        ),
        (
            "MAIL FROM:<a@example.org> BODY=BINARYMIME\r\n",
            mail(
                "a@example.org",
                MailParams {
                    body: BodyType::BinaryMime,
                    ..MailParams::default()
                },
            ),
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(
            Command::parse(line.as_bytes()).as_ref(),
            Ok(expected),
            "{line:?}"
        );
    }
}

// RFC 3461 §4.1 (NOTIFY) and §4.2 (ORCPT, xtext-encoded).
#[test]
fn rcpt_parameters_are_parsed_into_rcpt_params() {
    let cases: &[(&str, Command)] = &[
        (
            "RCPT TO:<b@example.net>\r\n",
            rcpt("b@example.net", RcptParams::default()),
        ),
        (
            "RCPT TO:<b@example.net> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;b+2Bx@example.net\r\n",
            rcpt(
                "b@example.net",
                RcptParams {
                    notify: Some(Notify {
                        success: true,
                        delay: true,
                        ..Notify::default()
                    }),
                    orcpt: Some(Orcpt {
                        addr_type: "rfc822".into(),
                        address: "b+x@example.net".into(),
                    }),
                },
            ),
        ),
        (
            "RCPT TO:<b@example.net> NOTIFY=NEVER\r\n",
            rcpt(
                "b@example.net",
                RcptParams {
                    notify: Some(Notify {
                        never: true,
                        ..Notify::default()
                    }),
                    orcpt: None,
                },
            ),
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(
            Command::parse(line.as_bytes()).as_ref(),
            Ok(expected),
            "{line:?}"
        );
    }
}

#[test]
fn auth_commands_carry_mechanism_and_initial_response() {
    let cases: &[(&str, Result<Command, ProtocolError>)] = &[
        (
            "AUTH PLAIN\r\n",
            Ok(Command::Auth {
                mechanism: AuthMechanism::Plain,
                initial_response: None,
            }),
        ),
        (
            "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
            Ok(Command::Auth {
                mechanism: AuthMechanism::Plain,
                initial_response: Some("AGFsaWNlAHNlY3JldA==".into()),
            }),
        ),
        // RFC 4954 §4: "=" is an empty initial response.
        (
            "AUTH LOGIN =\r\n",
            Ok(Command::Auth {
                mechanism: AuthMechanism::Login,
                initial_response: Some(String::new()),
            }),
        ),
        (
            "AUTH CRAM-MD5\r\n",
            Err(ProtocolError::UnsupportedMechanism),
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(&Command::parse(line.as_bytes()), expected, "{line:?}");
    }
}

#[test]
fn malformed_commands_are_errors_with_the_right_reply_class() {
    let cases: &[(&[u8], u16)] = &[
        (b"FOO\r\n", 500),
        (b"MAIL FROM:a@example.org\r\n", 501),
        (b"MAIL TO:<a@example.org>\r\n", 501),
        (b"RCPT TO:<b@example.net> NOTIFY=NEVER,SUCCESS\r\n", 501),
        (b"MAIL FROM:<a@example.org> SIZE=abc\r\n", 501),
        (b"MAIL FROM:<a@example.org> BY=120;R\r\n", 555),
        (b"MAIL FROM:<a@example.org> FOO=BAR\r\n", 555),
        (b"RCPT TO:<b@example.net> ORCPT=x400;abc\r\n", 501),
        (b"EHLO\r\n", 501),
        (b"AUTH\r\n", 501),
        (b"EHLO \xff\xfe\r\n", 501),
        (b"", 500),
        (b"MAIL FROM:<foo>\r\n", 553),
        (b"RCPT TO:<postmaster>\r\n", 553),
        (b"RCPT TO:<>\r\n", 553),
    ];
    for (line, code) in cases {
        match Command::parse(line) {
            Ok(command) => panic!("{line:?} parsed as {command:?}"),
            Err(error) => assert_eq!(error.smtp_reply().code, *code, "{line:?}: {error}"),
        }
    }
}

// Issue 14: the recipient's domain goes to DNS and into the MTA-STS URL, so RCPT accepts
// only host names (RFC 5321 §4.1.2, RFC 1123 §2.1) and refuses the rest with 501 5.1.3.
#[test]
fn recipients_whose_domain_is_not_a_host_name_are_refused_at_rcpt() {
    let refused: &[&[u8]] = &[
        b"RCPT TO:<b@foo_bar.example>\r\n",
        b"RCPT TO:<b@evil.example/#>\r\n",
        b"RCPT TO:<b@evil.example?x=1>\r\n",
        b"RCPT TO:<b@-mx.example>\r\n",
        b"RCPT TO:<b@example.org.>\r\n",
        b"RCPT TO:<b@exa\x7fmple.org>\r\n",
        b"RCPT TO:<b@xn--a.example>\r\n",
    ];
    for line in refused {
        match Command::parse(line) {
            Err(error @ ProtocolError::InvalidRecipientDomain { .. }) => {
                assert_eq!(
                    error.smtp_reply().to_string(),
                    "501 5.1.3 Recipient domain is not a valid host name\r\n",
                    "{line:?}"
                );
            }
            other => panic!("{line:?}: {other:?}"),
        }
    }
    // RFC 5321 §4.1.3: address literals never reach the domain check; the parser refuses them.
    assert_eq!(
        Command::parse(b"RCPT TO:<b@[192.0.2.1]>\r\n"),
        Err(ProtocolError::InvalidRecipient)
    );
    for accepted in [
        "RCPT TO:<b@mx-1.Example.org>\r\n",
        "RCPT TO:<\"b@c\"@example.org>\r\n",
        "RCPT TO:<jörg@bücher.example>\r\n",
        "RCPT TO:<b@xn--bcher-kva.example>\r\n",
    ] {
        assert!(Command::parse(accepted.as_bytes()).is_ok(), "{accepted:?}");
    }
}

// RFC 5321 §4.5.3.1.4: over-long command lines are rejected, not truncated.
#[test]
fn over_long_lines_are_rejected_before_parsing() {
    let line = [b"NOOP ".to_vec(), vec![b'a'; crate::MAX_LINE]].concat();
    assert!(matches!(
        Command::parse(&line),
        Err(ProtocolError::LineTooLong { .. })
    ));
}

#[test]
fn a_transfer_id_is_taken_from_transid_only_when_short_and_plain() {
    let parsed = Command::parse(b"MAIL FROM:<a@b.example> TRANSID=<0a1b.00ff@node.example>\r\n");
    assert_eq!(
        parsed.expect("a plain transfer id"),
        Command::Mail {
            from: "a@b.example".into(),
            params: MailParams::default(),
            transfer: Some("0a1b.00ff@node.example".into()),
        }
    );
    let long = format!("MAIL FROM:<a@b.example> TRANSID=<{}>\r\n", "x".repeat(129));
    for line in [
        "MAIL FROM:<a@b.example> TRANSID=<a+b>\r\n",
        "MAIL FROM:<a@b.example> TRANSID=<a b>\r\n",
        long.as_str(),
    ] {
        assert!(Command::parse(line.as_bytes()).is_err(), "{line}");
    }
}

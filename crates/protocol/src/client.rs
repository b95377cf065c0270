//! Commands as strictmx writes them to a server: `MAIL FROM` and `RCPT TO` with only the ESMTP
//! parameters that server advertised.
//!
//! A path goes between `<` and `>` on a command line. A CR or LF there would end the line early
//! and let the rest of the address be read as commands of its own; an angle bracket would end
//! the path. Such an address is refused here, never written ([`path_is_safe`]).

use crate::{BodyType, DsnRet, MailParams, Notify, ProtocolError, RcptParams, xtext_encode};

/// The service extensions of the server's EHLO reply that decide what a command may carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerExtensions {
    /// SIZE (RFC 1870).
    pub size: bool,
    /// 8BITMIME (RFC 6152).
    pub eight_bit_mime: bool,
    /// SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    /// REQUIRETLS (RFC 8689).
    pub requiretls: bool,
    /// DSN (RFC 3461).
    pub dsn: bool,
}

/// One message's `MAIL FROM`: its reverse-path and parameters, and what its content needs.
#[derive(Debug, Clone, Copy)]
pub struct MailFrom<'a> {
    pub reverse_path: &'a str,
    pub params: &'a MailParams,
    /// The content's size in octets, before dot-stuffing.
    pub content_len: usize,
    /// Whether the content has octets above 127.
    pub eight_bit: bool,
    /// Whether an address of the transaction needs SMTPUTF8.
    pub smtputf8: bool,
}

/// Whether `address` may be written between `<` and `>` on a command line: no control
/// character (CR and LF among them) and no angle bracket.
pub fn path_is_safe(address: &str) -> bool {
    !address
        .bytes()
        .any(|b| b.is_ascii_control() || b == b'<' || b == b'>')
}

/// `MAIL FROM:<...>` with the parameters this server understands.
pub fn mail_command(
    server: &ServerExtensions,
    mail: &MailFrom<'_>,
) -> Result<String, ProtocolError> {
    if !path_is_safe(mail.reverse_path) {
        return Err(ProtocolError::InvalidSender);
    }
    let params = mail.params;
    let mut line = format!("MAIL FROM:<{}>", mail.reverse_path);
    if server.size {
        // RFC 1870 §6: the size of the message content.
        line.push_str(&format!(" SIZE={}", mail.content_len));
    }
    if server.eight_bit_mime && (mail.eight_bit || params.body != BodyType::SevenBit) {
        line.push_str(" BODY=8BITMIME");
    }
    if server.smtputf8 && mail.smtputf8 {
        line.push_str(" SMTPUTF8");
    }
    // RFC 8689 §4.2.1: a REQUIRETLS message carries the parameter wherever the server takes
    // it. Whether a server without it may be used at all is the delivery plan's decision.
    if server.requiretls && params.requiretls {
        line.push_str(" REQUIRETLS");
    }
    // RFC 3461 §4: DSN parameters go only to a server that advertises DSN.
    if server.dsn {
        match params.ret {
            Some(DsnRet::Full) => line.push_str(" RET=FULL"),
            Some(DsnRet::Headers) => line.push_str(" RET=HDRS"),
            None => {}
        }
        if let Some(envid) = &params.envid {
            line.push_str(&format!(" ENVID={}", xtext_encode(envid)));
        }
    }
    Ok(line)
}

/// `RCPT TO:<...>` with NOTIFY and ORCPT when the server advertises DSN.
pub fn rcpt_command(
    server: &ServerExtensions,
    address: &str,
    params: &RcptParams,
) -> Result<String, ProtocolError> {
    if !path_is_safe(address) {
        return Err(ProtocolError::InvalidRecipient);
    }
    let mut line = format!("RCPT TO:<{address}>");
    if !server.dsn {
        return Ok(line);
    }
    if let Some(notify) = params.notify {
        line.push_str(&format!(" NOTIFY={}", notify_value(notify)));
    }
    if let Some(orcpt) = &params.orcpt {
        // RFC 3461 §4.2: addr-type is an atom; anything else cannot be forwarded safely.
        let atom = !orcpt.addr_type.is_empty()
            && orcpt
                .addr_type
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if atom {
            line.push_str(&format!(
                " ORCPT={};{}",
                orcpt.addr_type,
                xtext_encode(&orcpt.address)
            ));
        }
    }
    Ok(line)
}

/// RFC 3461 §4.1: NEVER alone, or a comma-separated list of SUCCESS, FAILURE, DELAY.
fn notify_value(notify: Notify) -> String {
    if notify.never {
        return "NEVER".to_owned();
    }
    let words: Vec<&str> = [
        (notify.success, "SUCCESS"),
        (notify.failure, "FAILURE"),
        (notify.delay, "DELAY"),
    ]
    .into_iter()
    .filter_map(|(set, word)| set.then_some(word))
    .collect();
    if words.is_empty() {
        return "NEVER".to_owned();
    }
    words.join(",")
}

#[cfg(test)]
mod tests {
    use crate::Orcpt;

    use super::*;

    const EVERYTHING: ServerExtensions = ServerExtensions {
        size: true,
        eight_bit_mime: true,
        smtputf8: true,
        requiretls: true,
        dsn: true,
    };

    fn mail<'a>(reverse_path: &'a str, params: &'a MailParams) -> MailFrom<'a> {
        MailFrom {
            reverse_path,
            params,
            content_len: 5,
            eight_bit: true,
            smtputf8: true,
        }
    }

    #[test]
    fn mail_from_carries_only_the_parameters_the_server_advertised() {
        let params = MailParams {
            size: Some(5),
            body: BodyType::EightBitMime,
            smtputf8: true,
            requiretls: false,
            ret: Some(DsnRet::Headers),
            envid: Some("id+1 x".to_owned()),
        };
        let message = mail("a@example.org", &params);
        assert_eq!(
            mail_command(&EVERYTHING, &message).as_deref(),
            // RFC 3461 §4.4: ENVID is xtext ("+" and space are encoded).
            Ok("MAIL FROM:<a@example.org> SIZE=5 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id+2B1+20x")
        );
        assert_eq!(
            mail_command(&ServerExtensions::default(), &message).as_deref(),
            Ok("MAIL FROM:<a@example.org>")
        );
    }

    // RFC 8689 §4.2.1: the parameter goes with a REQUIRETLS message to a server that takes it.
    #[test]
    fn mail_from_carries_requiretls_only_for_requiretls_messages_to_servers_advertising_it() {
        let requiretls = MailParams {
            requiretls: true,
            ..MailParams::default()
        };
        let ordinary = MailParams::default();
        let without = ServerExtensions {
            requiretls: false,
            ..EVERYTHING
        };
        let cases = [
            (&EVERYTHING, &requiretls, true),
            (&without, &requiretls, false),
            (&EVERYTHING, &ordinary, false),
        ];
        for (server, params, expected) in cases {
            let line = mail_command(server, &mail("a@example.org", params)).expect("line");
            assert_eq!(line.contains(" REQUIRETLS"), expected, "{line}");
        }
    }

    #[test]
    fn rcpt_to_forwards_notify_and_orcpt_only_to_dsn_servers() {
        let params = RcptParams {
            notify: Some(Notify {
                success: true,
                failure: true,
                delay: false,
                never: false,
            }),
            orcpt: Some(Orcpt {
                addr_type: "rfc822".to_owned(),
                address: "b+x@example.org".to_owned(),
            }),
        };
        assert_eq!(
            rcpt_command(&EVERYTHING, "b@example.org", &params).as_deref(),
            Ok("RCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+2Bx@example.org")
        );
        assert_eq!(
            rcpt_command(&ServerExtensions::default(), "b@example.org", &params).as_deref(),
            Ok("RCPT TO:<b@example.org>")
        );
    }

    // RFC 5321 §2.3.8 and §4.1.2: a command line ends at CRLF and a path at ">"; an address
    // holding either would write commands of its own.
    #[test]
    fn addresses_that_would_forge_commands_are_never_written() {
        let forged = [
            "a@example.org>\r\nRCPT TO:<victim@example.net",
            "a@example.org\nDATA",
            "a@example.org\rx",
            "<a@example.org",
            "a@exa>mple.org",
            "a@example.org\0",
        ];
        let params = MailParams::default();
        for address in forged {
            assert!(!path_is_safe(address), "{address:?}");
            assert_eq!(
                mail_command(&EVERYTHING, &mail(address, &params)),
                Err(ProtocolError::InvalidSender),
                "{address:?}"
            );
            assert_eq!(
                rcpt_command(&EVERYTHING, address, &RcptParams::default()),
                Err(ProtocolError::InvalidRecipient),
                "{address:?}"
            );
        }
        for address in ["", "a@example.org", "\"a b\"@example.org", "用户@例子.广告"] {
            assert!(path_is_safe(address), "{address:?}");
        }
    }

    #[test]
    fn notify_never_excludes_everything_else() {
        let never = Notify {
            success: true,
            failure: false,
            delay: false,
            never: true,
        };
        assert_eq!(notify_value(never), "NEVER");
        assert_eq!(notify_value(Notify::default()), "NEVER");
    }
}

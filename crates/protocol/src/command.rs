//! SMTP commands as strictmx's server side understands them, parsed from one line with
//! smtp-proto's no-I/O parser and narrowed to what strictmx implements. Line framing is in
//! `line`; whether a command is allowed in the current session state is left to inbound.

use std::borrow::Cow;

use smtp_proto::{
    AUTH_LOGIN, AUTH_PLAIN, MAIL_BODY_8BITMIME, MAIL_BODY_BINARYMIME, MAIL_BY_NOTIFY,
    MAIL_BY_RETURN, MAIL_BY_TRACE, MAIL_CONPERM, MAIL_REQUIRETLS, MAIL_RET_FULL, MAIL_RET_HDRS,
    MAIL_SMTPUTF8, MailFrom, RCPT_CONNEG, RCPT_NOTIFY_DELAY, RCPT_NOTIFY_FAILURE,
    RCPT_NOTIFY_NEVER, RCPT_NOTIFY_SUCCESS, RCPT_RRVS_CONTINUE, RCPT_RRVS_REJECT, RcptTo, Request,
};

use crate::{BodyType, DsnRet, MailParams, Notify, Orcpt, ProtocolError, RcptParams};

/// The SASL mechanisms strictmx offers (RFC 4954, RFC 4616).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMechanism {
    Plain,
    Login,
}

/// One parsed client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo {
        host: String,
    },
    Helo {
        host: String,
    },
    /// `from` is empty for the null reverse-path `<>`.
    Mail {
        from: String,
        params: MailParams,
        /// `TRANSID=<...>`: the id a strictmx node gives a message it hands to another node
        /// (`queue xfer`), so that the receiver can recognise a repeat. Checked by
        /// [`transfer_id_is_valid`]; whether the client may use it is the session's decision.
        transfer: Option<String>,
    },
    Rcpt {
        to: String,
        params: RcptParams,
    },
    Data,
    Rset,
    Noop,
    Quit,
    StartTls,
    /// `initial_response` is `None` when absent and `Some("")` for `=` (RFC 4954 §4).
    Auth {
        mechanism: AuthMechanism,
        initial_response: Option<String>,
    },
    Vrfy,
    Expn,
    Help,
    /// A command the grammar knows but strictmx does not offer (BDAT, ETRN, LHLO, ...).
    NotImplemented {
        verb: &'static str,
    },
}

impl Command {
    /// Parse one command line, terminator included (see [`crate::scan_line`]).
    pub fn parse(line: &[u8]) -> Result<Command, ProtocolError> {
        if line.len() > crate::MAX_LINE {
            return Err(ProtocolError::LineTooLong {
                length: line.len(),
                limit: crate::MAX_LINE,
            });
        }
        if std::str::from_utf8(line).is_err() {
            return Err(ProtocolError::NotUtf8);
        }
        let owned;
        let line = if line.ends_with(b"\n") {
            line
        } else {
            owned = [line, b"\r\n"].concat();
            &owned
        };
        let request = Request::parse(&mut line.iter()).map_err(convert_error)?;
        let command = convert_request(request)?;
        // smtp-proto turns a path without a domain (`<postmaster>`, `<foo>`) into "", which
        // would silently make a sender the null sender. Only a literal `<>` is the null path.
        match &command {
            Command::Mail { from, .. } if from.is_empty() && !has_null_path(line) => {
                Err(ProtocolError::InvalidSender)
            }
            // strictmx relays only; a recipient without a domain has nowhere to go.
            Command::Rcpt { to, .. } if to.is_empty() => Err(ProtocolError::InvalidRecipient),
            // The domain goes to DNS and into an MTA-STS URL: only a host name may.
            Command::Rcpt { to, .. } => {
                let domain = crate::domain_of(to).unwrap_or_default();
                crate::check_host_name(domain).map_err(|problem| {
                    ProtocolError::InvalidRecipientDomain {
                        domain: domain.to_owned(),
                        problem,
                    }
                })?;
                Ok(command)
            }
            _ => Ok(command),
        }
    }
}

/// Whether the path of a MAIL command is the literal null path `<>`.
fn has_null_path(line: &[u8]) -> bool {
    line.iter()
        .position(|&b| b == b'<')
        .is_some_and(|start| line.get(start + 1) == Some(&b'>'))
}

fn convert_request(request: Request<Cow<'_, str>>) -> Result<Command, ProtocolError> {
    Ok(match request {
        Request::Ehlo { host } => Command::Ehlo {
            host: host.into_owned(),
        },
        Request::Helo { host } => Command::Helo {
            host: host.into_owned(),
        },
        Request::Mail { from } => mail(from)?,
        Request::Rcpt { to } => rcpt(to)?,
        Request::Data => Command::Data,
        Request::Rset => Command::Rset,
        Request::Noop { .. } => Command::Noop,
        Request::Quit => Command::Quit,
        Request::StartTls => Command::StartTls,
        Request::Auth {
            mechanism,
            initial_response,
        } => auth(mechanism, &initial_response)?,
        Request::Vrfy { .. } => Command::Vrfy,
        Request::Expn { .. } => Command::Expn,
        Request::Help { .. } => Command::Help,
        other @ (Request::Lhlo { .. }
        | Request::Bdat { .. }
        | Request::Etrn { .. }
        | Request::Atrn { .. }
        | Request::Burl { .. }) => Command::NotImplemented { verb: other.name() },
    })
}

fn mail(from: MailFrom<Cow<'_, str>>) -> Result<Command, ProtocolError> {
    let unsupported = |param: &str| {
        Err(ProtocolError::UnsupportedParameter {
            param: param.to_owned(),
        })
    };
    if from.flags & (MAIL_BY_NOTIFY | MAIL_BY_RETURN | MAIL_BY_TRACE) != 0 {
        return unsupported("BY");
    }
    if from.flags & MAIL_CONPERM != 0 {
        return unsupported("CONPERM");
    }
    if from.hold_for != 0 || from.hold_until != 0 {
        return unsupported("HOLDFOR");
    }
    if from.mt_priority != 0 {
        return unsupported("MT-PRIORITY");
    }
    if from.mtrk.is_some() {
        return unsupported("MTRK");
    }
    let transfer = match from.trans_id {
        None => None,
        Some(id) if transfer_id_is_valid(&id) => Some(id.into_owned()),
        Some(_) => {
            return Err(ProtocolError::InvalidParameter {
                param: "TRANSID".into(),
            });
        }
    };
    if from.solicit.is_some() {
        return unsupported("SOLICIT");
    }
    let body = if from.flags & MAIL_BODY_BINARYMIME != 0 {
        BodyType::BinaryMime
    } else if from.flags & MAIL_BODY_8BITMIME != 0 {
        BodyType::EightBitMime
    } else {
        BodyType::SevenBit
    };
    let ret = if from.flags & MAIL_RET_FULL != 0 {
        Some(DsnRet::Full)
    } else if from.flags & MAIL_RET_HDRS != 0 {
        Some(DsnRet::Headers)
    } else {
        None
    };
    // RFC 4954 §5: AUTH= on MAIL is accepted and, lacking a trust relationship, ignored.
    let params = MailParams {
        size: u64::try_from(from.size).ok().filter(|&size| size > 0),
        body,
        smtputf8: from.flags & MAIL_SMTPUTF8 != 0,
        requiretls: from.flags & MAIL_REQUIRETLS != 0,
        ret,
        envid: from.env_id.map(Cow::into_owned),
    };
    Ok(Command::Mail {
        from: from.address.into_owned(),
        params,
        transfer,
    })
}

/// The EHLO keyword a strictmx node offers to the clients whose transfers (`TRANSID=<id>` on
/// MAIL) it takes. A local extension (RFC 5321 §4.1.5: keywords starting with X).
pub const TRANSFER_KEYWORD: &str = "XSTRICTMX-TRANSFER";

/// The longest transfer id accepted: a node id, a queue id and a host name fit easily.
pub const MAX_TRANSFER_ID: usize = 128;

/// Whether `id` may be a transfer id: 1 to [`MAX_TRANSFER_ID`] octets of letters, digits, `.`,
/// `-` and `@`. The id is stored by the receiving node, so it is bounded and plain.
pub fn transfer_id_is_valid(id: &str) -> bool {
    (1..=MAX_TRANSFER_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'@'))
}

fn rcpt(to: RcptTo<Cow<'_, str>>) -> Result<Command, ProtocolError> {
    if to.rrvs != 0 || to.flags & (RCPT_RRVS_REJECT | RCPT_RRVS_CONTINUE) != 0 {
        return Err(ProtocolError::UnsupportedParameter {
            param: "RRVS".into(),
        });
    }
    if to.flags & RCPT_CONNEG != 0 {
        return Err(ProtocolError::UnsupportedParameter {
            param: "CONNEG".into(),
        });
    }
    let notify_bits =
        RCPT_NOTIFY_SUCCESS | RCPT_NOTIFY_FAILURE | RCPT_NOTIFY_DELAY | RCPT_NOTIFY_NEVER;
    // RFC 3461 §4.1: NEVER must not be combined with any other value.
    if to.flags & RCPT_NOTIFY_NEVER != 0 && to.flags & notify_bits != RCPT_NOTIFY_NEVER {
        return Err(ProtocolError::InvalidParameter {
            param: "NOTIFY".into(),
        });
    }
    let notify = (to.flags & notify_bits != 0).then_some(Notify {
        success: to.flags & RCPT_NOTIFY_SUCCESS != 0,
        failure: to.flags & RCPT_NOTIFY_FAILURE != 0,
        delay: to.flags & RCPT_NOTIFY_DELAY != 0,
        never: to.flags & RCPT_NOTIFY_NEVER != 0,
    });
    // smtp-proto accepts only the rfc822 address type and decodes the xtext for us.
    let orcpt = to.orcpt.map(|address| Orcpt {
        addr_type: "rfc822".into(),
        address: address.into_owned(),
    });
    Ok(Command::Rcpt {
        to: to.address.into_owned(),
        params: RcptParams { notify, orcpt },
    })
}

fn auth(mechanism: u64, initial_response: &str) -> Result<Command, ProtocolError> {
    let mechanism = match mechanism {
        AUTH_PLAIN => AuthMechanism::Plain,
        AUTH_LOGIN => AuthMechanism::Login,
        _ => return Err(ProtocolError::UnsupportedMechanism),
    };
    let initial_response = match initial_response {
        "" => None,
        "=" => Some(String::new()),
        other => Some(other.to_owned()),
    };
    Ok(Command::Auth {
        mechanism,
        initial_response,
    })
}

fn convert_error(error: smtp_proto::Error) -> ProtocolError {
    match error {
        smtp_proto::Error::UnknownCommand => ProtocolError::UnknownCommand,
        smtp_proto::Error::InvalidSenderAddress => ProtocolError::InvalidSender,
        smtp_proto::Error::InvalidRecipientAddress => ProtocolError::InvalidRecipient,
        smtp_proto::Error::SyntaxError { syntax } => ProtocolError::CommandSyntax {
            command: syntax.split(' ').next().unwrap_or("command"),
            expected: syntax,
        },
        smtp_proto::Error::InvalidParameter { param } => ProtocolError::InvalidParameter {
            param: param.to_owned(),
        },
        smtp_proto::Error::UnsupportedParameter { param } => {
            ProtocolError::UnsupportedParameter { param }
        }
        smtp_proto::Error::NeedsMoreData { .. }
        | smtp_proto::Error::ResponseTooLong
        | smtp_proto::Error::InvalidResponse { .. } => ProtocolError::CommandSyntax {
            command: "command",
            expected: "a complete command line",
        },
    }
}

#[cfg(test)]
mod tests;

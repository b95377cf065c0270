//! The one error type of the protocol crate; each variant says which rule the input broke and
//! knows the reply a server sends for it. Deciding whether to disconnect is left to callers.

use crate::Reply;
use crate::replies;

/// What was wrong with bytes handed to a parser in this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A command or reply line exceeded [`crate::MAX_LINE`] octets.
    #[error("line of {length} octets exceeds the limit of {limit}")]
    LineTooLong { length: usize, limit: usize },
    /// The command verb is not one strictmx knows.
    #[error("unrecognised command")]
    UnknownCommand,
    /// The command's arguments do not match its grammar.
    #[error("syntax error in {command}, expected {expected}")]
    CommandSyntax {
        command: &'static str,
        expected: &'static str,
    },
    /// The reverse-path of MAIL is not a valid address.
    #[error("invalid sender address")]
    InvalidSender,
    /// The forward-path of RCPT is not a valid address.
    #[error("invalid recipient address")]
    InvalidRecipient,
    /// The forward-path's domain is not a host name DNS may be asked about (RFC 5321 §4.1.2,
    /// RFC 1123 §2.1, RFC 5890).
    #[error("recipient domain {domain:?} is not a host name: {problem}")]
    InvalidRecipientDomain {
        domain: String,
        problem: crate::HostNameProblem,
    },
    /// A known MAIL or RCPT parameter has a malformed value.
    #[error("invalid value for parameter {param}")]
    InvalidParameter { param: String },
    /// A MAIL or RCPT parameter that strictmx does not implement.
    #[error("unsupported parameter {param}")]
    UnsupportedParameter { param: String },
    /// An AUTH mechanism other than PLAIN or LOGIN.
    #[error("unsupported authentication mechanism")]
    UnsupportedMechanism,
    /// The command line is not valid UTF-8.
    #[error("command is not valid utf-8")]
    NotUtf8,
    /// xtext with a bad `+XX` escape or a forbidden character (RFC 3461 §4).
    #[error("malformed xtext at offset {offset}")]
    MalformedXtext { offset: usize },
    /// A reply line that is not `code[ -]text` with a valid code.
    #[error("malformed reply line {line}")]
    MalformedReply { line: usize },
    /// A multi-line reply whose lines carry different codes.
    #[error("reply code changed from {first} to {other} within one reply")]
    ReplyCodeMismatch { first: u16, other: u16 },
    /// A multi-line reply with more lines than any sane server sends.
    #[error("reply has more than {limit} lines")]
    ReplyTooManyLines { limit: usize },
}

impl ProtocolError {
    /// The reply a server sends when a client's command fails with this error.
    pub fn smtp_reply(&self) -> Reply {
        match self {
            Self::LineTooLong { .. } => replies::line_too_long(),
            Self::UnknownCommand => replies::command_unrecognized(),
            Self::CommandSyntax { expected, .. } => replies::syntax_error(expected),
            Self::InvalidSender => replies::invalid_sender(),
            Self::InvalidRecipient => replies::invalid_recipient(),
            Self::InvalidRecipientDomain { .. } => replies::invalid_recipient_domain(),
            Self::InvalidParameter { param } => replies::invalid_parameter(param),
            Self::UnsupportedParameter { param } => replies::unsupported_parameter(param),
            Self::UnsupportedMechanism => replies::auth_mechanism_unsupported(),
            Self::NotUtf8 | Self::MalformedXtext { .. } => replies::syntax_error("valid arguments"),
            Self::MalformedReply { .. }
            | Self::ReplyCodeMismatch { .. }
            | Self::ReplyTooManyLines { .. } => replies::local_error(),
        }
    }

    /// Protocol errors are properties of the input: retrying the same bytes gives the same result.
    pub fn is_transient(&self) -> bool {
        false
    }
}

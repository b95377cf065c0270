//! SMTP grammar for strictmx: commands, replies, ESMTP/DSN parameters, enhanced status codes,
//! dot-stuffing and line framing. Pure functions over bytes; all I/O, timeouts and policy are
//! left to the crates that use it (inbound, delivery).
#![forbid(unsafe_code)]

mod address;
mod chain;
mod client;
mod command;
mod data;
mod duration;
mod error;
mod line;
mod params;
pub mod replies;
mod reply;
mod sender;
pub mod status;
mod xtext;

pub use address::{
    HostNameProblem, ascii_domain, check_host_name, domain_of, domains_equal, local_part,
    needs_smtputf8,
};
pub use chain::ErrorChain;
pub use client::{MailFrom, ServerExtensions, mail_command, path_is_safe, rcpt_command};
pub use command::{
    AuthMechanism, Command, MAX_TRANSFER_ID, TRANSFER_KEYWORD, transfer_id_is_valid,
};
pub use data::{DataProgress, DataReader, DotStuffer, is_8bit};
pub use duration::HumanDuration;
pub use error::ProtocolError;
pub use line::{LineScan, scan_line};
pub use params::{BodyType, DsnRet, MailParams, Notify, Orcpt, RcptParams};
pub use reply::{EnhancedStatus, Reply, ReplyParse};
pub use sender::SenderPattern;
pub use xtext::{xtext_decode, xtext_encode};

/// The longest command or text line in octets, CRLF included (RFC 5321 §4.5.3.1.4 and
/// §4.5.3.1.6).
pub const MAX_LINE: usize = 1000;

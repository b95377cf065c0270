//! The `mailto:` form of a report (RFC 8460 §5.3): a multipart/report message with
//! report-type="tlsrpt", the RFC's subject and headers, and the gzip report attached under its
//! §5.1 file name, as an envelope ready for our own queue. Queueing it is left to `send`.

use std::net::{IpAddr, Ipv6Addr};
use std::time::{SystemTime, UNIX_EPOCH};

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::{BodyPart, MimePart};
use strictmx_protocol::{MailParams, RcptParams};
use strictmx_spool::{ClientInfo, Envelope, EnvelopeRecipient, MessageKind};

use crate::report;

/// What one report mail needs.
#[derive(Debug, Clone)]
pub struct ReportMail<'a> {
    pub domain: &'a str,
    pub submitter: &'a str,
    pub organization_name: &'a str,
    pub report_id: &'a str,
    pub mail_from: &'a str,
    pub to: &'a str,
    pub file_name: &'a str,
    pub gzip: &'a [u8],
    pub start: &'a str,
    pub end: &'a str,
    pub now: SystemTime,
}

/// The envelope and body of the report mail to one `mailto:` address.
pub fn build(mail: &ReportMail<'_>) -> std::io::Result<(Envelope, Vec<u8>)> {
    let human = format!(
        "This is an aggregate TLS report (RFC 8460) from {org} ({submitter}) for {domain}, \
         covering {start} to {end}.\r\nThe report is attached as {file}.\r\n",
        org = mail.organization_name,
        submitter = mail.submitter,
        domain = mail.domain,
        start = mail.start,
        end = mail.end,
        file = mail.file_name,
    );
    // RFC 8460 §5.3: the gzip report as application/tlsrpt+gzip, named as §5.1 says.
    // The file name goes out as one quoted parameter (no RFC 2231 continuations, which simple
    // report parsers miss); it has no spaces, so folding leaves it whole. No explicit transfer
    // encoding: with one, mail-builder writes the bytes raw; without, it uses base64.
    let attachment = MimePart::new(
        ContentType::new("application/tlsrpt+gzip"),
        BodyPart::Binary(mail.gzip.to_vec().into()),
    )
    .header(
        "Content-Disposition",
        Raw::new(format!("attachment; filename=\"{}\"", mail.file_name)),
    );
    // RFC 8460 §5.3 with RFC 6522: multipart/report, report-type="tlsrpt", human part first.
    let body = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "tlsrpt"),
        vec![MimePart::new("text/plain", human), attachment],
    );
    let secs = mail
        .now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let message = MessageBuilder::new()
        .from(Address::new_address(
            None::<&str>,
            mail.mail_from.to_owned(),
        ))
        .to(Address::new_address(None::<&str>, mail.to.to_owned()))
        // Raw, not `subject()`: the §5.3 subject is ASCII and must not become RFC 2047
        // encoded-words; mail-builder still folds it at spaces.
        .header(
            "Subject",
            Raw::new(report::subject(mail.domain, mail.submitter, mail.report_id)),
        )
        .date(Date::new(i64::try_from(secs).unwrap_or(i64::MAX)))
        .message_id(format!("{}@{}", mail.report_id, mail.submitter))
        // RFC 8460 §5.3: the two report headers.
        .header("TLS-Report-Domain", Raw::new(mail.domain.to_owned()))
        .header("TLS-Report-Submitter", Raw::new(mail.submitter.to_owned()))
        // RFC 8460 §5.3 / RFC 8689 §5: a report must reach a domain whose TLS is broken.
        .header("TLS-Required", Raw::new("No"))
        // RFC 3834 §5: machine-generated.
        .header("Auto-Submitted", Raw::new("auto-generated"))
        .body(body);
    let body = message.write_to_vec()?;
    let envelope = Envelope {
        mail_from: mail.mail_from.to_owned(),
        params: MailParams::default(),
        recipients: vec![EnvelopeRecipient {
            address: mail.to.to_owned(),
            params: RcptParams::default(),
        }],
        received_at: UNIX_EPOCH + std::time::Duration::from_secs(secs),
        client: ClientInfo {
            ip: IpAddr::V6(Ipv6Addr::LOCALHOST),
            helo: mail.submitter.to_owned(),
            auth_user: None,
            tls: None,
        },
        kind: MessageKind::TlsReport,
        require_tls: None,
    };
    Ok((envelope, body))
}

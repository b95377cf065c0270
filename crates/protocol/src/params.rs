//! ESMTP parameters of MAIL and RCPT as strictmx stores them (SIZE, BODY, SMTPUTF8, REQUIRETLS,
//! DSN's RET/ENVID/NOTIFY/ORCPT). Parsing them from a command line lives in `command`; deciding
//! whether a session may use them is left to inbound.

use serde::{Deserialize, Serialize};

/// The BODY parameter (RFC 6152, RFC 3030).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum BodyType {
    #[default]
    SevenBit,
    EightBitMime,
    BinaryMime,
}

/// RET: how much of the message a failure DSN returns (RFC 3461 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DsnRet {
    Full,
    Headers,
}

/// NOTIFY: which delivery events produce a DSN (RFC 3461 §4.1). `never` excludes the others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
    pub never: bool,
}

/// ORCPT: the original recipient as the first submitter gave it (RFC 3461 §4.2), xtext-decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orcpt {
    /// The address type, e.g. `rfc822`.
    pub addr_type: String,
    pub address: String,
}

/// Parameters of `MAIL FROM`, stored with the envelope exactly as they were accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailParams {
    /// Declared size (RFC 1870). `SIZE=0` is stored as `None`: it declares nothing useful.
    pub size: Option<u64>,
    pub body: BodyType,
    /// RFC 6531: the envelope or headers may carry UTF-8.
    pub smtputf8: bool,
    /// RFC 8689: the message must only travel over verified TLS.
    pub requiretls: bool,
    pub ret: Option<DsnRet>,
    /// ENVID, xtext-decoded (RFC 3461 §4.4).
    pub envid: Option<String>,
}

/// Parameters of `RCPT TO`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RcptParams {
    pub notify: Option<Notify>,
    pub orcpt: Option<Orcpt>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_survive_a_serde_round_trip_as_the_spool_stores_them() {
        let mail = MailParams {
            size: Some(1234),
            body: BodyType::EightBitMime,
            smtputf8: true,
            requiretls: true,
            ret: Some(DsnRet::Headers),
            envid: Some("QQ314159".into()),
        };
        let rcpt = RcptParams {
            notify: Some(Notify {
                success: true,
                failure: true,
                ..Notify::default()
            }),
            orcpt: Some(Orcpt {
                addr_type: "rfc822".into(),
                address: "bob@example.org".into(),
            }),
        };
        let mail_json = serde_json::to_string(&mail).expect("serialisable");
        let rcpt_json = serde_json::to_string(&rcpt).expect("serialisable");
        assert_eq!(
            serde_json::from_str::<MailParams>(&mail_json).ok(),
            Some(mail)
        );
        assert_eq!(
            serde_json::from_str::<RcptParams>(&rcpt_json).ok(),
            Some(rcpt)
        );
    }
}

//! `POST /v1/messages` bodies: the JSON object read field by field, so that every refusal
//! names its field, then the message composed (`subject` + `text`/`html`, with mail-builder)
//! or decoded (`raw`, base64). Pure: no I/O; authorising the sender and queueing are the
//! server's.

use base64::Engine;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use serde_json::{Map, Value};
use strictmx_spool::TlsFloor;

/// The longest `idempotency_key` taken.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;
/// The longest address taken (RFC 5321 §4.5.3.1.3 path, less the angle brackets).
const MAX_ADDRESS: usize = 254;

/// A bad request: the field at fault and what is wrong with it, answered as 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct BadField {
    pub field: &'static str,
    pub message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> BadField {
    BadField {
        field,
        message: message.into(),
    }
}

/// What the client asked for in `require_tls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// No floor: the destination's policy and the rules decide.
    Opportunistic,
    /// A floor under the plan.
    Floor(TlsFloor),
    /// RFC 8689 REQUIRETLS, as `MAIL FROM ... REQUIRETLS` sets it.
    RequireTls,
}

impl Requirement {
    pub fn as_str(self) -> &'static str {
        match self {
            Requirement::Opportunistic => "opportunistic",
            Requirement::Floor(floor) => floor.as_str(),
            Requirement::RequireTls => "requiretls",
        }
    }
}

/// A checked `POST /v1/messages`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRequest {
    pub from: String,
    pub to: Vec<String>,
    /// The message, CRLF line ends.
    pub content: Vec<u8>,
    pub require_tls: Requirement,
    pub idempotency_key: Option<String>,
}

const FIELDS: [&str; 8] = [
    "from",
    "to",
    "raw",
    "subject",
    "text",
    "html",
    "require_tls",
    "idempotency_key",
];

/// Reads the request body. `max_recipients` bounds `to`.
pub fn parse(body: &[u8], max_recipients: usize) -> Result<MessageRequest, BadField> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| bad("body", format!("not JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err(bad("body", "must be a JSON object"));
    };
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        let field = "body";
        return Err(bad(field, format!("unknown field {unknown:?}")));
    }
    let from = string(&object, "from")?.ok_or_else(|| bad("from", "is required"))?;
    check_address(&from).map_err(|m| bad("from", m))?;
    let to = recipients(&object, max_recipients)?;
    let content = content(&object, &from, &to)?;
    let require_tls = match string(&object, "require_tls")?.as_deref() {
        None | Some("opportunistic") => Requirement::Opportunistic,
        Some("requiretls") => Requirement::RequireTls,
        Some(other) => Requirement::Floor(other.parse().map_err(|_| {
            bad(
                "require_tls",
                "must be opportunistic, encrypted, verified, dane or requiretls",
            )
        })?),
    };
    let idempotency_key = string(&object, "idempotency_key")?;
    if let Some(key) = &idempotency_key {
        let printable = key.chars().all(|c| c.is_ascii_graphic());
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || !printable {
            return Err(bad(
                "idempotency_key",
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"),
            ));
        }
    }
    Ok(MessageRequest {
        from,
        to,
        content,
        require_tls,
        idempotency_key,
    })
}

fn string(object: &Map<String, Value>, field: &'static str) -> Result<Option<String>, BadField> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(bad(field, "must be a string")),
    }
}

fn recipients(object: &Map<String, Value>, max: usize) -> Result<Vec<String>, BadField> {
    let Some(Value::Array(list)) = object.get("to") else {
        return Err(bad("to", "is required: a list of addresses"));
    };
    if list.is_empty() || list.len() > max {
        return Err(bad("to", format!("must list 1 to {max} addresses")));
    }
    let mut to: Vec<String> = Vec::with_capacity(list.len());
    for item in list {
        let Value::String(address) = item else {
            return Err(bad("to", "must list strings"));
        };
        check_address(address).map_err(|m| bad("to", format!("{address:?}: {m}")))?;
        if !to.iter().any(|seen| seen.eq_ignore_ascii_case(address)) {
            to.push(address.clone());
        }
    }
    Ok(to)
}

/// A mailbox `local@domain`: no spaces, controls or angle brackets, a host-name domain
/// (RFC 5321 §4.1.2), at most 254 octets.
fn check_address(address: &str) -> Result<(), String> {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err("is not an address: local@domain".into());
    };
    let forbidden = |c: char| c.is_control() || c.is_whitespace() || "<>\"\\,;".contains(c);
    if local.is_empty() || address.len() > MAX_ADDRESS || address.chars().any(forbidden) {
        return Err("is not an address: local@domain".into());
    }
    strictmx_protocol::check_host_name(domain).map_err(|p| format!("has a bad domain: {p}"))
}

fn content(object: &Map<String, Value>, from: &str, to: &[String]) -> Result<Vec<u8>, BadField> {
    let raw = string(object, "raw")?;
    let subject = string(object, "subject")?;
    let text = string(object, "text")?;
    let html = string(object, "html")?;
    if let Some(raw) = raw {
        if subject.is_some() || text.is_some() || html.is_some() {
            return Err(bad("raw", "give raw or subject with text/html, not both"));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(raw.trim())
            .map_err(|e| bad("raw", format!("not base64: {e}")))?;
        return crlf(decoded).ok_or_else(|| bad("raw", "has a bare CR"));
    }
    let subject = subject.ok_or_else(|| bad("subject", "is required without raw"))?;
    if text.is_none() && html.is_none() {
        return Err(bad("text", "text or html is required without raw"));
    }
    let mut message = MessageBuilder::new()
        .from(Address::new_address(None::<&str>, from.to_owned()))
        .to(Address::new_list(
            to.iter()
                .map(|a| Address::new_address(None::<&str>, a.clone()))
                .collect(),
        ))
        .subject(subject);
    if let Some(text) = text {
        message = message.text_body(text);
    }
    if let Some(html) = html {
        message = message.html_body(html);
    }
    message
        .write_to_vec()
        .map_err(|e| bad("body", format!("cannot compose the message: {e}")))
}

/// Line ends as CRLF: a bare LF becomes CRLF; a bare CR is refused (`None`), since where such
/// a line ends is ambiguous (RFC 5321 §2.3.8).
fn crlf(content: Vec<u8>) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(content.len() + content.len() / 32);
    for (i, &b) in content.iter().enumerate() {
        let next = content.get(i + 1);
        let previous = i.checked_sub(1).and_then(|p| content.get(p));
        match b {
            b'\r' if next != Some(&b'\n') => return None,
            b'\n' if previous != Some(&b'\r') => out.push(b'\r'),
            _ => {}
        }
        out.push(b);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(body: &str) -> &'static str {
        parse(body.as_bytes(), 3).expect_err(body).field
    }

    #[test]
    fn each_bad_request_names_its_field() {
        let cases = [
            ("not json", "body"),
            ("[1]", "body"),
            (
                r#"{"from":"a@b.example","to":["c@d.example"],"text":"x","subject":"s","cc":1}"#,
                "body",
            ),
            (r#"{"to":["c@d.example"],"subject":"s","text":"x"}"#, "from"),
            (
                r#"{"from":"nobody","to":["c@d.example"],"subject":"s","text":"x"}"#,
                "from",
            ),
            (r#"{"from":"a@b.example","subject":"s","text":"x"}"#, "to"),
            (
                r#"{"from":"a@b.example","to":[],"subject":"s","text":"x"}"#,
                "to",
            ),
            (
                r#"{"from":"a@b.example","to":["1@x.example","2@x.example","3@x.example","4@x.example"],"subject":"s","text":"x"}"#,
                "to",
            ),
            (
                r#"{"from":"a@b.example","to":["c@-bad-.example"],"subject":"s","text":"x"}"#,
                "to",
            ),
            (
                r#"{"from":"a@b.example","to":["c@d.example"],"text":"x"}"#,
                "subject",
            ),
            (
                r#"{"from":"a@b.example","to":["c@d.example"],"subject":"s"}"#,
                "text",
            ),
            (
                r#"{"from":"a@b.example","to":["c@d.example"],"raw":"!!"}"#,
                "raw",
            ),
            (
                r#"{"from":"a@b.example","to":["c@d.example"],"raw":"eA==","text":"x"}"#,
                "raw",
            ),
            (
                r#"{"from":"a@b.example","to":["c@d.example"],"subject":"s","text":"x","require_tls":"strong"}"#,
                "require_tls",
            ),
            (
                r#"{"from":"a@b.example","to":["c@d.example"],"subject":"s","text":"x","idempotency_key":""}"#,
                "idempotency_key",
            ),
            (
                r#"{"from":"a@b.example","to":["c@d.example"],"subject":1,"text":"x"}"#,
                "subject",
            ),
        ];
        for (body, field) in cases {
            assert_eq!(field_of(body), field, "{body}");
        }
    }

    #[test]
    fn require_tls_maps_to_no_floor_a_floor_or_requiretls() {
        let cases = [
            (None, Requirement::Opportunistic),
            (Some("opportunistic"), Requirement::Opportunistic),
            (Some("encrypted"), Requirement::Floor(TlsFloor::Encrypted)),
            (Some("verified"), Requirement::Floor(TlsFloor::Verified)),
            (Some("dane"), Requirement::Floor(TlsFloor::Dane)),
            (Some("requiretls"), Requirement::RequireTls),
        ];
        for (given, expected) in cases {
            let tls = given.map_or(String::new(), |t| format!(r#","require_tls":"{t}""#));
            let body = format!(
                r#"{{"from":"a@b.example","to":["c@d.example"],"subject":"s","text":"x"{tls}}}"#
            );
            let request = parse(body.as_bytes(), 3).expect("valid");
            assert_eq!(request.require_tls, expected, "{given:?}");
        }
    }

    #[test]
    fn a_composed_message_has_the_headers_and_both_bodies() {
        let body = r#"{"from":"app@b.example","to":["c@d.example","C@d.example"],"subject":"Reset","text":"plain","html":"<p>rich</p>"}"#;
        let request = parse(body.as_bytes(), 3).expect("valid");
        assert_eq!(request.to, ["c@d.example"], "duplicates are dropped");
        let text = String::from_utf8(request.content).expect("ascii");
        assert!(text.contains("From: <app@b.example>\r\n"), "{text}");
        assert!(text.contains("Subject: Reset\r\n"), "{text}");
        assert!(text.contains("multipart/alternative"), "{text}");
        assert!(
            text.contains("plain") && text.contains("<p>rich</p>"),
            "{text}"
        );
    }

    // RFC 5322 §2.1: lines end in CRLF; a bare LF is taken as one, a bare CR is refused.
    #[test]
    fn raw_content_gets_crlf_line_ends_and_a_bare_cr_is_refused() {
        let cases: &[(&[u8], Option<&[u8]>)] = &[
            (b"A: b\n\nx\n", Some(b"A: b\r\n\r\nx\r\n")),
            (b"A: b\r\n\r\nx\r\n", Some(b"A: b\r\n\r\nx\r\n")),
            (b"A: b\rx", None),
        ];
        for (given, expected) in cases {
            assert_eq!(crlf(given.to_vec()).as_deref(), *expected);
        }
    }
}

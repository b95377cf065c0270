//! The `_smtp._tls.<domain>` TXT record (RFC 8460 §3): which TXT strings are TLSRPT records,
//! where reports go, and which of those report URIs strictmx will use. The record comes from
//! whoever controls the recipient domain's DNS, so every URI is checked before it can reach a
//! mail header, an SMTP command or an HTTPS connection. Looking the record up, resolving hosts
//! and connecting are left to the callers.

use std::fmt;

/// Where one report is sent; both forms passed the checks of this module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rua {
    /// A `mailto:` address (an RFC 5321 mailbox), without any `?` header fields.
    Mailto(String),
    /// An `https:` URI, as published: a host name (never an IP address) on port 443.
    Https(String),
}

impl Rua {
    /// The URI form, for logs and listings.
    pub fn uri(&self) -> String {
        match self {
            Rua::Mailto(address) => format!("mailto:{address}"),
            Rua::Https(url) => url.clone(),
        }
    }
}

/// Why strictmx does not use one URI of a record's `rua` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuaRefusal {
    /// No `scheme:` prefix.
    NotAUri,
    /// RFC 8460 §3 defines only `mailto:` and `https:`.
    UnknownScheme,
    /// The `mailto:` address is not a plain RFC 5321 mailbox; the text says how.
    Address(&'static str),
    /// The `https:` host is an IP address (in any notation a URL parser accepts).
    IpLiteral,
    /// The `https:` URI names a port other than 443.
    Port(String),
    /// The `https:` URI is malformed; the text says how.
    Https(&'static str),
    /// More usable URIs than strictmx sends one domain's report to.
    OverLimit { limit: usize },
}

impl fmt::Display for RuaRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuaRefusal::NotAUri => f.write_str("not a URI"),
            RuaRefusal::UnknownScheme => f.write_str("only mailto: and https: are defined"),
            RuaRefusal::Address(why) => write!(f, "not a usable mail address: {why}"),
            RuaRefusal::IpLiteral => f.write_str("an IP address instead of a host name"),
            RuaRefusal::Port(port) if port.is_empty() => f.write_str("an empty port"),
            RuaRefusal::Port(port) => write!(f, "port {port} (only 443 is used)"),
            RuaRefusal::Https(why) => write!(f, "not a usable https URI: {why}"),
            RuaRefusal::OverLimit { limit } => {
                write!(
                    f,
                    "more than {limit} report addresses; the first {limit} are used"
                )
            }
        }
    }
}

/// One URI of a `rua` list that is not used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedRua {
    /// The URI as published, with control characters shown as `\u{..}` escapes.
    pub uri: String,
    pub reason: RuaRefusal,
}

impl fmt::Display for RefusedRua {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.uri, self.reason)
    }
}

/// A usable TLSRPT record: the URIs reports go to, and those that were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsrptRecord {
    pub rua: Vec<Rua>,
    pub refused: Vec<RefusedRua>,
}

impl TlsrptRecord {
    /// Keeps the first `limit` usable URIs; the others are refused. A domain's DNS chooses how
    /// many addresses a report is sent to, so the number is bounded.
    pub fn capped(mut self, limit: usize) -> TlsrptRecord {
        if self.rua.len() > limit {
            for extra in self.rua.split_off(limit) {
                self.refused.push(RefusedRua {
                    uri: extra.uri(),
                    reason: RuaRefusal::OverLimit { limit },
                });
            }
        }
        self
    }
}

/// Why a domain has no usable TLSRPT record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordProblem {
    /// No TXT string starts with `v=TLSRPTv1`.
    Absent,
    /// RFC 8460 §3: more than one TLSRPT record means the domain does not implement TLSRPT.
    Several(usize),
    /// The one record does not parse; the text says how.
    Invalid(String),
    /// The record parses, but strictmx uses none of its report URIs.
    NoUsableRua(Vec<RefusedRua>),
}

impl fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordProblem::Absent => f.write_str("no v=TLSRPTv1 record"),
            RecordProblem::Several(n) => write!(f, "{n} v=TLSRPTv1 records (one is required)"),
            RecordProblem::Invalid(why) => write!(f, "invalid v=TLSRPTv1 record: {why}"),
            RecordProblem::NoUsableRua(refused) => {
                f.write_str("no usable rua in the v=TLSRPTv1 record")?;
                for (i, one) in refused.iter().enumerate() {
                    f.write_str(if i == 0 { ": " } else { "; " })?;
                    write!(f, "{one}")?;
                }
                Ok(())
            }
        }
    }
}

/// The name the record lives at.
pub fn record_name(domain: &str) -> String {
    format!("_smtp._tls.{}", domain.trim_end_matches('.'))
}

/// Picks the TLSRPT record among the TXT strings of `_smtp._tls.<domain>` and parses it.
pub fn select_record(txts: &[String]) -> Result<TlsrptRecord, RecordProblem> {
    // RFC 8460 §3: records that do not begin with "v=TLSRPTv1;" are discarded; if the number of
    // the remaining records is not one, the domain does not implement TLSRPT.
    let candidates: Vec<&String> = txts.iter().filter(|t| is_tlsrpt(t)).collect();
    match candidates.as_slice() {
        [] => Err(RecordProblem::Absent),
        [one] => parse_record(one),
        many => Err(RecordProblem::Several(many.len())),
    }
}

fn is_tlsrpt(txt: &str) -> bool {
    txt.split(';').next().map(str::trim_end) == Some("v=TLSRPTv1")
}

/// Parses one record: `v=TLSRPTv1` first, then `;`-separated fields, exactly one `rua` with
/// at least one usable URI.
pub fn parse_record(txt: &str) -> Result<TlsrptRecord, RecordProblem> {
    let invalid = |why: String| RecordProblem::Invalid(why);
    let mut fields = txt.split(';').map(|f| f.trim_matches([' ', '\t']));
    // RFC 8460 §3: tlsrpt-version = %s"v=TLSRPTv1", case-sensitive, first.
    if fields.next() != Some("v=TLSRPTv1") {
        return Err(invalid("it does not start with v=TLSRPTv1".into()));
    }
    let mut rua = None;
    for field in fields {
        // RFC 8460 §3: a trailing field-delim is allowed.
        if field.is_empty() {
            continue;
        }
        let Some((name, value)) = field.split_once('=') else {
            return Err(invalid(format!(
                "field {:?} is not name=value",
                shown(field)
            )));
        };
        if !valid_ext_name(name) {
            return Err(invalid(format!(
                "field name {:?} is not allowed",
                shown(name)
            )));
        }
        // RFC 8460 §3: unknown fields are ignored; names are case-sensitive (%s"rua=").
        if name != "rua" {
            continue;
        }
        if rua.is_some() {
            return Err(invalid("rua appears more than once".into()));
        }
        rua = Some(parse_rua(value));
    }
    let record = rua.ok_or_else(|| invalid("it has no rua field".into()))?;
    if record.rua.is_empty() {
        return Err(RecordProblem::NoUsableRua(record.refused));
    }
    Ok(record)
}

/// RFC 8460 §3: tlsrpt-ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".").
fn valid_ext_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 32
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// RFC 8460 §3: tlsrpt-rua = %s"rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri); only `mailto:`
/// and `https:` are defined (§3, "rua"). Every URI is judged on its own.
fn parse_rua(value: &str) -> TlsrptRecord {
    let mut record = TlsrptRecord {
        rua: Vec::new(),
        refused: Vec::new(),
    };
    for uri in value.split(',').map(|u| u.trim_matches([' ', '\t'])) {
        match parse_uri(uri) {
            Ok(rua) => record.rua.push(rua),
            Err(reason) => record.refused.push(RefusedRua {
                uri: shown(uri),
                reason,
            }),
        }
    }
    record
}

fn parse_uri(uri: &str) -> Result<Rua, RuaRefusal> {
    let (scheme, rest) = uri.split_once(':').ok_or(RuaRefusal::NotAUri)?;
    if scheme.eq_ignore_ascii_case("mailto") {
        // RFC 6068 §2: the address is percent-encoded; header fields after `?` are dropped.
        let address = percent_decode(rest.split('?').next().unwrap_or_default());
        mailbox(&address).map_err(RuaRefusal::Address)?;
        Ok(Rua::Mailto(address))
    } else if scheme.eq_ignore_ascii_case("https") {
        https_uri(rest)?;
        Ok(Rua::Https(uri.to_owned()))
    } else {
        Err(RuaRefusal::UnknownScheme)
    }
}

/// Checks the part of an `https:` URI after the colon: `//host[:443][/path][?query]`, with a
/// host name that no URL parser reads as an IP address. Characters RFC 3986 does not allow
/// unencoded are refused, so that this check and the HTTP client's parser read the same host.
fn https_uri(rest: &str) -> Result<(), RuaRefusal> {
    if !rest.bytes().all(uri_char) {
        return Err(RuaRefusal::Https(
            "it holds a space, control, non-ASCII or other character URIs do not allow",
        ));
    }
    let rest = rest
        .strip_prefix("//")
        .ok_or(RuaRefusal::Https("it has no //host part"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(RuaRefusal::Https("it has user information"));
    }
    if authority.starts_with('[') {
        return Err(RuaRefusal::IpLiteral);
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if let Some(port) = port.filter(|p| *p != "443") {
        return Err(RuaRefusal::Port(port.to_owned()));
    }
    if ends_in_a_number(host) {
        return Err(RuaRefusal::IpLiteral);
    }
    host_name(host).map_err(RuaRefusal::Https)
}

/// RFC 3986 §2: unreserved, reserved and `%`; nothing else appears unencoded.
fn uri_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&byte)
}

/// The WHATWG URL standard reads a host whose last label is a number (decimal, or hex with a
/// `0x` prefix) as an IPv4 address: `127.1`, `2130706433` and `0x7f.1` all mean 127.0.0.1.
fn ends_in_a_number(host: &str) -> bool {
    let last = host
        .trim_end_matches('.')
        .rsplit('.')
        .next()
        .unwrap_or_default();
    let hex = last
        .strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_hexdigit()));
    hex || (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
}

/// RFC 1123 §2.1 and RFC 1035 §2.3.4: a fully qualified LDH host name (two labels at least,
/// no trailing dot), at most 253 octets, labels of 1-63 letters, digits and inner hyphens.
fn host_name(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("it has no host");
    }
    if host.len() > 253 {
        return Err("the host name is longer than 253 octets");
    }
    let mut labels = 0;
    for label in host.split('.') {
        labels += 1;
        let ldh = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if label.is_empty() || label.len() > 63 || !ldh {
            return Err("the host is not a host name of letters, digits and hyphens");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label of the host name starts or ends with a hyphen");
        }
    }
    if labels < 2 {
        return Err("the host name is not fully qualified");
    }
    Ok(())
}

/// RFC 5321 §4.1.2 Mailbox, in its plain ASCII form: a dot-atom local part (no quoted
/// strings) of at most 64 octets, `@`, a fully qualified host name (no address literals);
/// nothing that could end a header line or an SMTP command.
fn mailbox(address: &str) -> Result<(), &'static str> {
    if !address.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("it holds a space, control or non-ASCII character");
    }
    if address.len() > 254 {
        return Err("it is longer than 254 octets");
    }
    let (local, domain) = address.rsplit_once('@').ok_or("it has no @")?;
    if local.is_empty() || local.len() > 64 {
        return Err("the local part is empty or longer than 64 octets");
    }
    if !local
        .split('.')
        .all(|atom| !atom.is_empty() && atom.bytes().all(atext))
    {
        return Err("the local part is not a dot-atom (RFC 5322 §3.2.3)");
    }
    if ends_in_a_number(domain) {
        return Err("the domain is an IP address");
    }
    host_name(domain)
}

/// RFC 5322 §3.2.3 atext.
fn atext(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&byte)
}

/// `text` for logs and listings: control characters as `\u{..}` escapes, at most 200 chars.
fn shown(text: &str) -> String {
    text.chars()
        .take(200)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_unicode().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;

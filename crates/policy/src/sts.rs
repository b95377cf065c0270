//! MTA-STS (RFC 8461): the TXT record, the policy text and MX pattern matching.
//!
//! Parsing only; fetching and caching are `strictmx-resolve`'s job, and applying a policy to a
//! destination is the planner's.

use serde::Serialize;

use crate::error::StsError;
use crate::facts::{StsFacts, StsRecordFacts};

/// RFC 8461 §3.2 `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StsMode {
    Enforce,
    Testing,
    None,
}

impl StsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StsMode::Enforce => "enforce",
            StsMode::Testing => "testing",
            StsMode::None => "none",
        }
    }
}

/// A parsed MTA-STS policy (RFC 8461 §3.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StsPolicy {
    pub mode: StsMode,
    /// The `mx` patterns, lowercase, in order; `*.` prefixes kept.
    pub mx: Vec<String>,
    /// Seconds.
    pub max_age: u64,
}

impl StsPolicy {
    /// Whether `host` matches one of the policy's `mx` patterns (RFC 8461 §4.1).
    pub fn matches(&self, host: &str) -> bool {
        self.mx
            .iter()
            .any(|pattern| mx_pattern_matches(pattern, host))
    }
}

/// The `_mta-sts` TXT record (RFC 8461 §3.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StsRecord {
    /// The policy instance id: 1 to 32 letters and digits, case kept.
    pub id: String,
}

/// RFC 8461 §3.2: `max_age` has a "maximum value of 31557600" (one year).
pub const MAX_AGE_LIMIT: u64 = 31_557_600;

/// Parses one `_mta-sts` TXT record, its strings already concatenated without spaces (RFC 8461
/// §3.1: "as if those strings are concatenated together without adding spaces").
pub fn parse_record(txt: &str) -> Result<StsRecord, StsError> {
    let mut fields = txt.split(';');
    // RFC 8461 §3.1 ABNF: sts-text-record = sts-version 1*(sts-field-delim sts-field)
    // [sts-field-delim]; field-delim = *WSP ";" *WSP, so the version may be followed by WSP.
    if fields.next().map(trim_wsp_end) != Some("v=STSv1") {
        return Err(StsError::RecordVersion);
    }
    let pieces: Vec<&str> = fields.collect();
    let last = pieces.len().saturating_sub(1);
    let mut id = None;
    for (index, piece) in pieces.iter().enumerate() {
        // WSP belongs to a field-delim only next to its ";": before a field always (a ";"
        // precedes it), after one only when a ";" follows. The last piece, with no ";" after
        // it, may not end in WSP (`v=STSv1; id=x ` does not parse) unless it is all WSP after
        // a trailing delimiter.
        let field = if index < last {
            trim_wsp(piece)
        } else {
            piece.trim_start_matches([' ', '\t'])
        };
        // A trailing delimiter (with trailing WSP) is allowed; an empty field elsewhere is not.
        if field.is_empty() && index == last && index > 0 {
            continue;
        }
        let Some((name, value)) = field.split_once('=') else {
            return Err(record_field(field));
        };
        if !is_extension_name(name) || !value.bytes().all(is_record_value_byte) || value.is_empty()
        {
            return Err(record_field(field));
        }
        // RFC 8461 §3.1: id = 1*32(ALPHA / DIGIT). Like the policy's fields (§3.2), the first
        // occurrence counts.
        if name == "id" && id.is_none() {
            if value.len() > 32 || !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(StsError::RecordId {
                    id: value.to_owned(),
                });
            }
            id = Some(value.to_owned());
        }
    }
    id.map(|id| StsRecord { id })
        .ok_or(StsError::RecordMissingId)
}

/// Whether the cached `enforce` policy in `facts` matches none of `mx_hosts`, the domain's MX
/// hosts: then mail would defer on it, and RFC 8461 §5.1 has the sender look for an updated
/// policy before failing (the domain may have moved its MX and its policy with it). A policy
/// fetched just now, or one that matches a host, needs no second look.
pub fn refuses_every_mx(facts: &StsFacts, mx_hosts: &[String]) -> bool {
    match &facts.policy {
        Some(policy) => {
            policy.from_cache
                && policy.policy.mode == StsMode::Enforce
                && !mx_hosts.is_empty()
                && !mx_hosts.iter().any(|host| policy.policy.matches(host))
        }
        None => false,
    }
}

/// Chooses the `_mta-sts` record among all TXT strings at the name (RFC 8461 §3.1).
///
/// Records not beginning with `v=STSv1` are discarded; none left is [`StsRecordFacts::Absent`];
/// more than one, or one that does not parse, is [`StsRecordFacts::Invalid`] ("no policy").
/// A candidate is any record beginning `v=STSv1` followed by `;`, WSP or its end, so that a
/// malformed one is still counted rather than silently skipped.
pub fn select_record(txts: &[String]) -> StsRecordFacts {
    let candidates: Vec<&String> = txts
        .iter()
        .filter(|txt| {
            txt.strip_prefix("v=STSv1")
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([';', ' ', '\t']))
        })
        .collect();
    match candidates.as_slice() {
        [] => StsRecordFacts::Absent,
        [one] => match parse_record(one) {
            Ok(record) => StsRecordFacts::Present { id: record.id },
            Err(error) => StsRecordFacts::Invalid {
                reason: error.to_string(),
            },
        },
        many => StsRecordFacts::Invalid {
            reason: format!(
                "{} v=STSv1 records; exactly one is required (RFC 8461 §3.1)",
                many.len()
            ),
        },
    }
}

/// Parses an MTA-STS policy body (RFC 8461 §3.2): `name: value` lines ended by LF or CRLF.
///
/// Unknown fields are ignored; of a repeated field other than `mx`, only the first counts;
/// `version`, `mode` and `max_age` are required, and `mx` unless `mode` is `none`. Blank lines
/// at the end are tolerated (many servers add one); a blank line between fields is an error.
pub fn parse_policy(text: &str) -> Result<StsPolicy, StsError> {
    let mut fields = PolicyFields::default();
    let lines = policy_lines_numbered(text);
    let last_field = lines.iter().rposition(|(_, line)| !line.is_empty());
    for (index, &(number, line)) in lines.iter().enumerate() {
        if line.is_empty() && last_field.is_none_or(|last| index > last) {
            continue;
        }
        let (name, value) = split_policy_line(line).ok_or_else(|| StsError::PolicyLine {
            line: number,
            text: line.to_owned(),
        })?;
        fields.take(number, name, value)?;
    }
    fields.finish()
}

/// The policy's lines as TLSRPT's `policy-string` lists them (RFC 8460 §4.4): one string per
/// line, line endings removed, trailing blank lines dropped.
pub fn policy_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = policy_lines_numbered(text)
        .into_iter()
        .map(|(_, line)| line.to_owned())
        .collect();
    while lines.last().is_some_and(|line| line.is_empty()) {
        lines.pop();
    }
    lines
}

/// Whether `host` matches one `mx` pattern (RFC 8461 §4.1): exact, or `*.` standing for exactly
/// one leftmost label. Case-insensitive; trailing dots are ignored.
pub fn mx_pattern_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return false;
    }
    match pattern.strip_prefix("*.") {
        // RFC 8461 §4.1: "*.example.com" matches "mail.example.com" but not "example.com" and
        // not "foo.bar.example.com": the wildcard covers one whole label.
        Some(suffix) => host
            .strip_suffix(suffix)
            .and_then(|label| label.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        None => pattern == host,
    }
}

/// The policy's fields as found so far; each known field keeps its first occurrence.
#[derive(Default)]
struct PolicyFields {
    version: bool,
    mode: Option<StsMode>,
    max_age: Option<u64>,
    mx: Vec<String>,
}

impl PolicyFields {
    fn take(&mut self, line: usize, name: &str, value: &str) -> Result<(), StsError> {
        // RFC 8461 §3.2: "If any non-repeated field--i.e., all fields excluding 'mx'--is
        // duplicated, all entries except for the first SHALL be ignored."
        match name {
            "version" if !self.version => {
                // RFC 8461 §3.2: "Currently, only 'STSv1' is supported."
                if value != "STSv1" {
                    return Err(StsError::PolicyVersion {
                        line,
                        value: value.to_owned(),
                    });
                }
                self.version = true;
            }
            "mode" if self.mode.is_none() => self.mode = Some(parse_mode(line, value)?),
            "max_age" if self.max_age.is_none() => self.max_age = Some(parse_max_age(line, value)?),
            "mx" => self.mx.push(parse_mx(line, value)?),
            // RFC 8461 §3.2: unknown fields SHALL be ignored (duplicates likewise).
            _ => {}
        }
        Ok(())
    }

    fn finish(self) -> Result<StsPolicy, StsError> {
        if !self.version {
            return Err(StsError::PolicyMissing { field: "version" });
        }
        let mode = self.mode.ok_or(StsError::PolicyMissing { field: "mode" })?;
        let max_age = self
            .max_age
            .ok_or(StsError::PolicyMissing { field: "max_age" })?;
        // RFC 8461 §3.2: "mx" is required (and may be repeated) for a policy that applies; a
        // policy of mode "none" only withdraws an earlier one and needs no patterns.
        if self.mx.is_empty() && mode != StsMode::None {
            return Err(StsError::PolicyMissing { field: "mx" });
        }
        Ok(StsPolicy {
            mode,
            mx: self.mx,
            max_age,
        })
    }
}

fn parse_mode(line: usize, value: &str) -> Result<StsMode, StsError> {
    // RFC 8461 §3.2 ABNF: %s"testing" / %s"enforce" / %s"none" (case-sensitive).
    match value {
        "enforce" => Ok(StsMode::Enforce),
        "testing" => Ok(StsMode::Testing),
        "none" => Ok(StsMode::None),
        _ => Err(StsError::PolicyMode {
            line,
            value: value.to_owned(),
        }),
    }
}

fn parse_max_age(line: usize, value: &str) -> Result<u64, StsError> {
    // RFC 8461 §3.2: max_age = 1*10DIGIT, "maximum value of 31557600".
    let digits = (1..=10).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit());
    match value.parse::<u64>() {
        Ok(seconds) if digits && seconds <= MAX_AGE_LIMIT => Ok(seconds),
        _ => Err(StsError::PolicyMaxAge {
            line,
            value: value.to_owned(),
        }),
    }
}

fn parse_mx(line: usize, value: &str) -> Result<String, StsError> {
    // RFC 8461 §3.2 ABNF: sts-policy-mx-value = ["*."] Domain (RFC 5321 §4.1.2 Domain).
    let domain = value.strip_prefix("*.").unwrap_or(value);
    if !is_domain(domain) {
        return Err(StsError::PolicyMx {
            line,
            value: value.to_owned(),
        });
    }
    Ok(value.to_ascii_lowercase())
}

/// RFC 5321 §4.1.2: Domain = sub-domain *("." sub-domain); sub-domain = Let-dig [Ldh-str].
fn is_domain(domain: &str) -> bool {
    domain.len() <= 253
        && domain.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= 63
                && bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        })
}

/// Splits the text on LF, dropping a CR before it (RFC 8461 §3.2: sts-policy-term = LF / CRLF);
/// numbers the lines from 1.
fn policy_lines_numbered(text: &str) -> Vec<(usize, &str)> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    body.split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .enumerate()
        .map(|(index, line)| (index + 1, line))
        .collect()
}

/// `name ":" *WSP value *WSP` (RFC 8461 §3.2), or `None` when the line does not have that shape.
fn split_policy_line(line: &str) -> Option<(&str, &str)> {
    let (name, rest) = line.split_once(':')?;
    let value = trim_wsp(rest);
    if !is_extension_name(name) || !is_policy_value(value) {
        return None;
    }
    Some((name, value))
}

/// RFC 8461 §3.2: sts-policy-ext-value = sts-policy-vchar [*(%x20 / sts-policy-vchar)
/// sts-policy-vchar]; vchar = %x21-7E / UTF8-2 / UTF8-3 / UTF8-4.
fn is_policy_value(value: &str) -> bool {
    !value.is_empty()
        && !value.starts_with(' ')
        && !value.ends_with(' ')
        && value
            .chars()
            .all(|c| c == ' ' || ('\x21'..='\x7e').contains(&c) || !c.is_ascii())
}

/// RFC 8461 §3.1/§3.2: name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".").
fn is_extension_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 32
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// RFC 8461 §3.1: sts-ext-value = 1*(%x21-3A / %x3C / %x3E-7E), no "=", ";", space or controls.
fn is_record_value_byte(byte: u8) -> bool {
    matches!(byte, 0x21..=0x3a | 0x3c | 0x3e..=0x7e)
}

fn record_field(field: &str) -> StsError {
    StsError::RecordField {
        field: field.to_owned(),
    }
}

fn trim_wsp(text: &str) -> &str {
    text.trim_matches([' ', '\t'])
}

fn trim_wsp_end(text: &str) -> &str {
    text.trim_end_matches([' ', '\t'])
}

#[cfg(test)]
mod tests;

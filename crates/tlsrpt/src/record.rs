//! The `_smtp._tls.<domain>` TXT record (RFC 8460 §3): which TXT strings are TLSRPT records and
//! where reports go. Looking the record up is left to the caller's resolver.

/// Where one report is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rua {
    /// A `mailto:` address, without any `?` header fields.
    Mailto(String),
    /// An `https:` URI, as published.
    Https(String),
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
}

impl std::fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordProblem::Absent => f.write_str("no v=TLSRPTv1 record"),
            RecordProblem::Several(n) => write!(f, "{n} v=TLSRPTv1 records (one is required)"),
            RecordProblem::Invalid(why) => write!(f, "invalid v=TLSRPTv1 record: {why}"),
        }
    }
}

/// The name the record lives at.
pub fn record_name(domain: &str) -> String {
    format!("_smtp._tls.{}", domain.trim_end_matches('.'))
}

/// Picks the TLSRPT record among the TXT strings of `_smtp._tls.<domain>` and parses it.
pub fn select_record(txts: &[String]) -> Result<Vec<Rua>, RecordProblem> {
    // RFC 8460 §3: records that do not begin with "v=TLSRPTv1;" are discarded; if the number of
    // the remaining records is not one, the domain does not implement TLSRPT.
    let candidates: Vec<&String> = txts.iter().filter(|t| is_tlsrpt(t)).collect();
    match candidates.as_slice() {
        [] => Err(RecordProblem::Absent),
        [one] => parse_record(one).map_err(RecordProblem::Invalid),
        many => Err(RecordProblem::Several(many.len())),
    }
}

fn is_tlsrpt(txt: &str) -> bool {
    txt.split(';').next().map(str::trim_end) == Some("v=TLSRPTv1")
}

/// Parses one record: `v=TLSRPTv1` first, then `;`-separated fields, exactly one `rua`.
pub fn parse_record(txt: &str) -> Result<Vec<Rua>, String> {
    let mut fields = txt.split(';').map(|f| f.trim_matches([' ', '\t']));
    // RFC 8460 §3: tlsrpt-version = %s"v=TLSRPTv1", case-sensitive, first.
    if fields.next() != Some("v=TLSRPTv1") {
        return Err("it does not start with v=TLSRPTv1".into());
    }
    let mut rua = None;
    for field in fields {
        // RFC 8460 §3: a trailing field-delim is allowed.
        if field.is_empty() {
            continue;
        }
        let Some((name, value)) = field.split_once('=') else {
            return Err(format!("field {field:?} is not name=value"));
        };
        if !valid_ext_name(name) {
            return Err(format!("field name {name:?} is not allowed"));
        }
        // RFC 8460 §3: unknown fields are ignored; names are case-sensitive (%s"rua=").
        if name != "rua" {
            continue;
        }
        if rua.is_some() {
            return Err("rua appears more than once".into());
        }
        rua = Some(parse_rua(value)?);
    }
    rua.ok_or_else(|| "it has no rua field".into())
}

/// RFC 8460 §3: tlsrpt-ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".").
fn valid_ext_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 32
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// RFC 8460 §3: tlsrpt-rua = %s"rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri); only `mailto:`
/// and `https:` are defined (§3, "rua"). URIs of other schemes are skipped; none usable is an
/// error.
fn parse_rua(value: &str) -> Result<Vec<Rua>, String> {
    let mut out = Vec::new();
    for uri in value.split(',').map(|u| u.trim_matches([' ', '\t'])) {
        let scheme_end = uri
            .find(':')
            .ok_or_else(|| format!("rua {uri:?} is not a URI"))?;
        let (scheme, rest) = (&uri[..scheme_end], &uri[scheme_end + 1..]);
        if scheme.eq_ignore_ascii_case("mailto") {
            let address = percent_decode(rest.split('?').next().unwrap_or_default());
            if !address.contains('@') {
                return Err(format!("rua {uri:?} has no address"));
            }
            out.push(Rua::Mailto(address));
        } else if scheme.eq_ignore_ascii_case("https") {
            if !rest.starts_with("//") || rest.len() <= 2 {
                return Err(format!("rua {uri:?} has no host"));
            }
            out.push(Rua::Https(uri.to_owned()));
        }
    }
    if out.is_empty() {
        return Err("rua has no mailto: or https: URI".into());
    }
    Ok(out)
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
mod tests {
    use super::*;

    fn txts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn record_selection_follows_rfc_8460_section_3() {
        let mail = || Rua::Mailto("tlsrpt@example.com".into());
        let web = || Rua::Https("https://reports.example.com/tlsrpt".into());
        type Case<'a> = (&'a str, &'a [&'a str], Result<Vec<Rua>, RecordProblem>);
        let cases: [Case<'_>; 10] = [
            (
                "RFC 8460 §3: mailto rua",
                &["v=TLSRPTv1; rua=mailto:tlsrpt@example.com"],
                Ok(vec![mail()]),
            ),
            (
                "RFC 8460 §3: comma-separated rua list, both schemes",
                &["v=TLSRPTv1;rua=mailto:tlsrpt@example.com , https://reports.example.com/tlsrpt"],
                Ok(vec![mail(), web()]),
            ),
            (
                "RFC 8460 §3: unknown fields are ignored",
                &["v=TLSRPTv1; ext=1; rua=https://reports.example.com/tlsrpt;"],
                Ok(vec![web()]),
            ),
            (
                "RFC 8460 §3: other TXT records are discarded",
                &["v=spf1 -all", "v=TLSRPTv1; rua=mailto:tlsrpt@example.com"],
                Ok(vec![mail()]),
            ),
            (
                "RFC 8460 §3: more than one TLSRPT record means none",
                &[
                    "v=TLSRPTv1; rua=mailto:a@example.com",
                    "v=TLSRPTv1; rua=mailto:b@example.com",
                ],
                Err(RecordProblem::Several(2)),
            ),
            (
                "RFC 8460 §3: no TLSRPT record",
                &["v=spf1 -all"],
                Err(RecordProblem::Absent),
            ),
            (
                "RFC 8460 §3: the version is case-sensitive",
                &["v=tlsrptv1; rua=mailto:a@example.com"],
                Err(RecordProblem::Absent),
            ),
            (
                "RFC 8460 §3: rua is required",
                &["v=TLSRPTv1; ext=1"],
                Err(RecordProblem::Invalid("it has no rua field".into())),
            ),
            (
                "RFC 8460 §3: mailto is percent-decoded, header fields dropped",
                &["v=TLSRPTv1; rua=mailto:tls%2Brpt@example.com?subject=x"],
                Ok(vec![Rua::Mailto("tls+rpt@example.com".into())]),
            ),
            (
                "RFC 8460 §3: only mailto and https are defined",
                &["v=TLSRPTv1; rua=ftp://example.com/x"],
                Err(RecordProblem::Invalid(
                    "rua has no mailto: or https: URI".into(),
                )),
            ),
        ];
        for (rule, input, expected) in cases {
            assert_eq!(select_record(&txts(input)), expected, "{rule}");
        }
    }

    #[test]
    fn the_record_lives_under_smtp_tls() {
        assert_eq!(record_name("example.com."), "_smtp._tls.example.com");
    }
}

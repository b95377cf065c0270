//! Table tests of the `_smtp._tls` record and of which report URIs strictmx uses.

use super::*;

fn txts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn usable(rua: Vec<Rua>) -> Result<TlsrptRecord, RecordProblem> {
    Ok(TlsrptRecord {
        rua,
        refused: Vec::new(),
    })
}

#[test]
fn record_selection_follows_rfc_8460_section_3() {
    let mail = || Rua::Mailto("tlsrpt@example.com".into());
    let web = || Rua::Https("https://reports.example.com/tlsrpt".into());
    type Case<'a> = (&'a str, &'a [&'a str], Result<TlsrptRecord, RecordProblem>);
    let cases: [Case<'_>; 10] = [
        (
            "RFC 8460 §3: mailto rua",
            &["v=TLSRPTv1; rua=mailto:tlsrpt@example.com"],
            usable(vec![mail()]),
        ),
        (
            "RFC 8460 §3: comma-separated rua list, both schemes",
            &["v=TLSRPTv1;rua=mailto:tlsrpt@example.com , https://reports.example.com/tlsrpt"],
            usable(vec![mail(), web()]),
        ),
        (
            "RFC 8460 §3: unknown fields are ignored",
            &["v=TLSRPTv1; ext=1; rua=https://reports.example.com/tlsrpt;"],
            usable(vec![web()]),
        ),
        (
            "RFC 8460 §3: other TXT records are discarded",
            &["v=spf1 -all", "v=TLSRPTv1; rua=mailto:tlsrpt@example.com"],
            usable(vec![mail()]),
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
            "RFC 6068 §2: mailto is percent-decoded, header fields dropped",
            &["v=TLSRPTv1; rua=mailto:tls%2Brpt@example.com?subject=x"],
            usable(vec![Rua::Mailto("tls+rpt@example.com".into())]),
        ),
        (
            "RFC 8460 §3: only mailto and https are defined",
            &["v=TLSRPTv1; rua=ftp://example.com/x"],
            Err(RecordProblem::NoUsableRua(vec![RefusedRua {
                uri: "ftp://example.com/x".into(),
                reason: RuaRefusal::UnknownScheme,
            }])),
        ),
    ];
    for (rule, input, expected) in cases {
        assert_eq!(select_record(&txts(input)), expected, "{rule}");
    }
}

/// Issue 14, item 8: the record's author chooses these addresses; each must be a plain mailbox
/// before it becomes a `To:` header and an `RCPT TO` command.
#[test]
fn mailto_addresses_must_be_plain_rfc_5321_mailboxes() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        (
            "RFC 5321 §4.1.2: a dot-atom mailbox",
            "tls.rpt@reports.example.com",
            None,
        ),
        (
            "RFC 5322 §3.2.3: atext symbols",
            "a!#$&'*+-/=^_`{|}~@example.com",
            None,
        ),
        (
            "RFC 6068 §2: a percent-encoded CR LF",
            "a@example.com%0D%0ABcc:x@evil.test",
            Some("control"),
        ),
        (
            "a raw LF",
            "a@example.com\nBcc: x@evil.test",
            Some("control"),
        ),
        ("a NUL", "a%00@example.com", Some("control")),
        ("a space", "a b@example.com", Some("space")),
        ("a tab", "a%09b@example.com", Some("control")),
        (
            "an angle bracket ends RCPT TO",
            "a@example.com>%20NOTIFY=NEVER",
            Some("space"),
        ),
        ("angle brackets alone", "<a@example.com>", Some("dot-atom")),
        (
            "RFC 5321 §4.1.2: quoted local parts are not accepted",
            "\"a\"@example.com",
            Some("dot-atom"),
        ),
        (
            "RFC 5322 §3.2.3: no empty atom",
            "a..b@example.com",
            Some("dot-atom"),
        ),
        (
            "RFC 5322 §3.2.3: no leading dot",
            ".a@example.com",
            Some("dot-atom"),
        ),
        ("no @", "tlsrpt.example.com", Some("no @")),
        ("no local part", "@example.com", Some("local part")),
        (
            "RFC 5321 §4.5.3.1.1: local part of at most 64 octets",
            &format!("{}@example.com", "a".repeat(65)),
            Some("64"),
        ),
        (
            "RFC 5321 §4.1.3: no address literal",
            "a@[192.0.2.1]",
            Some("host name"),
        ),
        (
            "no IP address as the domain",
            "a@127.0.0.1",
            Some("IP address"),
        ),
        (
            "no single-label domain",
            "a@localhost",
            Some("fully qualified"),
        ),
        (
            "RFC 1123 §2.1: no hyphen at a label's end",
            "a@ex-.example.com",
            Some("hyphen"),
        ),
        ("non-ASCII", "jörg@example.com", Some("non-ASCII")),
    ];
    for (rule, address, refused) in cases {
        let result = parse_uri(&format!("mailto:{address}"));
        match (refused, &result) {
            (None, Ok(Rua::Mailto(parsed))) => assert_eq!(parsed, address, "{rule}"),
            (Some(why), Err(RuaRefusal::Address(reason))) => {
                assert!(reason.contains(why), "{rule}: {reason}");
            }
            _ => panic!("{rule}: {address:?} gave {result:?}"),
        }
    }
}

/// Issue 14, item 8: an `https:` rua is a request from a stranger to POST to a host; only
/// host names on port 443 are used (their addresses are checked when connecting).
#[test]
fn https_report_uris_name_a_host_on_port_443() {
    use RuaRefusal::*;
    let cases: &[(&str, &str, Option<RuaRefusal>)] = &[
        (
            "RFC 8460 §3: an https URI",
            "https://reports.example.com/v1/tlsrpt",
            None,
        ),
        (
            "RFC 3986 §3.2.3: port 443 may be written",
            "https://reports.example.com:443/x",
            None,
        ),
        (
            "RFC 3986 §3.1: the scheme is case-insensitive",
            "HTTPS://reports.example.com",
            None,
        ),
        (
            "a query is kept",
            "https://reports.example.com/x?domain=a%2Eb",
            None,
        ),
        (
            "another port",
            "https://reports.example.com:8443/x",
            Some(Port("8443".into())),
        ),
        (
            "port 80",
            "https://reports.example.com:80/",
            Some(Port("80".into())),
        ),
        (
            "an empty port",
            "https://reports.example.com:/x",
            Some(Port(String::new())),
        ),
        ("an IPv4 literal", "https://127.0.0.1/x", Some(IpLiteral)),
        (
            "an IPv4 literal on 443",
            "https://10.0.0.1:443/",
            Some(IpLiteral),
        ),
        ("an IPv6 literal", "https://[::1]/x", Some(IpLiteral)),
        (
            "WHATWG: a short IPv4 form",
            "https://127.1/",
            Some(IpLiteral),
        ),
        (
            "WHATWG: a decimal IPv4 form",
            "https://2130706433/",
            Some(IpLiteral),
        ),
        (
            "WHATWG: a hex IPv4 form",
            "https://0x7f.0x1/",
            Some(IpLiteral),
        ),
        (
            "WHATWG: a trailing dot",
            "https://127.0.0.1./",
            Some(IpLiteral),
        ),
        (
            "WHATWG: percent-encoded host octets",
            "https://127%2e0%2e0%2e1/",
            Some(Https(
                "the host is not a host name of letters, digits and hyphens",
            )),
        ),
        (
            "user information",
            "https://user:pw@reports.example.com/",
            Some(Https("it has user information")),
        ),
        (
            "WHATWG reads a backslash as a slash",
            "https://127.0.0.1\\@reports.example.com/",
            Some(Https(
                "it holds a space, control, non-ASCII or other character URIs do not allow",
            )),
        ),
        (
            "a tab, which WHATWG strips",
            "https://reports.example\t.com/",
            Some(Https(
                "it holds a space, control, non-ASCII or other character URIs do not allow",
            )),
        ),
        (
            "non-ASCII host",
            "https://bücher.example/",
            Some(Https(
                "it holds a space, control, non-ASCII or other character URIs do not allow",
            )),
        ),
        (
            "no //",
            "https:reports.example.com",
            Some(Https("it has no //host part")),
        ),
        ("no host", "https:///x", Some(Https("it has no host"))),
        (
            "a single-label host",
            "https://localhost/x",
            Some(Https("the host name is not fully qualified")),
        ),
        (
            "RFC 1035 §2.3.4: labels of at most 63 octets",
            &format!("https://{}.example.com/", "a".repeat(64)),
            Some(Https(
                "the host is not a host name of letters, digits and hyphens",
            )),
        ),
    ];
    for (rule, uri, refused) in cases {
        let expected = match refused {
            None => Ok(Rua::Https((*uri).to_owned())),
            Some(reason) => Err(reason.clone()),
        };
        assert_eq!(parse_uri(uri), expected, "{rule}: {uri}");
    }
}

#[test]
fn refused_uris_are_listed_and_the_rest_are_used() {
    let record = select_record(&txts(&[
        "v=TLSRPTv1; rua=https://10.0.0.1/x, mailto:a%0D%0Ab@example.com, mailto:ok@example.com",
    ]))
    .expect("one usable URI");
    assert_eq!(record.rua, [Rua::Mailto("ok@example.com".into())]);
    let refused: Vec<String> = record.refused.iter().map(ToString::to_string).collect();
    assert_eq!(
        refused,
        [
            "https://10.0.0.1/x: an IP address instead of a host name",
            "mailto:a%0D%0Ab@example.com: not a usable mail address: it holds a space, control or non-ASCII character",
        ]
    );
}

#[test]
fn no_usable_uri_means_no_report_and_says_why() {
    let problem = select_record(&txts(&["v=TLSRPTv1; rua=https://[::1]/, mailto:x"]))
        .expect_err("nothing usable");
    assert_eq!(
        problem.to_string(),
        "no usable rua in the v=TLSRPTv1 record: https://[::1]/: an IP address instead of a \
         host name; mailto:x: not a usable mail address: it has no @"
    );
}

#[test]
fn control_characters_of_refused_uris_are_escaped_for_logs() {
    let record = select_record(&txts(&[
        "v=TLSRPTv1; rua=mailto:ok@example.com, https://a.example\r\n.com/",
    ]))
    .expect("one usable URI");
    assert_eq!(record.refused[0].uri, "https://a.example\\u{d}\\u{a}.com/");
}

#[test]
fn the_number_of_report_uris_per_domain_is_capped_in_record_order() {
    let list: Vec<String> = (1..=7)
        .map(|i| format!("mailto:r{i}@example.com"))
        .collect();
    let record = parse_record(&format!("v=TLSRPTv1; rua={}", list.join(",")))
        .expect("record")
        .capped(5);
    let used: Vec<String> = record.rua.iter().map(Rua::uri).collect();
    assert_eq!(used, list[..5]);
    assert_eq!(
        record.refused,
        [6, 7]
            .map(|i| RefusedRua {
                uri: format!("mailto:r{i}@example.com"),
                reason: RuaRefusal::OverLimit { limit: 5 },
            })
            .to_vec()
    );
    let few = parse_record("v=TLSRPTv1; rua=mailto:a@example.com").expect("record");
    assert_eq!(few.clone().capped(5), few);
}

#[test]
fn the_record_lives_under_smtp_tls() {
    assert_eq!(record_name("example.com."), "_smtp._tls.example.com");
}

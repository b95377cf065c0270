//! Table-driven tests of MTA-STS parsing and mx matching; each row cites the rule it checks.

use super::*;
use crate::report::ResultType;

#[test]
fn txt_records_parse_as_rfc_8461_section_3_1_says() {
    struct Row {
        rule: &'static str,
        txt: &'static str,
        id: Option<&'static str>,
    }
    let rows = [
        Row {
            rule: "RFC 8461 §3.1: version then id",
            txt: "v=STSv1; id=20160831085700Z;",
            id: Some("20160831085700Z"),
        },
        Row {
            rule: "RFC 8461 §3.1: the trailing delimiter is optional",
            txt: "v=STSv1;id=abc",
            id: Some("abc"),
        },
        Row {
            rule: "RFC 8461 §3.1: field-delim allows WSP around ';'",
            txt: "v=STSv1 ;\tid=abc ; ",
            id: Some("abc"),
        },
        Row {
            rule: "RFC 8461 §3.1: unknown extension fields are ignored, in any position",
            txt: "v=STSv1; ext_1=x.y; id=abc; other-field=1",
            id: Some("abc"),
        },
        Row {
            rule: "RFC 8461 §3.1: id is at most 32 characters",
            txt: "v=STSv1; id=0123456789abcdef0123456789abcdef",
            id: Some("0123456789abcdef0123456789abcdef"),
        },
        Row {
            rule: "RFC 8461 §3.1: id longer than 32 is invalid",
            txt: "v=STSv1; id=0123456789abcdef0123456789abcdef0",
            id: None,
        },
        Row {
            rule: "RFC 8461 §3.1: id is letters and digits only",
            txt: "v=STSv1; id=2016-08-31",
            id: None,
        },
        Row {
            rule: "RFC 8461 §3.1: the version must come first",
            txt: "id=abc; v=STSv1;",
            id: None,
        },
        Row {
            rule: "RFC 8461 §3.1: %s\"v=STSv1\" is case-sensitive",
            txt: "v=stsv1; id=abc",
            id: None,
        },
        Row {
            rule: "RFC 8461 §3.1: id is required",
            txt: "v=STSv1; ext=1",
            id: None,
        },
        Row {
            rule: "RFC 8461 §3.1: an empty field between delimiters is malformed",
            txt: "v=STSv1;; id=abc",
            id: None,
        },
        Row {
            rule: "RFC 8461 §3.1: extension values exclude spaces",
            txt: "v=STSv1; id=abc; ext=a b",
            id: None,
        },
        Row {
            rule: "RFC 8461 §3.1: WSP after the last field needs a following ';' (field-delim)",
            txt: "v=STSv1; id=policy1 ",
            id: None,
        },
        Row {
            rule: "RFC 8461 §3.1: a tab after the last field is WSP too",
            txt: "v=STSv1; id=policy1\t",
            id: None,
        },
        Row {
            rule: "RFC 8461 §3.1: WSP before a final ';' is part of the delimiter",
            txt: "v=STSv1; id=policy1 ;",
            id: Some("policy1"),
        },
    ];
    for row in rows {
        let parsed = parse_record(row.txt).ok().map(|record| record.id);
        assert_eq!(parsed.as_deref(), row.id, "{}", row.rule);
    }
}

#[test]
fn the_one_sts_record_is_selected_among_all_txt_records() {
    let strings = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let rows: [(&str, Vec<String>, &str); 5] = [
        (
            "RFC 8461 §3.1: records not beginning with v=STSv1 are discarded",
            strings(&["v=spf1 -all", "v=STSv1; id=a1"]),
            "present",
        ),
        (
            "RFC 8461 §3.1: no v=STSv1 record means no policy",
            strings(&["hello"]),
            "absent",
        ),
        (
            "RFC 8461 §3.1: more than one v=STSv1 record means no policy",
            strings(&["v=STSv1; id=a1", "v=STSv1; id=a2"]),
            "invalid",
        ),
        (
            "RFC 8461 §3.1: a syntactically invalid record means no policy",
            strings(&["v=STSv1; id=a b"]),
            "invalid",
        ),
        (
            "RFC 8461 §3.1: a prefix alone is not the version",
            strings(&["v=STSv10; id=a1"]),
            "absent",
        ),
    ];
    for (rule, txts, expected) in rows {
        let kind = match select_record(&txts) {
            StsRecordFacts::Absent => "absent",
            StsRecordFacts::Present { .. } => "present",
            StsRecordFacts::Invalid { .. } => "invalid",
            StsRecordFacts::LookupFailed { .. } => "lookup-failed",
        };
        assert_eq!(kind, expected, "{rule}");
    }
}

#[test]
fn policies_parse_as_rfc_8461_section_3_2_says() {
    struct Row {
        rule: &'static str,
        text: &'static str,
        expected: Result<(StsMode, &'static [&'static str], u64), &'static str>,
    }
    let rows = [
        Row {
            rule: "RFC 8461 §3.2: CRLF-separated key/value pairs",
            text: "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n",
            expected: Ok((
                StsMode::Enforce,
                &["mail.example.com", "*.example.net"],
                604_800,
            )),
        },
        Row {
            rule: "RFC 8461 §3.2: LF alone also ends a line",
            text: "version: STSv1\nmode: testing\nmx: mx.example\nmax_age: 86400",
            expected: Ok((StsMode::Testing, &["mx.example"], 86_400)),
        },
        Row {
            rule: "RFC 8461 §3.2: fields may come in any order; whitespace after ':' is allowed",
            text: "mode:enforce\nmax_age:\t0\nversion: STSv1  \nmx: MX.Example",
            expected: Ok((StsMode::Enforce, &["mx.example"], 0)),
        },
        Row {
            rule: "RFC 8461 §3.2: unknown fields are ignored",
            text: "version: STSv1\nmode: enforce\nfoo: bar baz\nmx: mx.example\nmax_age: 1",
            expected: Ok((StsMode::Enforce, &["mx.example"], 1)),
        },
        Row {
            rule: "RFC 8461 §3.2: a duplicated non-mx field keeps its first value",
            text: "version: STSv1\nmode: testing\nmode: enforce\nmx: a.example\nmax_age: 5\nmax_age: bogus",
            expected: Ok((StsMode::Testing, &["a.example"], 5)),
        },
        Row {
            rule: "RFC 8461 §3.2: mode none needs no mx",
            text: "version: STSv1\nmode: none\nmax_age: 86400\n",
            expected: Ok((StsMode::None, &[], 86_400)),
        },
        Row {
            rule: "RFC 8461 §3.2: max_age maximum 31557600",
            text: "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557600",
            expected: Ok((StsMode::Enforce, &["a.example"], 31_557_600)),
        },
        Row {
            rule: "RFC 8461 §3.2: max_age above 31557600 is invalid",
            text: "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601",
            expected: Err("max_age"),
        },
        Row {
            rule: "RFC 8461 §3.2: max_age is at most 10 digits",
            text: "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 00000000001",
            expected: Err("max_age"),
        },
        Row {
            rule: "RFC 8461 §3.2: max_age is a non-negative integer",
            text: "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1",
            expected: Err("max_age"),
        },
        Row {
            rule: "RFC 8461 §3.2: only STSv1 is supported",
            text: "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1",
            expected: Err("version"),
        },
        Row {
            rule: "RFC 8461 §3.2: version is required",
            text: "mode: enforce\nmx: a.example\nmax_age: 1",
            expected: Err("missing"),
        },
        Row {
            rule: "RFC 8461 §3.2: mode values are case-sensitive",
            text: "version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1",
            expected: Err("mode"),
        },
        Row {
            rule: "RFC 8461 §3.2: mx is required when the policy applies",
            text: "version: STSv1\nmode: enforce\nmax_age: 1",
            expected: Err("missing"),
        },
        Row {
            rule: "RFC 8461 §3.2: an mx wildcard is only a whole leftmost label",
            text: "version: STSv1\nmode: enforce\nmx: mx*.example\nmax_age: 1",
            expected: Err("mx"),
        },
        Row {
            rule: "RFC 8461 §3.2: a line without ':' is malformed",
            text: "version: STSv1\nmode enforce\nmx: a.example\nmax_age: 1",
            expected: Err("line"),
        },
        Row {
            rule: "RFC 8461 §3.2: no whitespace between a field name and ':'",
            text: "version : STSv1\nmode: enforce\nmx: a.example\nmax_age: 1",
            expected: Err("line"),
        },
        Row {
            rule: "RFC 8461 §3.2: a blank line between fields is malformed",
            text: "version: STSv1\n\nmode: enforce\nmx: a.example\nmax_age: 1",
            expected: Err("line"),
        },
    ];
    for row in rows {
        let parsed = parse_policy(row.text);
        match (&parsed, row.expected) {
            (Ok(policy), Ok((mode, mx, max_age))) => {
                assert_eq!(policy.mode, mode, "{}", row.rule);
                assert_eq!(policy.mx, mx, "{}", row.rule);
                assert_eq!(policy.max_age, max_age, "{}", row.rule);
            }
            (Err(error), Err(kind)) => {
                let matches = match error {
                    StsError::PolicyLine { .. } => kind == "line",
                    StsError::PolicyVersion { .. } => kind == "version",
                    StsError::PolicyMode { .. } => kind == "mode",
                    StsError::PolicyMaxAge { .. } => kind == "max_age",
                    StsError::PolicyMx { .. } => kind == "mx",
                    StsError::PolicyMissing { .. } => kind == "missing",
                    _ => false,
                };
                assert!(matches, "{}: got {error:?}, expected {kind}", row.rule);
                assert_eq!(error.tlsrpt_result(), Some(ResultType::StsPolicyInvalid));
            }
            _ => panic!("{}: got {parsed:?}", row.rule),
        }
    }
}

#[test]
fn policy_errors_name_the_line_they_found() {
    let error = parse_policy("version: STSv1\r\nmode: enforce\r\nmx: a.example\r\nmax_age: x\r\n")
        .expect_err("max_age x is invalid");
    assert_eq!(
        error,
        StsError::PolicyMaxAge {
            line: 4,
            value: "x".to_owned()
        }
    );
    assert!(error.to_string().contains("line 4"));
}

#[test]
fn mx_patterns_match_as_rfc_8461_section_4_1_says() {
    let rows = [
        (
            "RFC 8461 §4.1: exact names match",
            "mail.example.com",
            "mail.example.com",
            true,
        ),
        (
            "RFC 8461 §4.1: matching is case-insensitive",
            "Mail.Example.COM",
            "mail.example.com",
            true,
        ),
        (
            "RFC 8461 §4.1: a trailing dot is the same name",
            "mail.example.com.",
            "mail.example.com",
            true,
        ),
        (
            "RFC 8461 §4.1: a wildcard covers one leftmost label",
            "*.example.com",
            "mx1.example.com",
            true,
        ),
        (
            "RFC 8461 §4.1: a wildcard does not cover the bare domain",
            "*.example.com",
            "example.com",
            false,
        ),
        (
            "RFC 8461 §4.1: a wildcard does not cover two labels",
            "*.example.com",
            "a.b.example.com",
            false,
        ),
        (
            "RFC 8461 §4.1: a suffix inside a label is no match",
            "*.example.com",
            "mxexample.com",
            false,
        ),
        (
            "RFC 8461 §4.1: other names do not match",
            "mail.example.com",
            "mail.example.net",
            false,
        ),
        (
            "RFC 8461 §4.1: an exact pattern does not cover subdomains",
            "example.com",
            "mx.example.com",
            false,
        ),
    ];
    for (rule, pattern, host, expected) in rows {
        assert_eq!(mx_pattern_matches(pattern, host), expected, "{rule}");
    }
    let policy =
        parse_policy("version: STSv1\nmode: enforce\nmx: a.example\nmx: *.b.example\nmax_age: 1")
            .expect("valid policy");
    assert!(policy.matches("x.b.example"));
    assert!(!policy.matches("b.example"));
}

#[test]
fn policy_lines_are_the_tlsrpt_policy_string() {
    // RFC 8460 §4.4: policy-string lists the policy's lines.
    assert_eq!(
        policy_lines("version: STSv1\r\nmode: testing\r\n\r\n"),
        vec!["version: STSv1".to_owned(), "mode: testing".to_owned()]
    );
}

#[test]
fn a_cached_enforce_policy_that_matches_no_mx_host_calls_for_a_new_look() {
    use crate::facts::{StsFacts, StsPolicyFacts};
    let facts = |mode: &str, from_cache: bool| {
        let text = format!("version: STSv1\nmode: {mode}\nmx: mx.old.example\nmax_age: 86400\n");
        StsFacts {
            record: StsRecordFacts::Present { id: "a1".into() },
            policy: Some(StsPolicyFacts {
                policy: parse_policy(&text).expect("policy"),
                text,
                id: "a1".into(),
                fetched_at: 0,
                expires_at: 86_400,
                from_cache,
            }),
            fetch_failure: None,
        }
    };
    let new_mx = vec!["mx.new.example".to_owned()];
    let old_mx = vec!["mx.old.example".to_owned()];
    let rows: [(&str, StsFacts, &[String], bool); 5] = [
        (
            "RFC 8461 §5.1: cached enforce, no MX matches: look again",
            facts("enforce", true),
            &new_mx,
            true,
        ),
        (
            "a policy that matches an MX host is in order",
            facts("enforce", true),
            &old_mx,
            false,
        ),
        (
            "a policy fetched just now is the newest there is",
            facts("enforce", false),
            &new_mx,
            false,
        ),
        (
            "RFC 8461 §5: testing never fails delivery",
            facts("testing", true),
            &new_mx,
            false,
        ),
        (
            "no MX hosts (null MX, lookup failed): nothing to match",
            facts("enforce", true),
            &[],
            false,
        ),
    ];
    for (rule, facts, hosts, expected) in rows {
        assert_eq!(refuses_every_mx(&facts, hosts), expected, "{rule}");
    }
}

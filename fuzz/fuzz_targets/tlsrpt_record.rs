//! Fuzzes the TLSRPT `_smtp._tls` record parser (RFC 8460 §3): no input may panic, and every
//! report URI it lets through is one strictmx may use. A `mailto:` address is a plain ASCII
//! mailbox (nothing that can end a header line or an SMTP command); an `https:` URI names a
//! host name, not an IP address, on port 443. Capping keeps the first N in record order. The
//! address classifier gets the same bytes as IP addresses.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use strictmx_policy::address::special_range;
use strictmx_policy::tlsrpt_record::{Rua, parse_record, select_record};

fuzz_target!(|data: &[u8]| {
    if let Some(octets) = data.first_chunk::<16>() {
        let _ = special_range(IpAddr::V6(Ipv6Addr::from(*octets)));
    }
    if let Some(octets) = data.first_chunk::<4>() {
        let _ = special_range(IpAddr::V4(Ipv4Addr::from(*octets)));
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let txts: Vec<String> = text.split('\n').map(str::to_owned).collect();
    if let Ok(record) = select_record(&txts) {
        assert!(!record.rua.is_empty());
    }
    let Ok(record) = parse_record(text) else {
        return;
    };
    assert!(!record.rua.is_empty());
    for rua in &record.rua {
        check(rua);
    }
    for refused in &record.refused {
        assert!(!refused.uri.chars().any(char::is_control), "{refused:?}");
    }
    let limit = data.len() % 7;
    let capped = record.clone().capped(limit);
    assert!(capped.rua.len() <= limit);
    assert_eq!(capped.rua[..], record.rua[..capped.rua.len()]);
    assert_eq!(
        capped.rua.len() + capped.refused.len(),
        record.rua.len() + record.refused.len()
    );
});

/// What a used report URI must be, checked independently of the parser's own code.
fn check(rua: &Rua) {
    match rua {
        Rua::Mailto(address) => {
            assert!(address.bytes().all(|b| b.is_ascii_graphic()), "{address:?}");
            let (local, domain) = address.rsplit_once('@').expect("an @");
            assert!(!local.is_empty() && local.len() <= 64, "{address:?}");
            assert!(
                !local.contains(['"', '<', '>', '(', ')', ',', ';', ':', '\\', '[', ']', '@']),
                "{address:?}"
            );
            host_name(domain);
        }
        Rua::Https(uri) => {
            assert!(
                uri.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://")),
                "{uri:?}"
            );
            assert!(uri.bytes().all(|b| b.is_ascii_graphic() && b != b'\\'), "{uri:?}");
            let authority = uri[8..].split(['/', '?', '#']).next().unwrap_or_default();
            let host = authority.strip_suffix(":443").unwrap_or(authority);
            assert!(!host.contains([':', '@', '[', ']', '%']), "{uri:?}");
            assert!(host.parse::<IpAddr>().is_err(), "{uri:?}");
            host_name(host);
        }
    }
}

/// A fully qualified LDH name whose last label no URL parser reads as a number.
fn host_name(host: &str) {
    let labels: Vec<&str> = host.split('.').collect();
    assert!(labels.len() >= 2, "{host:?}");
    for label in &labels {
        assert!(!label.is_empty() && label.len() <= 63, "{host:?}");
        assert!(!label.starts_with('-') && !label.ends_with('-'), "{host:?}");
        assert!(
            label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "{host:?}"
        );
    }
    let last = labels[labels.len() - 1];
    assert!(!last.bytes().all(|b| b.is_ascii_digit()), "{host:?}");
    let hex = last.len() >= 2
        && last[..2].eq_ignore_ascii_case("0x")
        && last[2..].bytes().all(|b| b.is_ascii_hexdigit());
    assert!(!hex, "{host:?}");
}

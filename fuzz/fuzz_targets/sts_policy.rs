//! Fuzzes the MTA-STS parsers: no input may panic, and whatever parses keeps the RFC 8461
//! bounds (max_age, mx required unless mode none, lowercase patterns). The DER walker that
//! finds a certificate's SubjectPublicKeyInfo gets the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strictmx_policy::sts::{
    MAX_AGE_LIMIT, StsMode, mx_pattern_matches, parse_policy, parse_record, policy_lines,
    select_record,
};

fuzz_target!(|data: &[u8]| {
    if let Some(spki) = strictmx_policy::tlsa::spki(data) {
        assert!(spki.len() <= data.len());
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(policy) = parse_policy(text) {
        assert!(policy.max_age <= MAX_AGE_LIMIT);
        assert!(policy.mode == StsMode::None || !policy.mx.is_empty());
        for pattern in &policy.mx {
            assert_eq!(pattern, &pattern.to_ascii_lowercase());
            assert!(policy.matches(pattern.trim_start_matches("*.")) || pattern.starts_with("*."));
        }
        assert!(policy_lines(text).len() <= text.lines().count());
    }
    if let Ok(record) = parse_record(text) {
        assert!((1..=32).contains(&record.id.len()));
    }
    let txts: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let _ = select_record(&txts);
    if let Some((pattern, host)) = text.split_once(' ') {
        let _ = mx_pattern_matches(pattern, host);
    }
});

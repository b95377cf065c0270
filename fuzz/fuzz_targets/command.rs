//! Fuzzes the command line framing and parser: no input may panic, and whatever parses must
//! fit in one line. Half the inputs are mapped onto an SMTP alphabet so the fuzzer reaches the
//! parameter grammar quickly instead of spending its time on random verbs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strictmx_protocol::{Command, LineScan, MAX_LINE, scan_line};

const TOKENS: &[&[u8]] = &[
    b"MAIL FROM:", b"RCPT TO:", b"EHLO ", b"AUTH ", b"PLAIN", b"LOGIN", b"<", b">", b"@",
    b"a@example.org", b" SIZE=", b" BODY=8BITMIME", b" BODY=BINARYMIME", b" SMTPUTF8",
    b" REQUIRETLS", b" RET=FULL", b" RET=HDRS", b" ENVID=", b" NOTIFY=", b"NEVER", b"SUCCESS",
    b"FAILURE", b"DELAY", b",", b" ORCPT=rfc822;", b"+2B", b"+", b"=", b"\"", b"\\", b" ",
    b"\r\n", b"\n", b"\r", b"0", b"99999999999999999999999", b"\xc3\xa9", b"\xff", b"DATA",
    b"STARTTLS", b"QUIT", b"BDAT 1 LAST", b"[127.0.0.1]", b"[IPv6:::1]",
];

fuzz_target!(|data: &[u8]| {
    let input = match data.split_first() {
        Some((&mode, rest)) if mode & 1 == 1 => rest
            .iter()
            .flat_map(|&b| TOKENS[usize::from(b) % TOKENS.len()].iter().copied())
            .collect(),
        _ => data.to_vec(),
    };
    let mut rest = input.as_slice();
    loop {
        match scan_line(rest) {
            LineScan::Line(length) => {
                assert!(length <= MAX_LINE);
                let _ = Command::parse(&rest[..length]);
                rest = &rest[length..];
            }
            LineScan::TooLong { discard, .. } => {
                assert!(discard > 0);
                rest = &rest[discard..];
            }
            LineScan::Incomplete => {
                let _ = Command::parse(rest);
                break;
            }
        }
    }
});

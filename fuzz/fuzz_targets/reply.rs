//! Fuzzes the reply parser: no input may panic, consumption stays within the input, and a
//! parsed reply renders to wire text that parses back to the same reply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strictmx_protocol::{Reply, ReplyParse};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(ReplyParse::Complete { reply, consumed }) = Reply::parse(rest) {
        assert!(consumed > 0 && consumed <= rest.len());
        rest = &rest[consumed..];
        let wire = reply.to_string();
        if reply.lines.iter().all(|line| !line.contains(['\r', '\n'])) {
            if let Ok(ReplyParse::Complete { reply: again, .. }) = Reply::parse(wire.as_bytes()) {
                assert_eq!(again.code, reply.code);
            }
        }
    }
});

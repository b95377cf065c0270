//! Fuzzes the DATA reader: the message ends only at CRLF `.` CRLF with no bare CR or LF before
//! it (checked against a plain reference scan, with the input split at an arbitrary point),
//! and content dot-stuffed in two pieces (cut at the same point) always reads back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strictmx_protocol::{DataProgress, DataReader, DotStuffer};

/// What a reader that follows RFC 5321 §2.3.8 and §4.1.1.4 to the letter must report for the
/// whole input at once; `Done` carries the absolute offset just past the end-of-data line.
fn reference(input: &[u8]) -> DataProgress {
    let mut line_start = true;
    let mut i = 0;
    while i < input.len() {
        if line_start && input[i..].starts_with(b".\r\n") {
            return DataProgress::Done { consumed: i + 3 };
        }
        match input[i] {
            b'\r' if i + 1 == input.len() => return DataProgress::NeedMore,
            b'\r' if input[i + 1] == b'\n' => {
                i += 2;
                line_start = true;
                continue;
            }
            b'\r' | b'\n' => return DataProgress::BareLineEnding,
            _ => line_start = false,
        }
        i += 1;
    }
    DataProgress::NeedMore
}

/// Half the inputs use a four-letter alphabet, so line ends and dots meet often.
fn input(data: &[u8]) -> Vec<u8> {
    if data.first().is_some_and(|b| b & 1 == 1) {
        data.iter().map(|b| [b'\r', b'\n', b'.', b'a'][usize::from(b & 3)]).collect()
    } else {
        data.to_vec()
    }
}

fuzz_target!(|data: &[u8]| {
    let split = data.get(1).map_or(0, |&b| usize::from(b));
    let input = input(data.get(2..).unwrap_or_default());
    let split = split.min(input.len());
    let mut reader = DataReader::new(4096);
    let progress = match reader.feed(&input[..split]) {
        DataProgress::NeedMore => match reader.feed(&input[split..]) {
            DataProgress::Done { consumed } => DataProgress::Done { consumed: split + consumed },
            other => other,
        },
        other => other,
    };
    assert_eq!(progress, reference(&input), "{input:?} split at {split}");

    // Only content without bare CR or LF has a faithful wire form.
    let clean = input.windows(2).all(|w| (w[0] == b'\r') == (w[1] == b'\n'))
        && !input.starts_with(b"\n")
        && !input.ends_with(b"\r");
    if clean {
        let mut wire = Vec::new();
        let mut stuffer = DotStuffer::default();
        stuffer.push(&input[..split], &mut wire);
        stuffer.push(&input[split..], &mut wire);
        stuffer.finish(&mut wire);
        wire.extend_from_slice(b".\r\n");
        let mut reader = DataReader::new(usize::MAX);
        assert_eq!(reader.feed(&wire), DataProgress::Done { consumed: wire.len() });
        let mut expected = input.clone();
        if !expected.is_empty() && !expected.ends_with(b"\r\n") {
            expected.extend_from_slice(b"\r\n");
        }
        assert_eq!(reader.into_body(), expected);
    }
});

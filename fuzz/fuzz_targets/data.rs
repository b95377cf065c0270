//! Fuzzes the DATA reader against dot-stuffing: stuffed content always reads back unchanged,
//! and arbitrary input split at an arbitrary point never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strictmx_protocol::{DataProgress, DataReader, dot_stuff};

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let mut reader = DataReader::new(4096);
    if let DataProgress::NeedMore = reader.feed(&data[..split]) {
        let _ = reader.feed(&data[split..]);
    }

    // Only content without bare CR or LF has a faithful wire form.
    let clean = data.windows(2).all(|w| (w[0] == b'\r') == (w[1] == b'\n'))
        && !data.starts_with(b"\n")
        && !data.ends_with(b"\r");
    if clean {
        let mut wire = dot_stuff(data);
        wire.extend_from_slice(b".\r\n");
        let mut reader = DataReader::new(usize::MAX);
        assert_eq!(reader.feed(&wire), DataProgress::Done { consumed: wire.len() });
        let mut expected = data.to_vec();
        if !expected.is_empty() && !expected.ends_with(b"\r\n") {
            expected.extend_from_slice(b"\r\n");
        }
        assert_eq!(reader.into_body(), expected);
    }
});

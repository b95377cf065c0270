//! Finds the end of one CRLF-terminated line in a buffer with a length bound; reading the
//! buffer from the network and deciding what to do with an over-long line is left to callers.

use crate::MAX_LINE;

/// Result of looking for one line at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineScan {
    /// A complete line of this many octets, terminator included.
    Line(usize),
    /// No line terminator yet and the line is still within the bound.
    Incomplete,
    /// The line is longer than [`MAX_LINE`]; `discard` octets (up to and including the LF if
    /// one was seen) should be dropped. `complete` says whether the terminator was seen.
    TooLong { discard: usize, complete: bool },
}

/// Look for the first line in `buf`. A line ends at LF; RFC 5321 §2.3.8 wants CRLF, and the
/// command parser rejects what follows a bare LF. RFC 5321 §4.5.3.1.4: at most 512 octets for
/// a command line, but extensions lengthen it, so the bound is [`MAX_LINE`].
pub fn scan_line(buf: &[u8]) -> LineScan {
    let window = &buf[..buf.len().min(MAX_LINE)];
    match window.iter().position(|&b| b == b'\n') {
        Some(pos) => LineScan::Line(pos + 1),
        None if buf.len() < MAX_LINE => LineScan::Incomplete,
        None => match buf.iter().position(|&b| b == b'\n') {
            Some(pos) => LineScan::TooLong {
                discard: pos + 1,
                complete: true,
            },
            None => LineScan::TooLong {
                discard: buf.len(),
                complete: false,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_found_and_bounded_at_one_thousand_octets() {
        let at_limit = [vec![b'a'; MAX_LINE - 2], b"\r\n".to_vec()].concat();
        let over_limit = [vec![b'a'; MAX_LINE - 1], b"\r\n".to_vec()].concat();
        let cases: &[(&[u8], LineScan)] = &[
            (b"", LineScan::Incomplete),
            (b"NOOP", LineScan::Incomplete),
            (b"NOOP\r\nQUIT\r\n", LineScan::Line(6)),
            (b"\n", LineScan::Line(1)),
            (&at_limit, LineScan::Line(MAX_LINE)),
            (
                &over_limit,
                LineScan::TooLong {
                    discard: MAX_LINE + 1,
                    complete: true,
                },
            ),
            (
                &[b'a'; MAX_LINE],
                LineScan::TooLong {
                    discard: MAX_LINE,
                    complete: false,
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(scan_line(input), *expected, "input length {}", input.len());
        }
    }
}

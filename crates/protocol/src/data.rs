//! Message content on the wire: the incremental DATA reader (dot-unstuffing, end-of-data,
//! size and line-length bounds, bare CR/LF detection), dot-stuffing for the client side and the
//! 8-bit test. Reading from sockets and choosing replies is left to inbound and delivery.

use crate::MAX_LINE;

/// What the reader found once the end-of-data line arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataProgress {
    /// The end-of-data line has not arrived yet; every byte given was consumed.
    NeedMore,
    /// `.` CRLF arrived after `consumed` bytes of the last input; bytes after it belong to the
    /// next command (pipelining).
    Done { consumed: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    LineStart,
    Dot,
    DotCr,
    Middle,
    Cr,
}

/// Incremental reader for DATA content (RFC 5321 §4.1.1.4 and §4.5.2).
///
/// The only end of data is CRLF `.` CRLF. A bare CR or LF is noted and the message is refused
/// at the end (RFC 5321 §2.3.8), so a peer cannot smuggle a second message past a host that
/// reads line ends differently. Bytes beyond `max_size` are counted but not kept, so a large
/// message costs no memory while it is read to its end.
#[derive(Debug)]
pub struct DataReader {
    max_size: usize,
    body: Vec<u8>,
    size: usize,
    line_length: usize,
    longest_line: usize,
    bare_line_ending: bool,
    position: Position,
}

impl DataReader {
    pub fn new(max_size: usize) -> Self {
        Self {
            max_size,
            body: Vec::new(),
            size: 0,
            line_length: 0,
            longest_line: 0,
            bare_line_ending: false,
            position: Position::LineStart,
        }
    }

    /// Feed bytes as they arrive.
    pub fn feed(&mut self, input: &[u8]) -> DataProgress {
        for (index, &byte) in input.iter().enumerate() {
            self.line_length += 1;
            if self.step(byte) {
                return DataProgress::Done {
                    consumed: index + 1,
                };
            }
        }
        DataProgress::NeedMore
    }

    /// Returns true when this byte completes the end-of-data line.
    fn step(&mut self, byte: u8) -> bool {
        match (self.position, byte) {
            (Position::LineStart, b'.') => self.position = Position::Dot,
            (Position::Dot, b'\r') => self.position = Position::DotCr,
            (Position::DotCr, b'\n') => return true,
            (Position::DotCr, _) => {
                // "." CR followed by something else: the dot was stuffing, the CR is bare.
                self.bare_line_ending = true;
                self.push(b'\r');
                self.position = Position::Middle;
                return self.step(byte);
            }
            // RFC 5321 §4.5.2: a leading dot followed by more text was added by the sender.
            (Position::Dot, _) | (Position::LineStart | Position::Middle, _) => {
                self.position = Position::Middle;
                match byte {
                    b'\r' => self.position = Position::Cr,
                    b'\n' => {
                        self.bare_line_ending = true;
                        self.push(b'\n');
                        self.end_line();
                    }
                    _ => self.push(byte),
                }
            }
            (Position::Cr, b'\n') => {
                self.push(b'\r');
                self.push(b'\n');
                self.end_line();
            }
            (Position::Cr, _) => {
                self.bare_line_ending = true;
                self.push(b'\r');
                self.position = Position::Middle;
                return self.step(byte);
            }
        }
        false
    }

    fn push(&mut self, byte: u8) {
        self.size += 1;
        if self.size <= self.max_size {
            self.body.push(byte);
        }
    }

    fn end_line(&mut self) {
        self.longest_line = self.longest_line.max(self.line_length);
        self.line_length = 0;
        self.position = Position::LineStart;
    }

    /// Content octets seen so far, after unstuffing, including any beyond the limit.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether the content exceeded the size given to [`DataReader::new`].
    pub fn is_too_big(&self) -> bool {
        self.size > self.max_size
    }

    /// Whether a line exceeded [`MAX_LINE`] octets including CRLF (RFC 5321 §4.5.3.1.6).
    pub fn has_long_line(&self) -> bool {
        self.longest_line.max(self.line_length) > MAX_LINE
    }

    /// Whether a CR or LF appeared other than as CRLF (RFC 5321 §2.3.8).
    pub fn has_bare_line_ending(&self) -> bool {
        self.bare_line_ending
    }

    /// The unstuffed content with CRLF line ends; complete only when not [`Self::is_too_big`].
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }
}

/// Dot-stuff a message for sending after DATA (RFC 5321 §4.5.2): a line starting with `.` gets
/// another `.`, and the result ends with CRLF. The caller sends `.` CRLF after it.
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 64 + 2);
    let mut line_start = true;
    for &byte in body {
        if line_start && byte == b'.' {
            out.push(b'.');
        }
        out.push(byte);
        line_start = byte == b'\n';
    }
    if !body.is_empty() && !out.ends_with(b"\r\n") {
        if out.ends_with(b"\r") {
            out.push(b'\n');
        } else {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// Whether the content has any octet above 127, which needs 8BITMIME (RFC 6152) on relay.
pub fn is_8bit(body: &[u8]) -> bool {
    !body.is_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(chunks: &[&[u8]], max_size: usize) -> (DataReader, Option<usize>) {
        let mut reader = DataReader::new(max_size);
        for chunk in chunks {
            if let DataProgress::Done { consumed } = reader.feed(chunk) {
                return (reader, Some(consumed));
            }
        }
        (reader, None)
    }

    // RFC 5321 §4.5.2: the receiver deletes the first "." of a line that starts with one.
    #[test]
    fn dot_unstuffing_and_the_end_of_data_line_are_recognised() {
        type Case<'a> = (&'a [&'a [u8]], &'a [u8], Option<usize>);
        let cases: &[Case] = &[
            (&[b".\r\n"], b"", Some(3)),
            (&[b"a\r\n.\r\n"], b"a\r\n", Some(6)),
            (&[b"..a\r\n.\r\nQUIT\r\n"], b".a\r\n", Some(8)),
            (&[b"...\r\n.\r\n"], b"..\r\n", Some(8)),
            (&[b"a\r", b"\n.", b"\r", b"\n"], b"a\r\n", Some(1)),
            (&[b"a\r\n"], b"a\r\n", None),
            (&[b"a.\r\n.\r\n"], b"a.\r\n", Some(7)),
        ];
        for (chunks, body, consumed) in cases {
            let (reader, done) = read_all(chunks, 1000);
            assert_eq!(done, *consumed, "{chunks:?}");
            assert!(!reader.has_bare_line_ending(), "{chunks:?}");
            assert_eq!(reader.into_body(), *body, "{chunks:?}");
        }
    }

    // RFC 5321 §2.3.8: CR and LF only occur together as CRLF. "\n.\n" and "\r\n.\n" must not
    // end the message (SMTP smuggling).
    #[test]
    fn bare_line_endings_never_end_data_and_are_flagged() {
        let cases: &[&[u8]] = &[
            b"a\n.\n",
            b"a\r\n.\nb\r\n",
            b"a\r.\r\n",
            b"a\rb\r\n",
            b".\rx\r\n",
        ];
        for input in cases {
            let mut reader = DataReader::new(1000);
            assert_eq!(reader.feed(input), DataProgress::NeedMore, "{input:?}");
            assert!(reader.has_bare_line_ending(), "{input:?}");
            assert!(matches!(
                reader.feed(b"\r\n.\r\n"),
                DataProgress::Done { .. }
            ));
        }
    }

    #[test]
    fn content_above_the_limit_is_counted_but_not_kept() {
        let (reader, done) = read_all(&[b"0123456789\r\n.\r\n"], 5);
        assert_eq!(done, Some(15));
        assert!(reader.is_too_big());
        assert_eq!(reader.size(), 12);
        assert_eq!(reader.into_body().len(), 5);
    }

    // RFC 5321 §4.5.3.1.6: at most 1000 octets per text line, CRLF included.
    #[test]
    fn lines_over_one_thousand_octets_are_flagged() {
        for (length, long) in [(MAX_LINE - 2, false), (MAX_LINE - 1, true)] {
            let mut reader = DataReader::new(10_000);
            reader.feed(&vec![b'x'; length]);
            reader.feed(b"\r\n.\r\n");
            assert_eq!(reader.has_long_line(), long, "content of {length} octets");
        }
    }

    #[test]
    fn dot_stuffing_doubles_leading_dots_and_ends_with_crlf() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"a\r\n", b"a\r\n"),
            (b".a\r\n.\r\nb", b"..a\r\n..\r\nb\r\n"),
            (b"a\r\n.", b"a\r\n..\r\n"),
            (b"a\r", b"a\r\n"),
        ];
        for (body, stuffed) in cases {
            assert_eq!(dot_stuff(body), *stuffed, "{body:?}");
        }
    }

    #[test]
    fn stuffed_content_reads_back_unchanged() {
        let body = b"From: a\r\n\r\n.hidden\r\n..\r\n.\r\nend\r\n";
        let mut wire = dot_stuff(body);
        wire.extend_from_slice(b".\r\n");
        let (reader, done) = read_all(&[&wire], 1000);
        assert_eq!(done, Some(wire.len()));
        assert_eq!(reader.into_body(), body);
    }

    #[test]
    fn only_octets_above_127_count_as_8bit() {
        assert!(!is_8bit(b"plain ascii\r\n"));
        assert!(is_8bit("Grüße\r\n".as_bytes()));
    }
}

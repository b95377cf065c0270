//! Message content on the wire: the incremental DATA reader (dot-unstuffing, end-of-data,
//! size and line-length bounds, bare CR/LF detection), dot-stuffing for the client side and the
//! 8-bit test. Reading from sockets and choosing replies is left to inbound and delivery.

use crate::MAX_LINE;

/// How far the reader got with the input it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataProgress {
    /// The end-of-data line has not arrived yet; every byte given was consumed.
    NeedMore,
    /// `.` CRLF arrived after `consumed` bytes of the last input; bytes after it belong to the
    /// next command (pipelining).
    Done { consumed: usize },
    /// A CR or LF arrived other than as part of CRLF. Reading stopped there: where this
    /// message ends is ambiguous, so nothing after it can be trusted to be content or a
    /// command, and the session must be closed.
    BareLineEnding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    LineStart,
    Dot,
    DotCr,
    Middle,
    Cr,
    /// A bare CR or LF was seen; the reader takes no more input.
    Broken,
}

/// Incremental reader for DATA content (RFC 5321 §4.1.1.4 and §4.5.2).
///
/// The only end of data is CRLF `.` CRLF. RFC 5321 §2.3.8 lets CR and LF occur only together as
/// CRLF; hosts that read a bare LF (or CR) as a line end see a different end of data than hosts
/// that do not, which is how a second message is smuggled past one of them (CVE-2023-51764
/// class). So the first bare CR or LF stops the reader, and the session closes. Bytes beyond
/// `max_size` are counted but not kept, so a large message costs no memory while it is read to
/// its end.
#[derive(Debug)]
pub struct DataReader {
    max_size: usize,
    body: Vec<u8>,
    size: usize,
    line_length: usize,
    longest_line: usize,
    position: Position,
    /// The content is read to its end but no longer kept (see [`DataReader::discard`]).
    discarding: bool,
}

impl DataReader {
    pub fn new(max_size: usize) -> Self {
        Self {
            max_size,
            body: Vec::new(),
            size: 0,
            line_length: 0,
            longest_line: 0,
            position: Position::LineStart,
            discarding: false,
        }
    }

    /// Stop keeping content (the server has no memory left for it): what was kept is freed,
    /// and the rest is read to the end of data and counted, so the session can still answer.
    pub fn discard(&mut self) {
        self.discarding = true;
        self.body = Vec::new();
    }

    /// Whether [`DataReader::discard`] was called: the body is incomplete.
    pub fn is_discarded(&self) -> bool {
        self.discarding
    }

    /// Feed bytes as they arrive.
    pub fn feed(&mut self, input: &[u8]) -> DataProgress {
        if self.position == Position::Broken {
            return DataProgress::BareLineEnding;
        }
        if !self.discarding {
            // Room for this piece at once (the body grows by at most its length, and never
            // past `max_size`), rather than doubling from empty a run at a time.
            let room = self.max_size.saturating_sub(self.size);
            self.body.reserve(input.len().min(room));
        }
        let mut index = 0;
        while index < input.len() {
            if self.position == Position::Middle {
                // Inside a line everything up to the next CR or LF is plain content: taken
                // in one piece rather than octet by octet.
                let rest = &input[index..];
                let run = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
                if run > 0 {
                    self.line_length += run;
                    self.push_run(&rest[..run]);
                    index += run;
                    continue;
                }
            }
            let byte = input[index];
            index += 1;
            self.line_length += 1;
            if self.step(byte) {
                return DataProgress::Done { consumed: index };
            }
            if self.position == Position::Broken {
                return DataProgress::BareLineEnding;
            }
        }
        DataProgress::NeedMore
    }

    /// Returns true when this byte completes the end-of-data line.
    fn step(&mut self, byte: u8) -> bool {
        match (self.position, byte) {
            (Position::Broken, _) => {}
            (Position::LineStart, b'.') => self.position = Position::Dot,
            (Position::Dot, b'\r') => self.position = Position::DotCr,
            (Position::DotCr, b'\n') => return true,
            (Position::Cr, b'\n') => {
                self.push(b'\r');
                self.push(b'\n');
                self.end_line();
            }
            // A CR not followed by LF, or an LF not preceded by CR (RFC 5321 §2.3.8).
            (Position::DotCr | Position::Cr, _) | (_, b'\n') => self.position = Position::Broken,
            // RFC 5321 §4.5.2: a leading dot followed by more text was added by the sender.
            (Position::LineStart | Position::Middle, b'\r') => self.position = Position::Cr,
            (Position::Dot | Position::LineStart | Position::Middle, _) => {
                self.position = Position::Middle;
                self.push(byte);
            }
        }
        false
    }

    fn push(&mut self, byte: u8) {
        self.push_run(&[byte]);
    }

    /// Counts `run`, and keeps as much of it as fits in `max_size`.
    fn push_run(&mut self, run: &[u8]) {
        if !self.discarding {
            let room = self.max_size.saturating_sub(self.size).min(run.len());
            self.body.extend_from_slice(&run[..room]);
        }
        self.size += run.len();
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

    /// The unstuffed content with CRLF line ends; complete only when neither
    /// [`Self::is_too_big`] nor [`Self::is_discarded`].
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }
}

/// Dot-stuffs a message for sending after DATA (RFC 5321 §4.5.2), a piece at a time, so that a
/// large message goes through a small buffer: a line starting with `.` gets another `.`, and
/// [`DotStuffer::finish`] ends the content with CRLF; the caller then sends `.` CRLF. The
/// pieces may be cut anywhere, also between CR and LF or before a leading dot.
#[derive(Debug, Clone)]
pub struct DotStuffer {
    line_start: bool,
    /// The last two octets pushed (fewer at the start).
    tail: [u8; 2],
    pushed: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer {
            line_start: true,
            tail: [0; 2],
            pushed: false,
        }
    }
}

impl DotStuffer {
    /// Appends the stuffed form of `piece` to `out`. Lines that start with a dot are rare, so
    /// the piece is copied in runs between them, found by searching for LF followed by `.`.
    pub fn push(&mut self, piece: &[u8], out: &mut Vec<u8>) {
        match piece {
            [] => return,
            [only] => self.tail = [self.tail[1], *only],
            [.., before, last] => self.tail = [*before, *last],
        }
        self.pushed = true;
        out.reserve(piece.len());
        if self.line_start && piece[0] == b'.' {
            out.push(b'.');
        }
        let mut rest = piece;
        while let Some(lf) = memchr::memmem::find(rest, b"\n.") {
            out.extend_from_slice(&rest[..=lf]);
            out.push(b'.');
            rest = &rest[lf + 1..];
        }
        out.extend_from_slice(rest);
        self.line_start = piece.ends_with(b"\n");
    }

    /// Ends the content with CRLF if it does not already (a lone CR gets its LF).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.pushed || self.tail == *b"\r\n" {
            return;
        }
        if self.tail[1] == b'\r' {
            out.push(b'\n');
        } else {
            out.extend_from_slice(b"\r\n");
        }
        self.tail = *b"\r\n";
    }
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
            assert_eq!(reader.into_body(), *body, "{chunks:?}");
        }
    }

    // RFC 5321 §2.3.8: CR and LF only occur together as CRLF. Issue 14: every smuggling variant
    // stops the reader at the first bare CR or LF, and nothing after it ends the message.
    #[test]
    fn a_bare_cr_or_lf_stops_the_reader_before_any_end_of_data() {
        let cases: &[&[u8]] = &[
            b"hello\n.\n",
            b"hello\n.\r\nMAIL FROM:<ceo@corp.example>\r\n",
            b"hello\r.\r",
            b"hello\r\n.\r\r\n",
            b"hello\r\n.\rMAIL FROM:<x@y>\r\n",
            b"hello\r\n.\n",
            b"a\rb\r\n.\r\n",
            b".\rx\r\n.\r\n",
            b"\n.\r\n",
            b"a\r\r\n.\r\n",
        ];
        for input in cases {
            let mut reader = DataReader::new(1000);
            assert_eq!(
                reader.feed(input),
                DataProgress::BareLineEnding,
                "{input:?}"
            );
            assert_eq!(
                reader.feed(b"\r\n.\r\n"),
                DataProgress::BareLineEnding,
                "a stopped reader stays stopped: {input:?}"
            );
        }
    }

    #[test]
    fn a_cr_at_the_end_of_one_read_may_be_followed_by_lf_in_the_next() {
        let (reader, done) = read_all(&[b"a\r", b"\n.\r", b"\n"], 1000);
        assert_eq!(done, Some(1));
        assert_eq!(reader.into_body(), b"a\r\n");
        let mut reader = DataReader::new(1000);
        assert_eq!(reader.feed(b"a\r"), DataProgress::NeedMore);
        assert_eq!(reader.feed(b"b"), DataProgress::BareLineEnding);
    }

    proptest::proptest! {
        // RFC 5321 §4.1.1.4 and §2.3.8: whatever the bytes and however they are split, the
        // reader ends the message only at CRLF "." CRLF with nothing but CRLF line ends before
        // it, and reports a bare CR or LF only when there is one.
        #[test]
        fn data_ends_only_at_crlf_dot_crlf(
            input in proptest::collection::vec(
                proptest::sample::select(vec![b'\r', b'\n', b'.', b'a']), 0..40),
            split in 0usize..40,
        ) {
            let split = split.min(input.len());
            let mut reader = DataReader::new(100);
            let progress = match reader.feed(&input[..split]) {
                DataProgress::NeedMore => match reader.feed(&input[split..]) {
                    DataProgress::Done { consumed } => DataProgress::Done { consumed: split + consumed },
                    other => other,
                },
                other => other,
            };
            let crlf_only = |bytes: &[u8]| {
                bytes.windows(2).all(|w| (w[0] == b'\r') == (w[1] == b'\n'))
                    && !bytes.starts_with(b"\n")
            };
            match progress {
                DataProgress::Done { consumed } => {
                    let message = &input[..consumed];
                    proptest::prop_assert!(
                        message == b".\r\n" || message.ends_with(b"\r\n.\r\n"), "{:?}", message);
                    proptest::prop_assert!(crlf_only(message), "{:?}", message);
                }
                DataProgress::BareLineEnding => {
                    proptest::prop_assert!(!crlf_only(&input), "{:?}", input);
                }
                DataProgress::NeedMore => {
                    let body = input.strip_suffix(b"\r").unwrap_or(&input);
                    proptest::prop_assert!(crlf_only(body), "{:?}", input);
                }
            }
        }
    }

    #[test]
    fn discarded_content_is_read_to_its_end_and_counted_but_not_kept() {
        let mut reader = DataReader::new(1000);
        assert_eq!(reader.feed(b"kept\r\n"), DataProgress::NeedMore);
        reader.discard();
        assert_eq!(
            reader.feed(b"more\r\n.\r\n"),
            DataProgress::Done { consumed: 9 }
        );
        assert!(reader.is_discarded());
        assert!(!reader.is_too_big());
        assert_eq!(reader.size(), 12);
        assert!(reader.into_body().is_empty());
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

    proptest::proptest! {
        // RFC 5321 §4.5.2: the receiver drops the first dot of a line that starts with one.
        #[test]
        fn content_fed_in_pieces_is_unstuffed_counted_and_cut_at_the_size_limit(
            lines in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::sample::select(vec![b'.', b'a', b'x']), 0..12),
                0..8),
            cuts in proptest::collection::vec(0usize..120, 0..4),
            max_size in 0usize..80,
        ) {
            // A line that is a lone dot would end the data: the sender stuffs it.
            let mut wire = Vec::new();
            let mut expected = Vec::new();
            for line in &lines {
                if line.first() == Some(&b'.') {
                    wire.push(b'.');
                }
                wire.extend_from_slice(line);
                wire.extend_from_slice(b"\r\n");
                expected.extend_from_slice(line);
                expected.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b".\r\n");
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(wire.len())).collect();
            cuts.sort_unstable();
            let mut reader = DataReader::new(max_size);
            let mut from = 0;
            let mut done = None;
            for cut in cuts.into_iter().chain([wire.len()]) {
                if let DataProgress::Done { consumed } = reader.feed(&wire[from..cut]) {
                    done = Some(from + consumed);
                    break;
                }
                from = cut;
            }
            proptest::prop_assert_eq!(done, Some(wire.len()));
            proptest::prop_assert_eq!(reader.size(), expected.len());
            proptest::prop_assert_eq!(reader.is_too_big(), expected.len() > max_size);
            expected.truncate(max_size);
            proptest::prop_assert_eq!(reader.into_body(), expected);
        }

        #[test]
        fn stuffing_in_pieces_equals_stuffing_at_once(
            body in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(b'.'),
                    proptest::strategy::Just(b'\r'),
                    proptest::strategy::Just(b'\n'),
                    proptest::strategy::Just(b'x'),
                ],
                0..64,
            ),
            cuts in proptest::collection::vec(0usize..64, 0..6),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(body.len())).collect();
            cuts.sort_unstable();
            let mut stuffer = DotStuffer::default();
            let mut out = Vec::new();
            let mut from = 0;
            for cut in cuts.into_iter().chain([body.len()]) {
                stuffer.push(&body[from..cut], &mut out);
                from = cut;
            }
            stuffer.finish(&mut out);
            proptest::prop_assert_eq!(out, reference_stuff(&body));
        }
    }

    fn dot_stuff(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut stuffer = DotStuffer::default();
        stuffer.push(body, &mut out);
        stuffer.finish(&mut out);
        out
    }

    /// RFC 5321 §4.5.2 octet by octet, the way the stuffer must behave.
    fn reference_stuff(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
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

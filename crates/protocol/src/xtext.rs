//! xtext encoding and decoding for DSN parameters (RFC 3461 §4); which parameters use it is
//! left to callers.

use crate::ProtocolError;

/// Encode bytes as xtext: `!`..`~` except `+` and `=` pass through, everything else is `+XX`
/// with uppercase hex (RFC 3461 §4).
pub fn xtext_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if (b'!'..=b'~').contains(&byte) && byte != b'+' && byte != b'=' {
            out.push(char::from(byte));
        } else {
            out.push('+');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Decode xtext. Rejects characters outside `!`..`~`, a bare `=`, and `+` not followed by two
/// uppercase hex digits (RFC 3461 §4: "hexchar ::= ASCII "+" immediately followed by two upper
/// case hexadecimal digits"). The result must be UTF-8 (RFC 6533 allows it in ORCPT).
pub fn xtext_decode(value: &str) -> Result<String, ProtocolError> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'+' => {
                let high = bytes.get(index + 1).and_then(|&b| hex_value(b));
                let low = bytes.get(index + 2).and_then(|&b| hex_value(b));
                match (high, low) {
                    (Some(high), Some(low)) => out.push(high << 4 | low),
                    _ => return Err(ProtocolError::MalformedXtext { offset: index }),
                }
                index += 3;
            }
            b'=' => return Err(ProtocolError::MalformedXtext { offset: index }),
            b'!'..=b'~' => {
                out.push(byte);
                index += 1;
            }
            _ => return Err(ProtocolError::MalformedXtext { offset: index }),
        }
    }
    String::from_utf8(out).map_err(|err| ProtocolError::MalformedXtext {
        offset: err.utf8_error().valid_up_to(),
    })
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 3461 §4: "+" and "=" and characters outside 33..126 must be encoded.
    #[test]
    fn xtext_encodes_plus_equals_space_and_controls() {
        let cases = [
            ("bob@example.org", "bob@example.org"),
            ("a+b", "a+2Bb"),
            ("a=b", "a+3Db"),
            ("a b", "a+20b"),
            ("tab\t", "tab+09"),
            ("", ""),
            ("é", "+C3+A9"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(xtext_encode(plain), encoded, "encoding {plain:?}");
            assert_eq!(
                xtext_decode(encoded).as_deref(),
                Ok(plain),
                "decoding {encoded:?}"
            );
        }
    }

    #[test]
    fn malformed_xtext_is_rejected_with_the_offset() {
        let cases = [
            ("a+2", 1),
            ("a+2b", 1),
            ("+ZZ", 0),
            ("a=b", 1),
            ("a b", 1),
            ("+FF", 0),
        ];
        for (input, offset) in cases {
            assert_eq!(
                xtext_decode(input),
                Err(ProtocolError::MalformedXtext { offset }),
                "input {input:?}"
            );
        }
    }
}

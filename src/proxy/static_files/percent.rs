//! Percent-encoding a decoded path back into URI form, for `Location`
//! headers and internal redirects.
//!
//! The request path vigil works with is decoded; putting it back into a
//! URI without encoding would let `%`, `?`, `#`, spaces or non-ASCII bytes
//! change its meaning (or make the header invalid), and a later decode
//! would decode twice: a file named `%2e%2e` would become `..`.

/// Encodes everything but `pchar` and `/` (RFC 3986 §3.3): unreserved,
/// sub-delims, `:` and `@` stay as they are; `%` itself is encoded.
pub(crate) fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for &b in path.as_bytes() {
        if is_path_char(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn is_path_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::proxy::uri_path::NormalizedPath;

    #[test]
    fn encodes_what_would_change_meaning() {
        assert_eq!(encode_path("/docs/"), "/docs/");
        assert_eq!(encode_path("/a b/c?d#e"), "/a%20b/c%3Fd%23e");
        assert_eq!(encode_path("/%2e%2e/"), "/%252e%252e/");
        assert_eq!(encode_path("/café"), "/caf%C3%A9");
        assert_eq!(encode_path("/a\\b\"<>"), "/a%5Cb%22%3C%3E");
        assert_eq!(encode_path("/x;y=z,@:!$&'()*+~"), "/x;y=z,@:!$&'()*+~");
    }

    proptest! {
        #[test]
        fn decoding_gives_the_path_back(path in "/[ -~\u{80}-\u{10ffff}]{0,30}") {
            // Only normalized paths are ever encoded.
            if let Ok(p) = NormalizedPath::parse(&path) {
                let encoded = encode_path(p.as_str());
                prop_assert!(http::HeaderValue::from_str(&encoded).is_ok());
                prop_assert!(encoded.parse::<http::Uri>().is_ok(), "{}", encoded);
                let back = NormalizedPath::parse(&encoded).unwrap();
                prop_assert_eq!(back.as_str(), p.as_str());
            }
        }
    }
}

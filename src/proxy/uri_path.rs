//! Request path normalization, as nginx does before location matching.
//!
//! nginx matches locations against the *normalized* URI: `%XX` decoded,
//! `.` and `..` segments resolved, `//` merged (ngx_http_parse_complex_uri).
//! Static file serving uses the same normalized path, so a traversal attempt
//! such as `/static/%2e%2e/%2e%2e/etc/passwd` either resolves inside the
//! site (`/etc/passwd` under the root) or climbs above `/` and is refused
//! here with 400 before any file system call happens.

use std::fmt;

/// A path that has been decoded and normalized: it starts with `/`, has no
/// empty, `.` or `..` segments, and holds no NUL byte.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NormalizedPath(String);

/// Why a path was refused (always answered with 400 Bad Request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with `/` (and is not `*`).
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    BadPercentEncoding,
    /// A decoded NUL byte.
    Nul,
    /// `..` would climb above the root.
    AboveRoot,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "path does not start with /",
            PathError::BadPercentEncoding => "bad percent-encoding in path",
            PathError::Nul => "NUL byte in path",
            PathError::AboveRoot => "path climbs above the root",
            PathError::NotUtf8 => "path is not UTF-8 once decoded",
        })
    }
}

impl std::error::Error for PathError {}

impl NormalizedPath {
    /// Decodes and normalizes a raw request path (no query string).
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        if !raw.starts_with('/') {
            return Err(PathError::NotAbsolute);
        }
        // Fast path: nothing to decode or resolve (the common case).
        // A raw NUL takes the slow path too, which refuses it (found by
        // fuzzing: the fast path let it through).
        if !raw.contains(['%', '.', '\0']) && !raw.contains("//") {
            return Ok(Self(raw.to_owned()));
        }
        let decoded = percent_decode(raw.as_bytes())?;
        let decoded = String::from_utf8(decoded).map_err(|_| PathError::NotUtf8)?;
        let mut segments: Vec<&str> = Vec::new();
        for segment in decoded.split('/') {
            match segment {
                "" | "." => {}
                ".." => {
                    if segments.pop().is_none() {
                        return Err(PathError::AboveRoot);
                    }
                }
                s => segments.push(s),
            }
        }
        // A trailing "/", "/." or "/.." names a directory: keep the slash.
        let trailing_slash = decoded.ends_with('/')
            || decoded.ends_with("/.")
            || decoded.ends_with("/..")
            || segments.is_empty();
        let mut out = String::with_capacity(decoded.len());
        for s in &segments {
            out.push('/');
            out.push_str(s);
        }
        if trailing_slash {
            out.push('/');
        }
        Ok(Self(out))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when the path names a directory (ends with `/`).
    pub fn is_dir(&self) -> bool {
        self.0.ends_with('/')
    }
}

impl fmt::Display for NormalizedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn percent_decode(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            let hi = raw.get(i + 1).and_then(|c| hex(*c));
            let lo = raw.get(i + 2).and_then(|c| hex(*c));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::BadPercentEncoding);
            };
            let byte = hi << 4 | lo;
            if byte == 0 {
                return Err(PathError::Nul);
            }
            out.push(byte);
            i += 3;
        } else {
            if b == 0 {
                return Err(PathError::Nul);
            }
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_nul_is_refused_like_an_encoded_one() {
        // fuzz/seeds/uri_path/raw-nul (libFuzzer's first crash).
        assert_eq!(NormalizedPath::parse("/sta\0\0\0\0e/"), Err(PathError::Nul));
        assert_eq!(NormalizedPath::parse("/a\0"), Err(PathError::Nul));
        assert_eq!(NormalizedPath::parse("/a%00"), Err(PathError::Nul));
    }
    use proptest::prelude::*;

    fn norm(raw: &str) -> Result<String, PathError> {
        NormalizedPath::parse(raw).map(|p| p.0)
    }

    #[test]
    fn normalizes_like_nginx() {
        for (raw, want) in [
            ("/", "/"),
            ("/index.html", "/index.html"),
            ("//a///b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/b/../c", "/a/c"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/", "/a/"),
            ("/%61%62c", "/abc"),
            ("/a%2Fb", "/a/b"),
            ("/a/%2e%2e/b", "/b"),
            ("/a/%2E./b", "/b"),
            ("/a/b/..%2f..%2findex.html", "/index.html"),
            ("/caf%C3%A9", "/café"),
            ("/..a/b..", "/..a/b.."),
            ("/a/..", "/"),
        ] {
            assert_eq!(norm(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn refuses_what_nginx_refuses() {
        for (raw, err) in [
            ("a", PathError::NotAbsolute),
            ("/..", PathError::AboveRoot),
            ("/../etc/passwd", PathError::AboveRoot),
            ("/a/../../etc/passwd", PathError::AboveRoot),
            ("/%2e%2e/etc/passwd", PathError::AboveRoot),
            ("/static/..%2f..%2fetc/passwd", PathError::AboveRoot),
            ("/%2e%2e%2fetc%2fpasswd", PathError::AboveRoot),
            ("/a%00b", PathError::Nul),
            ("/a%zz", PathError::BadPercentEncoding),
            ("/a%2", PathError::BadPercentEncoding),
            ("/%ff", PathError::NotUtf8),
        ] {
            assert_eq!(norm(raw), Err(err), "{raw}");
        }
    }

    proptest! {
        #[test]
        fn output_is_always_normal(raw in "/[a-z./%0-9A-F]{0,40}") {
            if let Ok(p) = NormalizedPath::parse(&raw) {
                let s = p.as_str();
                prop_assert!(s.starts_with('/'));
                prop_assert!(!s.contains("//"));
                prop_assert!(!s.split('/').any(|seg| seg == "." || seg == ".."));
                prop_assert!(!s.contains('\0'));
                // Normalizing is idempotent once '%' is gone.
                if !s.contains('%') {
                    let again = NormalizedPath::parse(s).unwrap();
                    prop_assert_eq!(again.as_str(), s);
                }
            }
        }
    }
}

//! Request path normalization, as nginx does before location matching.
//!
//! nginx matches locations against the *normalized* URI: `%XX` decoded,
//! `.` and `..` segments resolved, `//` merged (ngx_http_parse_complex_uri).
//! Static file serving uses the same normalized path, so a traversal attempt
//! such as `/static/%2e%2e/%2e%2e/etc/passwd` either resolves inside the
//! site (`/etc/passwd` under the root) or climbs above `/` and is refused
//! here with 400 before any file system call happens.

use std::fmt;

use http::Uri;
use http::uri::PathAndQuery;

/// A path that has been decoded and normalized: it starts with `/`, has no
/// empty, `.` or `..` segments, and holds no NUL byte.
#[derive(Debug, Clone)]
pub struct NormalizedPath(Repr);

#[derive(Debug, Clone)]
enum Repr {
    Owned(String),
    /// A request target whose path was normal as it came (the common
    /// case): its path, shared with the request rather than copied.
    Target(PathAndQuery),
}

impl PartialEq for NormalizedPath {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for NormalizedPath {}

impl std::hash::Hash for NormalizedPath {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

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

/// Nothing to decode or resolve: no `%`, no empty, `.` or `..` segment
/// (a dot inside a name, `/1k.txt`, is plain). A raw NUL is not plain: the
/// slow path refuses it (found by fuzzing: the fast path let it through).
///
/// One pass over the bytes: every request's path goes through here, and
/// the four scans it took before cost as much as the location search.
fn is_plain(raw: &str) -> bool {
    let Some((b'/', rest)) = raw.as_bytes().split_first() else {
        return false;
    };
    // The current segment so far: `Some(n)` while it is n dots (0: empty).
    let mut dots: Option<u8> = Some(0);
    for &b in rest {
        match b {
            // An empty, `.` or `..` segment ends here.
            b'/' if matches!(dots, Some(0..=2)) => return false,
            b'/' => dots = Some(0),
            b'%' | b'\0' => return false,
            b'.' => dots = dots.map(|n| n.saturating_add(1)),
            _ => dots = None,
        }
    }
    // The last segment may be empty (a trailing slash), not `.` or `..`.
    !matches!(dots, Some(1 | 2))
}

impl NormalizedPath {
    /// The normalized path of a request target: as [`parse`](Self::parse)
    /// on its path, without copying a path that is already normal.
    pub fn of_target(uri: &Uri) -> Result<Self, PathError> {
        match uri.path_and_query() {
            Some(pq) if is_plain(pq.path()) => Ok(Self(Repr::Target(pq.clone()))),
            _ => Self::parse(uri.path()),
        }
    }

    /// Decodes and normalizes a raw request path (no query string).
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        if !raw.starts_with('/') {
            return Err(PathError::NotAbsolute);
        }
        if is_plain(raw) {
            return Ok(Self(Repr::Owned(raw.to_owned())));
        }
        resolve(raw).map(|path| Self(Repr::Owned(path)))
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Owned(s) => s,
            Repr::Target(pq) => pq.path(),
        }
    }

    /// True when the path names a directory (ends with `/`).
    pub fn is_dir(&self) -> bool {
        self.as_str().ends_with('/')
    }
}

/// The slow path of [`NormalizedPath::parse`], for a path that is not
/// plain: percent-decode, drop empty and `.` segments, resolve `..`.
fn resolve(raw: &str) -> Result<String, PathError> {
    let decoded = percent_decode(raw.as_bytes())?;
    let decoded = String::from_utf8(decoded).map_err(|_| PathError::NotUtf8)?;
    resolve_dots(&decoded)
}

/// Drops empty and `.` segments and resolves `..` in a decoded absolute
/// path, keeping a trailing slash (also for a trailing `.` or `..`).
/// Also what `try_files` candidates go through, which are decoded already.
pub(crate) fn resolve_dots(decoded: &str) -> Result<String, PathError> {
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
    Ok(out)
}

impl fmt::Display for NormalizedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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

    /// Only a path with nothing to resolve skips normalizing (and is kept
    /// shared with the request); dots inside names are plain.
    #[test]
    fn only_paths_with_nothing_to_resolve_are_plain() {
        for plain in [
            "/",
            "/1k.txt",
            "/a/b.c/",
            "/.well-known/x",
            "/a..b",
            "/...",
            "/a/",
        ] {
            assert!(is_plain(plain), "{plain}");
        }
        for not in [
            "", "a", "*", "/.", "/..", "/a/.", "/a/..", "/./a", "/../a", "/a//b", "/%2e", "/a\0",
        ] {
            assert!(!is_plain(not), "{not:?}");
        }
        let uri: Uri = "/static/app.min.js?v=2".parse().unwrap();
        let path = NormalizedPath::of_target(&uri).unwrap();
        assert!(matches!(path.0, Repr::Target(_)));
        assert_eq!(path.as_str(), "/static/app.min.js");
        let uri: Uri = "/static/../app.js".parse().unwrap();
        let path = NormalizedPath::of_target(&uri).unwrap();
        assert!(matches!(path.0, Repr::Owned(_)));
        assert_eq!(path.as_str(), "/app.js");
    }
    use proptest::prelude::*;

    fn norm(raw: &str) -> Result<String, PathError> {
        NormalizedPath::parse(raw).map(|p| p.as_str().to_owned())
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

    /// What `is_plain` decides, as it was first written (four scans).
    fn is_plain_by_scans(raw: &str) -> bool {
        raw.starts_with('/')
            && !raw.contains(['%', '\0'])
            && !raw.contains("//")
            && !raw
                .split('/')
                .any(|segment| segment == "." || segment == "..")
    }

    /// Every string of up to 7 bytes over the bytes that matter.
    #[test]
    fn one_pass_decides_as_the_scans_did() {
        const BYTES: [char; 5] = ['/', 'a', '.', '%', '\0'];
        let mut layer = vec![String::new()];
        for _ in 0..7 {
            let mut next = Vec::with_capacity(layer.len() * BYTES.len());
            for s in &layer {
                assert_eq!(is_plain(s), is_plain_by_scans(s), "{s:?}");
                next.extend(BYTES.iter().map(|&c| format!("{s}{c}")));
            }
            layer = next;
        }
        for s in &layer {
            assert_eq!(is_plain(s), is_plain_by_scans(s), "{s:?}");
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

        /// The fast path keeps a plain path as it is; the slow path, given
        /// the same path, must come to the same answer (the fast path is
        /// only a shortcut). Paths built from names with dots in them
        /// (`a.b`, `...`, `.x`), with or without a trailing slash.
        #[test]
        fn the_slow_path_keeps_a_plain_path_unchanged(
            names in proptest::collection::vec("[a-z0-9.~_-]{1,6}", 0..6),
            dir in proptest::bool::ANY,
        ) {
            let mut raw = format!("/{}", names.join("/"));
            if dir && !names.is_empty() {
                raw.push('/');
            }
            prop_assume!(is_plain(&raw));
            prop_assert_eq!(resolve(&raw), Ok(raw.clone()));
            let parsed = NormalizedPath::parse(&raw).unwrap();
            prop_assert_eq!(parsed.as_str(), raw.as_str());
        }

        /// A request target normalizes as its path does, whether or not
        /// the path is kept shared.
        #[test]
        fn a_target_normalizes_as_its_path(raw in "/[a-z./%0-9A-F]{0,40}(\\?[a-z=&/.]{0,8})?") {
            if let Ok(uri) = raw.parse::<Uri>() {
                let target = NormalizedPath::of_target(&uri);
                prop_assert_eq!(target.clone().map(|p| p.as_str().to_owned()), norm(uri.path()));
                if let Ok(t) = target {
                    prop_assert_eq!(t, NormalizedPath::parse(uri.path()).unwrap());
                }
            }
        }
    }
}

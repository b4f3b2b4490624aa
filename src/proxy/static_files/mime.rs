//! `Content-Type` from a URI's extension, as nginx's `mime.types` gives it.
//!
//! Users porting an nginx site expect the exact types nginx sent (caches,
//! CDNs and `X-Content-Type-Options: nosniff` checks key on them), so the
//! table nginx ships (`/etc/nginx/mime.types`, nginx 1.22) is consulted
//! first. Extensions nginx does not list fall back to `mime_guess` rather
//! than to `application/octet-stream`: nginx would answer with its
//! `default_type`, but a browser refuses e.g. a `.mjs` module served as
//! `octet-stream`, so a known type is the more useful answer there. Like
//! nginx without a `charset` directive, no `charset` parameter is added.

use std::sync::LazyLock;

use http::HeaderValue;

use crate::proxy::fast_map::FastMap;

/// The type nginx's `default_type` is set to in the stock `nginx.conf`.
const DEFAULT: &str = "application/octet-stream";

/// The `Content-Type` for the file a URI path names.
pub(crate) fn content_type(uri_path: &str) -> HeaderValue {
    let Some(ext) = extension(uri_path) else {
        return HeaderValue::from_static(DEFAULT);
    };
    // nginx lowercases the extension before the lookup
    // (ngx_http_set_content_type), here on the stack; extensions longer
    // than any known one cannot match.
    let mut buf = [0u8; 16];
    let Some(lower) = buf.get_mut(..ext.len()) else {
        return HeaderValue::from_static(DEFAULT);
    };
    lower.copy_from_slice(ext.as_bytes());
    lower.make_ascii_lowercase();
    // ASCII lowercasing keeps UTF-8 valid.
    let lower = std::str::from_utf8(lower).unwrap_or_default();
    if let Some(value) = nginx_type(lower) {
        return value;
    }
    HeaderValue::from_static(mime_guess::from_ext(lower).first_raw().unwrap_or(DEFAULT))
}

/// The extension of the last path segment, as nginx computes `exten`:
/// what follows the last `.` of the last segment (`/a.b/c` has none).
fn extension(uri_path: &str) -> Option<&str> {
    // One backward scan to the last `.` or `/`, whichever comes first.
    let bytes = uri_path.as_bytes();
    let at = bytes.iter().rposition(|&b| b == b'.' || b == b'/')?;
    (bytes[at] == b'.' && at + 1 < bytes.len()).then(|| &uri_path[at + 1..])
}

/// nginx 1.22 `mime.types`, verbatim, one extension per entry.
const NGINX_TYPES: &[(&str, &str)] = &[
    ("html", "text/html"),
    ("htm", "text/html"),
    ("shtml", "text/html"),
    ("css", "text/css"),
    ("xml", "text/xml"),
    ("gif", "image/gif"),
    ("jpeg", "image/jpeg"),
    ("jpg", "image/jpeg"),
    ("js", "application/javascript"),
    ("atom", "application/atom+xml"),
    ("rss", "application/rss+xml"),
    ("mml", "text/mathml"),
    ("txt", "text/plain"),
    ("jad", "text/vnd.sun.j2me.app-descriptor"),
    ("wml", "text/vnd.wap.wml"),
    ("htc", "text/x-component"),
    ("avif", "image/avif"),
    ("png", "image/png"),
    ("svg", "image/svg+xml"),
    ("svgz", "image/svg+xml"),
    ("tif", "image/tiff"),
    ("tiff", "image/tiff"),
    ("wbmp", "image/vnd.wap.wbmp"),
    ("webp", "image/webp"),
    ("ico", "image/x-icon"),
    ("jng", "image/x-jng"),
    ("bmp", "image/x-ms-bmp"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("jar", "application/java-archive"),
    ("war", "application/java-archive"),
    ("ear", "application/java-archive"),
    ("json", "application/json"),
    ("hqx", "application/mac-binhex40"),
    ("doc", "application/msword"),
    ("pdf", "application/pdf"),
    ("ps", "application/postscript"),
    ("eps", "application/postscript"),
    ("ai", "application/postscript"),
    ("rtf", "application/rtf"),
    ("m3u8", "application/vnd.apple.mpegurl"),
    ("kml", "application/vnd.google-earth.kml+xml"),
    ("kmz", "application/vnd.google-earth.kmz"),
    ("xls", "application/vnd.ms-excel"),
    ("eot", "application/vnd.ms-fontobject"),
    ("ppt", "application/vnd.ms-powerpoint"),
    ("odg", "application/vnd.oasis.opendocument.graphics"),
    ("odp", "application/vnd.oasis.opendocument.presentation"),
    ("ods", "application/vnd.oasis.opendocument.spreadsheet"),
    ("odt", "application/vnd.oasis.opendocument.text"),
    (
        "pptx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ),
    (
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    (
        "docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    ("wmlc", "application/vnd.wap.wmlc"),
    ("wasm", "application/wasm"),
    ("7z", "application/x-7z-compressed"),
    ("cco", "application/x-cocoa"),
    ("jardiff", "application/x-java-archive-diff"),
    ("jnlp", "application/x-java-jnlp-file"),
    ("run", "application/x-makeself"),
    ("pl", "application/x-perl"),
    ("pm", "application/x-perl"),
    ("prc", "application/x-pilot"),
    ("pdb", "application/x-pilot"),
    ("rar", "application/x-rar-compressed"),
    ("rpm", "application/x-redhat-package-manager"),
    ("sea", "application/x-sea"),
    ("swf", "application/x-shockwave-flash"),
    ("sit", "application/x-stuffit"),
    ("tcl", "application/x-tcl"),
    ("tk", "application/x-tcl"),
    ("der", "application/x-x509-ca-cert"),
    ("pem", "application/x-x509-ca-cert"),
    ("crt", "application/x-x509-ca-cert"),
    ("xpi", "application/x-xpinstall"),
    ("xhtml", "application/xhtml+xml"),
    ("xspf", "application/xspf+xml"),
    ("zip", "application/zip"),
    ("bin", "application/octet-stream"),
    ("exe", "application/octet-stream"),
    ("dll", "application/octet-stream"),
    ("deb", "application/octet-stream"),
    ("dmg", "application/octet-stream"),
    ("iso", "application/octet-stream"),
    ("img", "application/octet-stream"),
    ("msi", "application/octet-stream"),
    ("msp", "application/octet-stream"),
    ("msm", "application/octet-stream"),
    ("mid", "audio/midi"),
    ("midi", "audio/midi"),
    ("kar", "audio/midi"),
    ("mp3", "audio/mpeg"),
    ("ogg", "audio/ogg"),
    ("m4a", "audio/x-m4a"),
    ("ra", "audio/x-realaudio"),
    ("3gpp", "video/3gpp"),
    ("3gp", "video/3gpp"),
    ("ts", "video/mp2t"),
    ("mp4", "video/mp4"),
    ("mpeg", "video/mpeg"),
    ("mpg", "video/mpeg"),
    ("mov", "video/quicktime"),
    ("webm", "video/webm"),
    ("flv", "video/x-flv"),
    ("m4v", "video/x-m4v"),
    ("mng", "video/x-mng"),
    ("asx", "video/x-ms-asf"),
    ("asf", "video/x-ms-asf"),
    ("wmv", "video/x-ms-wmv"),
    ("avi", "video/x-msvideo"),
];

/// The type nginx's `mime.types` gives a (lowercase) extension. A hash
/// map built once: a `match` over the hundred names compiled to a chain
/// of comparisons (~500 instructions for `txt`, callgrind).
/// Held as header values: `from_static` checks every byte each time.
fn nginx_type(ext: &str) -> Option<HeaderValue> {
    static TABLE: LazyLock<FastMap<&'static str, HeaderValue>> = LazyLock::new(|| {
        NGINX_TYPES
            .iter()
            .map(|&(ext, t)| (ext, HeaderValue::from_static(t)))
            .collect()
    });
    TABLE.get(ext).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(path: &str) -> String {
        content_type(path).to_str().unwrap().to_owned()
    }

    #[test]
    fn nginx_types_win_over_mime_guess() {
        for (path, want) in [
            ("/index.html", "text/html"),
            ("/a/INDEX.HTM", "text/html"),
            ("/app.js", "application/javascript"),
            ("/feed.xml", "text/xml"),
            ("/style.css", "text/css"),
            ("/notes.txt", "text/plain"),
            ("/favicon.ico", "image/x-icon"),
            ("/pic.bmp", "image/x-ms-bmp"),
            ("/font.woff2", "font/woff2"),
            ("/data.json", "application/json"),
            ("/mod.wasm", "application/wasm"),
            ("/cert.pem", "application/x-x509-ca-cert"),
            ("/setup.exe", "application/octet-stream"),
            ("/clip.ts", "video/mp2t"),
        ] {
            assert_eq!(ct(path), want, "{path}");
        }
    }

    #[test]
    fn unknown_to_nginx_falls_back_to_mime_guess_then_octet_stream() {
        assert_eq!(ct("/module.mjs"), "application/javascript");
        assert_eq!(ct("/table.csv"), "text/csv");
        assert_eq!(ct("/README"), "application/octet-stream");
        assert_eq!(ct("/file."), "application/octet-stream");
        assert_eq!(ct("/a.b/c"), "application/octet-stream");
        assert_eq!(ct("/x.nosuchextension"), "application/octet-stream");
        assert_eq!(
            ct("/x.averyveryverylongextensionname"),
            "application/octet-stream"
        );
        assert_eq!(ct("/"), "application/octet-stream");
    }

    #[test]
    fn extension_is_taken_from_the_last_segment_like_nginx() {
        assert_eq!(extension("/a/b.tar.gz"), Some("gz"));
        assert_eq!(extension("/.htaccess"), Some("htaccess"));
        assert_eq!(extension("/dir.d/file"), None);
        assert_eq!(extension("/dir/"), None);
        assert_eq!(extension("/file."), None);
        assert_eq!(extension("noslash.txt"), Some("txt"));
        assert_eq!(extension(""), None);
    }

    #[test]
    fn the_table_lists_each_extension_once_in_lowercase() {
        let mut seen = std::collections::HashSet::new();
        for (ext, typ) in NGINX_TYPES {
            assert!(seen.insert(ext), "{ext} twice");
            assert_eq!(*ext, ext.to_ascii_lowercase());
            assert_eq!(nginx_type(ext).unwrap(), *typ);
        }
        assert_eq!(nginx_type("txt").unwrap(), "text/plain");
        assert_eq!(nginx_type("msm").unwrap(), "application/octet-stream");
        assert_eq!(nginx_type("mjs"), None);
    }
}

//! Validators (RFC 9110 §8.8): the `ETag` and `Last-Modified` of a file,
//! and entity-tag lists as they appear in `If-Match` / `If-None-Match`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;

/// The validators of one representation (a file or its `.gz`/`.br` sidecar).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Validators {
    /// A strong entity-tag, quotes included.
    pub etag: HeaderValue,
    /// `Last-Modified` as an IMF-fixdate.
    pub last_modified: HeaderValue,
    /// The modification time in whole seconds, what HTTP dates can express.
    pub modified: SystemTime,
}

impl Validators {
    /// Validators for a file modified at `mtime_secs` (Unix time) holding
    /// `size` bytes.
    pub fn new(mtime_secs: i64, size: u64) -> Self {
        // A file dated before 1970 gets the epoch: HTTP-date cannot say
        // earlier, and nginx's "%xT" of a negative time is no better.
        let secs = u64::try_from(mtime_secs).unwrap_or(0);
        let modified = UNIX_EPOCH + Duration::from_secs(secs);
        Self {
            etag: header(&format_etag(secs, size)),
            last_modified: header(&httpdate::fmt_http_date(modified)),
            modified,
        }
    }
}

/// nginx's entity-tag: `"<mtime hex>-<size hex>"` (ngx_http_set_etag).
/// Keeping the format means caches warmed by nginx stay valid after a
/// switch to vigil.
pub(crate) fn format_etag(mtime_secs: u64, size: u64) -> String {
    format!("\"{mtime_secs:x}-{size:x}\"")
}

fn header(text: &str) -> HeaderValue {
    // Both callers build the text from hex digits, quotes, letters, digits,
    // spaces, ':' and ','; all are valid header bytes.
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}

/// One member of an entity-tag list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntityTag<'a> {
    pub weak: bool,
    /// The opaque-tag, quotes included.
    pub opaque: &'a str,
}

/// An `If-Match` / `If-None-Match` field value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TagList<'a> {
    /// `*`: any current representation.
    Any,
    Tags(Vec<EntityTag<'a>>),
}

/// Parses `"*" / #entity-tag` (RFC 9110 §13.1.1, §13.1.2).
///
/// Returns `None` for a value that does not follow the grammar; callers
/// treat that as a list matching nothing, which fails safe both ways
/// (`If-Match` → 412, `If-None-Match` → full response).
///
/// Entity-tags may contain commas (`etagc` includes `%x2C`, §8.8.3), so the
/// list is scanned quote by quote, never split on `,`.
pub(crate) fn parse_tag_list(value: &str) -> Option<TagList<'_>> {
    if value.trim_matches(is_ows) == "*" {
        return Some(TagList::Any);
    }
    let mut tags = Vec::new();
    let mut rest = value;
    loop {
        // §5.6.1.2: a recipient accepts empty list elements.
        rest = rest.trim_start_matches(|c| is_ows(c) || c == ',');
        if rest.is_empty() {
            break;
        }
        let (weak, after_weak) = match rest.strip_prefix("W/") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let body = after_weak.strip_prefix('"')?;
        let close = body.find('"')?;
        let opaque = &after_weak[..close + 2];
        if !body[..close].bytes().all(is_etagc) {
            return None;
        }
        tags.push(EntityTag { weak, opaque });
        rest = after_weak[close + 2..].trim_start_matches(is_ows);
        if !(rest.is_empty() || rest.starts_with(',')) {
            return None;
        }
    }
    if tags.is_empty() {
        return None;
    }
    Some(TagList::Tags(tags))
}

impl TagList<'_> {
    /// Strong comparison (§8.8.3.2), used by `If-Match`: both tags strong
    /// and their opaque-tags equal. Our own tags are always strong.
    pub fn matches_strong(&self, ours: &str) -> bool {
        match self {
            TagList::Any => true,
            TagList::Tags(tags) => tags.iter().any(|t| !t.weak && t.opaque == ours),
        }
    }

    /// Weak comparison (§8.8.3.2), used by `If-None-Match`: opaque-tags
    /// equal, weakness ignored.
    pub fn matches_weak(&self, ours: &str) -> bool {
        match self {
            TagList::Any => true,
            TagList::Tags(tags) => tags.iter().any(|t| t.opaque == ours),
        }
    }
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// `etagc = %x21 / %x23-7E / obs-text` (§8.8.3).
fn is_etagc(b: u8) -> bool {
    b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn etag_has_nginx_format() {
        assert_eq!(format_etag(0x5f1a2b3c, 1024), "\"5f1a2b3c-400\"");
        assert_eq!(format_etag(0, 0), "\"0-0\"");
        let v = Validators::new(1_700_000_000, 1);
        assert_eq!(v.etag, "\"6553f100-1\"");
        assert_eq!(v.last_modified, "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(Validators::new(-5, 1).modified, UNIX_EPOCH);
    }

    #[test]
    fn parses_lists() {
        let tags = |v| match parse_tag_list(v) {
            Some(TagList::Tags(t)) => t,
            other => panic!("{v}: {other:?}"),
        };
        assert_eq!(parse_tag_list("*"), Some(TagList::Any));
        assert_eq!(parse_tag_list(" * "), Some(TagList::Any));
        assert_eq!(
            tags("\"a\""),
            vec![EntityTag {
                weak: false,
                opaque: "\"a\""
            }]
        );
        assert_eq!(
            tags("W/\"a\", \"b\""),
            vec![
                EntityTag {
                    weak: true,
                    opaque: "\"a\""
                },
                EntityTag {
                    weak: false,
                    opaque: "\"b\""
                },
            ]
        );
        // Commas inside an opaque-tag, empty list elements, an empty tag.
        assert_eq!(tags(",\"a,b\",,\"\" ,").len(), 2);
        assert_eq!(tags("\"a,b\"")[0].opaque, "\"a,b\"");
    }

    #[test]
    fn refuses_malformed_lists() {
        for v in [
            "",
            " ",
            ",",
            "a",
            "\"a",
            "\"a\"b",
            "w/\"a\"",
            "W/a",
            "\"a\" \"b\"",
            "**",
            "*, \"a\"",
            "\"a b\"",
        ] {
            assert_eq!(parse_tag_list(v), None, "{v:?}");
        }
    }

    #[test]
    fn compares_as_rfc_9110_8_8_3_2() {
        // The table in §8.8.3.2, with ours strong.
        let strong = parse_tag_list("\"1\"").unwrap();
        let weak = parse_tag_list("W/\"1\"").unwrap();
        let other = parse_tag_list("\"2\", W/\"2\"").unwrap();
        assert!(strong.matches_strong("\"1\"") && strong.matches_weak("\"1\""));
        assert!(!weak.matches_strong("\"1\"") && weak.matches_weak("\"1\""));
        assert!(!other.matches_strong("\"1\"") && !other.matches_weak("\"1\""));
        assert!(TagList::Any.matches_strong("\"x\"") && TagList::Any.matches_weak("\"x\""));
    }

    proptest! {
        #[test]
        fn never_panics(value in "[ -~]{0,40}") {
            let _ = parse_tag_list(&value);
        }

        #[test]
        fn finds_a_well_formed_tag_anywhere_in_a_list(
            before in proptest::collection::vec("(W/)?\"[a-z,0-9]{0,6}\"", 0..4),
            after in proptest::collection::vec("\"[a-z,0-9]{0,6}\"", 0..4),
            mtime: u32, size: u32,
        ) {
            let ours = format_etag(mtime.into(), size.into());
            let mut all = before;
            all.push(ours.clone());
            all.extend(after);
            let list = all.join(", ");
            let parsed = parse_tag_list(&list);
            prop_assert!(parsed.as_ref().is_some_and(|l| l.matches_weak(&ours)), "{}", list);
            prop_assert!(parsed.is_some_and(|l| l.matches_strong(&ours)), "{}", list);
        }
    }
}

//! Fuzz entry points for the header parsers of this module (called from
//! `crate::fuzzing`, which documents the contract).

use std::time::{Duration, UNIX_EPOCH};

use http::HeaderValue;

use super::conditional::{self, Conditions};
use super::range::{self, RangeDecision};
use super::validators::Validators;

/// `Range`: 8 bytes of file size, then the header value.
pub(crate) fn range_header(data: &[u8]) {
    let Some((size, value)) = data.split_first_chunk::<8>() else {
        return;
    };
    // Small sizes are where the edge cases are; keep most inputs there.
    let size = u64::from_le_bytes(*size) % (1 << 20);
    let Ok(value) = std::str::from_utf8(value) else {
        return;
    };
    let Some(specs) = range::parse(value) else {
        return;
    };
    assert!(!specs.is_empty());
    let inside = |r: &range::ByteRange| {
        assert!(r.len > 0, "{value:?} size {size}: empty {r:?}");
        assert!(
            r.start.checked_add(r.len).is_some_and(|end| end <= size),
            "{value:?} size {size}: {r:?} outside the file"
        );
        let _ = r.content_range(size);
    };
    match range::resolve(&specs, size) {
        RangeDecision::Full | RangeDecision::Unsatisfiable => {}
        RangeDecision::Single(r) => inside(&r),
        RangeDecision::Multi(ranges) => {
            assert!(ranges.len() > 1 && ranges.len() <= range::MAX_RANGES);
            ranges.iter().for_each(inside);
            let total: u64 = ranges.iter().map(|r| r.len).sum();
            assert!(total <= size, "{value:?}: {total} bytes of {size}");
        }
    }
}

/// The five conditional fields, one per line, against fixed validators.
pub(crate) fn conditional_headers(data: &[u8]) {
    let mut fields = data
        .split(|&b| b == b'\n')
        .map(|line| HeaderValue::from_bytes(line).ok());
    let mut next = || fields.next().flatten();
    let c = Conditions {
        if_match: next(),
        if_none_match: next(),
        if_modified_since: next(),
        if_unmodified_since: next(),
    };
    let if_range = next();
    let v = Validators::new(1_700_000_000, 10);
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_100);
    let outcome = conditional::evaluate(&c, &v);
    let none = c.if_match.is_none()
        && c.if_none_match.is_none()
        && c.if_modified_since.is_none()
        && c.if_unmodified_since.is_none();
    if none {
        assert_eq!(outcome, conditional::Precondition::Proceed);
    }
    // A request that names the file's own tag in If-None-Match (and has
    // no If-Match to fail first) is answered 304.
    if c.if_match.is_none() && c.if_none_match.as_ref() == Some(&v.etag) {
        let unmodified_fails = c.if_unmodified_since.is_some();
        assert!(
            outcome == conditional::Precondition::NotModified || unmodified_fails,
            "{c:?}: {outcome:?}"
        );
    }
    if let Some(value) = if_range {
        let _ = conditional::if_range_holds(&value, &v, now);
    }
}

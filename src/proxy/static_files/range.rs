//! `Range: bytes=...` (RFC 9110 §14.1, §14.2): parsing the header and
//! resolving it against a file's size.

/// More satisfiable ranges than this and the whole file is sent instead.
/// RFC 9110 §14.2 lets a server ignore Range ("a server MAY ignore the
/// Range header field"); a long list of ranges is how range requests are
/// abused (many tiny parts cost a part header each, and a blocking read
/// each for large files), while real clients (media players, download
/// resumers, PDF viewers) ask for one range or a handful.
pub(crate) const MAX_RANGES: usize = 32;

/// More list elements than this and the header is not parsed at all.
const MAX_SPECS: usize = 256;

/// One `range-spec` of a `bytes` Range header (RFC 9110 §14.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeSpec {
    /// `int-range`: `first-pos "-" [ last-pos ]`.
    From { first: u64, last: Option<u64> },
    /// `suffix-range`: `"-" suffix-length`, the last N bytes.
    Suffix(u64),
}

/// A satisfiable byte range: `len` bytes from `start`, never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteRange {
    pub start: u64,
    pub len: u64,
}

impl ByteRange {
    /// The `Content-Range` value for this range of a `size`-byte file
    /// (§14.4: `bytes first-last/complete-length`, last inclusive).
    pub fn content_range(&self, size: u64) -> String {
        format!(
            "bytes {}-{}/{}",
            self.start,
            self.start + self.len - 1,
            size
        )
    }
}

/// What to send for a Range request, once resolved against the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RangeDecision {
    /// 200 with the whole file: no usable Range.
    Full,
    /// 206 with one part.
    Single(ByteRange),
    /// 206 `multipart/byteranges`, parts in the order requested.
    Multi(Vec<ByteRange>),
    /// 416: no range overlaps the file (§15.5.17).
    Unsatisfiable,
}

/// Parses a Range field value. `None` means "ignore the header": another
/// unit, a syntax error, or an invalid range-spec (last-pos < first-pos).
/// §14.2: "A server MAY ignore the Range header field" and §14.1.1: "a
/// server ... MAY ignore" an invalid ranges-specifier, so a malformed
/// header yields a plain 200, never an error.
pub(crate) fn parse(value: &str) -> Option<Vec<RangeSpec>> {
    let (unit, set) = value.split_once('=')?;
    // §14.1: range units are compared case-insensitively.
    if !unit.trim_matches(is_ows).eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = Vec::new();
    // §5.6.1.2: empty list elements are accepted and ignored.
    for element in set.split(',').map(|e| e.trim_matches(is_ows)) {
        if element.is_empty() {
            continue;
        }
        if specs.len() == MAX_SPECS {
            return None;
        }
        let spec = match element.strip_prefix('-') {
            Some(suffix) => RangeSpec::Suffix(digits(suffix)?),
            None => {
                let (first, last) = element.split_once('-')?;
                let first = digits(first)?;
                let last = if last.is_empty() {
                    None
                } else {
                    Some(digits(last)?)
                };
                // §14.1.1: "A range-spec is invalid if ... last-pos < first-pos."
                if last.is_some_and(|l| l < first) {
                    return None;
                }
                RangeSpec::From { first, last }
            }
        };
        specs.push(spec);
    }
    (!specs.is_empty()).then_some(specs)
}

/// Resolves parsed specs against a file of `size` bytes.
pub(crate) fn resolve(specs: &[RangeSpec], size: u64) -> RangeDecision {
    // An empty file has no byte to point at; a `bytes=-N` on it would need
    // an empty 206 that Content-Range cannot express ("bytes 0--1/0").
    // Ignoring the Range (§14.2 allows it) gives the same bytes: none.
    if size == 0 {
        return RangeDecision::Full;
    }
    let mut ranges = Vec::new();
    for spec in specs {
        // §14.1.1: an int-range is satisfiable if first-pos < length; a
        // suffix-range if suffix-length > 0. Others are dropped; if none
        // is left the whole set is unsatisfiable.
        let range = match *spec {
            RangeSpec::From { first, last } => {
                if first >= size {
                    continue;
                }
                let last = last.unwrap_or(u64::MAX).min(size - 1);
                ByteRange {
                    start: first,
                    len: last - first + 1,
                }
            }
            RangeSpec::Suffix(0) => continue,
            RangeSpec::Suffix(n) => {
                let len = n.min(size);
                ByteRange {
                    start: size - len,
                    len,
                }
            }
        };
        ranges.push(range);
    }
    match ranges.len() {
        0 => RangeDecision::Unsatisfiable,
        1 => RangeDecision::Single(ranges[0]),
        n if n > MAX_RANGES => RangeDecision::Full,
        _ => {
            // Overlapping ranges that add up to more than the file are the
            // amplification attack of CVE-2011-3192 (§17.15 "Denial-of-
            // Service Attacks Using Range"); nginx answers them with the
            // whole file, and so do we.
            let total = ranges.iter().fold(0u64, |sum, r| sum.saturating_add(r.len));
            if total > size {
                RangeDecision::Full
            } else {
                RangeDecision::Multi(ranges)
            }
        }
    }
}

/// `1*DIGIT`, saturating: a position past any real file is as good as
/// `u64::MAX` (it is clamped or found unsatisfiable later).
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decide(header: &str, size: u64) -> Option<RangeDecision> {
        parse(header).map(|specs| resolve(&specs, size))
    }

    fn single(start: u64, len: u64) -> Option<RangeDecision> {
        Some(RangeDecision::Single(ByteRange { start, len }))
    }

    #[test]
    fn rfc_9110_14_1_2_examples() {
        // §14.1.2, a 10000-byte representation.
        assert_eq!(decide("bytes=0-499", 10000), single(0, 500));
        assert_eq!(decide("bytes=500-999", 10000), single(500, 500));
        assert_eq!(decide("bytes=-500", 10000), single(9500, 500));
        assert_eq!(decide("bytes=9500-", 10000), single(9500, 500));
        assert_eq!(decide("bytes=0-0,-1", 10000), {
            Some(RangeDecision::Multi(vec![
                ByteRange { start: 0, len: 1 },
                ByteRange {
                    start: 9999,
                    len: 1,
                },
            ]))
        });
        assert_eq!(
            decide("bytes= 0-999, 4500-5499, -1000", 10000),
            Some(RangeDecision::Multi(vec![
                ByteRange {
                    start: 0,
                    len: 1000
                },
                ByteRange {
                    start: 4500,
                    len: 1000
                },
                ByteRange {
                    start: 9000,
                    len: 1000
                },
            ]))
        );
        assert_eq!(
            decide("bytes=500-600,601-999", 10000),
            Some(RangeDecision::Multi(vec![
                ByteRange {
                    start: 500,
                    len: 101
                },
                ByteRange {
                    start: 601,
                    len: 399
                },
            ]))
        );
    }

    #[test]
    fn clamps_and_drops_unsatisfiable_members() {
        assert_eq!(decide("bytes=0-99999999999999999999999", 10), single(0, 10));
        assert_eq!(decide("bytes=-20", 10), single(0, 10));
        assert_eq!(decide("bytes=5-5", 10), single(5, 1));
        assert_eq!(decide("bytes=20-30,2-3", 10), single(2, 2));
        assert_eq!(decide("bytes=-0,9-", 10), single(9, 1));
        assert_eq!(decide("BYTES=0-1", 10), single(0, 2));
        assert_eq!(decide("bytes=0-1,,", 10), single(0, 2));
    }

    #[test]
    fn unsatisfiable_sets() {
        for h in [
            "bytes=10-",
            "bytes=10-20",
            "bytes=-0",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(decide(h, 10), Some(RangeDecision::Unsatisfiable), "{h}");
        }
    }

    #[test]
    fn malformed_headers_are_ignored() {
        for h in [
            "",
            "bytes",
            "bytes=",
            "bytes=,",
            "bytes=a-b",
            "bytes=1-a",
            "bytes=--1",
            "bytes=1",
            "bytes=5-4",
            "bytes=-",
            "bytes=1-2-3",
            "items=0-1",
            "bytes=+1-2",
            "bytes=0x1-2",
            "bytes 0-1",
            "bytes=1 -2",
            "bytes=-1-",
            "bytes=1.5-2",
        ] {
            assert_eq!(parse(h), None, "{h:?}");
        }
        let too_many = format!("bytes={}", vec!["0-0"; MAX_SPECS + 1].join(","));
        assert_eq!(parse(&too_many), None);
    }

    #[test]
    fn abusive_sets_get_the_whole_file() {
        // Overlaps adding up to more than the file.
        assert_eq!(decide("bytes=0-,0-", 10), Some(RangeDecision::Full));
        assert_eq!(decide("bytes=0-5,3-9", 10), Some(RangeDecision::Full));
        // Too many parts.
        let many = (0..=MAX_RANGES)
            .map(|i| format!("{i}-{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            decide(&format!("bytes={many}"), 1000),
            Some(RangeDecision::Full)
        );
        // An empty file.
        assert_eq!(decide("bytes=0-", 0), Some(RangeDecision::Full));
    }

    #[test]
    fn content_range_is_inclusive() {
        assert_eq!(
            ByteRange { start: 0, len: 500 }.content_range(10000),
            "bytes 0-499/10000"
        );
        assert_eq!(
            ByteRange { start: 9, len: 1 }.content_range(10),
            "bytes 9-9/10"
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(header in "[bytes=0-9, \\-]{0,40}") {
            let _ = parse(&header);
        }

        #[test]
        fn resolved_ranges_lie_inside_the_file(
            specs in proptest::collection::vec(
                prop_oneof![
                    (0u64..2000, proptest::option::of(0u64..2000)).prop_map(|(f, l)| {
                        RangeSpec::From { first: f, last: l.map(|l| l.max(f)) }
                    }),
                    (0u64..2000).prop_map(RangeSpec::Suffix),
                ],
                1..6,
            ),
            size in 0u64..1500,
        ) {
            match resolve(&specs, size) {
                RangeDecision::Single(r) => {
                    prop_assert!(r.len > 0 && r.start + r.len <= size);
                }
                RangeDecision::Multi(rs) => {
                    prop_assert!(rs.len() > 1 && rs.len() <= MAX_RANGES);
                    prop_assert!(rs.iter().map(|r| r.len).sum::<u64>() <= size);
                    for r in rs {
                        prop_assert!(r.len > 0 && r.start + r.len <= size);
                    }
                }
                RangeDecision::Unsatisfiable => {
                    // Every spec misses the file.
                    prop_assert!(size > 0);
                    for s in &specs {
                        match *s {
                            RangeSpec::From { first, .. } => prop_assert!(first >= size),
                            RangeSpec::Suffix(n) => prop_assert_eq!(n, 0),
                        }
                    }
                }
                RangeDecision::Full => {}
            }
        }

        #[test]
        fn formatted_specs_round_trip(first in 0u64..u64::MAX / 2, extra in 0u64..1000, suffix in 1u64..1000) {
            let header = format!("bytes={first}-{}, -{suffix}, {first}-", first + extra);
            prop_assert_eq!(parse(&header), Some(vec![
                RangeSpec::From { first, last: Some(first + extra) },
                RangeSpec::Suffix(suffix),
                RangeSpec::From { first, last: None },
            ]));
        }
    }
}

//! Which response a GET or HEAD for an existing file gets: the
//! preconditions of RFC 9110 §13.2.2, then Range (§14.2). Pure: the same
//! function decides for a cached file and for a freshly opened one.

use std::time::SystemTime;

use super::conditional::{self, Precondition, if_range_holds};
use super::facts::{Access, RequestFacts};
use super::range::{self, ByteRange, RangeDecision};
use super::validators::Validators;

/// The response form for one representation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// 200 with the whole representation.
    Full,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    PreconditionFailed,
    /// 206 with one range.
    Partial(ByteRange),
    /// 206 `multipart/byteranges`.
    Multipart(Vec<ByteRange>),
    /// 416 Range Not Satisfiable.
    Unsatisfiable,
}

/// Decides for a representation of `size` bytes with validators `v`.
pub(crate) fn decide(facts: &RequestFacts, v: &Validators, size: u64, now: SystemTime) -> Decision {
    match conditional::evaluate(&facts.conditions, v) {
        Precondition::Failed => return Decision::PreconditionFailed,
        Precondition::NotModified => return Decision::NotModified,
        Precondition::Proceed => {}
    }
    // §14.2: "A server MUST ignore a Range header field received with a
    // request method that is unrecognized or for which range handling is
    // not defined. For this specification, GET is the only method for
    // which range handling is defined."
    if facts.access != Access::Get {
        return Decision::Full;
    }
    let Some(specs) = facts
        .range
        .as_ref()
        .and_then(|r| r.to_str().ok())
        .and_then(range::parse)
    else {
        return Decision::Full;
    };
    // §13.2.2 step 5: "When the method is GET and both Range and If-Range
    // are present, evaluate the If-Range precondition: if true and the
    // Range is applicable to the selected representation, respond 206
    // (Partial Content); otherwise, ignore the Range header field and
    // respond 200 (OK)."
    if let Some(if_range) = &facts.if_range {
        if !if_range_holds(if_range, v, now) {
            return Decision::Full;
        }
    }
    match range::resolve(&specs, size) {
        RangeDecision::Full => Decision::Full,
        RangeDecision::Single(r) => Decision::Partial(r),
        RangeDecision::Multi(rs) => Decision::Multipart(rs),
        RangeDecision::Unsatisfiable => Decision::Unsatisfiable,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use http::{Method, Request};

    use super::*;

    const MTIME: i64 = 1_700_000_000;

    fn decide_for(method: Method, headers: &[(&str, &str)]) -> Decision {
        let mut b = Request::builder().method(method).uri("/f");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let facts = RequestFacts::new(&b.body(()).unwrap().into_parts().0, false);
        let now = UNIX_EPOCH + Duration::from_secs(MTIME as u64 + 3600);
        decide(&facts, &Validators::new(MTIME, 100), 100, now)
    }

    const ETAG: &str = "\"6553f100-64\"";

    #[test]
    fn plain_get_and_head() {
        assert_eq!(decide_for(Method::GET, &[]), Decision::Full);
        assert_eq!(decide_for(Method::HEAD, &[]), Decision::Full);
    }

    #[test]
    fn ranges_apply_to_get_only() {
        let r = ByteRange { start: 0, len: 10 };
        assert_eq!(
            decide_for(Method::GET, &[("range", "bytes=0-9")]),
            Decision::Partial(r)
        );
        assert_eq!(
            decide_for(Method::HEAD, &[("range", "bytes=0-9")]),
            Decision::Full
        );
        assert_eq!(
            decide_for(Method::GET, &[("range", "bytes=100-")]),
            Decision::Unsatisfiable
        );
        assert_eq!(
            decide_for(Method::GET, &[("range", "bytes=oops")]),
            Decision::Full
        );
        assert!(matches!(
            decide_for(Method::GET, &[("range", "bytes=0-0,-1")]),
            Decision::Multipart(rs) if rs.len() == 2
        ));
    }

    #[test]
    fn if_range_gates_the_range() {
        let r = ByteRange { start: 0, len: 10 };
        assert_eq!(
            decide_for(Method::GET, &[("range", "bytes=0-9"), ("if-range", ETAG)]),
            Decision::Partial(r)
        );
        assert_eq!(
            decide_for(
                Method::GET,
                &[("range", "bytes=0-9"), ("if-range", "\"old\"")]
            ),
            Decision::Full
        );
        // A failed If-Range also hides an unsatisfiable range.
        assert_eq!(
            decide_for(
                Method::GET,
                &[("range", "bytes=500-"), ("if-range", "\"old\"")]
            ),
            Decision::Full
        );
        assert_eq!(
            decide_for(Method::GET, &[("range", "bytes=500-"), ("if-range", ETAG)]),
            Decision::Unsatisfiable
        );
        // If-Range without Range changes nothing.
        assert_eq!(
            decide_for(Method::GET, &[("if-range", "\"old\"")]),
            Decision::Full
        );
    }

    #[test]
    fn preconditions_come_before_ranges() {
        let h = [("range", "bytes=0-9"), ("if-none-match", ETAG)];
        assert_eq!(decide_for(Method::GET, &h), Decision::NotModified);
        let h = [("range", "bytes=500-"), ("if-match", "\"other\"")];
        assert_eq!(decide_for(Method::GET, &h), Decision::PreconditionFailed);
        assert_eq!(
            decide_for(Method::HEAD, &[("if-none-match", "*")]),
            Decision::NotModified
        );
    }
}

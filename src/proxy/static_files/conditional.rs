//! Conditional requests (RFC 9110 §13): evaluating `If-Match`,
//! `If-Unmodified-Since`, `If-None-Match`, `If-Modified-Since` and
//! `If-Range` against a file's validators.

use std::time::{Duration, SystemTime};

use http::HeaderValue;

use super::validators::{TagList, Validators, parse_tag_list};

/// The precondition fields of a request (§13.1), as received.
///
/// List fields (`If-Match`, `If-None-Match`) sent on several lines are
/// joined into one value; date fields sent more than once are dropped,
/// because §13.1.3/§13.1.4 say a recipient MUST ignore them "if the field
/// value has more than one member".
#[derive(Debug, Clone, Default)]
pub(crate) struct Conditions {
    pub if_match: Option<HeaderValue>,
    pub if_none_match: Option<HeaderValue>,
    pub if_modified_since: Option<HeaderValue>,
    pub if_unmodified_since: Option<HeaderValue>,
}

/// The outcome of the preconditions for a GET or HEAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Precondition {
    /// Send the representation (possibly a range of it).
    Proceed,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// Evaluates the preconditions in the order of RFC 9110 §13.2.2 (steps
/// 1–4; step 5, If-Range, belongs to range handling: [`if_range_holds`]).
/// Only GET and HEAD reach this code, so a false If-None-Match means 304.
pub(crate) fn evaluate(c: &Conditions, v: &Validators) -> Precondition {
    let etag = v.etag.to_str().unwrap_or_default();
    // Step 1: "When recipient is the origin server and If-Match is present,
    // evaluate the If-Match precondition: if false, respond 412."
    // Step 2: "When ... If-Match is not present, and If-Unmodified-Since is
    // present, evaluate ...: if false, respond 412."
    if let Some(value) = &c.if_match {
        if !tag_list(value).is_some_and(|l| l.matches_strong(etag)) {
            return Precondition::Failed;
        }
    } else if let Some(date) = c.if_unmodified_since.as_ref().and_then(http_date) {
        // §13.1.4: true if last modified "earlier than or equal to" the date.
        if v.modified > date {
            return Precondition::Failed;
        }
    }
    // Step 3: "When If-None-Match is present, evaluate ...: if false for
    // GET/HEAD, respond 304."
    // Step 4: "When the method is GET or HEAD, If-None-Match is not
    // present, and If-Modified-Since is present, evaluate ...: if false,
    // respond 304."
    if let Some(value) = &c.if_none_match {
        // §13.1.2: weak comparison; a malformed list matches nothing.
        if tag_list(value).is_some_and(|l| l.matches_weak(etag)) {
            return Precondition::NotModified;
        }
    } else if let Some(date) = c.if_modified_since.as_ref().and_then(http_date) {
        // §13.1.3: false (→ 304) if last modified "earlier or equal to" the
        // date. nginx's default `if_modified_since exact` wants equality;
        // RFC semantics are kept here, they agree for every client that
        // echoes Last-Modified back, which is what browsers do.
        if v.modified <= date {
            return Precondition::NotModified;
        }
    }
    Precondition::Proceed
}

/// §13.1.5: whether a Range request's `If-Range` lets the range apply.
/// When false, the whole representation is sent with 200.
///
/// - An entity-tag must match by *strong* comparison (a weak tag never does).
/// - A date must equal Last-Modified exactly, and Last-Modified must be
///   strong: "the validator is ... at least one second" older than the
///   response's Date (§8.8.2.2), else a second write within the same
///   second could have changed the file unseen.
/// - Anything else is false.
pub(crate) fn if_range_holds(value: &HeaderValue, v: &Validators, now: SystemTime) -> bool {
    let Ok(text) = value.to_str() else {
        return false;
    };
    let text = text.trim_matches([' ', '\t']);
    // §13.1.5: "A valid entity-tag can be distinguished from a valid
    // HTTP-date by examining the first three characters for a DQUOTE."
    if text.get(..3).is_some_and(|head| head.contains('"')) {
        let etag = v.etag.to_str().unwrap_or_default();
        return matches!(parse_tag_list(text), Some(TagList::Tags(tags))
            if tags.len() == 1 && !tags[0].weak && tags[0].opaque == etag);
    }
    let Ok(date) = httpdate::parse_http_date(text) else {
        return false;
    };
    date == v.modified && v.modified + Duration::from_secs(1) <= now
}

fn tag_list(value: &HeaderValue) -> Option<TagList<'_>> {
    value.to_str().ok().and_then(parse_tag_list)
}

/// §5.6.7: all three date formats are accepted; an invalid date means the
/// field is ignored (§13.1.3, §13.1.4).
fn http_date(value: &HeaderValue) -> Option<SystemTime> {
    httpdate::parse_http_date(value.to_str().ok()?.trim_matches([' ', '\t'])).ok()
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    const MTIME: i64 = 1_700_000_000; // Tue, 14 Nov 2023 22:13:20 GMT
    const ETAG: &str = "\"6553f100-a\"";
    const LM: &str = "Tue, 14 Nov 2023 22:13:20 GMT";
    const EARLIER: &str = "Tue, 14 Nov 2023 22:13:19 GMT";
    const LATER: &str = "Tue, 14 Nov 2023 22:13:21 GMT";

    fn v() -> Validators {
        Validators::new(MTIME, 10)
    }

    fn h(s: &str) -> Option<HeaderValue> {
        Some(HeaderValue::from_str(s).unwrap())
    }

    fn eval(
        im: Option<&str>,
        ius: Option<&str>,
        inm: Option<&str>,
        ims: Option<&str>,
    ) -> Precondition {
        let c = Conditions {
            if_match: im.and_then(h),
            if_unmodified_since: ius.and_then(h),
            if_none_match: inm.and_then(h),
            if_modified_since: ims.and_then(h),
        };
        evaluate(&c, &v())
    }

    use Precondition::{Failed, NotModified, Proceed};

    #[test]
    fn validators_match_the_fixture() {
        assert_eq!(v().etag, ETAG);
        assert_eq!(v().last_modified, LM);
    }

    #[test]
    fn no_conditions_proceed() {
        assert_eq!(eval(None, None, None, None), Proceed);
    }

    #[test]
    fn if_match() {
        assert_eq!(eval(Some(ETAG), None, None, None), Proceed);
        assert_eq!(eval(Some("*"), None, None, None), Proceed);
        assert_eq!(
            eval(Some("\"x\", \"6553f100-a\""), None, None, None),
            Proceed
        );
        assert_eq!(eval(Some("\"x\""), None, None, None), Failed);
        // Strong comparison: a weak tag never matches.
        assert_eq!(eval(Some("W/\"6553f100-a\""), None, None, None), Failed);
        // Malformed: matches nothing.
        assert_eq!(eval(Some("6553f100-a"), None, None, None), Failed);
    }

    #[test]
    fn if_unmodified_since() {
        assert_eq!(eval(None, Some(LM), None, None), Proceed);
        assert_eq!(eval(None, Some(LATER), None, None), Proceed);
        assert_eq!(eval(None, Some(EARLIER), None, None), Failed);
        // Invalid dates are ignored.
        assert_eq!(eval(None, Some("yesterday"), None, None), Proceed);
        // If-Match present: If-Unmodified-Since is not evaluated (step 2).
        assert_eq!(eval(Some(ETAG), Some(EARLIER), None, None), Proceed);
        // Other date formats of §5.6.7.
        assert_eq!(
            eval(None, Some("Tuesday, 14-Nov-23 22:13:19 GMT"), None, None),
            Failed
        );
        assert_eq!(
            eval(None, Some("Tue Nov 14 22:13:19 2023"), None, None),
            Failed
        );
    }

    #[test]
    fn if_none_match() {
        assert_eq!(eval(None, None, Some(ETAG), None), NotModified);
        assert_eq!(
            eval(None, None, Some("W/\"6553f100-a\""), None),
            NotModified
        );
        assert_eq!(
            eval(None, None, Some("\"a\", W/\"6553f100-a\""), None),
            NotModified
        );
        assert_eq!(eval(None, None, Some("*"), None), NotModified);
        assert_eq!(eval(None, None, Some("\"other\""), None), Proceed);
        assert_eq!(eval(None, None, Some("garbage"), None), Proceed);
    }

    #[test]
    fn if_modified_since() {
        assert_eq!(eval(None, None, None, Some(LM)), NotModified);
        assert_eq!(eval(None, None, None, Some(LATER)), NotModified);
        assert_eq!(eval(None, None, None, Some(EARLIER)), Proceed);
        assert_eq!(eval(None, None, None, Some("not a date")), Proceed);
    }

    #[test]
    fn if_none_match_takes_precedence_over_if_modified_since() {
        // §13.1.3: "A recipient MUST ignore If-Modified-Since if the request
        // contains an If-None-Match header field".
        assert_eq!(eval(None, None, Some("\"other\""), Some(LM)), Proceed);
        assert_eq!(eval(None, None, Some(ETAG), Some(EARLIER)), NotModified);
    }

    #[test]
    fn failed_if_match_wins_over_not_modified() {
        assert_eq!(eval(Some("\"x\""), None, Some(ETAG), None), Failed);
        assert_eq!(eval(None, Some(EARLIER), None, Some(LM)), Failed);
    }

    #[test]
    fn if_range() {
        let later = UNIX_EPOCH + Duration::from_secs(MTIME as u64 + 60);
        let same_second = UNIX_EPOCH + Duration::from_secs(MTIME as u64);
        let holds =
            |value: &str, now| if_range_holds(&HeaderValue::from_str(value).unwrap(), &v(), now);
        assert!(holds(ETAG, later));
        assert!(!holds("W/\"6553f100-a\"", later));
        assert!(!holds("\"other\"", later));
        assert!(!holds("\"6553f100-a\", \"x\"", later));
        assert!(holds(LM, later));
        // Last-Modified is weak within its own second.
        assert!(!holds(LM, same_second));
        assert!(!holds(LATER, later));
        assert!(!holds(EARLIER, later));
        assert!(!holds("garbage", later));
        assert!(!holds("", later));
    }
}

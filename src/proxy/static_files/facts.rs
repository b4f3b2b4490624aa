//! What static serving reads from a request, extracted once into an owned
//! value: the blocking file-system hop needs it `'static`, and the header
//! values are cheap to clone (hyper hands out slices of its read buffer).

use http::header::{
    ACCEPT_ENCODING, HeaderName, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE,
    IF_UNMODIFIED_SINCE, RANGE,
};
use http::{HeaderMap, HeaderValue, Method, request};

use super::conditional::Conditions;
use crate::proxy::accept_encoding::{self, Preference};

/// The request, as far as serving a file is concerned.
#[derive(Debug, Clone)]
pub(crate) struct RequestFacts {
    pub access: Access,
    pub conditions: Conditions,
    /// The Range field, when sent exactly once (it is a singleton field;
    /// two of them cannot be interpreted, so Range is then ignored).
    pub range: Option<HeaderValue>,
    pub if_range: Option<HeaderValue>,
    /// Sidecar codings the client takes; identity only unless gzip_static.
    pub encodings: Preference,
    /// The raw query string, kept for redirects.
    pub query: Option<String>,
}

/// How the request method relates to static files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Get,
    /// GET without the body (RFC 9110 §9.3.2).
    Head,
    /// Anything else: 405 once a file would be served.
    Other,
}

impl Access {
    pub fn can_read(self) -> bool {
        self != Access::Other
    }
}

impl RequestFacts {
    pub fn new(req: &request::Parts, gzip_static: bool) -> Self {
        let headers = Fields::of(&req.headers);
        let access = match req.method {
            Method::GET => Access::Get,
            Method::HEAD => Access::Head,
            _ => Access::Other,
        };
        let encodings = if gzip_static {
            let value = headers.list(&ACCEPT_ENCODING);
            accept_encoding::parse(value.as_ref().and_then(|v| v.to_str().ok()))
        } else {
            Preference::IDENTITY
        };
        // If-Range sent twice cannot be evaluated; the safe reading is that
        // it does not hold, which means: ignore Range.
        let if_range_lines = headers.count(&IF_RANGE);
        let range = if if_range_lines > 1 {
            None
        } else {
            headers.singleton(&RANGE)
        };
        Self {
            access,
            conditions: Conditions {
                if_match: headers.list(&IF_MATCH),
                if_none_match: headers.list(&IF_NONE_MATCH),
                if_modified_since: headers.singleton(&IF_MODIFIED_SINCE),
                if_unmodified_since: headers.singleton(&IF_UNMODIFIED_SINCE),
            },
            range,
            if_range: headers.singleton(&IF_RANGE),
            encodings,
            query: req.uri.query().map(str::to_owned),
        }
    }
}

/// The fields static serving reads.
const READ: [HeaderName; 7] = [
    ACCEPT_ENCODING,
    IF_MATCH,
    IF_NONE_MATCH,
    IF_MODIFIED_SINCE,
    IF_UNMODIFIED_SINCE,
    RANGE,
    IF_RANGE,
];

/// The request's fields, with which of [`READ`] it has found in one pass
/// over its names: most requests carry none or one of the seven, and the
/// pass (an integer compare per known name) costs less than the seven
/// hashed lookups did (callgrind: ~430 instructions per static request).
struct Fields<'a> {
    headers: &'a HeaderMap,
    /// Bit `i` set: the request has `READ[i]`.
    present: u8,
}

impl<'a> Fields<'a> {
    fn of(headers: &'a HeaderMap) -> Self {
        let mut present = 0;
        for name in headers.keys() {
            if let Some(i) = READ.iter().position(|r| r == name) {
                present |= 1 << i;
            }
        }
        Fields { headers, present }
    }

    /// The values of `name` (one of [`READ`]); `None` when it is absent,
    /// known without a lookup.
    fn get_all(&self, name: &HeaderName) -> Option<http::header::GetAll<'a, HeaderValue>> {
        let i = READ.iter().position(|r| r == name);
        debug_assert!(i.is_some(), "{name} is not in READ");
        let present = i.is_none_or(|i| self.present & (1 << i) != 0);
        present.then(|| self.headers.get_all(name))
    }

    fn count(&self, name: &HeaderName) -> usize {
        self.get_all(name).map_or(0, |v| v.iter().count())
    }

    /// A field that may appear once only.
    fn singleton(&self, name: &HeaderName) -> Option<HeaderValue> {
        let mut values = self.get_all(name)?.iter();
        let first = values.next()?;
        values.next().is_none().then(|| first.clone())
    }

    /// A list field: several lines mean the same as one line joined with
    /// "," (RFC 9110 §5.3).
    fn list(&self, name: &HeaderName) -> Option<HeaderValue> {
        list_of(self.get_all(name)?)
    }
}

fn list_of(values: http::header::GetAll<'_, HeaderValue>) -> Option<HeaderValue> {
    let mut values = values.iter();
    let first = values.next()?;
    let rest: Vec<&HeaderValue> = values.collect();
    if rest.is_empty() {
        return Some(first.clone());
    }
    let mut joined = first.as_bytes().to_vec();
    for v in rest {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(v.as_bytes());
    }
    // Joining valid values with ", " gives a valid value.
    HeaderValue::from_bytes(&joined).ok()
}

#[cfg(test)]
mod tests {
    use http::Request;

    use super::*;
    use crate::proxy::accept_encoding::Coding;

    fn facts(
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        gzip_static: bool,
    ) -> RequestFacts {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        RequestFacts::new(&b.body(()).unwrap().into_parts().0, gzip_static)
    }

    #[test]
    fn methods() {
        assert_eq!(facts(Method::GET, "/", &[], false).access, Access::Get);
        assert_eq!(facts(Method::HEAD, "/", &[], false).access, Access::Head);
        assert_eq!(facts(Method::POST, "/", &[], false).access, Access::Other);
        assert!(!Access::Other.can_read());
    }

    #[test]
    fn list_fields_are_joined_and_singletons_dropped_when_repeated() {
        let f = facts(
            Method::GET,
            "/a?x=1&y",
            &[
                ("if-none-match", "\"a\""),
                ("if-none-match", "\"b\""),
                ("if-modified-since", "Tue, 14 Nov 2023 22:13:20 GMT"),
                ("if-modified-since", "Tue, 14 Nov 2023 22:13:21 GMT"),
                ("range", "bytes=0-1"),
            ],
            false,
        );
        assert_eq!(f.conditions.if_none_match.unwrap(), "\"a\", \"b\"");
        assert_eq!(f.conditions.if_modified_since, None);
        assert_eq!(f.range.unwrap(), "bytes=0-1");
        assert_eq!(f.query.as_deref(), Some("x=1&y"));
    }

    #[test]
    fn repeated_range_or_if_range_drops_range() {
        let f = facts(
            Method::GET,
            "/",
            &[("range", "bytes=0-1"), ("range", "bytes=2-3")],
            false,
        );
        assert_eq!(f.range, None);
        let f = facts(
            Method::GET,
            "/",
            &[
                ("range", "bytes=0-1"),
                ("if-range", "\"a\""),
                ("if-range", "\"b\""),
            ],
            false,
        );
        assert_eq!(f.range, None);
    }

    #[test]
    fn accept_encoding_only_matters_with_gzip_static() {
        let h = [("accept-encoding", "gzip"), ("accept-encoding", "br;q=0.5")];
        assert_eq!(
            facts(Method::GET, "/", &h, false).encodings,
            Preference::IDENTITY
        );
        let order: Vec<_> = facts(Method::GET, "/", &h, true).encodings.iter().collect();
        assert_eq!(order, [Coding::Gzip, Coding::Br]);
    }

    /// Each field read is found whatever else the request carries and in
    /// whatever order, and one absent stays absent.
    #[test]
    fn every_field_read_is_found_among_others() {
        let all = [
            ("accept-encoding", "gzip"),
            ("if-match", "\"m\""),
            ("if-none-match", "\"n\""),
            ("if-modified-since", "Tue, 14 Nov 2023 22:13:20 GMT"),
            ("if-unmodified-since", "Tue, 14 Nov 2023 22:13:21 GMT"),
            ("range", "bytes=0-1"),
            ("if-range", "\"r\""),
        ];
        for skip in 0..=all.len() {
            let mut h = vec![("host", "a.test"), ("x-other", "1")];
            h.extend(
                all.iter()
                    .enumerate()
                    .filter(|(i, _)| *i != skip)
                    .map(|(_, f)| *f),
            );
            h.reverse();
            let f = facts(Method::GET, "/", &h, true);
            let got = [
                (f.encodings != Preference::IDENTITY).then_some("gzip"),
                f.conditions.if_match.as_ref().map(|v| v.to_str().unwrap()),
                f.conditions
                    .if_none_match
                    .as_ref()
                    .map(|v| v.to_str().unwrap()),
                f.conditions
                    .if_modified_since
                    .as_ref()
                    .map(|v| v.to_str().unwrap()),
                f.conditions
                    .if_unmodified_since
                    .as_ref()
                    .map(|v| v.to_str().unwrap()),
                f.range.as_ref().map(|v| v.to_str().unwrap()),
                f.if_range.as_ref().map(|v| v.to_str().unwrap()),
            ];
            for (i, (field, value)) in all.iter().enumerate() {
                let want = (i != skip).then_some(*value);
                assert_eq!(got[i], want, "{field}, skipping {skip}");
            }
        }
    }
}

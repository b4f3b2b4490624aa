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
        let headers = &req.headers;
        let access = match req.method {
            Method::GET => Access::Get,
            Method::HEAD => Access::Head,
            _ => Access::Other,
        };
        let encodings = if gzip_static {
            let value = list(headers, &ACCEPT_ENCODING);
            accept_encoding::parse(value.as_ref().and_then(|v| v.to_str().ok()))
        } else {
            Preference::IDENTITY
        };
        // If-Range sent twice cannot be evaluated; the safe reading is that
        // it does not hold, which means: ignore Range.
        let if_range_lines = headers.get_all(IF_RANGE).iter().count();
        let range = if if_range_lines > 1 {
            None
        } else {
            singleton(headers, &RANGE)
        };
        Self {
            access,
            conditions: Conditions {
                if_match: list(headers, &IF_MATCH),
                if_none_match: list(headers, &IF_NONE_MATCH),
                if_modified_since: singleton(headers, &IF_MODIFIED_SINCE),
                if_unmodified_since: singleton(headers, &IF_UNMODIFIED_SINCE),
            },
            range,
            if_range: singleton(headers, &IF_RANGE),
            encodings,
            query: req.uri.query().map(str::to_owned),
        }
    }
}

/// A field that may appear once only.
fn singleton(headers: &HeaderMap, name: &HeaderName) -> Option<HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then(|| first.clone())
}

/// A list field: several lines mean the same as one line joined with ","
/// (RFC 9110 §5.3).
fn list(headers: &HeaderMap, name: &HeaderName) -> Option<HeaderValue> {
    let mut values = headers.get_all(name).iter();
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
}

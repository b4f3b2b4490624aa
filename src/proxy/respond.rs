//! Short responses vigil makes itself (errors, redirects, `return`).

use http::{HeaderValue, Response, StatusCode, header};

use super::body::Body;

/// `<code> <reason>\n` as text/plain: short, and unambiguous in logs.
pub fn status(code: StatusCode) -> Response<Body> {
    let text = format!(
        "{} {}\n",
        code.as_u16(),
        code.canonical_reason().unwrap_or("")
    );
    let mut r = Response::new(Body::full(text));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A redirect with a short body naming the target.
pub fn redirect(code: StatusCode, location: &str) -> Response<Body> {
    let mut r = status(code);
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

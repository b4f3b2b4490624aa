//! The self-probe's marker: a header carrying a token random per process.
//! It lives here, with the side that answers it (the handler replies 204
//! before routing, logging or counting); the liveness monitor imports it
//! to send the probe. Random per process, so a client can neither fake a
//! probe nor be answered as one.

use std::sync::OnceLock;

/// The header that marks a self-probe request.
pub const PROBE_HEADER: &str = "x-vigil-probe";

/// The token a self-probe carries in [`PROBE_HEADER`].
pub fn probe_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)))
}

/// True when `headers` carry this process's probe token.
pub(crate) fn is_probe(headers: &http::HeaderMap) -> bool {
    // A name made once and a look along the request's few entries: a
    // lookup by `&str` parses and hashes the name on every request.
    const NAME: http::HeaderName = http::HeaderName::from_static(PROBE_HEADER);
    super::headers::get(headers, &NAME).is_some_and(|v| v.as_bytes() == probe_token().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    fn with_fields(extra: usize, probe: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        for i in 0..extra {
            h.insert(
                http::HeaderName::from_bytes(format!("x-f{i}").as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        if let Some(token) = probe {
            h.insert("X-Vigil-Probe", HeaderValue::from_str(token).unwrap());
        }
        h
    }

    #[test]
    fn the_token_marks_a_probe_and_nothing_else_does() {
        // Few fields (looked along) and many (hashed lookup).
        for extra in [0, 3, 40] {
            assert!(
                is_probe(&with_fields(extra, Some(probe_token()))),
                "{extra}"
            );
            assert!(!is_probe(&with_fields(extra, None)), "{extra}");
            assert!(!is_probe(&with_fields(extra, Some("0123"))), "{extra}");
            let mut near = probe_token().to_string();
            near.pop();
            near.push('g'); // never a hex digit
            assert!(!is_probe(&with_fields(extra, Some(&near))), "{extra}");
        }
    }
}

//! Whether and how to compress one response: nginx's gzip filter rules
//! (`ngx_http_gzip_header_filter`, `ngx_http_gzip_ok`), with two more
//! from RFC 9110 that nginx lacks: `Cache-Control: no-transform` (§7.7)
//! and an `identity` the client weights above every coding (§12.5.3).

use std::time::SystemTime;

use http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, DATE, ETAG,
    EXPIRES, LAST_MODIFIED, VIA,
};
use http::{HeaderMap, Method, StatusCode, Version, request};

use crate::config::Compression;
use crate::config::compression::GzipProxied;
use crate::proxy::accept_encoding::{self, Coding, Weights};

/// What the request says that matters for compression, read once before
/// the request is handed on (to an upstream, say).
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientFacts {
    pub weights: Weights,
    /// HEAD: no body to compress (nginx `header_only`).
    pub head: bool,
    /// HTTP/1.0 (or 0.9).
    pub http10: bool,
    /// The request came through a proxy (`Via`).
    pub via: bool,
    pub authorization: bool,
}

impl ClientFacts {
    pub fn new(req: &request::Parts) -> ClientFacts {
        let h = &req.headers;
        let mut joined = String::new();
        for v in h.get_all(http::header::ACCEPT_ENCODING) {
            if let Ok(s) = v.to_str() {
                if !joined.is_empty() {
                    joined.push(',');
                }
                joined.push_str(s);
            }
        }
        let listed = h.contains_key(http::header::ACCEPT_ENCODING);
        ClientFacts {
            weights: accept_encoding::weights(listed.then_some(joined.as_str())),
            head: req.method == Method::HEAD,
            http10: req.version < Version::HTTP_11,
            via: h.contains_key(VIA),
            authorization: h.contains_key(AUTHORIZATION),
        }
    }
}

/// What to do with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not a candidate at all (status, type, length, already encoded...).
    Untouched,
    /// A candidate, but not for this client: sent as is, with `Vary`.
    Vary,
    Compress(Coding),
}

/// Server preference among codings the client weights equally: zstd and
/// brotli make smaller output than gzip for the same CPU.
const PREFERENCE: [Coding; 3] = [Coding::Zstd, Coding::Br, Coding::Gzip];

pub(crate) fn decide(
    client: &ClientFacts,
    settings: &Compression,
    status: StatusCode,
    headers: &HeaderMap,
    body_is_empty: bool,
    now: SystemTime,
) -> Verdict {
    // nginx compresses 200, 403 and 404 only: not 206 (a range of the
    // identity bytes), 204/304 (no body), redirects or 5xx.
    if !matches!(status.as_u16(), 200 | 403 | 404) || client.head || body_is_empty {
        return Verdict::Untouched;
    }
    if headers
        .get(CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().is_empty())
    {
        return Verdict::Untouched;
    }
    if let Some(len) = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        if len < settings.min_length || len == 0 {
            return Verdict::Untouched;
        }
    }
    let typed = match headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        Some(t) => settings.types.contains(t),
        None => settings.types == crate::config::compression::MimeTypes::Any,
    };
    if !typed || has_directive(headers, "no-transform") {
        return Verdict::Untouched;
    }
    let Some(coding) = negotiate(&client.weights, settings) else {
        return Verdict::Vary;
    };
    if client.http10 && !settings.http10 {
        return Verdict::Vary;
    }
    if client.via && !proxied_ok(&settings.proxied, client, headers, now) {
        return Verdict::Vary;
    }
    Verdict::Compress(coding)
}

/// The coding the client weights highest among those turned on; ties go
/// to [`PREFERENCE`]. `None` when it accepts none, or weights `identity`
/// above them all.
pub(crate) fn negotiate(w: &Weights, settings: &Compression) -> Option<Coding> {
    let mut best: Option<(u16, Coding)> = None;
    for coding in PREFERENCE {
        let on = match coding {
            Coding::Zstd => settings.zstd.is_some(),
            Coding::Br => settings.brotli.is_some(),
            Coding::Gzip => settings.gzip.is_some(),
        };
        let weight = w.of(coding);
        if on && weight > 0 && best.is_none_or(|(b, _)| weight > b) {
            best = Some((weight, coding));
        }
    }
    let (weight, coding) = best?;
    if w.identity.is_some_and(|id| id > weight) {
        return None;
    }
    Some(coding)
}

/// `gzip_proxied` for a request that came through a proxy: nginx's checks
/// in its order (any, auth, then Expires, then Cache-Control, then the
/// validators).
fn proxied_ok(p: &GzipProxied, client: &ClientFacts, headers: &HeaderMap, now: SystemTime) -> bool {
    if *p == GzipProxied::default() {
        return false; // off
    }
    if p.any {
        return true;
    }
    if p.auth && client.authorization {
        return true;
    }
    if let Some(expires) = headers.get(EXPIRES) {
        if !p.expired {
            return false;
        }
        let Some(expires) = http_date(expires) else {
            return false;
        };
        let date = headers.get(DATE).and_then(http_date).unwrap_or(now);
        return expires < date;
    }
    if headers.contains_key(CACHE_CONTROL) {
        return (p.no_cache && has_directive(headers, "no-cache"))
            || (p.no_store && has_directive(headers, "no-store"))
            || (p.private && has_directive(headers, "private"));
    }
    if p.no_last_modified && headers.contains_key(LAST_MODIFIED) {
        return false;
    }
    if p.no_etag && headers.contains_key(ETAG) {
        return false;
    }
    // As nginx: a response that says nothing about caching is compressed
    // under any setting but `off`.
    true
}

fn http_date(v: &http::HeaderValue) -> Option<SystemTime> {
    httpdate::parse_http_date(v.to_str().ok()?).ok()
}

/// A Cache-Control directive (case-insensitive, with or without a value).
fn has_directive(headers: &HeaderMap, name: &str) -> bool {
    headers.get_all(CACHE_CONTROL).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').any(|d| {
                let d = d.split('=').next().unwrap_or("").trim();
                d.eq_ignore_ascii_case(name)
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::HeaderValue;
    use proptest::prelude::*;

    use super::*;
    use crate::config::compression::MimeTypes;

    fn settings() -> Compression {
        Compression {
            gzip: Some(1),
            brotli: Some(4),
            zstd: Some(3),
            types: MimeTypes::List(vec!["text/html".into(), "application/json".into()]),
            min_length: 20,
            vary: true,
            proxied: GzipProxied::default(),
            http10: false,
        }
    }

    fn client(ae: &str) -> ClientFacts {
        ClientFacts {
            weights: accept_encoding::weights(Some(ae)),
            ..Default::default()
        }
    }

    fn json(len: Option<u64>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(n) = len {
            h.insert(CONTENT_LENGTH, HeaderValue::from(n));
        }
        h
    }

    fn verdict(c: &ClientFacts, s: &Compression, status: u16, h: &HeaderMap) -> Verdict {
        decide(
            c,
            s,
            StatusCode::from_u16(status).unwrap(),
            h,
            false,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
        )
    }

    #[test]
    fn picks_by_weight_then_server_preference() {
        let s = settings();
        let w = |ae: &str| negotiate(&accept_encoding::weights(Some(ae)), &s);
        assert_eq!(w("gzip, deflate, br, zstd"), Some(Coding::Zstd));
        assert_eq!(w("gzip, deflate, br"), Some(Coding::Br));
        assert_eq!(w("gzip"), Some(Coding::Gzip));
        assert_eq!(w("gzip;q=1, br;q=0.5, zstd;q=0.2"), Some(Coding::Gzip));
        assert_eq!(w("br;q=0.9, zstd;q=0.8"), Some(Coding::Br));
        assert_eq!(w("*"), Some(Coding::Zstd));
        assert_eq!(w("*;q=0.5, gzip"), Some(Coding::Gzip));
        assert_eq!(w("identity"), None);
        assert_eq!(w("gzip;q=0.5, identity"), None);
        assert_eq!(w("gzip, identity;q=0.5"), Some(Coding::Gzip));
        assert_eq!(w("deflate"), None);
        assert_eq!(w(""), None);
        let gzip_only = Compression {
            brotli: None,
            zstd: None,
            ..settings()
        };
        assert_eq!(
            negotiate(
                &accept_encoding::weights(Some("zstd, br, gzip;q=0.1")),
                &gzip_only
            ),
            Some(Coding::Gzip)
        );
        assert_eq!(
            negotiate(&accept_encoding::weights(Some("zstd, br")), &gzip_only),
            None
        );
    }

    #[test]
    fn nginx_candidates_only() {
        let s = settings();
        let c = client("gzip");
        assert_eq!(
            verdict(&c, &s, 200, &json(Some(100))),
            Verdict::Compress(Coding::Gzip)
        );
        assert_eq!(
            verdict(&c, &s, 404, &json(None)),
            Verdict::Compress(Coding::Gzip)
        );
        assert_eq!(
            verdict(&c, &s, 403, &json(None)),
            Verdict::Compress(Coding::Gzip)
        );
        for status in [201, 204, 206, 301, 304, 500, 502] {
            assert_eq!(
                verdict(&c, &s, status, &json(None)),
                Verdict::Untouched,
                "{status}"
            );
        }
        // Too short, or empty.
        assert_eq!(verdict(&c, &s, 200, &json(Some(19))), Verdict::Untouched);
        assert_eq!(verdict(&c, &s, 200, &json(Some(0))), Verdict::Untouched);
        assert_eq!(
            decide(&c, &s, StatusCode::OK, &json(None), true, SystemTime::now()),
            Verdict::Untouched
        );
        // Not a listed type; text/html always is; no type at all is not.
        let mut h = json(None);
        h.insert(CONTENT_TYPE, HeaderValue::from_static("image/png"));
        assert_eq!(verdict(&c, &s, 200, &h), Verdict::Untouched);
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("Text/HTML; charset=utf-8"),
        );
        assert_eq!(verdict(&c, &s, 200, &h), Verdict::Compress(Coding::Gzip));
        h.remove(CONTENT_TYPE);
        assert_eq!(verdict(&c, &s, 200, &h), Verdict::Untouched);
        let any = Compression {
            types: MimeTypes::Any,
            ..settings()
        };
        assert_eq!(verdict(&c, &any, 200, &h), Verdict::Compress(Coding::Gzip));
        // Already encoded, no-transform, HEAD.
        let mut h = json(None);
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(verdict(&c, &s, 200, &h), Verdict::Untouched);
        let mut h = json(None);
        h.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("public, No-Transform"),
        );
        assert_eq!(verdict(&c, &s, 200, &h), Verdict::Untouched);
        let head = ClientFacts {
            head: true,
            ..client("gzip")
        };
        assert_eq!(verdict(&head, &s, 200, &json(None)), Verdict::Untouched);
    }

    #[test]
    fn candidates_the_client_cannot_take_still_vary() {
        let s = settings();
        assert_eq!(verdict(&client(""), &s, 200, &json(None)), Verdict::Vary);
        assert_eq!(
            verdict(&ClientFacts::default(), &s, 200, &json(None)),
            Verdict::Vary
        );
        let old = ClientFacts {
            http10: true,
            ..client("gzip")
        };
        assert_eq!(verdict(&old, &s, 200, &json(None)), Verdict::Vary);
        let s10 = Compression {
            http10: true,
            ..settings()
        };
        assert_eq!(
            verdict(&old, &s10, 200, &json(None)),
            Verdict::Compress(Coding::Gzip)
        );
    }

    #[test]
    fn gzip_proxied_follows_nginx() {
        let via = ClientFacts {
            via: true,
            ..client("gzip")
        };
        let with = |p: GzipProxied| Compression {
            proxied: p,
            ..settings()
        };
        let h = json(None);
        // off (the default): never through a proxy.
        assert_eq!(verdict(&via, &settings(), 200, &h), Verdict::Vary);
        // Any other setting: a response silent on caching is compressed.
        let expired_only = with(GzipProxied {
            expired: true,
            ..Default::default()
        });
        assert_eq!(
            verdict(&via, &expired_only, 200, &h),
            Verdict::Compress(Coding::Gzip)
        );
        let any = with(GzipProxied {
            any: true,
            ..Default::default()
        });
        assert_eq!(
            verdict(&via, &any, 200, &h),
            Verdict::Compress(Coding::Gzip)
        );
        // expired: an Expires before Date.
        let expired = with(GzipProxied {
            expired: true,
            ..Default::default()
        });
        let mut h = json(None);
        h.insert(
            EXPIRES,
            HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"),
        );
        h.insert(
            DATE,
            HeaderValue::from_static("Thu, 01 Jan 1970 00:00:10 GMT"),
        );
        assert_eq!(
            verdict(&via, &expired, 200, &h),
            Verdict::Compress(Coding::Gzip)
        );
        h.insert(
            EXPIRES,
            HeaderValue::from_static("Thu, 01 Jan 1970 00:01:00 GMT"),
        );
        assert_eq!(verdict(&via, &expired, 200, &h), Verdict::Vary);
        // An Expires decides alone: no-cache does not rescue it.
        let both = with(GzipProxied {
            no_cache: true,
            ..Default::default()
        });
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        assert_eq!(verdict(&via, &both, 200, &h), Verdict::Vary);
        h.remove(EXPIRES);
        assert_eq!(
            verdict(&via, &both, 200, &h),
            Verdict::Compress(Coding::Gzip)
        );
        h.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
        assert_eq!(verdict(&via, &both, 200, &h), Verdict::Vary);
        // private / no-store.
        let private = with(GzipProxied {
            private: true,
            ..Default::default()
        });
        h.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("private, max-age=0"),
        );
        assert_eq!(
            verdict(&via, &private, 200, &h),
            Verdict::Compress(Coding::Gzip)
        );
        // auth.
        let auth = with(GzipProxied {
            auth: true,
            ..Default::default()
        });
        let authed = ClientFacts {
            authorization: true,
            ..via.clone()
        };
        assert_eq!(
            verdict(&authed, &auth, 200, &json(None)),
            Verdict::Compress(Coding::Gzip)
        );
        let mut cached = json(None);
        cached.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
        assert_eq!(
            verdict(&authed, &auth, 200, &cached),
            Verdict::Compress(Coding::Gzip)
        );
        assert_eq!(verdict(&via, &auth, 200, &cached), Verdict::Vary);
        // no_last_modified / no_etag.
        let no_lm = with(GzipProxied {
            no_last_modified: true,
            ..Default::default()
        });
        let mut h = json(None);
        assert_eq!(
            verdict(&via, &no_lm, 200, &h),
            Verdict::Compress(Coding::Gzip)
        );
        h.insert(
            LAST_MODIFIED,
            HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"),
        );
        assert_eq!(verdict(&via, &no_lm, 200, &h), Verdict::Vary);
        let no_etag = with(GzipProxied {
            no_etag: true,
            ..Default::default()
        });
        let mut h = json(None);
        h.insert(ETAG, HeaderValue::from_static("\"x\""));
        assert_eq!(verdict(&via, &no_etag, 200, &h), Verdict::Vary);
    }

    proptest! {
        /// Whatever the client sends, the chosen coding is one that is on
        /// and that the client gave a weight above zero.
        #[test]
        fn never_picks_a_refused_or_disabled_coding(
            ae in "[a-z*;=,. 0-9qQ-]{0,40}",
            gzip in any::<bool>(), br in any::<bool>(), zstd in any::<bool>(),
        ) {
            let s = Compression {
                gzip: gzip.then_some(1),
                brotli: br.then_some(1),
                zstd: zstd.then_some(1),
                ..settings()
            };
            let w = accept_encoding::weights(Some(&ae));
            if let Some(c) = negotiate(&w, &s) {
                prop_assert!(w.of(c) > 0);
                let on = match c { Coding::Gzip => gzip, Coding::Br => br, Coding::Zstd => zstd };
                prop_assert!(on);
                for other in PREFERENCE {
                    let other_on = match other { Coding::Gzip => gzip, Coding::Br => br, Coding::Zstd => zstd };
                    if other_on { prop_assert!(w.of(other) <= w.of(c)); }
                }
            }
        }
    }
}

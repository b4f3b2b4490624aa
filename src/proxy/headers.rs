//! Header rewriting between client and upstream.
//!
//! RFC 9110 §7.6.1: "Intermediaries MUST parse a received Connection header
//! field before a message is forwarded and, for each connection-option in
//! this field, remove any header or trailer field(s) from the message with
//! the same name as the connection-option, and then remove the Connection
//! header field itself". The fixed list below is the set of fields the RFC
//! and practice (RFC 2616 §13.5.1, nginx, linkerd) treat as hop-by-hop even
//! when not listed.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Always hop-by-hop.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

/// Removes hop-by-hop fields, including those named by `Connection`.
/// Returns the `Upgrade` value when the message asked for a protocol
/// upgrade (`Connection: upgrade` + `Upgrade: x`), so the caller can carry
/// that one hop-by-hop pair across on purpose.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) -> Option<HeaderValue> {
    let mut upgrade = None;
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| {
            let token = token.trim();
            if token.eq_ignore_ascii_case("upgrade") {
                upgrade = headers.get(header::UPGRADE).cloned();
            }
            HeaderName::from_bytes(token.as_bytes()).ok()
        })
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::PROXY_AUTHENTICATE);
    upgrade
}

/// What the forwarding headers say about the client.
pub struct ClientInfo<'a> {
    pub addr: IpAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The host the client asked for (authority or Host), if any.
    pub host: Option<&'a str>,
}

/// Adds `X-Forwarded-For` (appended, as nginx's
/// `$proxy_add_x_forwarded_for`), `X-Real-IP`, `X-Forwarded-Proto` and
/// `X-Forwarded-Host`.
pub fn add_forwarding(headers: &mut HeaderMap, client: &ClientInfo<'_>) {
    let ip = client.addr.to_string();
    let xff = HeaderName::from_static("x-forwarded-for");
    let forwarded_for = {
        let previous: Vec<&str> = headers
            .get_all(&xff)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if previous.is_empty() {
            ip.clone()
        } else {
            format!("{}, {ip}", previous.join(", "))
        }
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(xff, v);
    }
    if let Ok(v) = HeaderValue::from_str(&ip) {
        headers.insert(HeaderName::from_static("x-real-ip"), v);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(client.scheme),
    );
    if let Some(v) = client.host.and_then(|h| HeaderValue::from_str(h).ok()) {
        headers.insert(HeaderName::from_static("x-forwarded-host"), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn removes_fixed_and_listed_hop_by_hop_fields() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic abc"),
            ("proxy-authenticate", "Basic"),
            ("x-end-to-end", "kept"),
            ("accept", "*/*"),
        ]);
        assert_eq!(strip_hop_by_hop(&mut h), None);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-end-to-end", "accept"]);
    }

    #[test]
    fn reports_an_upgrade_request() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert_eq!(
            strip_hop_by_hop(&mut h),
            Some(HeaderValue::from_static("websocket"))
        );
        assert!(h.is_empty());
        // Upgrade without Connection: upgrade is not an upgrade request.
        let mut h = map(&[("upgrade", "websocket")]);
        assert_eq!(strip_hop_by_hop(&mut h), None);
    }

    #[test]
    fn forwarding_headers_append_the_client() {
        let mut h = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
        ]);
        add_forwarding(
            &mut h,
            &ClientInfo {
                addr: "192.0.2.7".parse().unwrap(),
                scheme: "https",
                host: Some("shop.example"),
            },
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 10.0.0.2, 192.0.2.7");
        assert_eq!(h["x-real-ip"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "shop.example");

        let mut h = HeaderMap::new();
        add_forwarding(
            &mut h,
            &ClientInfo {
                addr: "::1".parse().unwrap(),
                scheme: "http",
                host: None,
            },
        );
        assert_eq!(h["x-forwarded-for"], "::1");
        assert!(!h.contains_key("x-forwarded-host"));
    }
}

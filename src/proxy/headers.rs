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

/// How many fields [`add_forwarding`] adds at most.
pub const FORWARDING_FIELDS: usize = 4;

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Above this many names, [`get`] hashes as `HeaderMap::get` does.
const SCAN_MAX: usize = 8;

/// `headers.get(name)`, for the few fields most requests carry: a look
/// along the entries (an integer compare each, for a name `http` knows)
/// costs less than hashing the name and probing the table, ~110
/// instructions a lookup (callgrind), and a request makes a dozen.
pub fn get<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    if headers.keys_len() > SCAN_MAX {
        return headers.get(name);
    }
    // In entry order, each entry's values after its first: the first hit
    // is the first value, as `get` gives.
    headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
}

/// `headers.get_all(name)`, as cheaply as [`get`].
pub fn values<'a>(headers: &'a HeaderMap, name: &'a HeaderName) -> Values<'a> {
    if headers.keys_len() <= SCAN_MAX {
        Values::Scan {
            fields: headers.iter(),
            name,
        }
    } else {
        Values::Hashed(headers.get_all(name).iter())
    }
}

/// The values of one name: by a look along the fields of a small map, by
/// the hash table in a large one. An enum rather than two optional
/// iterators chained: those cost ~300 instructions a request (callgrind)
/// for the `Host` and `Transfer-Encoding` checks alone.
pub enum Values<'a> {
    Scan {
        fields: http::header::Iter<'a, HeaderValue>,
        name: &'a HeaderName,
    },
    Hashed(http::header::ValueIter<'a, HeaderValue>),
}

impl<'a> Iterator for Values<'a> {
    type Item = &'a HeaderValue;

    fn next(&mut self) -> Option<&'a HeaderValue> {
        match self {
            Self::Scan { fields, name } => fields.find(|(n, _)| *n == *name).map(|(_, v)| v),
            Self::Hashed(values) => values.next(),
        }
    }
}

/// `headers.contains_key(name)`, as cheaply as [`get`].
pub fn has(headers: &HeaderMap, name: &HeaderName) -> bool {
    get(headers, name).is_some()
}

/// Whether `name` is hop-by-hop whatever `Connection` says. Compared as
/// names, not text: a known name is a small number in `http`, so each
/// comparison is one integer compare (and a name outside `http`'s list
/// is compared as bytes only with the two that are outside it too).
pub fn always_hop_by_hop(name: &HeaderName) -> bool {
    *name == header::CONNECTION
        || *name == header::TE
        || *name == header::TRAILER
        || *name == header::TRANSFER_ENCODING
        || *name == header::UPGRADE
        || *name == header::PROXY_AUTHORIZATION
        || *name == header::PROXY_AUTHENTICATE
        || *name == KEEP_ALIVE
        || *name == PROXY_CONNECTION
}

/// Removes hop-by-hop fields, including those named by `Connection`.
/// Returns the `Upgrade` value when the message asked for a protocol
/// upgrade (`Connection: upgrade` + `Upgrade: x`), so the caller can carry
/// that one hop-by-hop pair across on purpose.
///
/// Runs on every request and response, so it first looks for the fields
/// in one pass over the names (most messages carry none, or only
/// `Connection`) and removes only what is there.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) -> Option<HeaderValue> {
    let mut found: [Option<HeaderName>; 9] = Default::default();
    let mut n = 0;
    for name in headers.keys() {
        if n < found.len() && always_hop_by_hop(name) {
            found[n] = Some(name.clone());
            n += 1;
        }
    }
    if n == 0 {
        return None;
    }
    let mut upgrade = None;
    let mut listed: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        for option in connection_options(value) {
            match option {
                ConnectionOption::Upgrade => upgrade = headers.get(header::UPGRADE).cloned(),
                ConnectionOption::Field(name) => listed.push(name),
                ConnectionOption::Close | ConnectionOption::KeepAlive | ConnectionOption::Other => {
                }
            }
        }
    }
    for name in listed {
        headers.remove(name);
    }
    for name in found.into_iter().flatten() {
        headers.remove(name);
    }
    upgrade
}

/// One token of a `Connection` field.
#[derive(Debug, PartialEq, Eq)]
pub enum ConnectionOption {
    /// `upgrade`: the `Upgrade` field names a protocol to switch to.
    Upgrade,
    /// `close`: the connection ends after this message.
    Close,
    /// `keep-alive`: an HTTP/1.0 peer asks to keep the connection.
    KeepAlive,
    /// A field to remove before forwarding.
    Field(HeaderName),
    /// An empty token or one that names no field.
    Other,
}

/// The tokens of one `Connection` value (one empty token when it is not
/// text, as `to_str` would have it).
///
/// Split and trimmed as bytes: nearly every upstream response says
/// `Connection: keep-alive`, and `str::split(',')` with `str::trim` cost
/// ~370 instructions for that one token (callgrind), a fiftieth of a
/// proxied request.
pub fn connection_options(value: &HeaderValue) -> impl Iterator<Item = ConnectionOption> + '_ {
    // What `HeaderValue::to_str` accepts: visible ASCII, SP and HTAB. So
    // the only whitespace a token can carry is SP and HTAB, which is all
    // `trim_ascii` takes off here.
    let bytes = value.as_bytes();
    let is_text = bytes.iter().all(|&b| b == b'\t' || (32..127).contains(&b));
    let text = if is_text { bytes } else { &[] };
    text.split(|&b| b == b',').map(|token| {
        let token = token.trim_ascii();
        if token.eq_ignore_ascii_case(b"keep-alive") {
            ConnectionOption::KeepAlive
        } else if token.eq_ignore_ascii_case(b"close") {
            ConnectionOption::Close
        } else if token.eq_ignore_ascii_case(b"upgrade") {
            ConnectionOption::Upgrade
        } else if token.is_empty() {
            ConnectionOption::Other
        } else {
            HeaderName::from_bytes(token).map_or(ConnectionOption::Other, ConnectionOption::Field)
        }
    })
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// What the forwarding headers say about the client.
pub struct ClientInfo<'a> {
    pub addr: IpAddr,
    /// `addr` as a header value, made once per connection.
    pub addr_header: &'a HeaderValue,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The host the client asked for (authority or Host), if any.
    pub host: Option<&'a str>,
}

/// The client address as a header value (once per connection).
pub fn addr_header(addr: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&addr.to_string()).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// Fields vigil adds to a request on its way upstream, kept beside the
/// client's field map and written after it: each replaces every field of
/// its name in the map. Put into the map instead, each cost a hash of its
/// name and an insert (callgrind: ~1,000 instructions per proxied request
/// for the four forwarding fields, a twentieth of the request). On the
/// heap, one allocation: inline, the four would add ~300 bytes to each of
/// the request futures that hold the request, moved along with them.
#[derive(Debug, Clone, Default)]
pub struct AddedFields(Vec<(HeaderName, HeaderValue)>);

impl AddedFields {
    /// Sets `name`, replacing an earlier value of that name.
    pub fn set(&mut self, name: HeaderName, value: HeaderValue) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(field) => field.1 = value,
            None => {
                if self.0.capacity() == 0 {
                    self.0.reserve_exact(FORWARDING_FIELDS);
                }
                self.0.push((name, value));
            }
        }
    }

    /// Drops `name` (a `proxy_set_header` of it takes over).
    pub fn remove(&mut self, name: &HeaderName) {
        self.0.retain(|(n, _)| n != name);
    }

    /// Whether a field of the map named `name` gives way to one of these.
    pub fn replaces(&self, name: &HeaderName) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    pub fn get(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.0.iter().map(|(n, v)| (n, v))
    }
}

/// Sets `X-Forwarded-For` (the client's fields of that name with the
/// client appended, as nginx's `$proxy_add_x_forwarded_for`), `X-Real-IP`,
/// `X-Forwarded-Proto` and `X-Forwarded-Host`; `headers` are the
/// client's. The first fields added: pushed without a look for their names.
pub fn add_forwarding(headers: &HeaderMap, client: &ClientInfo<'_>) -> AddedFields {
    // A look along the (few) names costs less than hashing this one.
    let forwarded_for = if headers.keys().any(|n| *n == X_FORWARDED_FOR) {
        let mut joined = String::new();
        for v in headers.get_all(&X_FORWARDED_FOR) {
            if let Ok(v) = v.to_str() {
                joined.push_str(v);
                joined.push_str(", ");
            }
        }
        joined.push_str(client.addr_header.to_str().unwrap_or("-"));
        HeaderValue::from_str(&joined).unwrap_or_else(|_| client.addr_header.clone())
    } else {
        client.addr_header.clone()
    };
    let mut added = Vec::with_capacity(FORWARDING_FIELDS);
    added.push((X_FORWARDED_FOR, forwarded_for));
    added.push((X_REAL_IP, client.addr_header.clone()));
    added.push((X_FORWARDED_PROTO, HeaderValue::from_static(client.scheme)));
    if let Some(host) = client.host {
        // The Host header's own value when that is where the host came
        // from (a cheap clone), else a copy of the authority.
        let value = match get(headers, &header::HOST) {
            Some(v) if v.as_bytes() == host.as_bytes() => Some(v.clone()),
            _ => HeaderValue::from_str(host).ok(),
        };
        if let Some(v) = value {
            added.push((X_FORWARDED_HOST, v));
        }
    }
    AddedFields(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `connection_options` gave when it split the value as text:
    /// the byte-level split must agree with it on every value.
    fn options_as_text(value: &HeaderValue) -> Vec<ConnectionOption> {
        let text = value.to_str().unwrap_or("");
        text.split(',')
            .map(str::trim)
            .map(|token| {
                if token.eq_ignore_ascii_case("upgrade") {
                    ConnectionOption::Upgrade
                } else if token.eq_ignore_ascii_case("close") {
                    ConnectionOption::Close
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    ConnectionOption::KeepAlive
                } else if token.is_empty() {
                    ConnectionOption::Other
                } else {
                    HeaderName::from_bytes(token.as_bytes())
                        .map_or(ConnectionOption::Other, ConnectionOption::Field)
                }
            })
            .collect()
    }

    #[test]
    fn connection_tokens_are_read_as_text_would_read_them() {
        for value in [
            &b"keep-alive"[..],
            b"Keep-Alive",
            b"close",
            b"CLOSE, Upgrade",
            b" upgrade ,\tX-Hop\t, ,",
            b"",
            b",",
            b"keep-alive, close",
            b"x-caf\xc3\xa9, close",
            b"close, x\x80y",
            b"bad name, close",
        ] {
            let v = HeaderValue::from_bytes(value).unwrap();
            let got: Vec<_> = connection_options(&v).collect();
            assert_eq!(got, options_as_text(&v), "{value:?}");
        }
        assert_eq!(
            connection_options(&HeaderValue::from_static("keep-alive")).collect::<Vec<_>>(),
            [ConnectionOption::KeepAlive]
        );
    }

    proptest::proptest! {
        #[test]
        fn any_connection_value_is_read_as_text_would_read_it(
            value in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(b" \t,-aAcCkKlLoOsSeEpPuUgGrRdDxX".to_vec()),
                    proptest::num::u8::ANY,
                ],
                0..24,
            )
        ) {
            if let Ok(v) = HeaderValue::from_bytes(&value) {
                let got: Vec<_> = connection_options(&v).collect();
                proptest::prop_assert_eq!(got, options_as_text(&v));
            }
        }
    }

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

    /// The scan and the hashed lookup agree, on either side of the
    /// threshold, for known and custom names, first values first.
    #[test]
    fn get_agrees_with_the_map() {
        let names = [
            "host",
            "x-a",
            "content-length",
            "x-b",
            "accept",
            "x-a",
            "expect",
            "cookie",
            "x-c",
            "referer",
            "user-agent",
            "x-d",
        ];
        for n in 0..=names.len() {
            let pairs: Vec<(&str, String)> = names[..n]
                .iter()
                .enumerate()
                .map(|(i, k)| (*k, i.to_string()))
                .collect();
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let h = map(&pairs);
            for probe in names.iter().chain(&["x-none", "te", "range"]) {
                let name = HeaderName::from_bytes(probe.as_bytes()).unwrap();
                assert_eq!(get(&h, &name), h.get(&name), "{probe} among {n}");
                assert_eq!(has(&h, &name), h.contains_key(&name));
                let all: Vec<_> = h.get_all(&name).iter().collect();
                assert_eq!(values(&h, &name).collect::<Vec<_>>(), all);
            }
        }
    }

    #[test]
    fn hop_by_hop_names_are_told_by_name_as_by_text() {
        const LIST: [&str; 9] = [
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "proxy-authorization",
            "proxy-authenticate",
        ];
        let others = [
            "host",
            "content-length",
            "date",
            "server",
            "x-keep-alive",
            "keep-alive2",
            "proxy",
            "t",
            "tee",
            "x-upgrade",
            "accept",
        ];
        for text in LIST.iter().chain(&others) {
            for spelled in [text.to_string(), text.to_ascii_uppercase()] {
                let name = HeaderName::from_bytes(spelled.as_bytes()).unwrap();
                assert_eq!(always_hop_by_hop(&name), LIST.contains(text), "{spelled}");
            }
        }
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
        let h = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
        ]);
        let ip = "192.0.2.7".parse().unwrap();
        let added = add_forwarding(
            &h,
            &ClientInfo {
                addr: ip,
                addr_header: &addr_header(ip),
                scheme: "https",
                host: Some("shop.example"),
            },
        );
        let get = |a: &AddedFields, n: &str| {
            a.get(&HeaderName::from_bytes(n.as_bytes()).unwrap())
                .cloned()
        };
        assert_eq!(
            get(&added, "x-forwarded-for").unwrap(),
            "10.0.0.1, 10.0.0.2, 192.0.2.7"
        );
        assert!(added.replaces(&X_FORWARDED_FOR), "the client's own go");
        assert_eq!(get(&added, "x-real-ip").unwrap(), "192.0.2.7");
        assert_eq!(get(&added, "x-forwarded-proto").unwrap(), "https");
        assert_eq!(get(&added, "x-forwarded-host").unwrap(), "shop.example");

        let ip = "::1".parse().unwrap();
        let added = add_forwarding(
            &HeaderMap::new(),
            &ClientInfo {
                addr: ip,
                addr_header: &addr_header(ip),
                scheme: "http",
                host: None,
            },
        );
        assert_eq!(get(&added, "x-forwarded-for").unwrap(), "::1");
        assert_eq!(get(&added, "x-forwarded-host"), None);
    }

    #[test]
    fn an_added_field_is_set_once_and_can_be_dropped() {
        let mut added = AddedFields::default();
        added.set(X_REAL_IP, HeaderValue::from_static("a"));
        added.set(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        added.set(X_REAL_IP, HeaderValue::from_static("b"));
        let fields: Vec<_> = added
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(fields, [("x-real-ip", "b"), ("x-forwarded-proto", "http")]);
        added.remove(&X_REAL_IP);
        assert!(!added.replaces(&X_REAL_IP));
        assert!(added.replaces(&X_FORWARDED_PROTO));
        assert!(!added.replaces(&header::HOST));
    }
}

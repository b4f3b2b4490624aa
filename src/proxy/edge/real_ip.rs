//! The client's real address behind trusted proxies, with nginx's
//! realip semantics (`ngx_http_get_forwarded_addr`):
//!
//! - the peer must be trusted (`set_real_ip_from`), else nothing changes;
//! - the address is the last item of the header (the one the trusted
//!   peer added);
//! - with `real_ip_recursive`, while the address found is itself trusted,
//!   the item before it is taken, across every `X-Forwarded-For` line
//!   from the last to the first; when all are trusted, the first wins;
//! - an item that is not an address stops the walk, keeping what was
//!   found so far (or the peer, when nothing was).

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;

use crate::config::cidr::CidrSet;
use crate::config::edge::{RealIp, RealIpHeader};

/// The client address for a request from `peer`, by `cfg`.
/// `proxy_protocol` is the source address of the connection's PROXY
/// header, if it had one.
pub(crate) fn client_addr(
    peer: IpAddr,
    cfg: &RealIp,
    headers: &HeaderMap,
    proxy_protocol: Option<IpAddr>,
) -> IpAddr {
    let found = match &cfg.header {
        RealIpHeader::ProxyProtocol => {
            let text = proxy_protocol.map(|a| a.to_string());
            forwarded(
                peer,
                &cfg.trusted,
                text.iter().map(|t| t.as_bytes()),
                cfg.recursive,
            )
        }
        RealIpHeader::XForwardedFor => forwarded(
            peer,
            &cfg.trusted,
            headers
                .get_all("x-forwarded-for")
                .iter()
                .rev()
                .map(|v| v.as_bytes()),
            cfg.recursive,
        ),
        RealIpHeader::XRealIp => forwarded(
            peer,
            &cfg.trusted,
            headers.get("x-real-ip").map(|v| v.as_bytes()).into_iter(),
            cfg.recursive,
        ),
        RealIpHeader::Other(name) => forwarded(
            peer,
            &cfg.trusted,
            headers.get(name).map(|v| v.as_bytes()).into_iter(),
            cfg.recursive,
        ),
    };
    found.unwrap_or(peer)
}

/// Walks header values, given last line first. `None`: keep the peer.
pub(crate) fn forwarded<'a>(
    peer: IpAddr,
    trusted: &CidrSet,
    lines_last_first: impl Iterator<Item = &'a [u8]>,
    recursive: bool,
) -> Option<IpAddr> {
    let mut addr = peer;
    let mut found = false;
    for line in lines_last_first {
        for item in line
            .rsplit(|&b| b == b',' || b == b' ')
            .filter(|i| !i.is_empty())
        {
            if !trusted.contains(addr) {
                return found.then_some(addr);
            }
            let Some(parsed) = parse_addr_port(item) else {
                return found.then_some(addr);
            };
            addr = parsed;
            found = true;
            if !recursive {
                return Some(addr);
            }
        }
        if !recursive {
            // nginx reads only the last line without recursion.
            break;
        }
    }
    found.then_some(addr)
}

/// `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]:80` (nginx's
/// `ngx_parse_addr_port`).
fn parse_addr_port(item: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(item).ok()?;
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    // `[::1]` without a port.
    text.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::config::cidr::Cidr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cfg(trusted: &[&str], header: RealIpHeader, recursive: bool) -> RealIp {
        RealIp {
            trusted: CidrSet(trusted.iter().map(|c| Cidr::parse(c).unwrap()).collect()),
            header,
            recursive,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    const LB: &str = "10.0.0.5";

    #[test]
    fn untrusted_peer_changes_nothing() {
        let c = cfg(&["10.0.0.0/8"], RealIpHeader::XForwardedFor, true);
        let h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(client_addr(ip("192.0.2.9"), &c, &h, None), ip("192.0.2.9"));
    }

    #[test]
    fn x_forwarded_for_without_recursion_takes_the_last_item() {
        let c = cfg(&["10.0.0.0/8"], RealIpHeader::XForwardedFor, false);
        let h = headers(&[("x-forwarded-for", "203.0.113.1, 10.1.1.1")]);
        // The last item, even though it is itself trusted.
        assert_eq!(client_addr(ip(LB), &c, &h, None), ip("10.1.1.1"));
        // Several lines: only the last one counts.
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("x-forwarded-for", "203.0.113.1"),
        ]);
        assert_eq!(client_addr(ip(LB), &c, &h, None), ip("203.0.113.1"));
    }

    #[test]
    fn recursive_skips_trusted_hops_across_lines() {
        let c = cfg(&["10.0.0.0/8"], RealIpHeader::XForwardedFor, true);
        let h = headers(&[("x-forwarded-for", "203.0.113.1, 10.1.1.1,10.2.2.2")]);
        assert_eq!(client_addr(ip(LB), &c, &h, None), ip("203.0.113.1"));
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.7, 203.0.113.1"),
            ("x-forwarded-for", "10.1.1.1"),
        ]);
        assert_eq!(client_addr(ip(LB), &c, &h, None), ip("203.0.113.1"));
        // A spoofed first item is not reached: the walk stops at the first
        // untrusted address from the right.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.1, 10.1.1.1")]);
        assert_eq!(client_addr(ip(LB), &c, &h, None), ip("203.0.113.1"));
        // All trusted: the first one.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.1.1")]);
        assert_eq!(client_addr(ip(LB), &c, &h, None), ip("10.9.9.9"));
    }

    #[test]
    fn garbage_stops_the_walk_keeping_what_was_found() {
        let c = cfg(&["10.0.0.0/8"], RealIpHeader::XForwardedFor, true);
        let h = headers(&[("x-forwarded-for", "unknown, 10.1.1.1")]);
        assert_eq!(client_addr(ip(LB), &c, &h, None), ip("10.1.1.1"));
        let h = headers(&[("x-forwarded-for", "not-an-address")]);
        assert_eq!(client_addr(ip(LB), &c, &h, None), ip(LB));
        let h = headers(&[("x-forwarded-for", ", ,")]);
        assert_eq!(client_addr(ip(LB), &c, &h, None), ip(LB));
        assert_eq!(client_addr(ip(LB), &c, &HeaderMap::new(), None), ip(LB));
    }

    #[test]
    fn ports_and_brackets() {
        let c = cfg(&["10.0.0.0/8"], RealIpHeader::XRealIp, false);
        for (v, want) in [
            ("203.0.113.1:5555", "203.0.113.1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::2]", "2001:db8::2"),
        ] {
            let h = headers(&[("x-real-ip", v)]);
            assert_eq!(client_addr(ip(LB), &c, &h, None), ip(want), "{v}");
        }
    }

    #[test]
    fn other_headers_and_proxy_protocol() {
        let name = http::HeaderName::from_static("cf-connecting-ip");
        let c = cfg(&["10.0.0.0/8"], RealIpHeader::Other(name), false);
        let h = headers(&[
            ("cf-connecting-ip", "203.0.113.9"),
            ("x-real-ip", "1.1.1.1"),
        ]);
        assert_eq!(client_addr(ip(LB), &c, &h, None), ip("203.0.113.9"));

        let c = cfg(&["10.0.0.0/8"], RealIpHeader::ProxyProtocol, false);
        let h = headers(&[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(
            client_addr(ip(LB), &c, &h, Some(ip("203.0.113.4"))),
            ip("203.0.113.4")
        );
        assert_eq!(client_addr(ip(LB), &c, &h, None), ip(LB));
        assert_eq!(
            client_addr(ip("192.0.2.1"), &c, &h, Some(ip("203.0.113.4"))),
            ip("192.0.2.1"),
            "the PROXY header is believed only from a trusted peer"
        );
    }

    #[test]
    fn mapped_v4_peer_is_trusted_by_its_v4_range() {
        let c = cfg(&["10.0.0.0/8"], RealIpHeader::XRealIp, false);
        let h = headers(&[("x-real-ip", "203.0.113.1")]);
        assert_eq!(
            client_addr(ip("::ffff:10.0.0.5"), &c, &h, None),
            ip("203.0.113.1")
        );
    }

    #[test]
    fn spaces_split_items_as_commas_do() {
        // proptest found this: "] ::" is two items, and "::" is an address.
        let c = cfg(&["10.0.0.0/8"], RealIpHeader::XForwardedFor, false);
        let h = headers(&[("x-forwarded-for", "] ::")]);
        assert_eq!(client_addr(ip(LB), &c, &h, None), ip("::"));
    }

    proptest! {
        /// Whatever the header says, the result is the peer or an address
        /// written in it; with an untrusted peer it is always the peer.
        #[test]
        fn result_comes_from_peer_or_header(
            items in proptest::collection::vec(prop_oneof![
                "10\\.[0-9]{1,2}\\.0\\.1", "203\\.0\\.113\\.[0-9]{1,2}", "[a-z:\\[\\] ]{0,6}"
            ], 0..6),
            recursive: bool,
            trusted_peer: bool,
        ) {
            let c = cfg(&["10.0.0.0/8"], RealIpHeader::XForwardedFor, recursive);
            let peer = if trusted_peer { ip(LB) } else { ip("192.0.2.1") };
            let line = items.join(", ");
            let mut h = HeaderMap::new();
            if let Ok(v) = line.parse() {
                h.insert("x-forwarded-for", v);
            }
            let got = client_addr(peer, &c, &h, None);
            if !trusted_peer {
                prop_assert_eq!(got, peer);
            } else {
                // The header splits at commas and spaces (as nginx's
                // walk does), so an item may hold several words.
                let words = items.iter().flat_map(|i| i.split([' ', ',']));
                prop_assert!(got == peer || words.map(str::as_bytes).any(|w| parse_addr_port(w) == Some(got)));
            }
        }
    }
}

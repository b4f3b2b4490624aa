//! Address ranges as nginx writes them: `10.0.0.0/8`, `2001:db8::/32`,
//! a bare address (`127.0.0.1`, a /32 or /128), and the lists built from
//! them (`allow`/`deny`, `set_real_ip_from`).
//!
//! A range with host bits set (`10.0.0.1/8`) is refused: nginx only
//! warns ("low address bits are meaningless") and masks them, which
//! hides a typo that may let in far more than meant.

use std::fmt;
use std::net::IpAddr;

/// A network: an address with its host bits zero, and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `v6/n` or a bare address.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR range"))?;
        let max = max_prefix(network);
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        let cidr = Cidr { network, prefix };
        let masked = cidr.masked(network);
        if masked != network {
            return Err(format!(
                "{text:?} has host bits set; the network is {masked}/{prefix}"
            ));
        }
        Ok(cidr)
    }

    /// True when `ip` is in this network. An IPv4-mapped IPv6 address
    /// (`::ffff:10.1.2.3`, what a dual-stack socket reports) is compared as
    /// the IPv4 address it carries, as nginx does.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (self.network, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                self.masked(ip) == self.network
            }
            _ => false,
        }
    }

    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        }
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Addresses to match against, as a list of ranges (`set_real_ip_from`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrSet(pub Vec<Cidr>);

impl CidrSet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One `allow` or `deny` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessRule {
    pub allow: bool,
    /// `None` is `all`: every address of both families.
    pub from: Option<Cidr>,
}

impl AccessRule {
    /// Parses `"allow 10.0.0.0/8"`, `"deny all"`, `"allow ::1"`.
    pub fn parse(text: &str) -> Result<AccessRule, String> {
        let mut words = text.split_whitespace();
        let allow = match words.next() {
            Some("allow") => true,
            Some("deny") => false,
            _ => {
                return Err(format!(
                    "{text:?}: write \"allow ADDRESS\" or \"deny ADDRESS\" (an address, a CIDR \
                     range or all)"
                ));
            }
        };
        let (Some(what), None) = (words.next(), words.next()) else {
            return Err(format!(
                "{text:?}: one address, CIDR range or all after {}",
                if allow { "allow" } else { "deny" }
            ));
        };
        let from = if what == "all" {
            None
        } else {
            Some(Cidr::parse(what)?)
        };
        Ok(AccessRule { allow, from })
    }

    fn matches(&self, ip: IpAddr) -> bool {
        self.from.is_none_or(|c| c.contains(ip))
    }
}

/// `access = ["allow ...", "deny ..."]` (nginx `allow`/`deny`): the first
/// rule that matches decides; an address no rule matches is allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessList(pub Vec<AccessRule>);

impl AccessList {
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.0
            .iter()
            .find(|r| r.matches(ip))
            .is_none_or(|r| r.allow)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_ranges_and_addresses() {
        assert_eq!(Cidr::parse("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(
            Cidr::parse("127.0.0.1").unwrap().to_string(),
            "127.0.0.1/32"
        );
        assert_eq!(Cidr::parse("::1").unwrap().to_string(), "::1/128");
        assert_eq!(
            Cidr::parse("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!(Cidr::parse("0.0.0.0/0").unwrap().to_string(), "0.0.0.0/0");
        assert_eq!(Cidr::parse("::/0").unwrap().to_string(), "::/0");
    }

    #[test]
    fn refuses_host_bits_and_nonsense() {
        let e = Cidr::parse("10.0.0.1/8").unwrap_err();
        assert!(e.contains("host bits") && e.contains("10.0.0.0/8"), "{e}");
        assert!(
            Cidr::parse("2001:db8::1/32")
                .unwrap_err()
                .contains("2001:db8::/32")
        );
        assert!(Cidr::parse("10.0.0.0/33").unwrap_err().contains("0 to 32"));
        assert!(Cidr::parse("::/129").unwrap_err().contains("0 to 128"));
        assert!(Cidr::parse("10.0.0.0/").is_err());
        assert!(Cidr::parse("10.0.0.0/-1").is_err());
        assert!(Cidr::parse("example.com").is_err());
        assert!(Cidr::parse("").is_err());
        assert!(Cidr::parse("10.0.0/8").is_err());
    }

    #[test]
    fn contains_by_family_and_mapped_v4() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains(ip("10.255.1.2")));
        assert!(!net.contains(ip("11.0.0.0")));
        assert!(net.contains(ip("::ffff:10.1.2.3")));
        assert!(!net.contains(ip("::1")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        // ::/0 is every IPv6 address but no IPv4 one, as in nginx.
        assert!(!Cidr::parse("::/0").unwrap().contains(ip("1.2.3.4")));
    }

    #[test]
    fn access_rules_first_match_wins() {
        let list = AccessList(
            [
                "allow 127.0.0.1",
                "deny 10.1.0.0/16",
                "allow 10.0.0.0/8",
                "deny all",
            ]
            .iter()
            .map(|r| AccessRule::parse(r).unwrap())
            .collect(),
        );
        assert!(list.permits(ip("127.0.0.1")));
        assert!(list.permits(ip("10.2.0.1")));
        assert!(!list.permits(ip("10.1.0.1")));
        assert!(!list.permits(ip("192.168.1.1")));
        assert!(!list.permits(ip("::1")));
        // No rule matching: allowed.
        assert!(
            AccessList(vec![AccessRule::parse("deny 10.0.0.0/8").unwrap()])
                .permits(ip("192.168.1.1"))
        );
        assert!(AccessList::default().permits(ip("192.168.1.1")));
    }

    #[test]
    fn access_rule_syntax() {
        assert!(AccessRule::parse("deny all").unwrap().from.is_none());
        assert!(AccessRule::parse("permit all").is_err());
        assert!(AccessRule::parse("allow").is_err());
        assert!(AccessRule::parse("allow 1.2.3.4 5.6.7.8").is_err());
        assert!(
            AccessRule::parse("allow 1.2.3.4/24")
                .unwrap_err()
                .contains("host bits")
        );
    }

    proptest! {
        /// `contains` agrees with comparing the top `prefix` bits.
        #[test]
        fn v4_contains_is_prefix_compare(a: u32, b: u32, prefix in 0u8..=32) {
            let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
            let net = Cidr::parse(&format!("{}/{prefix}", Ipv4Addr::from(a & mask))).unwrap();
            prop_assert!(net.contains(IpAddr::V4(a.into())));
            prop_assert_eq!(net.contains(IpAddr::V4(b.into())), (a & mask) == (b & mask));
        }

        #[test]
        fn v6_contains_is_prefix_compare(a: u128, b: u128, prefix in 0u8..=128) {
            let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
            let net = Cidr::parse(&format!("{}/{prefix}", Ipv6Addr::from(a & mask))).unwrap();
            prop_assert!(net.contains(IpAddr::V6(a.into())) || Ipv6Addr::from(a).to_ipv4_mapped().is_some());
            let b6 = Ipv6Addr::from(b);
            if b6.to_ipv4_mapped().is_none() {
                prop_assert_eq!(net.contains(IpAddr::V6(b6)), (a & mask) == (b & mask));
            }
        }

        /// Parsing never panics, and what it accepts prints back parseable.
        #[test]
        fn parse_total(s in "\\PC{0,40}") {
            if let Ok(c) = Cidr::parse(&s) {
                prop_assert_eq!(Cidr::parse(&c.to_string()).unwrap(), c);
            }
        }
    }
}

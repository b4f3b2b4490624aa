//! What the main process tells its guardian, one line per change:
//! `+ <ifindex> <addr>/<prefix>` before a VIP is added, `- <ifindex>
//! <addr>/<prefix>` once it is removed. Text, so `strace` shows it and a
//! truncated or garbled line is recognisably one. Pure: no I/O.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

/// A VIP on an interface, as the guardian must remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HeldVip {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub prefix: u8,
}

/// One message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// The VIP is about to be added (sent first: a crash between the two
    /// leaves the guardian removing an address that may not be there,
    /// which is harmless, never the reverse).
    Hold(HeldVip),
    /// The VIP was removed.
    Release(HeldVip),
    /// The main process is about to abort (a panic under `panic =
    /// "abort"`): remove everything now, without waiting for the panic
    /// report (a backtrace can take seconds) and the end of the pipe.
    Dying,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (sign, v) = match self {
            Line::Hold(v) => ('+', v),
            Line::Release(v) => ('-', v),
            Line::Dying => return f.write_str("!\n"),
        };
        writeln!(f, "{sign} {} {}/{}", v.ifindex, v.addr, v.prefix)
    }
}

impl Line {
    /// Parses one line (without its newline); `None` for anything else.
    pub fn parse(text: &str) -> Option<Line> {
        if text == "!" {
            return Some(Line::Dying);
        }
        let mut words = text.split(' ');
        let sign = words.next()?;
        let ifindex = words.next()?.parse().ok()?;
        let (addr, prefix) = words.next()?.split_once('/')?;
        if words.next().is_some() {
            return None;
        }
        let addr: IpAddr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return None;
        }
        let v = HeldVip {
            ifindex,
            addr,
            prefix,
        };
        match sign {
            "+" => Some(Line::Hold(v)),
            "-" => Some(Line::Release(v)),
            _ => None,
        }
    }
}

/// The VIPs the main process holds, as the guardian knows them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Held(BTreeSet<HeldVip>);

impl Held {
    pub fn apply(&mut self, line: Line) {
        match line {
            Line::Hold(v) => {
                self.0.insert(v);
            }
            Line::Release(v) => {
                self.0.remove(&v);
            }
            // The guardian acts on it; the state is what is held.
            Line::Dying => {}
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &HeldVip> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// The lines that bring a fresh guardian to this state.
    pub fn replay(&self) -> String {
        self.0.iter().map(|v| Line::Hold(*v).to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn vip(ifindex: u32, addr: &str, prefix: u8) -> HeldVip {
        HeldVip {
            ifindex,
            addr: addr.parse().unwrap(),
            prefix,
        }
    }

    #[test]
    fn lines_read_back_as_written() {
        for line in [
            Line::Hold(vip(3, "10.0.0.50", 24)),
            Line::Release(vip(3, "10.0.0.50", 24)),
            Line::Hold(vip(u32::MAX, "fd00::50", 128)),
            Line::Dying,
        ] {
            let text = line.to_string();
            assert!(text.ends_with('\n'));
            assert_eq!(Line::parse(text.trim_end()), Some(line), "{text}");
        }
        assert_eq!(
            Line::Hold(vip(2, "10.0.0.1", 32)).to_string(),
            "+ 2 10.0.0.1/32\n"
        );
    }

    #[test]
    fn anything_else_is_not_a_line() {
        for bad in [
            "",
            "+",
            "+ 2",
            "+ 2 10.0.0.1",
            "* 2 10.0.0.1/32",
            "+ x 10.0.0.1/32",
            "+ 2 10.0.0.1/33",
            "+ 2 fd00::1/129",
            "+ 2 10.0.0.1/32 extra",
            "+  2 10.0.0.1/32",
            "+ -1 10.0.0.1/32",
        ] {
            assert_eq!(Line::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn held_follows_holds_and_releases() {
        let mut held = Held::default();
        let a = vip(2, "10.0.0.1", 24);
        let b = vip(2, "fd00::1", 64);
        held.apply(Line::Hold(a));
        held.apply(Line::Hold(b));
        held.apply(Line::Hold(a));
        assert_eq!(held.len(), 2);
        held.apply(Line::Release(a));
        held.apply(Line::Release(vip(9, "10.0.0.9", 24)));
        assert_eq!(held.iter().collect::<Vec<_>>(), vec![&b]);
    }

    fn any_vip() -> impl Strategy<Value = HeldVip> {
        (
            0u32..4,
            prop_oneof![
                any::<[u8; 4]>().prop_map(IpAddr::from),
                any::<[u8; 16]>().prop_map(IpAddr::from),
            ],
            any::<u8>(),
        )
            .prop_map(|(ifindex, addr, p)| HeldVip {
                ifindex,
                addr,
                prefix: p % if addr.is_ipv4() { 33 } else { 129 },
            })
    }

    proptest! {
        /// A guardian fed the replay of a state reaches that state: what a
        /// respawned guardian is told is what the old one knew.
        #[test]
        fn replay_rebuilds_the_state(ops in prop::collection::vec((any::<bool>(), any_vip()), 0..40)) {
            let mut held = Held::default();
            for (hold, v) in ops {
                let line = if hold { Line::Hold(v) } else { Line::Release(v) };
                prop_assert_eq!(Line::parse(line.to_string().trim_end()), Some(line));
                held.apply(line);
            }
            let mut fresh = Held::default();
            for text in held.replay().lines() {
                fresh.apply(Line::parse(text).unwrap());
            }
            prop_assert_eq!(fresh, held);
        }

        #[test]
        fn parsing_never_panics(text in ".{0,60}") {
            let _ = Line::parse(&text);
        }
    }
}

//! VRRP timer arithmetic (RFC 5798 §6.1, RFC 3768 §6.1).
//!
//! Everything here is exact integer arithmetic in microseconds, so the
//! values can be checked to the centisecond (and below) in tests:
//! `Skew_Time` for priority 100 at a 1 s interval is 609 375 µs, exactly
//! what keepalived computes, not FRR's truncated 600 ms.

use std::time::Duration;

pub use crate::config::vrrp::Centiseconds;

/// Which RFC's timer rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerRules {
    /// VRRPv3, RFC 5798 §6.1: the skew scales with the master's interval.
    V3,
    /// VRRPv2, RFC 3768 §6.1: `Skew_Time = (256 - Priority) / 256` seconds,
    /// independent of the interval.
    V2,
}

/// `Skew_Time` for a router of `priority` (RFC 5798 §6.1):
/// `((256 - Priority) * Master_Adver_Interval) / 256` centiseconds (v3), or
/// `(256 - Priority) / 256` seconds (v2, RFC 3768 §6.1).
pub fn skew_time(rules: TimerRules, priority: u8, master_adver_interval: Centiseconds) -> Duration {
    let weight = 256 - u64::from(priority);
    let micros = match rules {
        // cs * 10_000 µs/cs, divided by 256: exact to the microsecond.
        TimerRules::V3 => weight * u64::from(master_adver_interval.get()) * 10_000 / 256,
        TimerRules::V2 => weight * 1_000_000 / 256,
    };
    Duration::from_micros(micros)
}

/// `Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time`
/// (RFC 5798 §6.1; RFC 3768 §6.1 with the v2 skew).
pub fn master_down_interval(
    rules: TimerRules,
    priority: u8,
    master_adver_interval: Centiseconds,
) -> Duration {
    master_adver_interval.as_duration() * 3 + skew_time(rules, priority, master_adver_interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cs(v: u16) -> Centiseconds {
        Centiseconds::new(v).unwrap()
    }

    #[test]
    fn v3_values_from_the_rfc_formula() {
        // A = 1 s, priority 100: skew 156/256 s = 0.609375 s, MDI 3.609375 s.
        assert_eq!(
            skew_time(TimerRules::V3, 100, cs(100)),
            Duration::from_micros(609_375)
        );
        assert_eq!(
            master_down_interval(TimerRules::V3, 100, cs(100)),
            Duration::from_micros(3_609_375)
        );
        // A = 100 ms, priority 100: 60.9375 ms skew, 360.9375 ms MDI.
        assert_eq!(
            skew_time(TimerRules::V3, 100, cs(10)),
            Duration::from_micros(60_937)
        );
        assert_eq!(
            master_down_interval(TimerRules::V3, 100, cs(10)),
            Duration::from_micros(360_937)
        );
        // Priority 254: 2/256 of the interval.
        assert_eq!(
            skew_time(TimerRules::V3, 254, cs(100)),
            Duration::from_micros(7_812)
        );
        // Priority 150 at 1 s: 41.40625 cs.
        assert_eq!(
            skew_time(TimerRules::V3, 150, cs(100)),
            Duration::from_micros(414_062)
        );
        // The minimum interval (1 cs): MDI 36.09 ms, to the centisecond 3.6 cs.
        let mdi = master_down_interval(TimerRules::V3, 100, cs(1));
        assert_eq!(mdi.as_micros() / 10_000, 3);
        assert_eq!(mdi, Duration::from_micros(36_093));
        // The maximum interval (40.95 s).
        assert_eq!(
            master_down_interval(TimerRules::V3, 100, cs(4095)),
            Duration::from_micros(4095 * 30_000 + 156 * 4095 * 10_000 / 256)
        );
    }

    #[test]
    fn v2_skew_ignores_the_interval() {
        assert_eq!(
            skew_time(TimerRules::V2, 100, cs(100)),
            Duration::from_micros(609_375)
        );
        assert_eq!(
            skew_time(TimerRules::V2, 100, cs(300)),
            Duration::from_micros(609_375)
        );
        assert_eq!(
            master_down_interval(TimerRules::V2, 100, cs(300)),
            Duration::from_micros(9_609_375)
        );
        assert_eq!(
            master_down_interval(TimerRules::V2, 254, cs(100)),
            Duration::from_micros(3_007_812)
        );
    }

    #[test]
    fn higher_priority_always_has_the_shorter_timers() {
        for a in [1u16, 10, 100, 4095] {
            for p in 1u8..254 {
                for rules in [TimerRules::V2, TimerRules::V3] {
                    assert!(
                        master_down_interval(rules, p + 1, cs(a))
                            <= master_down_interval(rules, p, cs(a))
                    );
                }
            }
        }
    }

    #[test]
    fn centisecond_conversions() {
        assert_eq!(Centiseconds::new(0), None);
        assert_eq!(
            Centiseconds::from_duration(Duration::from_millis(100)),
            Some(cs(10))
        );
        assert_eq!(
            Centiseconds::from_duration(Duration::from_millis(105)),
            None
        );
        assert_eq!(Centiseconds::from_duration(Duration::ZERO), None);
        assert_eq!(Centiseconds::from_duration(Duration::from_secs(1000)), None);
        assert_eq!(cs(250).whole_seconds(), 2);
        assert_eq!(cs(5).whole_seconds(), 1);
        assert_eq!(cs(12).to_string(), "0.12s");
    }
}

//! The pure part of liveness: one round's findings → the proxy's verdict
//! (with hysteresis), and a verdict plus pool states → each instance's
//! external health (keepalived's track arithmetic).

use crate::config::vrrp::{TrackConfig, TrackEffect};
use crate::vrrp::ExternalHealth;

/// The proxy's verdict on itself after one round of checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyVerdict {
    Healthy,
    Failing(String),
}

/// Combines one instance's tracking with the current signals. Pure, so
/// the keepalived-style arithmetic is unit-tested.
pub fn external_health(
    track: &TrackConfig,
    proxy: &ProxyVerdict,
    pool_available: impl Fn(&str) -> Option<(usize, usize)>,
) -> ExternalHealth {
    let mut delta = 0i32;
    let mut fault = false;
    let mut reasons = Vec::new();
    let mut apply = |effect: TrackEffect, failing: bool, what: String| match (effect, failing) {
        (TrackEffect::Fault, true) => {
            fault = true;
            reasons.push(what);
        }
        // keepalived: a negative weight applies while failing, a positive
        // one while healthy.
        (TrackEffect::Weight(w), true) if w < 0 => {
            delta += w;
            reasons.push(format!("{what} ({w:+})"));
        }
        (TrackEffect::Weight(w), false) if w > 0 => {
            delta += w;
        }
        _ => {}
    };
    if let Some(effect) = track.proxy {
        match proxy {
            ProxyVerdict::Healthy => apply(effect, false, String::new()),
            ProxyVerdict::Failing(why) => apply(effect, true, format!("proxy: {why}")),
        }
    }
    for (name, effect) in &track.upstreams {
        let (available, total) = pool_available(name).unwrap_or((0, 0));
        apply(
            *effect,
            available == 0,
            format!("upstream {name}: {available}/{total} servers up"),
        );
    }
    if fault {
        ExternalHealth::fault(reasons.join("; "))
    } else if delta != 0 {
        ExternalHealth::delta(delta, reasons.join("; "))
    } else {
        ExternalHealth::healthy()
    }
}

/// Fail after [`FAIL_AFTER`] bad rounds in a row (a single scheduling
/// hiccup on a loaded host must not move the VIP), recover after
/// [`RECOVER_AFTER`] good ones, so a flapping proxy does not bounce it
/// either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Streaks {
    verdict: ProxyVerdict,
    failing: u32,
    healthy: u32,
}

/// Bad rounds in a row before the proxy counts as failing.
pub const FAIL_AFTER: u32 = 2;
/// Good rounds in a row before a failing proxy counts as healthy again.
pub const RECOVER_AFTER: u32 = 3;

impl Default for Streaks {
    fn default() -> Self {
        Streaks {
            verdict: ProxyVerdict::Healthy,
            failing: 0,
            healthy: 0,
        }
    }
}

impl Streaks {
    /// The verdict now.
    pub fn verdict(&self) -> &ProxyVerdict {
        &self.verdict
    }

    /// Takes one round's finding (the failure, if any) and returns the
    /// verdict after it.
    pub fn observe(&mut self, failure: Option<String>) -> &ProxyVerdict {
        self.verdict = match (failure, &self.verdict) {
            (Some(why), ProxyVerdict::Healthy) => {
                self.failing += 1;
                self.healthy = 0;
                if self.failing >= FAIL_AFTER {
                    ProxyVerdict::Failing(why)
                } else {
                    ProxyVerdict::Healthy
                }
            }
            (Some(why), ProxyVerdict::Failing(_)) => {
                self.healthy = 0;
                ProxyVerdict::Failing(why)
            }
            (None, ProxyVerdict::Failing(why)) => {
                self.failing = 0;
                self.healthy += 1;
                if self.healthy >= RECOVER_AFTER {
                    ProxyVerdict::Healthy
                } else {
                    ProxyVerdict::Failing(why.clone())
                }
            }
            (None, ProxyVerdict::Healthy) => {
                self.failing = 0;
                ProxyVerdict::Healthy
            }
        };
        &self.verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn run(rounds: &[bool]) -> Vec<bool> {
        let mut s = Streaks::default();
        rounds
            .iter()
            .map(|ok| {
                let failure = (!ok).then(|| "no answer".to_owned());
                *s.observe(failure) == ProxyVerdict::Healthy
            })
            .collect()
    }

    #[test]
    fn one_bad_round_moves_nothing() {
        assert_eq!(run(&[false, true, false, true]), [true; 4]);
    }

    #[test]
    fn two_bad_rounds_fail_and_three_good_ones_recover() {
        assert_eq!(
            run(&[false, false, true, true, true]),
            [true, false, false, false, true]
        );
    }

    #[test]
    fn a_bad_round_while_recovering_starts_the_count_again() {
        assert_eq!(
            run(&[false, false, true, true, false, true, true, true]),
            [true, false, false, false, false, false, false, true]
        );
    }

    #[test]
    fn the_reason_follows_the_latest_failure() {
        let mut s = Streaks::default();
        s.observe(Some("a".into()));
        s.observe(Some("b".into()));
        assert_eq!(s.verdict(), &ProxyVerdict::Failing("b".into()));
        s.observe(Some("c".into()));
        assert_eq!(s.verdict(), &ProxyVerdict::Failing("c".into()));
        // Recovering keeps the last reason until it is healthy again.
        s.observe(None);
        assert_eq!(s.verdict(), &ProxyVerdict::Failing("c".into()));
    }

    #[test]
    fn every_sequence_follows_the_streak_rule() {
        // Exhaustive over every sequence of 10 rounds: the verdict fails
        // exactly when the last FAIL_AFTER rounds failed (from healthy),
        // and recovers exactly after RECOVER_AFTER good ones.
        for bits in 0u32..(1 << 10) {
            let rounds: Vec<bool> = (0..10).map(|i| bits & (1 << i) != 0).collect();
            let got = run(&rounds);
            let mut healthy = true;
            let (mut bad, mut good) = (0, 0);
            for (i, ok) in rounds.iter().enumerate() {
                if *ok {
                    bad = 0;
                    good += 1;
                } else {
                    good = 0;
                    bad += 1;
                }
                if healthy && bad >= FAIL_AFTER {
                    healthy = false;
                    good = 0;
                } else if !healthy && good >= RECOVER_AFTER {
                    healthy = true;
                    bad = 0;
                }
                assert_eq!(got[i], healthy, "{rounds:?} at {i}");
            }
        }
    }

    fn track(proxy: Option<TrackEffect>, upstreams: &[(&str, TrackEffect)]) -> TrackConfig {
        TrackConfig {
            proxy,
            upstreams: upstreams.iter().map(|(n, e)| (n.to_string(), *e)).collect(),
            probe_interval: Duration::from_millis(200),
            probe_timeout: Duration::from_millis(400),
            ..TrackConfig::default()
        }
    }

    #[test]
    fn keepalived_weight_semantics() {
        let t = track(
            Some(TrackEffect::Weight(-30)),
            &[
                ("app", TrackEffect::Weight(-50)),
                ("bonus", TrackEffect::Weight(10)),
            ],
        );
        let all_up = |_: &str| Some((2, 2));
        let h = external_health(&t, &ProxyVerdict::Healthy, all_up);
        assert_eq!(
            h,
            ExternalHealth::delta(10, ""),
            "positive weight while healthy"
        );
        let app_down = |n: &str| Some(if n == "app" { (0, 2) } else { (1, 1) });
        let h = external_health(&t, &ProxyVerdict::Healthy, app_down);
        assert_eq!(h.priority_delta, -40);
        assert!(
            h.reason.contains("upstream app: 0/2 servers up"),
            "{}",
            h.reason
        );
        let h = external_health(
            &t,
            &ProxyVerdict::Failing("worker 1 stuck".into()),
            app_down,
        );
        assert_eq!(h.priority_delta, -70);
        assert!(h.reason.contains("proxy: worker 1 stuck"));
        assert!(!h.fault);
    }

    #[test]
    fn fault_wins_over_weights() {
        let t = track(
            Some(TrackEffect::Fault),
            &[("app", TrackEffect::Weight(-50))],
        );
        let h = external_health(&t, &ProxyVerdict::Failing("no answer".into()), |_| {
            Some((0, 1))
        });
        assert!(h.fault);
        assert!(h.reason.contains("proxy: no answer") && h.reason.contains("upstream app"));
        let h = external_health(&t, &ProxyVerdict::Healthy, |_| Some((1, 1)));
        assert_eq!(h, ExternalHealth::healthy());
        // No tracking at all: always healthy.
        let h = external_health(
            &track(None, &[]),
            &ProxyVerdict::Failing("x".into()),
            |_| None,
        );
        assert_eq!(h, ExternalHealth::healthy());
    }
}

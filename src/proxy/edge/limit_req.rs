//! `limit_req`: nginx's leaky bucket (`ngx_http_limit_req_module.c`).
//!
//! Per key the zone keeps `excess`, in milli-requests, and the time of the
//! last request. A request finds
//! `excess' = max(0, excess - rate × elapsed + 1000)`: the bucket leaks at
//! `rate` and each request adds one. Past `burst` the request is refused
//! and nothing is recorded; otherwise `excess'` is stored, and when it is
//! above the `delay` threshold (0 by default, unlimited with `nodelay`)
//! the request waits `(excess' - delay) / rate`. A key seen for the first
//! time starts at 0, as in nginx.
//!
//! The state is one [`Entry`] in a lock-free [`Table`]: `a` = excess
//! (milli-requests), `b` = milliseconds since the zone's epoch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::IntCounter;

use super::table::{B_MASK, Entry, Full, Step, Table};
use crate::config::edge::LimitReqZone;
use crate::metrics::Metrics;

/// What the leaky bucket says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within the rate (or within `delay`).
    Pass,
    /// Within `burst`, but past `delay`: wait this long first.
    Delay(Duration),
    /// Past `burst`.
    Reject,
}

/// The bucket after one more request, `None` when it overflows `burst`.
/// Pure: `now` and `last` in milliseconds.
pub(crate) fn leak(
    excess: u64,
    last: u64,
    now: u64,
    rate_milli: u64,
    burst_milli: u64,
) -> Option<u64> {
    let elapsed = now.saturating_sub(last);
    let leaked = rate_milli.saturating_mul(elapsed) / 1000;
    let next = (excess + 1000).saturating_sub(leaked);
    (next <= burst_milli).then_some(next)
}

/// How long a request with bucket level `excess` waits.
pub(crate) fn delay_for(excess: u64, delay_milli: u64, rate_milli: u64) -> Duration {
    if excess <= delay_milli {
        return Duration::ZERO;
    }
    Duration::from_millis((excess - delay_milli).saturating_mul(1000) / rate_milli.max(1))
}

/// One `[limit_req_zone.<name>]`, shared by every worker and kept across
/// reloads while its key and size stay the same.
pub(crate) struct ReqZone {
    pub(crate) config: Arc<LimitReqZone>,
    /// Shared with the zone of the previous config generation when only
    /// the rate changed, so buckets survive a reload.
    table: Arc<Table>,
    epoch: Instant,
    pub(crate) counts: Counts,
}

/// The zone's counters in `vigil_limit_req_requests_total`, looked up
/// once: counting a request is one atomic add. A zone of the same name in
/// the next config generation counts on in the same series.
#[derive(Debug)]
pub(crate) struct Counts {
    pub(crate) passed: IntCounter,
    pub(crate) delayed: IntCounter,
    pub(crate) rejected: IntCounter,
}

impl Counts {
    fn for_zone(name: &str, metrics: &Metrics) -> Counts {
        let m = &metrics.limit_req_requests;
        Counts {
            passed: m.with_label_values(&[name, "passed"]),
            delayed: m.with_label_values(&[name, "delayed"]),
            rejected: m.with_label_values(&[name, "rejected"]),
        }
    }
}

impl std::fmt::Debug for ReqZone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReqZone")
            .field("name", &self.config.name)
            .field("table", &self.table)
            .finish()
    }
}

impl ReqZone {
    pub(crate) fn new(config: Arc<LimitReqZone>, metrics: &Metrics) -> ReqZone {
        ReqZone {
            table: Arc::new(Table::new(config.slots)),
            counts: Counts::for_zone(&config.name, metrics),
            config,
            epoch: Instant::now(),
        }
    }

    /// The zone for `config`, reusing `previous`'s memory (and so every
    /// key's bucket) when the key and size did not change; a new rate
    /// applies to the buckets as they are.
    pub(crate) fn rebuild(
        config: Arc<LimitReqZone>,
        previous: Option<&Arc<ReqZone>>,
        metrics: &Metrics,
    ) -> Arc<ReqZone> {
        match previous {
            Some(p) if p.config.key == config.key && p.config.slots == config.slots => {
                if p.config == config {
                    return p.clone();
                }
                Arc::new(ReqZone {
                    table: p.table.clone(),
                    counts: Counts::for_zone(&config.name, metrics),
                    config,
                    epoch: p.epoch,
                })
            }
            _ => Arc::new(ReqZone::new(config, metrics)),
        }
    }

    pub(crate) fn hash(&self, key: impl std::hash::Hash) -> u64 {
        self.table.hash(key)
    }

    fn now_ms(&self) -> u64 {
        (self.epoch.elapsed().as_millis() as u64) & B_MASK
    }

    /// Checks the bucket of the key with hash `hash` without charging it:
    /// the level one more request would bring, or `None` past `burst`.
    pub(crate) fn peek(&self, hash: u64, burst_milli: u64) -> Option<u64> {
        self.peek_at(hash, burst_milli, self.now_ms())
    }

    fn peek_at(&self, hash: u64, burst_milli: u64, now: u64) -> Option<u64> {
        let rate = self.config.rate.milli_per_sec;
        let read = self.table.update(
            hash,
            |e| Step::Keep(e.map(|e| leak(u64::from(e.a), e.b, now, rate, burst_milli))),
            |_| Some(0),
        );
        match read {
            Ok((Some(level), _)) => level,
            // Unknown key, or no room (it would take a slot then).
            _ => Some(0),
        }
    }

    /// Charges one request to the key's bucket: its new level, or `None`
    /// when it overflows `burst` (nothing is charged then).
    pub(crate) fn charge(&self, hash: u64, burst_milli: u64) -> Option<u64> {
        self.charge_at(hash, burst_milli, self.now_ms())
    }

    /// [`charge`](Self::charge) at `now` (milliseconds since the epoch).
    fn charge_at(&self, hash: u64, burst_milli: u64, now: u64) -> Option<u64> {
        let rate = self.config.rate.milli_per_sec;
        let result = self.table.update(
            hash,
            |e| match e {
                // A new key starts empty (nginx: excess 0 for a new node).
                None => Step::Store(Entry { a: 0, b: now }, Some(0)),
                Some(e) => match leak(u64::from(e.a), e.b, now, rate, burst_milli) {
                    Some(level) => Step::Store(
                        Entry {
                            a: u32::try_from(level).unwrap_or(u32::MAX),
                            b: now,
                        },
                        Some(level),
                    ),
                    None => Step::Keep(None),
                },
            },
            // Forgetting a bucket forgives what is left in it: an empty one
            // costs nothing, a fuller one more.
            |e| {
                let left = (u64::from(e.a) + 1000)
                    .saturating_sub(rate.saturating_mul(now.saturating_sub(e.b)) / 1000);
                Some(left)
            },
        );
        match result {
            Ok((level, _)) => level,
            // Every slot can be replaced here, so the table is never full.
            Err(Full) => Some(0),
        }
    }
}

/// One location's `limit_req` list applied to a request, as nginx does:
/// every zone is checked before any is charged, so a request refused by
/// the second zone costs nothing in the first. Returns the verdict and,
/// for a refusal, the zone that refused.
pub(crate) fn check(limits: &[(&ReqZone, u64, u64, u64)]) -> (Verdict, Option<usize>) {
    // (zone, key hash, burst_milli, delay_milli)
    if limits.len() > 1 {
        for (i, (zone, hash, burst, _)) in limits.iter().enumerate() {
            if zone.peek(*hash, *burst).is_none() {
                return (Verdict::Reject, Some(i));
            }
        }
    }
    let mut wait = Duration::ZERO;
    for (i, (zone, hash, burst, delay)) in limits.iter().enumerate() {
        // A request racing this one may have filled the bucket since the
        // peek; it is refused then (earlier zones stay charged: rare).
        let Some(level) = zone.charge(*hash, *burst) else {
            return (Verdict::Reject, Some(i));
        };
        wait = wait.max(delay_for(level, *delay, zone.config.rate.milli_per_sec));
    }
    if wait.is_zero() {
        (Verdict::Pass, None)
    } else {
        (Verdict::Delay(wait), None)
    }
}

/// Counts a verdict in the zones it concerns.
pub(crate) fn count(zones: &[&ReqZone], verdict: Verdict, refused_by: Option<usize>) {
    match (verdict, refused_by) {
        (Verdict::Reject, Some(i)) => {
            if let Some(z) = zones.get(i) {
                z.counts.rejected.inc();
            }
        }
        (Verdict::Delay(_), _) => {
            for z in zones {
                z.counts.delayed.inc();
            }
        }
        _ => {
            for z in zones {
                z.counts.passed.inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::config::edge::{Rate, ZoneKey};

    /// A zone with a name of its own.
    fn zone(rate: &str) -> ReqZone {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ReqZone::new(
            Arc::new(LimitReqZone {
                name: format!("test-zone-{n}"),
                key: ZoneKey::RemoteAddr,
                rate: Rate::parse(rate).unwrap(),
                slots: 64,
            }),
            &Metrics::new(),
        )
    }

    #[test]
    fn leak_matches_nginx_arithmetic() {
        // 10r/s: 10000 milli per second. Two requests 0 ms apart:
        assert_eq!(leak(0, 0, 0, 10_000, 5000), Some(1000));
        // 100 ms later one whole request has leaked.
        assert_eq!(leak(1000, 0, 100, 10_000, 5000), Some(1000));
        // 50 ms: half of one.
        assert_eq!(leak(1000, 0, 50, 10_000, 5000), Some(1500));
        // Long idle: back to the floor (0 + 1000 - lots → 0).
        assert_eq!(leak(5000, 0, 10_000, 10_000, 0), Some(0));
        // Over burst: refused.
        assert_eq!(leak(5000, 0, 0, 10_000, 5000), None);
        // 1r/m (16 milli/s) loses 0.016 requests per second.
        assert_eq!(leak(0, 0, 1000, 16, 10_000), Some(984));
        // No overflow on absurd gaps.
        assert_eq!(
            leak(u64::from(u32::MAX), 0, B_MASK, u64::from(u32::MAX), 0),
            Some(0)
        );
    }

    #[test]
    fn delays_as_nginx() {
        assert_eq!(delay_for(0, 0, 10_000), Duration::ZERO);
        assert_eq!(delay_for(1000, 0, 10_000), Duration::from_millis(100));
        assert_eq!(delay_for(3000, 2000, 10_000), Duration::from_millis(100));
        assert_eq!(delay_for(3000, u64::MAX, 10_000), Duration::ZERO);
    }

    #[test]
    fn burst_then_refuse_without_delay_when_nodelay() {
        let z = zone("1r/s");
        let h = z.hash("client");
        let limits = [(&z, h, 3000u64, u64::MAX)];
        // First request: new key, 0. Then burst 3 more at once.
        for _ in 0..4 {
            assert_eq!(check(&limits).0, Verdict::Pass);
        }
        assert_eq!(check(&limits), (Verdict::Reject, Some(0)));
        // Another key is not affected.
        let other = [(&z, z.hash("other"), 3000u64, u64::MAX)];
        assert_eq!(check(&other).0, Verdict::Pass);
    }

    #[test]
    fn without_nodelay_excess_is_delayed() {
        let z = zone("10r/s");
        let h = z.hash("c");
        let limits = [(&z, h, 5000u64, 0u64)];
        assert_eq!(check(&limits).0, Verdict::Pass);
        match check(&limits).0 {
            // ~1000 milli over: ~100 ms (a little less if a ms passed).
            Verdict::Delay(d) => assert!(
                d <= Duration::from_millis(100) && d >= Duration::from_millis(80),
                "{d:?}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refusal_by_a_later_zone_charges_no_earlier_one() {
        let loose = zone("100r/s");
        let strict = zone("1r/s");
        let (hl, hs) = (loose.hash("c"), strict.hash("c"));
        let both = [
            (&loose, hl, 1000u64, u64::MAX),
            (&strict, hs, 0u64, u64::MAX),
        ];
        assert_eq!(check(&both).0, Verdict::Pass);
        assert_eq!(check(&both), (Verdict::Reject, Some(1)));
        assert_eq!(check(&both), (Verdict::Reject, Some(1)));
        // The loose zone was charged once, for the one request that passed:
        // it still has room for its burst of 1.
        let only_loose = [(&loose, hl, 1000u64, u64::MAX)];
        assert_eq!(check(&only_loose).0, Verdict::Pass);
    }

    #[test]
    fn counts_by_outcome() {
        let z = zone("1r/s");
        count(&[&z], Verdict::Pass, None);
        count(&[&z], Verdict::Delay(Duration::from_millis(1)), None);
        count(&[&z], Verdict::Reject, Some(0));
        count(&[&z], Verdict::Reject, Some(0));
        assert_eq!(z.counts.passed.get(), 1);
        assert_eq!(z.counts.delayed.get(), 1);
        assert_eq!(z.counts.rejected.get(), 2);
    }

    proptest! {
        /// Simulated in virtual time against a plain map (nginx's
        /// arithmetic with no table): the zone gives the same levels and
        /// refusals while it has room for every key.
        #[test]
        fn zone_agrees_with_a_model(
            events in proptest::collection::vec((0u8..6, 0u64..400, any::<bool>()), 1..300),
            rate in 1u64..50_000,
            burst in 0u64..5,
        ) {
            let z = ReqZone::new(Arc::new(LimitReqZone {
                name: "m".into(),
                key: ZoneKey::RemoteAddr,
                rate: Rate { milli_per_sec: rate },
                slots: 64,
            }), &Metrics::new());
            let mut model: std::collections::HashMap<u8, (u64, u64)> = Default::default();
            let mut now = 0u64;
            let burst_milli = burst * 1000;
            for (key, gap, only_peek) in events {
                now += gap;
                let h = z.hash(key);
                let want = match model.get(&key).copied() {
                    None => Some(0),
                    Some((ex, last)) => leak(ex, last, now, rate, burst_milli),
                };
                if only_peek {
                    prop_assert_eq!(z.peek_at(h, burst_milli, now), want);
                    continue;
                }
                prop_assert_eq!(z.charge_at(h, burst_milli, now), want);
                if let Some(level) = want {
                    model.insert(key, (level, now));
                }
            }
        }
    }
}

//! `limit_conn`: requests in progress per key (nginx counts a connection
//! while it has a request being processed; over HTTP/2 each stream
//! counts, as in nginx).
//!
//! The count is an [`Entry`]'s `a` in a lock-free [`Table`]. A slot with
//! a count above 0 is never given to another key, so the [`ConnGuard`]
//! that releases a request finds its slot again; a key whose window is
//! full of live counts is refused (nginx refuses when its zone is out of
//! memory too).

use std::sync::Arc;

use prometheus::IntCounter;

use super::table::{Entry, SlotRef, Step, Table};
use crate::config::edge::LimitConnZone;
use crate::metrics::Metrics;

/// One `[limit_conn_zone.<name>]`, shared by every worker.
pub(crate) struct ConnZone {
    pub(crate) config: Arc<LimitConnZone>,
    table: Table,
    /// This zone's series of `vigil_limit_conn_requests_total`.
    pub(crate) passed: IntCounter,
    pub(crate) rejected: IntCounter,
}

impl std::fmt::Debug for ConnZone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnZone")
            .field("name", &self.config.name)
            .field("table", &self.table)
            .finish()
    }
}

/// Holds one unit of a key's count; gives it back when dropped (when the
/// response is done or abandoned).
#[derive(Debug)]
pub(crate) struct ConnGuard {
    zone: Arc<ConnZone>,
    at: SlotRef,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let released = self.zone.table.update_at(self.at, |e| {
            Step::Store(
                Entry {
                    a: e.a.saturating_sub(1),
                    b: 0,
                },
                (),
            )
        });
        debug_assert!(released.is_some(), "a live count's slot was reused");
    }
}

impl ConnZone {
    pub(crate) fn new(config: Arc<LimitConnZone>, metrics: &Metrics) -> ConnZone {
        let m = &metrics.limit_conn_requests;
        ConnZone {
            table: Table::new(config.slots),
            passed: m.with_label_values(&[&config.name, "passed"]),
            rejected: m.with_label_values(&[&config.name, "rejected"]),
            config,
        }
    }

    /// The zone for `config`: `previous` as it is when nothing changed
    /// (live counts must carry over: requests in progress hold guards on
    /// it), else a new one.
    pub(crate) fn rebuild(
        config: Arc<LimitConnZone>,
        previous: Option<&Arc<ConnZone>>,
        metrics: &Metrics,
    ) -> Arc<ConnZone> {
        match previous {
            Some(p) if p.config == config => p.clone(),
            _ => Arc::new(ConnZone::new(config, metrics)),
        }
    }

    pub(crate) fn hash(&self, key: impl std::hash::Hash) -> u64 {
        self.table.hash(key)
    }

    /// Takes one unit of the key's count if it is below `limit`.
    pub(crate) fn acquire(self: &Arc<Self>, hash: u64, limit: u32) -> Option<ConnGuard> {
        let taken = self.table.update(
            hash,
            |e| {
                let n = e.map_or(0, |e| e.a);
                if n >= limit {
                    Step::Keep(false)
                } else {
                    Step::Store(Entry { a: n + 1, b: 0 }, true)
                }
            },
            // Only a key with nothing in progress may be forgotten.
            |e| (e.a == 0).then_some(0),
        );
        match taken {
            Ok((true, Some(at))) => {
                self.passed.inc();
                Some(ConnGuard {
                    zone: self.clone(),
                    at,
                })
            }
            _ => {
                self.rejected.inc();
                None
            }
        }
    }

    /// The key's count now.
    #[cfg(test)]
    pub(crate) fn count(&self, hash: u64) -> u32 {
        self.table
            .update(hash, |e| Step::Keep(e.map_or(0, |e| e.a)), |_| None)
            .map_or(0, |(n, _)| n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::edge::ZoneKey;

    fn zone(slots: usize) -> Arc<ConnZone> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Arc::new(ConnZone::new(
            Arc::new(LimitConnZone {
                name: format!("test-conn-zone-{n}"),
                key: ZoneKey::RemoteAddr,
                slots,
            }),
            &Metrics::new(),
        ))
    }

    #[test]
    fn counts_up_to_the_limit_and_back_down() {
        let z = zone(64);
        let h = z.hash("client");
        let a = z.acquire(h, 2).unwrap();
        let b = z.acquire(h, 2).unwrap();
        assert!(z.acquire(h, 2).is_none());
        assert_eq!(z.count(h), 2);
        drop(a);
        assert_eq!(z.count(h), 1);
        let c = z.acquire(h, 2).unwrap();
        drop((b, c));
        assert_eq!(z.count(h), 0);
        assert_eq!(z.passed.get(), 3);
        assert_eq!(z.rejected.get(), 1);
    }

    #[test]
    fn full_window_refuses_and_released_keys_make_room() {
        // One window of slots: 8 keys with a request each fill it.
        let z = zone(8);
        let guards: Vec<_> = (0..8u32)
            .map(|k| z.acquire(z.hash(k), 1).unwrap())
            .collect();
        assert!(z.acquire(z.hash(100u32), 1).is_none());
        drop(guards);
        assert!(z.acquire(z.hash(100u32), 1).is_some());
    }

    #[test]
    fn guards_from_many_threads_balance_out() {
        let z = zone(1024);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let z = z.clone();
                std::thread::spawn(move || {
                    for i in 0..2000u32 {
                        let g = z.acquire(z.hash(i % 16), 1000);
                        assert!(g.is_some(), "thread {t}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for k in 0..16u32 {
            assert_eq!(z.count(z.hash(k)), 0);
        }
    }
}

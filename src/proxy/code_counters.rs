//! Counter handles of a series family told apart by an open `code` label,
//! kept so that counting a code already seen does no label hashing, takes
//! no lock and allocates nothing (issue 16).
//!
//! The first `N` codes seen get a slot each, in the order they come; a
//! slot, once filled, never changes, so finding a code is at most `N`
//! atomic loads and compares. Codes past the slots go through
//! `with_label_values`, as every code did before. A handle is a clone of
//! the series the vec holds, so the slotted and the looked-up paths count
//! into the same series, and the exported series are the same either way.
//!
//! The key `K` is whatever the caller has at hand that names the code
//! without allocating (a `StatusCode`, an enum with "error" / "timeout"):
//! the labels are the caller's business, in the `resolve` it passes.

use std::sync::OnceLock;

use prometheus::IntCounter;

/// Up to `N` codes with their counter, in the order first seen.
#[derive(Debug)]
pub struct CodeCounters<K, const N: usize> {
    slots: [OnceLock<(K, IntCounter)>; N],
}

impl<K, const N: usize> CodeCounters<K, N> {
    pub const fn new() -> CodeCounters<K, N> {
        CodeCounters {
            slots: [const { OnceLock::new() }; N],
        }
    }
}

impl<K, const N: usize> Default for CodeCounters<K, N> {
    fn default() -> CodeCounters<K, N> {
        CodeCounters::new()
    }
}

impl<K: Copy + Eq, const N: usize> CodeCounters<K, N> {
    /// Adds one to `code`'s counter. `resolve` looks the counter up by its
    /// labels: once when `code` takes a slot, every time when none is left.
    pub fn inc(&self, code: K, resolve: impl Fn() -> IntCounter) {
        // The first slot holding `code`, or the first empty one, which
        // this call fills. Of two calls racing for an empty slot with
        // different codes, one fills it and the other moves on; a call
        // only passes a slot filled with another code, so a code never
        // takes two slots.
        for slot in &self.slots {
            let (seen, counter) = slot.get_or_init(|| (code, resolve()));
            if *seen == code {
                return counter.inc();
            }
        }
        resolve().inc();
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use prometheus::{IntCounterVec, Opts};

    use super::*;

    fn family() -> IntCounterVec {
        IntCounterVec::new(Opts::new("t_total", "test"), &["code"]).unwrap()
    }

    fn count(vec: &IntCounterVec, code: u16) -> u64 {
        vec.with_label_values(&[&code.to_string()]).get()
    }

    #[test]
    fn codes_past_the_slots_are_looked_up_each_time() {
        let vec = family();
        let counters = CodeCounters::<u16, 3>::new();
        let lookups = Cell::new(0);
        // Codes 1..=6, code c counted c times, interleaved.
        for round in 1..=6u16 {
            for code in round..=6 {
                counters.inc(code, || {
                    lookups.set(lookups.get() + 1);
                    vec.with_label_values(&[&code.to_string()])
                });
            }
        }
        for code in 1..=6u16 {
            assert_eq!(count(&vec, code), u64::from(code));
        }
        // Codes 1, 2, 3 took the slots: one lookup each; 4, 5, 6 were
        // looked up on each of their 4 + 5 + 6 counts.
        assert_eq!(lookups.get(), 3 + 4 + 5 + 6);
        let slotted: Vec<u16> = counters.slots.iter().map(|s| s.get().unwrap().0).collect();
        assert_eq!(slotted, [1, 2, 3]);
    }

    #[test]
    fn a_code_keeps_its_slot_and_its_series() {
        let vec = family();
        let counters = CodeCounters::<u16, 4>::new();
        for code in [500, 200, 200, 404, 500, 200] {
            counters.inc(code, || vec.with_label_values(&[&code.to_string()]));
        }
        // Later counts of a slotted code never look it up again.
        for _ in 0..10 {
            counters.inc(200, || panic!("200 has a slot"));
        }
        let slotted: Vec<u16> = counters
            .slots
            .iter()
            .filter_map(|s| s.get())
            .map(|s| s.0)
            .collect();
        assert_eq!(slotted, [500, 200, 404]);
        // The slot's handle is the series the vec exports.
        assert_eq!(count(&vec, 200), 13);
        assert_eq!(count(&vec, 500), 2);
        assert_eq!(count(&vec, 404), 1);
    }

    #[test]
    fn racing_threads_count_exactly() {
        let vec = family();
        let counters = CodeCounters::<u16, 4>::new();
        const THREADS: u16 = 4;
        const EACH: u16 = 3_000;
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let (vec, counters) = (&vec, &counters);
                scope.spawn(move || {
                    for i in 0..EACH {
                        // Six codes for four slots, in a different order
                        // on each thread.
                        let code = (i + t) % 6;
                        counters.inc(code, || vec.with_label_values(&[&code.to_string()]));
                    }
                });
            }
        });
        for code in 0..6 {
            assert_eq!(count(&vec, code), u64::from(THREADS * EACH / 6));
        }
        let mut slotted: Vec<u16> = counters.slots.iter().map(|s| s.get().unwrap().0).collect();
        slotted.sort_unstable();
        slotted.dedup();
        assert_eq!(slotted.len(), 4, "a code took two slots");
    }
}

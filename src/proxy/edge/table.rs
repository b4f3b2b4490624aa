//! A fixed-size, lock-free table of small per-key states, shared by every
//! worker: the memory behind `limit_req` and `limit_conn` zones.
//!
//! Each slot is one 128-bit atomic: a 56-bit tag (from the key's keyed
//! hash; 0 = empty) and a 72-bit [`Entry`]. Reading a key's state and
//! writing the next one is a single compare-and-swap on one slot, so no
//! request ever waits for a lock, and a torn state cannot exist.
//!
//! **Where a key lives**: the slot its hash points at, or one of the next
//! [`WINDOW`] - 1 slots (linear probing within a window of two cache
//! lines). Keys are identified by their tag alone: two keys whose 56-bit
//! tags are equal share a state; with SipHash keyed per process that is a
//! 2^-56 chance per pair, far below anything an attacker can aim at.
//!
//! **Eviction**: a new key takes the window's slot whose state costs least
//! to forget, as the caller's `evict_cost` ranks them: an empty slot or an
//! idle state (a drained bucket, a count of 0) costs 0. When every slot
//! in the window is busy with a state that may not be forgotten (an open
//! connection's count), the table is full for that key and the caller
//! decides (nginx answers such a request with the zone's status too).
//!
//! **Races**: two requests inserting the same new key at once may each
//! take a different slot; lookups then find the first, and the other is
//! forgotten first when space is needed. The window is small and the
//! table sized in advance, so memory is bounded whatever the traffic.

use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::Ordering;

use portable_atomic::AtomicU128;

/// Slots searched for one key.
pub(crate) const WINDOW: usize = 8;

/// What a slot holds besides its tag: 32 + 40 bits whose meaning belongs
/// to the user of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Entry {
    pub(crate) a: u32,
    /// Only the low 40 bits are kept.
    pub(crate) b: u64,
}

/// Mask for [`Entry::b`].
pub(crate) const B_MASK: u64 = (1 << 40) - 1;

/// What an update does with the state it was shown.
pub(crate) enum Step<T> {
    /// Write this state and return `T`.
    Store(Entry, T),
    /// Write nothing and return `T`.
    Keep(T),
}

/// No slot in the key's window could be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

/// Where a key's state was written: hold it to update the same slot
/// later ([`Table::update_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotRef {
    index: usize,
    tag: u64,
}

pub(crate) struct Table {
    slots: Box<[AtomicU128]>,
    mask: usize,
    hasher: RandomState,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("slots", &self.slots.len())
            .finish()
    }
}

impl Table {
    /// A table of `slots` slots (rounded up to a power of two, at least
    /// one window).
    pub(crate) fn new(slots: usize) -> Table {
        let n = slots.max(WINDOW).next_power_of_two();
        Table {
            slots: (0..n).map(|_| AtomicU128::new(0)).collect(),
            mask: n - 1,
            hasher: RandomState::new(),
        }
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The keyed hash of `key` (a per-process secret: clients cannot
    /// choose keys that collide).
    pub(crate) fn hash(&self, key: impl Hash) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Applies `step` to the state of the key with hash `hash` (`None`
    /// when the key has none yet) and writes what it returns, atomically:
    /// when another request changed the slot in between, `step` runs
    /// again on the new state. `evict_cost` ranks other keys' states for
    /// replacement (`None`: may not be replaced).
    pub(crate) fn update<T>(
        &self,
        hash: u64,
        mut step: impl FnMut(Option<Entry>) -> Step<T>,
        mut evict_cost: impl FnMut(Entry) -> Option<u64>,
    ) -> Result<(T, Option<SlotRef>), Full> {
        let tag = tag_of_hash(hash);
        let start = hash as usize & self.mask;
        loop {
            let mut found = None;
            let mut victim: Option<(usize, u128, u64)> = None;
            for i in 0..WINDOW {
                let index = (start + i) & self.mask;
                let v = self.slots[index].load(Ordering::Acquire);
                let (t, entry) = unpack(v);
                if t == tag {
                    found = Some((index, v, entry));
                    break;
                }
                let cost = if t == 0 { Some(0) } else { evict_cost(entry) };
                if let Some(c) = cost {
                    if victim.is_none_or(|(_, _, best)| c < best) {
                        victim = Some((index, v, c));
                    }
                }
            }
            let (index, old, current) = match found {
                Some((index, v, entry)) => (index, v, Some(entry)),
                None => match victim {
                    Some((index, v, _)) => (index, v, None),
                    // No room: a step that only reads still gets its answer.
                    None => match step(None) {
                        Step::Keep(t) => return Ok((t, None)),
                        Step::Store(..) => return Err(Full),
                    },
                },
            };
            match step(current) {
                Step::Keep(t) => {
                    return Ok((t, current.map(|_| SlotRef { index, tag })));
                }
                Step::Store(entry, t) => {
                    if self.slots[index]
                        .compare_exchange(
                            old,
                            pack(tag, entry),
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        )
                        .is_ok()
                    {
                        return Ok((t, Some(SlotRef { index, tag })));
                    }
                }
            }
        }
    }

    /// Like [`update`](Self::update) on the slot a previous update wrote.
    /// `None` when the slot was given to another key meanwhile (which an
    /// `evict_cost` that protects live states rules out).
    pub(crate) fn update_at<T>(
        &self,
        at: SlotRef,
        mut step: impl FnMut(Entry) -> Step<T>,
    ) -> Option<T> {
        let slot = &self.slots[at.index & self.mask];
        loop {
            let old = slot.load(Ordering::Acquire);
            let (t, entry) = unpack(old);
            if t != at.tag {
                return None;
            }
            match step(entry) {
                Step::Keep(t) => return Some(t),
                Step::Store(next, t) => {
                    if slot
                        .compare_exchange(
                            old,
                            pack(at.tag, next),
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        )
                        .is_ok()
                    {
                        return Some(t);
                    }
                }
            }
        }
    }

    /// Slots holding a key.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.load(Ordering::Relaxed) >> 72 != 0)
            .count()
    }
}

/// 56 bits of the hash, never 0 (0 marks an empty slot).
fn tag_of_hash(hash: u64) -> u64 {
    (hash >> 8) | 1
}

fn pack(tag: u64, e: Entry) -> u128 {
    (u128::from(tag) << 72) | (u128::from(e.a) << 40) | u128::from(e.b & B_MASK)
}

fn unpack(v: u128) -> (u64, Entry) {
    (
        (v >> 72) as u64,
        Entry {
            a: (v >> 40) as u32,
            b: (v as u64) & B_MASK,
        },
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;

    fn incr(t: &Table, key: u64) -> Result<u32, Full> {
        let h = t.hash(key);
        t.update(
            h,
            |e| {
                let n = e.map_or(1, |e| e.a + 1);
                Step::Store(Entry { a: n, b: 0 }, n)
            },
            |e| (e.a == 0).then_some(0),
        )
        .map(|(n, _)| n)
    }

    #[test]
    fn pack_round_trips() {
        let e = Entry {
            a: u32::MAX,
            b: B_MASK,
        };
        assert_eq!(
            unpack(pack(tag_of_hash(u64::MAX), e)),
            (tag_of_hash(u64::MAX), e)
        );
        assert_eq!(unpack(pack(1, Entry::default())), (1, Entry::default()));
    }

    #[test]
    fn keys_keep_their_own_state() {
        let t = Table::new(1024);
        for round in 1..=3 {
            for key in 0..100u64 {
                assert_eq!(incr(&t, key), Ok(round));
            }
        }
        assert_eq!(t.used(), 100);
    }

    #[test]
    fn a_full_window_of_live_states_refuses_new_keys_and_idle_ones_are_reused() {
        // One window: every key lands in it.
        let t = Table::new(WINDOW);
        for key in 0..WINDOW as u64 {
            assert_eq!(incr(&t, key), Ok(1));
        }
        assert_eq!(incr(&t, 1000), Err(Full));
        // Release one key: its slot is taken by the newcomer.
        let h = t.hash(3u64);
        let (_, at) = t
            .update(h, |_| Step::Store(Entry::default(), ()), |_| None)
            .unwrap();
        assert!(at.is_some());
        assert_eq!(incr(&t, 1000), Ok(1));
        assert_eq!(t.used(), WINDOW);
    }

    #[test]
    fn cheapest_victim_is_evicted() {
        let t = Table::new(WINDOW);
        for key in 0..WINDOW as u64 {
            let h = t.hash(key);
            t.update(
                h,
                |_| {
                    Step::Store(
                        Entry {
                            a: 10 + key as u32,
                            b: 0,
                        },
                        (),
                    )
                },
                |_| None,
            )
            .unwrap();
        }
        let h = t.hash(99u64);
        t.update(
            h,
            |e| Step::Store(Entry { a: 1, b: 0 }, e),
            |e| Some(u64::from(e.a)),
        )
        .unwrap();
        // Key 0 (a = 10, the cheapest) is gone; the others are kept.
        let seen = |key: u64| {
            let h = t.hash(key);
            t.update(h, Step::Keep, |_| None).unwrap().0
        };
        assert_eq!(seen(0), None);
        for key in 1..WINDOW as u64 {
            assert_eq!(seen(key).map(|e| e.a), Some(10 + key as u32));
        }
    }

    #[test]
    fn update_at_follows_the_slot_and_notices_a_new_owner() {
        let t = Table::new(64);
        let h = t.hash("k");
        let (_, at) = t
            .update(h, |_| Step::Store(Entry { a: 1, b: 0 }, ()), |_| None)
            .unwrap();
        let at = at.unwrap();
        assert_eq!(
            t.update_at(at, |e| Step::Store(Entry { a: e.a + 1, b: 0 }, e.a + 1)),
            Some(2)
        );
        let foreign = SlotRef {
            index: at.index,
            tag: at.tag ^ 2,
        };
        assert_eq!(t.update_at(foreign, |e| Step::Keep(e.a)), None);
    }

    #[test]
    fn concurrent_increments_are_never_lost() {
        let t = Arc::new(Table::new(256));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for _ in 0..5000 {
                        for key in 0..8u64 {
                            incr(&t, key).unwrap();
                        }
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        for key in 0..8u64 {
            // Racing first inserts may have split a key over two slots
            // (see Races); in this table each key's window has room, so
            // the counts still add up across the window.
            let h = t.hash(key);
            let n = t.update(h, Step::Keep, |_| None).unwrap().0.unwrap().a;
            assert!(n > 19_000 && n <= 20_000, "key {key}: {n}");
        }
    }

    proptest! {
        /// Used slots never exceed the capacity, and every key that was
        /// admitted can be read back until it is evicted.
        #[test]
        fn bounded_and_consistent(keys in proptest::collection::vec(0u64..200, 1..400)) {
            let t = Table::new(64);
            let mut last = std::collections::HashMap::new();
            for k in keys {
                if let Ok(n) = incr(&t, k) {
                    let prev = last.insert(k, n);
                    prop_assert!(prev.is_none_or(|p| n == p + 1 || n == 1));
                }
                prop_assert!(t.used() <= t.capacity());
            }
        }
    }
}

//! The global allocator: the system's, with spare blocks kept per proxy
//! worker thread.
//!
//! A proxied request allocates and frees about six blocks (the request
//! future's box, the two header maps' tables, a few small values). glibc
//! serves each `malloc` in ~40 instructions and each `free` in ~95 even
//! from its per-thread cache (callgrind: a loop of malloc/free on one
//! thread), and the request future's box, about 6 KB, is past that cache
//! (1,032 bytes) and takes the arena's locked path both ways. A worker
//! instead keeps the blocks it frees, by size, and hands them back to its
//! next allocations: a pop and a push on a per-thread list.
//!
//! - Small blocks (up to [`SMALL_MAX`]) are kept in size classes 16 bytes
//!   apart. Every small block, on every thread, is allocated rounded up
//!   to its class, so any block of a class fits any request of it.
//! - A few larger blocks (up to [`LARGE_MAX`]) are kept by exact size
//!   (the request future's box).
//! - Only threads that ask ([`enable_on_this_thread`]: the proxy workers)
//!   keep blocks, at most [`CLASS_BYTES`] per class, and they give them
//!   back when they stop (the guard drops). Other threads go
//!   straight to the system allocator; a block freed there goes back to
//!   it too. Kept memory is bounded: ~0.5 MB per worker.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// Largest size kept in classes (glibc's own cache stops at 1,032).
pub const SMALL_MAX: usize = 1016;

/// Classes are glibc's chunk sizes: 16 bytes apart, each serving requests
/// up to its chunk less the 8-byte header (24, 40, 56 ... 1,016 bytes).
/// Rounding a request up to its class then costs no memory under glibc:
/// malloc would have handed out that chunk anyway.
const CLASS: usize = 16;
const HEADER: usize = 8;
const CLASSES: usize = (SMALL_MAX + HEADER) / CLASS - 1;

/// Bytes kept per class, at most: many small blocks, few large ones.
pub const CLASS_BYTES: usize = 8 << 10;

/// Larger blocks are rare (body spooling, big reads) and worth returning.
pub const LARGE_MAX: usize = 64 << 10;
const LARGE_SLOTS: usize = 4;

/// malloc's own alignment (glibc: two words): a block from it fits any
/// layout aligned up to this.
const MAX_ALIGN: usize = 2 * size_of::<usize>();

/// A kept small block's first word links to the next of its class.
struct FreeBlock {
    next: *mut FreeBlock,
}

struct Cache {
    enabled: bool,
    /// Per class: the most recently kept block, and how many are kept.
    heads: [*mut FreeBlock; CLASSES],
    counts: [u16; CLASSES],
    /// Exact size (0: empty) and block.
    large: [(usize, *mut u8); LARGE_SLOTS],
    /// With every slot taken, the next to be replaced (in turn).
    large_next: usize,
}

thread_local! {
    // Const-initialised and without a destructor: reaching it allocates
    // nothing and registers nothing, as an allocator requires. Only this
    // module touches it, never while a borrow of it is alive.
    static CACHE: UnsafeCell<Cache> = const {
        UnsafeCell::new(Cache {
            enabled: false,
            heads: [ptr::null_mut(); CLASSES],
            counts: [0; CLASSES],
            large: [(0, ptr::null_mut()); LARGE_SLOTS],
            large_next: 0,
        })
    };
}

/// Class index of a small size (1..=SMALL_MAX), and the size it rounds to.
fn class_of(size: usize) -> (usize, usize) {
    let chunk = ((size + HEADER).div_ceil(CLASS) * CLASS).max(2 * CLASS);
    (chunk / CLASS - 2, chunk - HEADER)
}

/// The size a class's blocks have.
fn class_size(class: usize) -> usize {
    (class + 2) * CLASS - HEADER
}

/// How `System` sees a block of this layout: small ones rounded up.
fn system_layout(layout: Layout) -> Layout {
    if layout.size() <= SMALL_MAX && layout.align() <= MAX_ALIGN {
        let (_, rounded) = class_of(layout.size());
        // SAFETY: size <= rounded <= SMALL_MAX, far below isize::MAX, and
        // the alignment is unchanged (a valid power of two).
        unsafe { Layout::from_size_align_unchecked(rounded, layout.align()) }
    } else {
        layout
    }
}

fn with_cache<R>(f: impl FnOnce(&mut Cache) -> R) -> R {
    // SAFETY: the borrow ends with `f`, which neither allocates nor
    // reaches the cache again (see the thread_local).
    CACHE.with(|c| f(unsafe { &mut *c.get() }))
}

/// The process's allocator (see the module doc).
pub struct SpareBlocks;

// SAFETY: every block comes from `System` with `system_layout(layout)` and
// goes back to it with the same (small sizes round to their class, so all
// blocks of a class have the class's size); a kept block is in exactly one
// list or slot of one thread, never also live.
unsafe impl GlobalAlloc for SpareBlocks {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let size = layout.size();
        if layout.align() <= MAX_ALIGN {
            if size <= SMALL_MAX {
                let (class, _) = class_of(size);
                let kept = with_cache(|c| {
                    let head = c.heads[class];
                    if !head.is_null() {
                        // SAFETY: a kept block, not in use; its first word
                        // is the link written when it was kept.
                        c.heads[class] = unsafe { (*head).next };
                        c.counts[class] -= 1;
                    }
                    head
                });
                if !kept.is_null() {
                    return kept.cast();
                }
            } else if size <= LARGE_MAX {
                let kept = with_cache(|c| {
                    let slot = c.large.iter_mut().find(|s| s.0 == size)?;
                    Some(std::mem::replace(slot, (0, ptr::null_mut())).1)
                });
                if let Some(block) = kept {
                    return block;
                }
            }
        }
        // SAFETY: a valid, non-zero layout (the caller's contract).
        unsafe { System.alloc(system_layout(layout)) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // calloc: fresh pages are already zero, nothing to clear.
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(system_layout(layout)) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let size = layout.size();
        if layout.align() <= MAX_ALIGN {
            if size <= SMALL_MAX {
                let (class, rounded) = class_of(size);
                let kept = with_cache(|c| {
                    if !c.enabled || (c.counts[class] as usize + 1) * rounded > CLASS_BYTES {
                        return false;
                    }
                    let block = ptr.cast::<FreeBlock>();
                    // SAFETY: the block is ours now, at least 24 bytes and
                    // aligned for a pointer (malloc's alignment).
                    unsafe {
                        block.write(FreeBlock {
                            next: c.heads[class],
                        })
                    };
                    c.heads[class] = block;
                    c.counts[class] += 1;
                    true
                });
                if kept {
                    return;
                }
            } else if size <= LARGE_MAX {
                // The block just freed is kept: it is the likeliest to be
                // asked for next (the next request's future). With every
                // slot taken, the oldest goes back instead, so blocks of
                // sizes never asked for again (a closed connection's
                // buffers) do not hold the slots for good.
                let evicted = with_cache(|c| {
                    if !c.enabled {
                        return Some((ptr, size));
                    }
                    if let Some(empty) = c.large.iter_mut().find(|s| s.0 == 0) {
                        *empty = (size, ptr);
                        return None;
                    }
                    let oldest = c.large_next;
                    c.large_next = (oldest + 1) % LARGE_SLOTS;
                    let (old_size, old) = std::mem::replace(&mut c.large[oldest], (size, ptr));
                    Some((old, old_size))
                });
                if let Some((block, size)) = evicted {
                    // SAFETY: a system block of this exact size (large
                    // blocks are not rounded), no longer in use.
                    unsafe {
                        System.dealloc(
                            block,
                            Layout::from_size_align_unchecked(size, layout.align()),
                        )
                    };
                }
                return;
            }
        }
        // SAFETY: allocated by `System` with this system layout (above).
        unsafe { System.dealloc(ptr, system_layout(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = system_layout(layout);
        // SAFETY: the caller's contract: a valid layout of this alignment.
        let new =
            system_layout(unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) });
        if old.size() == new.size() {
            // Same class: the block already has the room.
            return ptr;
        }
        // SAFETY: `ptr` is live with the system layout `old`; `new` is valid.
        unsafe { System.realloc(ptr, old, new.size()) }
    }
}

/// This thread keeps spare blocks until the returned guard drops (then it
/// frees them): declare it before what allocates on the thread, so that
/// it drops last.
#[must_use = "the thread stops keeping blocks when the guard drops"]
pub fn enable_on_this_thread() -> Enabled {
    with_cache(|c| c.enabled = true);
    Enabled(())
}

/// See [`enable_on_this_thread`].
pub struct Enabled(());

impl Drop for Enabled {
    fn drop(&mut self) {
        release_on_this_thread();
    }
}

/// This thread stops keeping spare blocks and frees those it holds.
fn release_on_this_thread() {
    loop {
        // One block at a time: the cache is not borrowed while `System`
        // runs.
        let next = with_cache(|c| {
            c.enabled = false;
            if let Some(class) = c.heads.iter().position(|h| !h.is_null()) {
                let head = c.heads[class];
                // SAFETY: a kept block; its first word is the link.
                c.heads[class] = unsafe { (*head).next };
                c.counts[class] -= 1;
                return Some((head.cast::<u8>(), class_size(class)));
            }
            let slot = c.large.iter_mut().find(|s| s.0 != 0)?;
            let (size, block) = std::mem::replace(slot, (0, ptr::null_mut()));
            Some((block, size))
        });
        let Some((block, size)) = next else { return };
        // SAFETY: a kept block of this system size, no longer in use;
        // `System` frees by pointer whatever the alignment up to malloc's.
        unsafe { System.dealloc(block, Layout::from_size_align_unchecked(size, 1)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept_small() -> usize {
        with_cache(|c| c.counts.iter().map(|&n| n as usize).sum())
    }

    fn kept_large() -> usize {
        with_cache(|c| c.large.iter().filter(|s| s.0 != 0).count())
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    // libtest runs each test on its own thread: the cache starts empty
    // and disabled, and what a test keeps it releases.

    #[test]
    fn classes_are_glibc_chunk_sizes() {
        assert_eq!(class_of(1), (0, 24));
        assert_eq!(class_of(24), (0, 24));
        assert_eq!(class_of(25), (1, 40));
        assert_eq!(class_of(40), (1, 40));
        assert_eq!(class_of(41), (2, 56));
        assert_eq!(class_of(SMALL_MAX), (CLASSES - 1, SMALL_MAX));
        assert_eq!(CLASSES, 63);
        for size in 1..=SMALL_MAX {
            let (class, rounded) = class_of(size);
            assert!(rounded >= size, "{size}");
            assert!(rounded - size < CLASS || class == 0, "{size}");
            assert_eq!(class_size(class), rounded);
            // glibc's request2size: the same chunk for both.
            let chunk = |n: usize| ((n + 8 + 15) & !15).max(32);
            assert_eq!(chunk(size), chunk(rounded), "{size}");
        }
        assert_eq!(system_layout(layout(20, 4)), layout(24, 4));
        assert_eq!(system_layout(layout(1025, 8)), layout(1025, 8));
        assert_eq!(system_layout(layout(20, 64)), layout(20, 64));
    }

    #[test]
    fn a_freed_small_block_serves_any_size_of_its_class() {
        let a = SpareBlocks;
        let guard = enable_on_this_thread();
        unsafe {
            let p = a.alloc(layout(20, 8));
            a.dealloc(p, layout(20, 8));
            assert_eq!(kept_small(), 1);
            // 1..=24 share the class: the block has 24 bytes of room.
            let q = a.alloc(layout(24, 8));
            assert_eq!(q, p);
            q.write_bytes(0x5A, 24);
            assert_eq!(kept_small(), 0);
            // Another class: a fresh block.
            let r = a.alloc(layout(40, 8));
            assert_ne!(r, q);
            a.dealloc(q, layout(24, 8));
            a.dealloc(r, layout(40, 8));
            assert_eq!(kept_small(), 2);
        }
        drop(guard);
        assert_eq!(kept_small(), 0);
        unsafe {
            // Released: nothing is kept any more.
            let p = a.alloc(layout(20, 8));
            a.dealloc(p, layout(20, 8));
        }
        assert_eq!(kept_small(), 0);
    }

    #[test]
    fn blocks_come_back_last_in_first_out_and_intact() {
        let a = SpareBlocks;
        let guard = enable_on_this_thread();
        unsafe {
            let blocks: Vec<*mut u8> = (0..10).map(|_| a.alloc(layout(100, 8))).collect();
            for &b in &blocks {
                a.dealloc(b, layout(100, 8));
            }
            for &b in blocks.iter().rev() {
                let again = a.alloc(layout(100, 8));
                assert_eq!(again, b);
                again.write_bytes(1, 100);
            }
            for &b in &blocks {
                a.dealloc(b, layout(100, 8));
            }
        }
        drop(guard);
    }

    #[test]
    fn a_class_keeps_at_most_its_byte_budget() {
        let a = SpareBlocks;
        let guard = enable_on_this_thread();
        let l = layout(1000, 8); // a class of its own: 1,000 bytes
        let n = CLASS_BYTES / 1000;
        unsafe {
            let blocks: Vec<*mut u8> = (0..n + 3).map(|_| a.alloc(l)).collect();
            for &b in &blocks {
                a.dealloc(b, l);
            }
        }
        assert_eq!(kept_small(), n);
        drop(guard);
        assert_eq!(kept_small(), 0);
    }

    #[test]
    fn threads_that_did_not_ask_keep_nothing() {
        let a = SpareBlocks;
        unsafe {
            let p = a.alloc(layout(64, 8));
            a.dealloc(p, layout(64, 8));
            let q = a.alloc(layout(6000, 8));
            a.dealloc(q, layout(6000, 8));
        }
        assert_eq!((kept_small(), kept_large()), (0, 0));
    }

    #[test]
    fn a_large_block_is_kept_by_exact_size() {
        let a = SpareBlocks;
        let guard = enable_on_this_thread();
        unsafe {
            let p = a.alloc(layout(6000, 8));
            a.dealloc(p, layout(6000, 8));
            assert_eq!(kept_large(), 1);
            let q = a.alloc(layout(5000, 8));
            assert_ne!(q, p);
            let r = a.alloc(layout(6000, 8));
            assert_eq!(r, p);
            a.dealloc(q, layout(5000, 8));
            a.dealloc(r, layout(6000, 8));
            // Four slots: freeing four more blocks of other sizes fills
            // the two empty ones, then replaces the two kept before.
            let more: Vec<*mut u8> = (0..4).map(|i| a.alloc(layout(2000 + i, 8))).collect();
            for (i, &b) in more.iter().enumerate() {
                a.dealloc(b, layout(2000 + i, 8));
            }
            assert_eq!(kept_large(), LARGE_SLOTS);
            let sizes = with_cache(|c| c.large.map(|s| s.0));
            assert!(
                !sizes.contains(&6000) && !sizes.contains(&5000),
                "{sizes:?}"
            );
            // The most recently freed is always kept.
            let p = a.alloc(layout(6000, 8));
            a.dealloc(p, layout(6000, 8));
            assert!(with_cache(|c| c.large.iter().any(|s| s.0 == 6000)));
            assert_eq!(a.alloc(layout(6000, 8)), p);
            a.dealloc(p, layout(6000, 8));
        }
        assert_eq!(kept_large(), LARGE_SLOTS);
        drop(guard);
        assert_eq!(kept_large(), 0);
    }

    #[test]
    fn overaligned_and_oversized_blocks_bypass_the_cache() {
        let a = SpareBlocks;
        let guard = enable_on_this_thread();
        for l in [layout(64, 64), layout(4096, 4096), layout(LARGE_MAX + 1, 8)] {
            unsafe {
                let p = a.alloc(l);
                assert_eq!(p as usize % l.align(), 0);
                a.dealloc(p, l);
            }
        }
        assert_eq!((kept_small(), kept_large()), (0, 0));
        drop(guard);
    }

    #[test]
    fn realloc_keeps_bytes_across_classes_and_sizes() {
        let a = SpareBlocks;
        let guard = enable_on_this_thread();
        unsafe {
            let p = a.alloc(layout(20, 8));
            p.write_bytes(7, 20);
            // Same class: same block.
            let q = a.realloc(p, layout(20, 8), 24);
            assert_eq!(q, p);
            p.add(20).write_bytes(7, 4);
            let p = a.realloc(p, layout(24, 8), 30);
            p.add(24).write_bytes(7, 6);
            let p = a.realloc(p, layout(30, 8), 900);
            assert!(std::slice::from_raw_parts(p, 30).iter().all(|&b| b == 7));
            p.write_bytes(8, 900);
            let p = a.realloc(p, layout(900, 8), 20_000);
            assert!(std::slice::from_raw_parts(p, 900).iter().all(|&b| b == 8));
            let p = a.realloc(p, layout(20_000, 8), 10);
            assert!(std::slice::from_raw_parts(p, 10).iter().all(|&b| b == 8));
            a.dealloc(p, layout(10, 8));
            // The shrunk block went into the smallest class.
            let q = a.alloc(layout(24, 8));
            assert_eq!(q, p);
            a.dealloc(q, layout(24, 8));
        }
        drop(guard);
    }

    #[test]
    fn zeroed_blocks_are_zero() {
        let a = SpareBlocks;
        let guard = enable_on_this_thread();
        unsafe {
            let p = a.alloc(layout(48, 8));
            p.write_bytes(0xFF, 48);
            a.dealloc(p, layout(48, 8));
            let z = a.alloc_zeroed(layout(48, 8));
            assert!(std::slice::from_raw_parts(z, 48).iter().all(|&b| b == 0));
            a.dealloc(z, layout(48, 8));
        }
        drop(guard);
    }
}

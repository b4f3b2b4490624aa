//! glibc malloc thresholds, set once at start-up (`vigil run`).
//!
//! Each worker thread allocates from its own glibc arena. When the free
//! space at the top of an arena passes `M_TRIM_THRESHOLD` (128 KiB by
//! default), `free` gives it back with `madvise(MADV_DONTNEED)`, and the
//! next allocations fault the pages in again: behind a proxy load that
//! was about 300 `madvise` calls a second from hyper's buffers alone.
//! glibc raises the threshold by itself, but only once a chunk too big
//! for an arena has been mmapped and freed; vigil used to trip that by
//! accident (an access-log buffer that doubled past 128 KiB), and stopped
//! when the buffers stopped growing.
//!
//! So the thresholds are set on purpose: an arena keeps up to 4 MiB free
//! at its top, and allocations up to 1 MiB come from the arenas. Setting
//! them turns glibc's dynamic adjustment off. A `GLIBC_TUNABLES` that
//! sets any malloc tunable is left to rule. Memory freed by a wave of
//! closed connections still goes back: `proxy::memory` calls
//! `malloc_trim`, which does not wait for the threshold.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: i32 = 4 << 20;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 1 << 20;

/// Sets the thresholds, unless the environment tunes malloc itself.
/// Call before threads start.
pub fn apply() {
    if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("malloc.")) {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets malloc parameters; it takes the arena
    // locks itself and is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

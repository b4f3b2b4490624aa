//! A small, bounded cache of small files, like nginx's `open_file_cache`
//! plus the content: it lets the common request (a small asset, again)
//! be answered on the async thread without a blocking-pool hop.
//!
//! Why serve hits inline: a `spawn_blocking` round trip costs 13–23 µs of
//! latency (and ~4.5 µs of CPU) on the 2-core target machine, while the
//! `stat(2)` that revalidates a hit costs ~1.2 µs (`blocking_hop` and
//! `stat` in benches/static_files.rs). nginx itself does its `open`/`fstat` on the event
//! loop. The `stat` is the only blocking call a hit makes, and it is
//! always made: a hit is served only if the path still leads to the very
//! same file (device, inode, size, mtime and ctime to the nanosecond), so
//! an edited, replaced, chmod-ed or re-linked file is seen on the next
//! request. Unlike nginx's `open_file_cache_valid` there is no window of
//! staleness.
//!
//! Why that is safe: entries are only ever created by the confined open of
//! `open.rs`, relative to one base directory, and a hit must come from a
//! site with that same base and find the same inode again, i.e. a file
//! that was proven to lie below *this* base. (Keyed by path alone, a site
//! with `root /srv` would cache `/srv/a/link` -> `/srv/b/f`, and a site
//! with `root /srv/a` would then serve that file from outside its root.)
//! If a symlink is swapped in to point elsewhere, `stat` follows it to
//! another inode and the request takes the slow, confined path.
//!
//! Bounds: files above [`Limits::max_file`] are never cached; the total of
//! cached bytes and the number of entries are capped; when a cap is hit
//! the least recently used quarter is dropped in one sweep.

use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;

use crate::proxy::fast_map::FastMap;

use super::response::Size;
use super::validators::Validators;

/// What the cache may hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Largest file whose content is cached.
    pub max_file: u64,
    /// Cap on the sum of cached contents.
    pub max_bytes: usize,
    /// Cap on the number of entries (including "absent" ones).
    pub max_entries: usize,
}

impl Limits {
    /// 32 KiB files, 8 MiB in total: a site's HTML, CSS, JS and icons fit,
    /// and the worst case stays far below one nginx worker's buffers.
    pub const DEFAULT: Limits = Limits {
        max_file: 32 * 1024,
        max_bytes: 8 << 20,
        max_entries: 4096,
    };
}

/// The identity of a file's content as `stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileId {
    pub fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// A cached small file.
#[derive(Debug, Clone)]
pub(crate) struct CachedFile {
    pub id: FileId,
    pub validators: Validators,
    pub content: Bytes,
    /// `content`'s length.
    pub size: Size,
}

impl CachedFile {
    pub fn new(id: FileId, validators: Validators, content: Bytes) -> Self {
        let size = Size::new(content.len() as u64);
        Self {
            id,
            validators,
            content,
            size,
        }
    }
}

/// What the cache knows about a path.
#[derive(Debug, Clone)]
pub(crate) enum Known {
    /// A regular file below its base, and its content.
    File(Arc<CachedFile>),
    /// Nothing there. Only recorded for `gzip_static` sidecars, so that a
    /// site without `.gz` files does not pay a hop to learn it each time.
    Absent,
}

#[derive(Debug)]
struct Entry {
    /// The base directory the confined open was relative to.
    base: PathBuf,
    known: Known,
    last_used: AtomicU64,
}

impl Entry {
    fn cost(&self) -> usize {
        match &self.known {
            Known::File(f) => f.content.len(),
            Known::Absent => 0,
        }
    }
}

/// The cache. One per process ([`FileCache::global`]); tests make their own.
#[derive(Debug)]
pub(crate) struct FileCache {
    limits: Limits,
    inner: RwLock<Inner>,
    clock: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    /// foldhash rather than SipHash (~170 instructions per static
    /// request). Clients do add keys here (paths they ask for, found or
    /// not), but the seed is per process and the entries are capped at
    /// `max_entries`, so even a crafted flood of collisions stays bounded.
    /// Keyed by the path's bytes: `Path`'s own hash walks its components
    /// (~330 instructions per lookup). Two spellings of one path ("a//b")
    /// are then two keys, which costs at most a miss, never a wrong hit
    /// (a hit is verified by `stat` and base, above).
    entries: FastMap<OsString, Arc<Entry>>,
    bytes: usize,
}

impl FileCache {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            inner: RwLock::default(),
            clock: AtomicU64::new(0),
        }
    }

    pub fn global() -> &'static FileCache {
        static GLOBAL: OnceLock<FileCache> = OnceLock::new();
        GLOBAL.get_or_init(|| FileCache::new(Limits::DEFAULT))
    }

    /// Whether a file of this size is worth caching.
    pub fn fits(&self, size: u64) -> bool {
        size <= self.limits.max_file
    }

    /// What is known about `path` as seen from below `base`, unverified:
    /// callers revalidate with [`still_same`] / [`still_absent`].
    pub fn get(&self, base: &Path, path: &Path) -> Option<Known> {
        let inner = self
            .inner
            .read()
            .unwrap_or_else(|poison| poison.into_inner());
        let entry = inner.entries.get(path.as_os_str())?;
        if entry.base != base {
            return None;
        }
        // A hit moves the entry up to the newest insertion, without
        // advancing the clock and, when it is already there, without a
        // write: both workers hit the same hot files, and a write on
        // every hit would move the entry's line between their cores.
        let now = self.clock.load(Ordering::Relaxed);
        if entry.last_used.load(Ordering::Relaxed) != now {
            entry.last_used.store(now, Ordering::Relaxed);
        }
        Some(entry.known.clone())
    }

    /// Records what a confined open relative to `base` found at `path`.
    pub fn insert(&self, base: &Path, path: PathBuf, known: Known) {
        if let Known::File(f) = &known {
            if !self.fits(f.content.len() as u64) {
                return;
            }
        }
        let entry = Arc::new(Entry {
            base: base.to_path_buf(),
            known,
            last_used: AtomicU64::new(self.tick()),
        });
        let mut inner = self
            .inner
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        inner.bytes += entry.cost();
        if let Some(old) = inner.entries.insert(path.into_os_string(), entry) {
            inner.bytes -= old.cost();
        }
        if inner.bytes > self.limits.max_bytes || inner.entries.len() > self.limits.max_entries {
            self.evict(&mut inner);
        }
    }

    /// Drops the least recently used entries until both totals are at
    /// three quarters of their caps, so the next sweep is far away.
    fn evict(&self, inner: &mut Inner) {
        let mut by_age: Vec<(u64, OsString)> = inner
            .entries
            .iter()
            .map(|(path, e)| (e.last_used.load(Ordering::Relaxed), path.clone()))
            .collect();
        by_age.sort_unstable_by_key(|(used, _)| *used);
        let (byte_goal, entry_goal) = (
            self.limits.max_bytes / 4 * 3,
            self.limits.max_entries / 4 * 3,
        );
        for (_, path) in by_age {
            if inner.bytes <= byte_goal && inner.entries.len() <= entry_goal {
                break;
            }
            if let Some(old) = inner.entries.remove(&path) {
                inner.bytes -= old.cost();
            }
        }
    }

    /// The clock advances once per insertion; hits take its current
    /// value, so entries used since the last insertion all rank newest.
    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed) + 1
    }

    #[cfg(test)]
    fn totals(&self) -> (usize, usize) {
        let inner = self.inner.read().unwrap();
        (inner.entries.len(), inner.bytes)
    }
}

/// Whether `path` still leads to the file `id` describes. One `stat`.
pub(crate) fn still_same(path: &Path, id: &FileId) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && FileId::of(&m) == *id)
}

/// Whether `path` still leads to nothing. One `stat`.
pub(crate) fn still_absent(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_err_and(|e| matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(tmp: &Path, name: &str, content: &str) -> (PathBuf, Known) {
        let path = tmp.join(name);
        std::fs::write(&path, content).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let known = Known::File(Arc::new(CachedFile::new(
            FileId::of(&meta),
            Validators::new(meta.mtime(), meta.size()),
            Bytes::from(content.to_owned()),
        )));
        (path, known)
    }

    #[test]
    fn revalidation_sees_every_kind_of_change() {
        let tmp = tempfile::tempdir().unwrap();
        let (path, known) = file(tmp.path(), "a", "one");
        let Known::File(f) = known else {
            unreachable!()
        };
        assert!(still_same(&path, &f.id));
        // Same size, new content: mtime/ctime move (or, within one clock
        // tick, at least the inode does when replaced by rename).
        let other = tmp.path().join("b");
        std::fs::write(&other, "two").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert!(!still_same(&path, &f.id));

        let (path, known) = file(tmp.path(), "c", "abc");
        let Known::File(f) = known else {
            unreachable!()
        };
        std::fs::write(&path, "abcd").unwrap();
        assert!(!still_same(&path, &f.id));

        let (path, known) = file(tmp.path(), "d", "abc");
        let Known::File(f) = known else {
            unreachable!()
        };
        std::fs::remove_file(&path).unwrap();
        assert!(!still_same(&path, &f.id));
        assert!(still_absent(&path));
        assert!(still_absent(&tmp.path().join("d/under-a-missing-dir")));
        std::fs::create_dir(&path).unwrap();
        assert!(!still_same(&path, &f.id));
        assert!(!still_absent(&path));
    }

    #[test]
    fn stays_within_its_limits() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = FileCache::new(Limits {
            max_file: 10,
            max_bytes: 40,
            max_entries: 8,
        });
        let (big, known) = file(tmp.path(), "big", "01234567890");
        cache.insert(tmp.path(), big.clone(), known);
        assert!(cache.get(tmp.path(), &big).is_none(), "over max_file");
        for i in 0..20 {
            let (p, known) = file(tmp.path(), &format!("f{i}"), "0123456789");
            cache.insert(tmp.path(), p, known);
            let (entries, bytes) = cache.totals();
            assert!(entries <= 8 && bytes <= 40, "{entries} {bytes}");
        }
        for i in 0..20 {
            cache.insert(
                tmp.path(),
                tmp.path().join(format!("absent{i}")),
                Known::Absent,
            );
            assert!(cache.totals().0 <= 8);
        }
    }

    #[test]
    fn keeps_what_is_used() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = FileCache::new(Limits {
            max_file: 10,
            max_bytes: 1000,
            max_entries: 4,
        });
        let (hot, known) = file(tmp.path(), "hot", "x");
        cache.insert(tmp.path(), hot.clone(), known);
        for i in 0..10 {
            assert!(cache.get(tmp.path(), &hot).is_some(), "evicted after {i}");
            cache.insert(
                tmp.path(),
                tmp.path().join(format!("cold{i}")),
                Known::Absent,
            );
        }
    }

    #[test]
    fn replacing_an_entry_keeps_the_byte_count_right() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = FileCache::new(Limits::DEFAULT);
        let (p, known) = file(tmp.path(), "a", "12345");
        cache.insert(tmp.path(), p.clone(), known.clone());
        cache.insert(tmp.path(), p.clone(), known);
        assert_eq!(cache.totals(), (1, 5));
        cache.insert(tmp.path(), p, Known::Absent);
        assert_eq!(cache.totals(), (1, 0));
    }

    #[test]
    fn entries_belong_to_the_base_they_were_found_under() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = FileCache::new(Limits::DEFAULT);
        let (p, known) = file(tmp.path(), "a", "x");
        cache.insert(tmp.path(), p.clone(), known);
        assert!(cache.get(tmp.path(), &p).is_some());
        assert!(
            cache.get(&tmp.path().join("."), &p).is_some(),
            "same directory, same components"
        );
        assert!(cache.get(Path::new("/"), &p).is_none());
        assert!(cache.get(&tmp.path().join("sub"), &p).is_none());
    }
}

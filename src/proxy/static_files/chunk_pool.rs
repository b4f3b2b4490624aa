//! A small pool of chunk-sized read buffers.
//!
//! Why: glibc gives a freed 128 KiB block from a thread arena back to the
//! kernel (`madvise(MADV_DONTNEED)` when the arena top shrinks), so the
//! next chunk read page-faults the same memory in again and the kernel
//! zeroes it first. Profiling a 1 MiB download showed about a fifth of
//! the server's CPU in those faults. Buffers that go back to this pool
//! when hyper drops the `Bytes` stay mapped.
//!
//! Bounded: at most [`POOL_CAP`] idle buffers (2 MiB) are kept; the rest
//! are freed as usual.

use std::sync::Mutex;

use bytes::Bytes;

use super::file_body::CHUNK;

/// Idle buffers kept at most.
const POOL_CAP: usize = 16;

const CHUNK_BYTES: usize = CHUNK as usize;

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer able to hold `len` bytes: pooled if it is chunk-sized.
pub(crate) fn buffer(len: usize) -> Vec<u8> {
    if len == CHUNK_BYTES {
        let pooled = POOL.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if let Some(buf) = pooled {
            return buf;
        }
    }
    Vec::with_capacity(len)
}

/// Freezes a filled buffer; a chunk-sized one returns to the pool once the
/// last `Bytes` pointing into it is dropped.
pub(crate) fn freeze(buf: Vec<u8>) -> Bytes {
    if buf.capacity() == CHUNK_BYTES {
        Bytes::from_owner(Pooled(buf))
    } else {
        Bytes::from(buf)
    }
}

struct Pooled(Vec<u8>);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.0);
        buf.clear();
        let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOL_CAP {
            pool.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle() -> usize {
        POOL.lock().unwrap().len()
    }

    #[test]
    fn chunk_buffers_come_back_and_the_pool_stays_bounded() {
        // Other tests share the pool: only check relations that hold
        // whatever they do concurrently.
        let mut buf = buffer(CHUNK_BYTES);
        assert!(buf.capacity() >= CHUNK_BYTES && buf.is_empty());
        buf.extend_from_slice(b"abc");
        let bytes = freeze(buf);
        assert_eq!(bytes, "abc");
        let slice = bytes.slice(1..);
        drop(bytes);
        assert_eq!(slice, "bc");
        drop(slice);
        let many: Vec<Bytes> = (0..POOL_CAP * 2)
            .map(|_| freeze(buffer(CHUNK_BYTES)))
            .collect();
        drop(many);
        assert!(idle() <= POOL_CAP);
        let reused = buffer(CHUNK_BYTES);
        assert!(reused.is_empty() && reused.capacity() == CHUNK_BYTES);
    }

    #[test]
    fn other_sizes_are_plain_allocations() {
        let small = buffer(10);
        assert!(small.capacity() >= 10 && small.capacity() < CHUNK_BYTES);
        assert_eq!(freeze(b"xy".to_vec()), "xy");
    }
}

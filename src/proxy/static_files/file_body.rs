//! A response body streamed from a file in large chunks, never holding
//! more than one chunk per response in this type (hyper may queue a few
//! more, up to its `max_buf_size`).
//!
//! The body is a list of segments: bytes already in memory (a prefetched
//! first chunk, multipart part headers) and byte ranges still in the file.
//! A single-range or whole-file response is one file segment; a
//! `multipart/byteranges` response interleaves the two kinds.
//!
//! Reading a chunk first tries `preadv2(RWF_NOWAIT)` right on the async
//! thread: it copies what is in the page cache and never waits for the
//! disk (EAGAIN instead). Only a chunk that must come from disk takes a
//! blocking-pool hop. A served file is nearly always cached, and a hop per
//! chunk cost two thread switches: with a hop per chunk, `perf` put ~14%
//! of the server's time in task switching on 1 MiB downloads, and the
//! server CPU per response (wrk against `examples/static_server.rs`, one
//! core) went from 560–650 µs to 390–420 µs with inline reads.

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::chunk_pool;
use crate::proxy::sendfile::{self, SendfileHandle};

/// Bytes read per chunk: large enough that the per-read costs (syscall,
/// allocation, a hyper frame) are small next to the copy; small enough
/// that a response in flight holds little memory.
pub(crate) const CHUNK: u64 = 128 * 1024;

/// A part of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Already in memory.
    Bytes(Bytes),
    /// `len` bytes of the file from `offset`.
    File { offset: u64, len: u64 },
}

impl Segment {
    pub fn len(&self) -> u64 {
        match self {
            Segment::Bytes(b) => b.len() as u64,
            Segment::File { len, .. } => *len,
        }
    }
}

type PendingRead = JoinHandle<(File, io::Result<Bytes>)>;

/// The streaming body. Needs a tokio runtime (it is created inside one).
pub(crate) struct FileBody {
    /// `None` while a blocking read is in flight (the read owns it) or when
    /// every segment is already in memory.
    file: Option<File>,
    segments: VecDeque<Segment>,
    reading: Option<PendingRead>,
    remaining: u64,
    /// Cleared when the file system does not support `RWF_NOWAIT`.
    try_cached: bool,
    runtime: Handle,
    /// Plain HTTP/1.1 connection: file ranges go out with `sendfile(2)`
    /// (see `proxy::sendfile`), through a second descriptor of the file.
    sendfile: Option<(SendfileHandle, Arc<File>)>,
}

impl FileBody {
    pub fn new(file: Option<File>, segments: Vec<Segment>) -> Self {
        let remaining = segments.iter().map(Segment::len).sum();
        Self {
            file,
            segments: segments.into(),
            reading: None,
            remaining,
            try_cached: true,
            runtime: Handle::current(),
            sendfile: None,
        }
    }

    /// Puts back what is left of the file segment at `offset` (`len`
    /// bytes) once its first `taken` bytes are on their way.
    fn put_back(&mut self, offset: u64, len: u64, taken: u64) {
        if len > taken {
            self.segments.push_front(Segment::File {
                offset: offset + taken,
                len: len - taken,
            });
        }
    }

    /// Sends the file's ranges with `sendfile(2)` on `handle`'s connection
    /// when they are in the page cache (the kernel moves the pages; nothing
    /// is copied here). Falls back to reading if the file cannot be shared.
    pub fn with_sendfile(mut self, handle: SendfileHandle) -> Self {
        if let Some(shared) = self.file.as_ref().and_then(|f| f.try_clone().ok()) {
            self.sendfile = Some((handle, Arc::new(shared)));
        }
        self
    }
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        loop {
            if let Some(reading) = &mut this.reading {
                let joined = ready!(Pin::new(reading).poll(cx));
                this.reading = None;
                let (file, chunk) = joined.map_err(io::Error::other)?;
                this.file = Some(file);
                return Poll::Ready(Some(chunk.map(|c| this.sent(c))));
            }
            match this.segments.pop_front() {
                None => return Poll::Ready(None),
                Some(Segment::Bytes(b)) if b.is_empty() => {}
                Some(Segment::Bytes(b)) => return Poll::Ready(Some(Ok(this.sent(b)))),
                Some(Segment::File { len: 0, .. }) => {}
                Some(Segment::File { offset, len }) => {
                    if let Some((handle, shared)) = &this.sendfile {
                        // Only when the chunk's first and last pages are
                        // cached: a cold file is read ahead off this thread
                        // instead, where sendfile would wait for the disk
                        // on it (a chunk is up to 2 MiB).
                        let n = len.min(sendfile::CHUNK as u64);
                        if ends_cached(shared, offset, n)? {
                            let chunk = handle.chunk(shared, offset, n as usize, len > n);
                            this.put_back(offset, len, n);
                            return Poll::Ready(Some(Ok(this.sent(chunk))));
                        }
                    }
                    let Some(file) = this.file.take() else {
                        return Poll::Ready(Some(Err(io::Error::other(
                            "file body without a file",
                        ))));
                    };
                    let n = len.min(CHUNK);
                    if this.try_cached {
                        match read_cached(&file, offset, n) {
                            Ok(Some(chunk)) => {
                                this.put_back(offset, len, chunk.len() as u64);
                                this.file = Some(file);
                                return Poll::Ready(Some(Ok(this.sent(chunk))));
                            }
                            Ok(None) => {}
                            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                                this.try_cached = false
                            }
                            Err(e) => return Poll::Ready(Some(Err(e))),
                        }
                    }
                    this.put_back(offset, len, n);
                    this.reading = Some(this.runtime.spawn_blocking(move || {
                        let chunk = read_at(&file, offset, n);
                        (file, chunk)
                    }));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

impl FileBody {
    fn sent(&mut self, chunk: Bytes) -> Frame<Bytes> {
        self.remaining -= chunk.len() as u64;
        Frame::data(chunk)
    }
}

/// Reads exactly `len` bytes at `offset` (blocking). A short read means
/// the file shrank while being served: the response already promised
/// `Content-Length` bytes, so the only honest thing left is an error that
/// makes the server abort the connection.
pub(crate) fn read_at(file: &File, offset: u64, len: u64) -> io::Result<Bytes> {
    let len = usize::try_from(len).map_err(io::Error::other)?;
    let mut buf = chunk_pool::buffer(len);
    while buf.len() < len {
        match pread(file, &mut buf, offset, len, 0) {
            Ok(0) => return Err(shrank()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(chunk_pool::freeze(buf))
}

/// Reads up to `len` bytes at `offset` that are already in the page cache,
/// without blocking: `Ok(None)` if the first byte would need the disk.
/// EOPNOTSUPP (a file system without `RWF_NOWAIT` for buffered reads) is
/// returned so the caller can stop trying.
pub(crate) fn read_cached(file: &File, offset: u64, len: u64) -> io::Result<Option<Bytes>> {
    let len = usize::try_from(len).map_err(io::Error::other)?;
    let mut buf = chunk_pool::buffer(len);
    while buf.len() < len {
        match pread(file, &mut buf, offset, len, libc::RWF_NOWAIT) {
            Ok(0) => return Err(shrank()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Part of the range is not cached: send what was.
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => break,
            Err(e) => return Err(e),
        }
    }
    Ok((!buf.is_empty()).then(|| chunk_pool::freeze(buf)))
}

/// One `preadv2` into the spare capacity of `buf` (up to `len` bytes in
/// all: a pooled buffer may be larger), at `offset` plus what `buf`
/// already holds; returns the byte count added.
fn pread(
    file: &File,
    buf: &mut Vec<u8>,
    offset: u64,
    len: usize,
    flags: libc::c_int,
) -> io::Result<usize> {
    let at = offset
        .checked_add(buf.len() as u64)
        .and_then(|at| libc::off_t::try_from(at).ok())
        .ok_or_else(|| io::Error::other("offset out of range"))?;
    let want = len.saturating_sub(buf.len());
    let spare = buf.spare_capacity_mut();
    let iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: want.min(spare.len()),
    };
    // SAFETY: `iov` describes the spare capacity of `buf`, valid for writes
    // of `iov_len` bytes for the duration of the call; the fd is open.
    let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, at, flags) };
    let Ok(n) = usize::try_from(n) else {
        return Err(io::Error::last_os_error());
    };
    // SAFETY: the kernel initialized the first `n` (<= iov_len) bytes of
    // the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// Whether the byte at `offset` is in the page cache (a one-byte
/// `RWF_NOWAIT` read). A file system without `RWF_NOWAIT` answers yes: the
/// question cannot be asked there, and serving beats refusing.
fn is_cached(file: &File, offset: u64) -> io::Result<bool> {
    let mut byte = Vec::with_capacity(1);
    match pread(file, &mut byte, offset, 1, libc::RWF_NOWAIT) {
        Ok(0) => Err(shrank()),
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Whether the first and the last byte of `len` (> 0) bytes at `offset`
/// are in the page cache: the pages between are, as a rule, when both
/// ends are (files are read, and read ahead, in order).
fn ends_cached(file: &File, offset: u64, len: u64) -> io::Result<bool> {
    ends_cached_by(offset, len, |at| is_cached(file, at))
}

/// [`ends_cached`] with the page-cache question (`cached(offset)`) given.
fn ends_cached_by(
    offset: u64,
    len: u64,
    mut cached: impl FnMut(u64) -> io::Result<bool>,
) -> io::Result<bool> {
    let last = offset + len - 1;
    Ok(cached(offset)? && (last / 4096 == offset / 4096 || cached(last)?))
}

fn shrank() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being sent")
}

#[cfg(test)]
mod tests {
    use http_body::Body as _;
    use http_body_util::BodyExt;

    use super::*;

    fn file_with(content: &[u8]) -> (tempfile::NamedTempFile, File) {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), content).unwrap();
        let f = File::open(tmp.path()).unwrap();
        (tmp, f)
    }

    async fn collect(body: FileBody) -> io::Result<Vec<u8>> {
        Ok(body.collect().await?.to_bytes().to_vec())
    }

    #[tokio::test]
    async fn streams_segments_in_order_across_chunks() {
        let content: Vec<u8> = (0..(3 * CHUNK + 17)).map(|i| (i % 251) as u8).collect();
        let total = content.len() as u64;
        let mut want = b"<head>".to_vec();
        want.extend_from_slice(&content);
        want.extend_from_slice(b"<mid>");
        want.extend_from_slice(&content[5..8]);
        // Inline page-cache reads, then blocking-pool reads only.
        for try_cached in [true, false] {
            let (_tmp, f) = file_with(&content);
            let segments = vec![
                Segment::Bytes(Bytes::from_static(b"<head>")),
                Segment::File {
                    offset: 0,
                    len: total,
                },
                Segment::Bytes(Bytes::from_static(b"<mid>")),
                Segment::File { offset: 5, len: 3 },
                Segment::File {
                    offset: total,
                    len: 0,
                },
            ];
            let mut body = FileBody::new(Some(f), segments);
            body.try_cached = try_cached;
            assert_eq!(body.size_hint().exact(), Some(6 + total + 5 + 3));
            assert_eq!(collect(body).await.unwrap(), want);
        }
    }

    #[tokio::test]
    async fn a_shrinking_file_is_an_error_not_a_short_body() {
        for try_cached in [true, false] {
            let (tmp, f) = file_with(&[7u8; 100]);
            let mut body = FileBody::new(
                Some(f),
                vec![Segment::File {
                    offset: 0,
                    len: 100,
                }],
            );
            body.try_cached = try_cached;
            std::fs::write(tmp.path(), [7u8; 10]).unwrap();
            let err = collect(body).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        }
    }

    /// Which bytes are asked about: the first, and the last when it is
    /// on another page; a miss at the first ends the question.
    #[test]
    fn a_chunk_counts_as_cached_only_with_both_ends_cached() {
        let ask = |offset, len, cached: &[u64]| {
            let mut asked = Vec::new();
            let r = ends_cached_by(offset, len, |at| {
                asked.push(at);
                Ok(cached.iter().any(|&c| c / 4096 == at / 4096))
            })
            .unwrap();
            (r, asked)
        };
        assert_eq!(
            ask(0, 3 << 20, &[0, (3 << 20) - 1]),
            (true, vec![0, (3 << 20) - 1])
        );
        assert_eq!(ask(0, 3 << 20, &[0]), (false, vec![0, (3 << 20) - 1]));
        assert_eq!(ask(0, 3 << 20, &[(3 << 20) - 1]), (false, vec![0]));
        assert_eq!(
            ask(100, 10, &[0]),
            (true, vec![100]),
            "one page: one question"
        );
        assert_eq!(ask(4000, 200, &[0]), (false, vec![4000, 4199]), "two pages");
    }

    /// The same against the kernel: the file's last MiB is dropped from
    /// the page cache just before each question. (A question that misses
    /// may start the kernel's read-ahead, which brings the pages back:
    /// hence the drop before each one, after a blocking read that lets
    /// any read-ahead in flight finish, since pages under I/O stay.)
    #[test]
    fn the_page_cache_is_asked_at_both_ends() {
        const MIB: u64 = 1 << 20;
        let (_tmp, f) = file_with(&vec![1u8; 3 * MIB as usize]);
        f.sync_all().unwrap();
        assert!(ends_cached(&f, 0, 3 * MIB).unwrap(), "just written");
        let drop_last_mib = || {
            let mut buf = Vec::with_capacity(MIB as usize);
            while buf.len() < MIB as usize {
                assert!(pread(&f, &mut buf, 2 * MIB, MIB as usize, 0).unwrap() > 0);
            }
            // SAFETY: a plain advice call on an open descriptor.
            let r = unsafe {
                libc::posix_fadvise(
                    f.as_raw_fd(),
                    2 * MIB as libc::off_t,
                    MIB as libc::off_t,
                    libc::POSIX_FADV_DONTNEED,
                )
            };
            assert_eq!(r, 0);
        };
        drop_last_mib();
        if ends_cached(&f, 0, 3 * MIB).unwrap() {
            eprintln!("skipped: this file system keeps the pages (tmpfs?) or has no RWF_NOWAIT");
            return;
        }
        drop_last_mib();
        assert!(
            !ends_cached(&f, 2 * MIB, 10).unwrap(),
            "the first page is not cached"
        );
        assert!(
            ends_cached(&f, 0, 2 * MIB).unwrap(),
            "the first two MiB are"
        );
    }

    #[test]
    fn cached_reads_take_what_the_page_cache_has() {
        let content: Vec<u8> = (0..100u8).collect();
        let (_tmp, f) = file_with(&content);
        // Just written, so cached (tmpfs and every disk file system keep
        // written pages); RWF_NOWAIT may be unsupported on exotic ones.
        match read_cached(&f, 10, 20) {
            Ok(got) => assert_eq!(got.unwrap(), &content[10..30]),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP)),
        }
        assert_eq!(
            read_cached(&f, 100, 1).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert_eq!(read_at(&f, 90, 10).unwrap(), &content[90..]);
        assert_eq!(
            read_at(&f, 90, 11).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[tokio::test]
    async fn memory_only_bodies_need_no_file() {
        let body = FileBody::new(
            None,
            vec![
                Segment::Bytes(Bytes::from_static(b"ab")),
                Segment::Bytes(Bytes::new()),
            ],
        );
        assert_eq!(collect(body).await.unwrap(), b"ab");
    }
}

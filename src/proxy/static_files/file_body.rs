//! A response body streamed from a file in large chunks, one blocking-pool
//! hop per chunk, never holding more than one chunk per response.
//!
//! The body is a list of segments: bytes already in memory (a prefetched
//! first chunk, multipart part headers) and byte ranges still in the file.
//! A single-range or whole-file response is one file segment; a
//! `multipart/byteranges` response interleaves the two kinds.

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// Bytes read per blocking hop. Large enough that the hop's fixed cost
/// (~5 µs of CPU) is small next to the copy, small enough that a thousand
/// concurrent downloads hold 128 MiB at worst. Measured: 128 KiB and 256
/// KiB serve a 1 MiB file at the same rate; 64 KiB is slower.
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
    /// `None` while a read is in flight (the read owns it) or when every
    /// segment is already in memory.
    file: Option<File>,
    segments: VecDeque<Segment>,
    reading: Option<PendingRead>,
    remaining: u64,
    runtime: Handle,
}

impl FileBody {
    pub fn new(file: Option<File>, segments: Vec<Segment>) -> Self {
        let remaining = segments.iter().map(Segment::len).sum();
        Self {
            file,
            segments: segments.into(),
            reading: None,
            remaining,
            runtime: Handle::current(),
        }
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
                let chunk = chunk?;
                this.remaining -= chunk.len() as u64;
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            match this.segments.pop_front() {
                None => return Poll::Ready(None),
                Some(Segment::Bytes(b)) if b.is_empty() => {}
                Some(Segment::Bytes(b)) => {
                    this.remaining -= b.len() as u64;
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                Some(Segment::File { len: 0, .. }) => {}
                Some(Segment::File { offset, len }) => {
                    let n = len.min(CHUNK);
                    if len > n {
                        this.segments.push_front(Segment::File {
                            offset: offset + n,
                            len: len - n,
                        });
                    }
                    let Some(mut file) = this.file.take() else {
                        return Poll::Ready(Some(Err(io::Error::other(
                            "file body without a file",
                        ))));
                    };
                    this.reading = Some(this.runtime.spawn_blocking(move || {
                        let chunk = read_at(&mut file, offset, n);
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

/// Reads exactly `len` bytes at `offset` (blocking). A short read means
/// the file shrank while being served: the response already promised
/// `Content-Length` bytes, so the only honest thing left is an error that
/// makes the server abort the connection.
pub(crate) fn read_at(file: &mut File, offset: u64, len: u64) -> io::Result<Bytes> {
    file.seek(SeekFrom::Start(offset))?;
    let capacity = usize::try_from(len).map_err(io::Error::other)?;
    let mut buf = Vec::with_capacity(capacity);
    // `read_to_end` reads into the spare capacity without zeroing it first;
    // `take` stops it at `len` without an extra syscall.
    Read::by_ref(file).take(len).read_to_end(&mut buf)?;
    if buf.len() != capacity {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file shrank while being sent",
        ));
    }
    Ok(Bytes::from(buf))
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
        let (_tmp, f) = file_with(&content);
        let total = content.len() as u64;
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
        let body = FileBody::new(Some(f), segments);
        assert_eq!(body.size_hint().exact(), Some(6 + total + 5 + 3));
        let mut want = b"<head>".to_vec();
        want.extend_from_slice(&content);
        want.extend_from_slice(b"<mid>");
        want.extend_from_slice(&content[5..8]);
        assert_eq!(collect(body).await.unwrap(), want);
    }

    #[tokio::test]
    async fn a_shrinking_file_is_an_error_not_a_short_body() {
        let (tmp, f) = file_with(&[7u8; 100]);
        let body = FileBody::new(
            Some(f),
            vec![Segment::File {
                offset: 0,
                len: 100,
            }],
        );
        std::fs::write(tmp.path(), [7u8; 10]).unwrap();
        let err = collect(body).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
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

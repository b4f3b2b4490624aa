//! Request bodies larger than `client_body_buffer_size` wait in a
//! temporary file until they are whole (nginx's `client_body_temp_path`).
//!
//! The file is unlinked from the moment it exists (`O_TMPFILE` where the
//! filesystem has it): it has no name, so a crash, a kill or a full disk
//! leaves nothing behind to clean up, and the space is freed when the
//! last reader (the request and any retry) lets go.
//!
//! A slow disk must not stall a worker's other connections, so writes run
//! on tokio's blocking pool (ext4 and most file systems cannot say
//! whether a buffered write would block). Reads are first tried inline
//! with `RWF_NOWAIT`, which the page cache (where a body just written
//! almost always is) answers at once; only a miss goes to the blocking
//! pool. Each hop there costs thread wake-ups: reading inline took
//! bench/slow_uploads.sh from about 1.9 to 1.6 CPU-seconds.

use std::fs::File;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt as _;
use tokio::task::JoinHandle;

use crate::proxy::body::BoxError;
use crate::proxy::static_files::{read_at, read_cached};

/// Bytes gathered before each write, and read back per frame.
const IO_SIZE: usize = 64 * 1024;

/// A request body, whole, in an unlinked file.
#[derive(Debug, Clone)]
pub struct Spooled {
    file: Arc<File>,
    len: u64,
}

#[derive(Debug)]
pub(super) enum SpoolError {
    /// The body stream failed (the client's fault, as its upload records).
    Body,
    /// The file could not be created or written.
    Io(io::Error),
}

/// Writes all of `body` to a new file in `dir`.
pub(super) async fn spool<B>(mut body: B, dir: &Path) -> Result<Spooled, SpoolError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    let mut writer = Writer {
        dir: dir.to_owned(),
        file: None,
        len: 0,
    };
    let mut pending = BytesMut::with_capacity(IO_SIZE);
    loop {
        let done = match body.frame().await {
            None => true,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    pending.extend_from_slice(&data);
                }
                false
            }
            Some(Err(_)) => return Err(SpoolError::Body),
        };
        if pending.len() >= IO_SIZE || (done && !pending.is_empty()) {
            // A fresh buffer at full size: `split` would leave `pending`
            // none, to be regrown through reallocations for every write.
            let full = std::mem::replace(&mut pending, BytesMut::with_capacity(IO_SIZE));
            writer.write(full.freeze()).await.map_err(SpoolError::Io)?;
        }
        if done {
            break;
        }
    }
    let len = writer.len;
    let file = match writer.file {
        Some(f) => f,
        // Nothing past the first bytes, which cannot happen (the caller
        // spools only bodies longer than what it held), but an empty file
        // is the honest answer.
        None => writer.create().await.map_err(SpoolError::Io)?,
    };
    Ok(Spooled {
        file: Arc::new(file),
        len,
    })
}

struct Writer {
    dir: PathBuf,
    /// Created with the first write.
    file: Option<File>,
    len: u64,
}

impl Writer {
    async fn create(&self) -> io::Result<File> {
        let dir = self.dir.clone();
        blocking(move || tempfile::tempfile_in(dir)).await
    }

    async fn write(&mut self, chunk: Bytes) -> io::Result<()> {
        let file = self.file.take();
        let dir = self.dir.clone();
        let len = chunk.len() as u64;
        let file = blocking(move || {
            let mut file = match file {
                Some(f) => f,
                None => tempfile::tempfile_in(dir)?,
            };
            file.write_all(&chunk)?;
            Ok(file)
        })
        .await?;
        self.file = Some(file);
        self.len += len;
        Ok(())
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)))
}

impl Spooled {
    /// A body reading the file from its start, with its exact size (so
    /// the upstream gets a `Content-Length`, even for a chunked upload).
    pub fn reader(&self) -> SpooledReader {
        SpooledReader {
            file: self.file.clone(),
            offset: 0,
            len: self.len,
            reading: None,
            inline: true,
        }
    }
}

/// The spooled body, read back in [`IO_SIZE`] frames with positional
/// reads, so any number of readers share the one file.
pub struct SpooledReader {
    file: Arc<File>,
    offset: u64,
    len: u64,
    reading: Option<JoinHandle<io::Result<Bytes>>>,
    /// Cleared when the file system has no `RWF_NOWAIT` reads.
    inline: bool,
}

impl http_body::Body for SpooledReader {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.reading.is_none() {
            if this.offset >= this.len {
                return Poll::Ready(None);
            }
            let (file, offset) = (this.file.clone(), this.offset);
            let n = (this.len - offset).min(IO_SIZE as u64);
            if this.inline {
                match read_cached(&file, offset, n) {
                    Ok(Some(bytes)) => {
                        this.offset += bytes.len() as u64;
                        return Poll::Ready(Some(Ok(Frame::data(bytes))));
                    }
                    Ok(None) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => this.inline = false,
                    Err(e) => return Poll::Ready(Some(Err(e.into()))),
                }
            }
            this.reading = Some(tokio::task::spawn_blocking(move || {
                read_at(&file, offset, n)
            }));
        }
        let Some(reading) = this.reading.as_mut() else {
            return Poll::Ready(None);
        };
        let done = ready!(Pin::new(reading).poll(cx));
        this.reading = None;
        match done {
            Ok(Ok(bytes)) => {
                this.offset += bytes.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Ok(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            Err(e) => Poll::Ready(Some(Err(e.into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.reading.is_none() && self.offset >= self.len
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len - self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;
    use http_body_util::StreamBody;

    type Frames = Vec<Result<Frame<Bytes>, BoxError>>;

    fn body(frames: Frames) -> impl http_body::Body<Data = Bytes, Error = BoxError> + Unpin {
        StreamBody::new(futures_util::stream::iter(frames))
    }

    /// Frames of varied sizes, some crossing the write and read sizes.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    async fn read_back(s: &Spooled) -> Vec<u8> {
        let mut reader = s.reader();
        assert_eq!(reader.size_hint().exact(), Some(s.len));
        let mut out = Vec::new();
        while let Some(frame) = reader.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            assert!(data.len() <= IO_SIZE);
            out.extend_from_slice(&data);
        }
        assert!(reader.is_end_stream());
        out
    }

    #[tokio::test]
    async fn a_body_comes_back_whole_any_number_of_times_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        for len in [1, IO_SIZE - 1, IO_SIZE, IO_SIZE + 1, 5 * IO_SIZE + 333] {
            let data = pattern(len);
            let frames: Frames = data
                .chunks(9_000)
                .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
                .collect();
            let spooled = spool(body(frames), dir.path()).await.unwrap();
            assert_eq!(spooled.len, len as u64);
            // Unlinked from the start: the directory stays empty.
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
            assert_eq!(read_back(&spooled).await, data, "{len} bytes");
            // A retry reads it again from the start.
            assert_eq!(read_back(&spooled.clone()).await, data);
        }
    }

    #[tokio::test]
    async fn a_failing_body_is_the_bodys_fault_and_a_bad_directory_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let frames: Frames = vec![
            Ok(Frame::data(Bytes::from(vec![1; IO_SIZE * 2]))),
            Err("client went away".into()),
        ];
        assert!(matches!(
            spool(body(frames), dir.path()).await,
            Err(SpoolError::Body)
        ));
        let frames: Frames = vec![Ok(Frame::data(Bytes::from_static(b"x")))];
        let missing = dir.path().join("missing");
        assert!(matches!(
            spool(body(frames), &missing).await,
            Err(SpoolError::Io(_))
        ));
    }
}

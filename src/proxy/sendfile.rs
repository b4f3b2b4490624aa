//! Zero-copy static files on plain HTTP/1.1 connections: `sendfile(2)`
//! underneath hyper.
//!
//! hyper writes response bodies from `Bytes` it is handed and offers no
//! way to pass a file. So a file body on such a connection yields
//! *placeholder* chunks — slices of one static, all-zero [`PLACEHOLDER`]
//! region, with the right lengths so hyper's framing and accounting stay
//! exact — and records, in the connection's [`SendfileQueue`], which file
//! range each placeholder stands for. The connection's socket wrapper,
//! [`SendfileStream`], recognises placeholder memory when hyper writes it
//! and sends the file range with `sendfile(2)` instead: the kernel moves the
//! pages, nothing is copied through user space, and no read buffer is
//! held per response.
//!
//! Safety of the trick rests on two facts, both checked:
//! - hyper queues body chunks and writes them in order with vectored
//!   writes (its "queue" write strategy, forced on these connections), so
//!   placeholder bytes reach the socket wrapper as they were handed over;
//! - every placeholder write is matched against the front of the queue
//!   (same range, same progress). Any mismatch is an error that aborts the
//!   connection: it can never turn into zeros on the wire.
//!
//! Entries cannot go stale: hyper keeps an HTTP/1 connection open only
//! after a response body has ended, and it writes everything it buffered
//! before the connection goes on; a body that fails ends the connection.
//! The queue outlives hyper when an idle connection parks
//! (`conn/plain.rs`), but a connection parks only once the response body
//! was dropped and every write flushed, so nothing is queued then.
//!
//! Only HTTP/1.x requests on connections without TLS get a queue (TLS
//! must encrypt in user space; HTTP/2 interleaves streams).
//!
//! From a response head written with its file (a write of ordinary bytes
//! followed by a placeholder) until the file's last chunk, the socket is
//! corked (`TCP_CORK`, what nginx's `tcp_nopush` does around its
//! `sendfile`): the kernel sends full segments only, and the last chunk
//! uncorks it, which sends what is held at once. An ordinary write with
//! no file behind it uncorks first, so nothing else ever waits. Measured
//! with wrk over loopback, a 1 MiB file: uncorked, the small head went out
//! alone and the file in shorter segments, 38 TCP segments a response
//! (both ways) against nginx's 22 with `tcp_nopush`, and vigil served
//! 0.93x nginx's requests a second (`bench/proxy.sh`); corked, 21
//! segments and 1.03-1.05x (the client reads fewer, fuller segments).
//! vigil's own CPU per request went from 0.45x nginx's to 1.08-1.12x:
//! on loopback the sender of full segments does the delivery in its own
//! system time (nginx's own CPU is 2.7x what it is without
//! `tcp_nopush`), and the whole machine's CPU per request reads 0.97x
//! nginx's (`bench/proxy.sh`, shipped build).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Largest placeholder chunk (also the largest `sendfile` per write):
/// nginx's `sendfile_max_chunk` default. With 256 KiB chunks a 1 MiB file
/// took four `sendfile` calls and ~10 % more CPU per request.
pub const CHUNK: usize = 2 * 1024 * 1024;

/// The memory placeholder chunks point into. Never sent as such.
static PLACEHOLDER: [u8; CHUNK] = [0; CHUNK];

/// One file range waiting to be sent in place of a placeholder chunk.
#[derive(Debug)]
struct Pending {
    file: Arc<File>,
    offset: u64,
    len: usize,
    sent: usize,
    /// Another chunk of the same file follows this one directly: the
    /// socket stays corked after it.
    more: bool,
}

/// The file ranges a connection owes, in body order.
#[derive(Debug, Default)]
pub struct SendfileQueue(Mutex<VecDeque<Pending>>);

/// What a request carries (in its extensions) when its connection can
/// send files with `sendfile`.
#[derive(Debug, Clone)]
pub struct SendfileHandle(Arc<SendfileQueue>);

impl SendfileHandle {
    /// A placeholder chunk for `len` bytes (at most [`CHUNK`]) of `file`
    /// from `offset`, to be yielded as body data; `more` when the body's
    /// next chunk continues the same range (see the module's cork).
    pub fn chunk(&self, file: &Arc<File>, offset: u64, len: usize, more: bool) -> Bytes {
        let len = len.min(CHUNK);
        self.0.lock().push_back(Pending {
            file: file.clone(),
            offset,
            len,
            sent: 0,
            more,
        });
        Bytes::from_static(&PLACEHOLDER[..len])
    }
}

impl SendfileQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where `slice` starts inside the placeholder region, if it is there.
fn placeholder_offset(slice: &[u8]) -> Option<usize> {
    let start = PLACEHOLDER.as_ptr() as usize;
    let at = slice.as_ptr() as usize;
    (at >= start && at + slice.len() <= start + CHUNK && !slice.is_empty()).then(|| at - start)
}

/// A client TCP connection that can send queued file ranges.
#[derive(Debug)]
pub struct SendfileStream {
    stream: TcpStream,
    queue: Arc<SendfileQueue>,
    /// `TCP_CORK` is set (see the module's doc).
    corked: bool,
}

impl SendfileStream {
    pub fn new(stream: TcpStream) -> (Self, SendfileHandle) {
        let queue = Arc::new(SendfileQueue::default());
        (
            Self {
                stream,
                queue: queue.clone(),
                corked: false,
            },
            SendfileHandle(queue),
        )
    }

    /// Resolves once the socket has something to read, or is closed.
    /// A peek rather than `readable()`: readiness left over from the last
    /// read would resolve at once, with nothing there.
    pub async fn readable(&self) -> io::Result<()> {
        self.stream.peek(&mut [0u8; 1]).await.map(drop)
    }

    /// Corks or uncorks the socket. Uncorking sends what the kernel held
    /// back. A refusal only costs the full segments (or, uncorking, at
    /// most the kernel's 200 ms cork limit), so it is not an error.
    fn cork(&mut self, on: bool) {
        if self.corked != on {
            let _ = socket2::SockRef::from(&self.stream).set_tcp_cork(on);
            self.corked = on;
        }
    }

    /// Sends (part of) the placeholder `slice`, which starts `offset`
    /// bytes into its chunk.
    fn poll_send_file(
        &mut self,
        cx: &mut Context<'_>,
        slice: &[u8],
        offset: usize,
    ) -> Poll<io::Result<usize>> {
        let (file, position, len, more) = {
            let queue = self.queue.lock();
            let Some(front) = queue.front() else {
                return Poll::Ready(Err(mismatch("placeholder written with nothing queued")));
            };
            // hyper advances past what each write took, so an in-step
            // write is exactly the unsent rest of the front range.
            if front.sent != offset || slice.len() != front.len - front.sent {
                return Poll::Ready(Err(mismatch("placeholder out of step with its file range")));
            }
            (
                front.file.clone(),
                front.offset + front.sent as u64,
                slice.len(),
                front.more,
            )
        };
        if more {
            self.cork(true);
        }
        loop {
            ready!(self.stream.poll_write_ready(cx))?;
            let sent = self.stream.try_io(Interest::WRITABLE, || {
                let mut off = position as libc::off_t;
                // SAFETY: both fds are open for the call (the file is held by
                // the queue entry, the socket by `self`); `off` is a valid
                // out-pointer.
                let n = unsafe {
                    libc::sendfile(self.stream.as_raw_fd(), file.as_raw_fd(), &mut off, len)
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match sent {
                Ok(0) => {
                    // The file is shorter than promised (truncated while
                    // being served): Content-Length cannot be met.
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank while being sent",
                    )));
                }
                Ok(n) => {
                    let done = {
                        let mut queue = self.queue.lock();
                        let done = queue.front_mut().is_some_and(|front| {
                            front.sent += n;
                            front.sent == front.len
                        });
                        if done {
                            queue.pop_front();
                        }
                        done
                    };
                    if done && !more {
                        self.cork(false);
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

fn mismatch(what: &str) -> io::Error {
    io::Error::other(format!("sendfile: {what}; closing the connection"))
}

impl AsyncRead for SendfileStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendfileStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match placeholder_offset(buf) {
            Some(offset) => self.poll_send_file(cx, buf, offset),
            None => {
                self.cork(false);
                Pin::new(&mut self.stream).poll_write(cx, buf)
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // Every proxied response passes here too: no allocation.
        let Some(first) = bufs.iter().find(|b| !b.is_empty()) else {
            return Poll::Ready(Ok(0));
        };
        if let Some(offset) = placeholder_offset(first) {
            return self.poll_send_file(cx, first, offset);
        }
        // Ordinary bytes up to the first placeholder, in one writev. A
        // response head followed by its file goes out with the file, in
        // full segments; bytes followed by nothing are never held back.
        let plain = bufs
            .iter()
            .position(|b| placeholder_offset(b).is_some())
            .unwrap_or(bufs.len());
        self.cork(plain < bufs.len());
        Pin::new(&mut self.stream).poll_write_vectored(cx, &bufs[..plain])
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_memory_is_recognised_and_nothing_else() {
        let b = Bytes::from_static(&PLACEHOLDER[..100]);
        assert_eq!(placeholder_offset(&b), Some(0));
        assert_eq!(placeholder_offset(&b[10..]), Some(10));
        let copy = b.to_vec();
        assert_eq!(placeholder_offset(&copy), None, "a copy is ordinary bytes");
        assert_eq!(placeholder_offset(&[]), None);
    }

    /// The kernel's own record of the cork.
    fn corked(stream: &SendfileStream) -> bool {
        socket2::SockRef::from(&stream.stream).tcp_cork().unwrap()
    }

    async fn pair() -> (SendfileStream, SendfileHandle, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (stream, handle) = SendfileStream::new(server);
        (stream, handle, client)
    }

    /// Placeholders go out as the file's bytes, ordinary bytes as they are,
    /// in the order written.
    #[tokio::test]
    async fn placeholders_become_file_ranges_on_the_wire() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let contents: Vec<u8> = (0..CHUNK * 2).map(|i| (i % 251) as u8).collect();
        let mut tmp = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut tmp, &contents).unwrap();
        let file = Arc::new(tmp);
        let (mut stream, handle, mut client) = pair().await;
        let whole = handle.chunk(&file, 10, CHUNK, true);
        let tail = handle.chunk(&file, CHUNK as u64 + 10, 1000, false);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        stream.write_all(b"head:").await.unwrap();
        assert!(!corked(&stream));
        stream.write_all(&whole).await.unwrap();
        assert!(corked(&stream), "more of the file follows: corked");
        stream.write_all(&tail).await.unwrap();
        assert!(!corked(&stream), "the file's last chunk uncorks");
        stream.shutdown().await.unwrap();
        drop(stream);
        let got = reader.await.unwrap();
        let mut want = b"head:".to_vec();
        want.extend_from_slice(&contents[10..CHUNK + 10]);
        want.extend_from_slice(&contents[CHUNK + 10..CHUNK + 1010]);
        assert!(got == want, "bytes on the wire differ from the file ranges");
    }

    /// Ordinary bytes are never held back: a write of them uncorks the
    /// socket first, even when the file's next chunk was promised (a body
    /// that fell back to reading the file, or failed).
    #[tokio::test]
    async fn an_ordinary_write_uncorks() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tmp = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut tmp, &[5u8; 4096]).unwrap();
        let file = Arc::new(tmp);
        let (mut stream, handle, mut client) = pair().await;
        let first = handle.chunk(&file, 0, 4000, true);
        stream.write_all(&first).await.unwrap();
        assert!(corked(&stream));
        stream.write_all(b"!").await.unwrap();
        assert!(!corked(&stream));
        let mut got = vec![0u8; 4001];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..4000], &[5u8; 4000][..]);
        assert_eq!(got[4000], b'!');
    }

    /// A response head written together with its file is held until the
    /// file follows (one stream of full segments, as nginx's
    /// `tcp_nopush`), and the file's last chunk lets all of it go.
    #[tokio::test]
    async fn a_head_written_with_its_file_goes_out_with_it() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tmp = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut tmp, &[9u8; 4096]).unwrap();
        let file = Arc::new(tmp);
        let (mut stream, handle, mut client) = pair().await;
        let chunk = handle.chunk(&file, 0, 4000, false);
        let n = stream
            .write_vectored(&[IoSlice::new(b"head:"), IoSlice::new(&chunk)])
            .await
            .unwrap();
        assert_eq!(n, 5, "the head alone, the file next");
        assert!(corked(&stream));
        stream.write_all(&chunk).await.unwrap();
        assert!(!corked(&stream));
        let mut got = vec![0u8; 4005];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..5], b"head:");
        assert!(got[5..].iter().all(|&b| b == 9));
    }

    /// A placeholder nobody queued is an error, never zeros on the wire.
    #[tokio::test]
    async fn an_unqueued_placeholder_is_refused() {
        use tokio::io::AsyncWriteExt;
        let (mut stream, _handle, _client) = pair().await;
        let stray = Bytes::from_static(&PLACEHOLDER[..100]);
        let err = stream.write_all(&stray).await.unwrap_err();
        assert!(err.to_string().contains("nothing queued"), "{err}");
    }
}

//! A response body compressed as it streams.
//!
//! - **Bounded memory**: one input frame is fed in slices of at most
//!   [`SLICE`] bytes, and whatever the codec produced is handed on before
//!   the next slice; nothing accumulates but the codec's own state.
//! - **Paused streams keep flowing**: when the inner body has nothing
//!   ready (`Pending`) and bytes went into the codec since the last flush,
//!   the codec is flushed and the flushed bytes are sent. Server-sent
//!   events and long polls reach the client as the upstream sends them,
//!   not when a compression block fills up.
//! - **A broken inner body stays broken**: its error is passed on and the
//!   stream is *not* finished, so the client sees a truncated response
//!   (no gzip trailer, no final chunk) rather than a short one that looks
//!   complete. The upstream connection that failed is dropped with the
//!   inner body and never returns to the pool.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::encoder::Encoder;
use crate::proxy::body::{Body, BoxError};

/// Largest piece of input fed to the codec at once.
pub(crate) const SLICE: usize = 64 * 1024;

pub(crate) struct CompressedBody {
    inner: Body,
    /// `None` once the stream is finished or failed.
    encoder: Option<Encoder>,
    /// Input not fed to the codec yet (the rest of a large frame).
    input: Bytes,
    /// Bytes went into the codec since the last flush.
    unflushed: bool,
    /// Trailers from the inner body, sent after the last data.
    trailers: Option<http::HeaderMap>,
    done: bool,
}

impl CompressedBody {
    pub fn new(inner: Body, encoder: Encoder) -> Self {
        Self {
            inner,
            encoder: Some(encoder),
            input: Bytes::new(),
            unflushed: false,
            trailers: None,
            done: false,
        }
    }

    fn fail(&mut self, e: impl Into<BoxError>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.done = true;
        self.encoder = None;
        Poll::Ready(Some(Err(e.into())))
    }
}

impl http_body::Body for CompressedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            let Some(encoder) = this.encoder.as_mut() else {
                this.done = true;
                continue;
            };
            if !this.input.is_empty() {
                let n = this.input.len().min(SLICE);
                let slice = this.input.split_to(n);
                if let Err(e) = encoder.write(&slice) {
                    return this.fail(e);
                }
                this.unflushed = true;
                let out = encoder.take_output();
                if !out.is_empty() {
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                continue;
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => this.input = data,
                    Err(frame) => {
                        // Trailers end the body: finish, then send them.
                        if let Ok(t) = frame.into_trailers() {
                            this.trailers = Some(t);
                        }
                        return finish(this);
                    }
                },
                Poll::Ready(Some(Err(e))) => return this.fail(e),
                Poll::Ready(None) => return finish(this),
                Poll::Pending => {
                    if !this.unflushed {
                        return Poll::Pending;
                    }
                    this.unflushed = false;
                    if let Err(e) = encoder.flush() {
                        return this.fail(e);
                    }
                    let out = encoder.take_output();
                    if out.is_empty() {
                        return Poll::Pending;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

fn finish(this: &mut CompressedBody) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    this.done = true;
    let Some(encoder) = this.encoder.take() else {
        return Poll::Ready(None);
    };
    match encoder.finish() {
        Ok(out) if out.is_empty() => {
            Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
        }
        Ok(out) => Poll::Ready(Some(Ok(Frame::data(out)))),
        Err(e) => Poll::Ready(Some(Err(e.into()))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http_body::Body as _;
    use http_body_util::BodyExt;

    use super::*;
    use crate::proxy::accept_encoding::Coding;
    use crate::proxy::compress::encoder::tests::decode;

    /// A body fed by the test: `Some(chunk)` pushes data, an error string
    /// fails the body, and nothing queued means `Pending`.
    #[derive(Clone, Default)]
    struct Script(Arc<Mutex<Script_>>);
    #[derive(Default)]
    struct Script_ {
        queue: std::collections::VecDeque<Result<Bytes, String>>,
        ended: bool,
        waker: Option<std::task::Waker>,
    }

    impl Script {
        fn push(&self, data: &[u8]) {
            let mut s = self.0.lock().unwrap();
            s.queue.push_back(Ok(Bytes::copy_from_slice(data)));
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        }
        fn fail(&self) {
            self.0
                .lock()
                .unwrap()
                .queue
                .push_back(Err("bad chunk".into()));
        }
        fn end(&self) {
            let mut s = self.0.lock().unwrap();
            s.ended = true;
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        }
    }

    impl http_body::Body for Script {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            let mut s = self.0.lock().unwrap();
            match s.queue.pop_front() {
                Some(Ok(b)) => Poll::Ready(Some(Ok(Frame::data(b)))),
                Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
                None if s.ended => Poll::Ready(None),
                None => {
                    s.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        }
    }

    fn compressed(script: &Script, coding: Coding) -> CompressedBody {
        CompressedBody::new(
            Body::stream(script.clone()),
            Encoder::new(coding, 1).unwrap(),
        )
    }

    fn poll(body: &mut CompressedBody) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        Pin::new(body).poll_frame(&mut cx)
    }

    #[test]
    fn a_pause_flushes_what_was_written() {
        for coding in [Coding::Gzip, Coding::Br, Coding::Zstd] {
            let script = Script::default();
            let mut body = compressed(&script, coding);
            assert!(poll(&mut body).is_pending());
            script.push(b"data: tick 1\n\n");
            let mut sent = Vec::new();
            // The codec may produce a header first; polling until Pending
            // must yield the whole event.
            loop {
                match poll(&mut body) {
                    Poll::Ready(Some(Ok(f))) => sent.extend_from_slice(f.data_ref().unwrap()),
                    Poll::Pending => break,
                    other => panic!("{coding:?}: {:?}", other.map(|o| o.map(|r| r.is_ok()))),
                }
            }
            let mut reader: Box<dyn std::io::Read> = match coding {
                Coding::Gzip => Box::new(flate2::read::GzDecoder::new(&sent[..])),
                Coding::Br => Box::new(brotli::Decompressor::new(&sent[..], 4096)),
                Coding::Zstd => Box::new(zstd::stream::read::Decoder::new(&sent[..]).unwrap()),
            };
            let mut got = [0u8; 64];
            let mut n = 0;
            while n < 14 {
                match reader.read(&mut got[n..]) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => n += k,
                }
            }
            assert_eq!(&got[..n], b"data: tick 1\n\n", "{coding:?}");
            // A second pause with nothing new written stays quiet.
            assert!(poll(&mut body).is_pending());
        }
    }

    #[tokio::test]
    async fn a_whole_body_round_trips_and_large_frames_are_sliced() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for coding in [Coding::Gzip, Coding::Br, Coding::Zstd] {
            let body =
                CompressedBody::new(Body::full(big.clone()), Encoder::new(coding, 1).unwrap());
            let mut frames = 0;
            let mut out = Vec::new();
            let mut body = std::pin::pin!(body);
            while let Some(frame) = body.frame().await {
                frames += 1;
                out.extend_from_slice(frame.unwrap().data_ref().unwrap());
            }
            assert_eq!(decode(coding, &out), big, "{coding:?}");
            assert!(frames >= 2, "{coding:?}: {frames} frames");
            assert!(body.is_end_stream());
        }
    }

    #[test]
    fn a_failing_inner_body_fails_without_a_trailer() {
        let script = Script::default();
        let mut body = compressed(&script, Coding::Gzip);
        script.push(b"partial");
        script.fail();
        let mut saw_error = false;
        let mut sent = Vec::new();
        for _ in 0..10 {
            match poll(&mut body) {
                Poll::Ready(Some(Ok(f))) => sent.extend_from_slice(f.data_ref().unwrap()),
                Poll::Ready(Some(Err(_))) => saw_error = true,
                Poll::Ready(None) => break,
                Poll::Pending => panic!("pending after an error"),
            }
        }
        assert!(saw_error);
        // What was sent is not a complete gzip stream.
        let mut out = Vec::new();
        let complete =
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&sent[..]), &mut out);
        assert!(complete.is_err(), "a truncated body must not decode whole");
    }

    #[test]
    fn end_of_stream_finishes_the_codec() {
        let script = Script::default();
        let mut body = compressed(&script, Coding::Zstd);
        script.push(b"hello ");
        script.push(b"world");
        script.end();
        let mut sent = Vec::new();
        loop {
            match poll(&mut body) {
                Poll::Ready(Some(Ok(f))) => sent.extend_from_slice(f.data_ref().unwrap()),
                Poll::Ready(None) => break,
                other => panic!("{:?}", other.is_pending()),
            }
        }
        assert_eq!(decode(Coding::Zstd, &sent), b"hello world");
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Any split of any body, with pauses anywhere, decodes to the
        /// same bytes.
        #[test]
        fn any_chunking_and_pauses_round_trip(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..12),
            pauses in proptest::collection::vec(any::<bool>(), 12),
            which in 0usize..3,
        ) {
            let coding = [Coding::Gzip, Coding::Br, Coding::Zstd][which];
            let script = Script::default();
            let mut body = compressed(&script, coding);
            let mut sent = Vec::new();
            let drain = |body: &mut CompressedBody, sent: &mut Vec<u8>| loop {
                match poll(body) {
                    Poll::Ready(Some(Ok(f))) => sent.extend_from_slice(f.data_ref().unwrap()),
                    Poll::Ready(None) | Poll::Pending => break,
                    Poll::Ready(Some(Err(e))) => panic!("{e}"),
                }
            };
            for (i, c) in chunks.iter().enumerate() {
                script.push(c);
                if pauses[i] {
                    drain(&mut body, &mut sent);
                }
            }
            script.end();
            drain(&mut body, &mut sent);
            let whole: Vec<u8> = chunks.concat();
            prop_assert_eq!(decode(coding, &sent), whole);
        }
    }
}

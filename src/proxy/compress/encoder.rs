//! The three encoders behind one small interface: feed bytes, flush what
//! is pending (so a paused stream's bytes reach the client), finish.
//! Each writes into a `Vec` the caller drains, so nothing but the codec's
//! own state is held between calls.
//!
//! Memory per response is bounded by the codec's window and tables:
//! gzip ≈ 256 KiB (zlib's deflate state), brotli with a 512 KiB window
//! (ngx_brotli's default `brotli_window`), zstd with its window capped at
//! 512 KiB (2^19) whatever the level.

use std::io::{self, Write};

use bytes::Bytes;

use crate::proxy::accept_encoding::Coding;

/// brotli's window: 2^19 = 512 KiB.
const BROTLI_LGWIN: u32 = 19;
/// zstd's window: 2^19 = 512 KiB (levels above 3 would pick 2–8 MiB).
const ZSTD_WINDOW_LOG: u32 = 19;
/// brotli's internal output buffer.
const BROTLI_BUFFER: usize = 16 * 1024;

/// A running encoder for one response body.
pub(crate) enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    /// An encoder for `coding` at `level` (already validated for it).
    pub fn new(coding: Coding, level: i32) -> io::Result<Encoder> {
        Ok(match coding {
            Coding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(level.clamp(0, 9) as u32),
            )),
            Coding::Br => Encoder::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                BROTLI_BUFFER,
                level.clamp(0, 11) as u32,
                BROTLI_LGWIN,
            ))),
            Coding::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(Vec::new(), level)?;
                e.window_log(ZSTD_WINDOW_LOG)?;
                Encoder::Zstd(e)
            }
        })
    }

    /// Compresses `data`; output may stay inside the codec until more
    /// input, a flush or the finish.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.write_all(data),
            Encoder::Br(e) => e.write_all(data),
            Encoder::Zstd(e) => e.write_all(data),
        }
    }

    /// Emits everything written so far as complete blocks the client can
    /// decode now (deflate's sync flush, brotli's and zstd's flush).
    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Br(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }

    /// The output produced so far, taken out of the encoder.
    pub fn take_output(&mut self) -> Bytes {
        let out = match self {
            Encoder::Gzip(e) => e.get_mut(),
            Encoder::Br(e) => e.get_mut(),
            Encoder::Zstd(e) => e.get_mut(),
        };
        Bytes::from(std::mem::take(out))
    }

    /// Ends the stream (gzip trailer, brotli's last block, zstd's frame
    /// end) and returns the rest of the output.
    pub fn finish(self) -> io::Result<Bytes> {
        let out = match self {
            Encoder::Gzip(e) => e.finish()?,
            Encoder::Br(e) => e.into_inner(),
            Encoder::Zstd(e) => e.finish()?,
        };
        Ok(Bytes::from(out))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Read;

    use super::*;

    pub(crate) fn decode(coding: Coding, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match coding {
            Coding::Gzip => {
                flate2::read::GzDecoder::new(data)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Coding::Br => {
                brotli::Decompressor::new(data, 4096)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Coding::Zstd => {
                out = zstd::stream::decode_all(data).unwrap();
            }
        }
        out
    }

    /// Decodes a prefix of a stream (no trailer yet): what a client can
    /// read after a flush.
    fn decode_prefix(coding: Coding, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let mut reader: Box<dyn Read> = match coding {
            Coding::Gzip => Box::new(flate2::read::GzDecoder::new(data)),
            Coding::Br => Box::new(brotli::Decompressor::new(data, 4096)),
            Coding::Zstd => Box::new(zstd::stream::read::Decoder::new(data).unwrap()),
        };
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        out
    }

    #[test]
    fn round_trips_every_coding() {
        let text: Vec<u8> = (0..50_000u32)
            .flat_map(|i| format!("line {i} of the body\n").into_bytes())
            .collect();
        for (coding, level) in [(Coding::Gzip, 6), (Coding::Br, 5), (Coding::Zstd, 3)] {
            let mut e = Encoder::new(coding, level).unwrap();
            let mut out = Vec::new();
            for chunk in text.chunks(7000) {
                e.write(chunk).unwrap();
                out.extend_from_slice(&e.take_output());
            }
            out.extend_from_slice(&e.finish().unwrap());
            assert!(out.len() < text.len() / 4, "{coding:?}: {}", out.len());
            assert_eq!(decode(coding, &out), text, "{coding:?}");
        }
    }

    #[test]
    fn a_flush_makes_everything_written_decodable() {
        for coding in [Coding::Gzip, Coding::Br, Coding::Zstd] {
            let mut e = Encoder::new(coding, 1).unwrap();
            e.write(b"data: first event\n\n").unwrap();
            e.flush().unwrap();
            let first = e.take_output();
            assert!(!first.is_empty(), "{coding:?}");
            assert_eq!(
                decode_prefix(coding, &first),
                b"data: first event\n\n",
                "{coding:?}"
            );
            e.write(b"data: second\n\n").unwrap();
            e.flush().unwrap();
            let mut all = first.to_vec();
            all.extend_from_slice(&e.take_output());
            assert_eq!(
                decode_prefix(coding, &all),
                b"data: first event\n\ndata: second\n\n",
                "{coding:?}"
            );
        }
    }

    #[test]
    fn an_empty_stream_is_a_valid_stream() {
        for coding in [Coding::Gzip, Coding::Br, Coding::Zstd] {
            let e = Encoder::new(coding, 1).unwrap();
            let out = e.finish().unwrap();
            assert_eq!(decode(coding, &out), b"", "{coding:?}");
        }
    }
}

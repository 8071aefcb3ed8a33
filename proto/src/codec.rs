//! Frames: a 4-byte big-endian length, then a postcard payload of at most [`MAX_FRAME_LEN`]
//! bytes. The length is checked before any buffer is sized from it, on both the async
//! ([`FrameCodec`], for tokio) and the blocking ([`read_frame`] / [`write_frame`], for the
//! hooks, which run without an async runtime) paths.

use std::io::{self, Read, Write};
use std::marker::PhantomData;

use bytes::{Buf, BufMut, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::codec::{Decoder, Encoder};

use crate::MAX_FRAME_LEN;

const HEADER_LEN: usize = 4;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("malformed frame: {0}")]
    Malformed(#[from] postcard::Error),
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("connection closed")]
    Closed,
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl FrameError {
    /// Whether the byte stream is still in sync after this error (only a payload that failed
    /// to decode leaves it in sync; the next frame can still be read).
    pub fn is_recoverable(&self) -> bool {
        matches!(self, FrameError::Malformed(_))
    }
}

/// A tokio-util codec that decodes `D` and encodes `E`, each as one frame.
#[derive(Debug)]
pub struct FrameCodec<D, E> {
    max: usize,
    _types: PhantomData<fn(E) -> D>,
}

impl<D, E> FrameCodec<D, E> {
    pub fn new() -> Self {
        Self::with_max(MAX_FRAME_LEN)
    }

    /// A codec with another frame limit (tests and benchmarks).
    pub fn with_max(max: usize) -> Self {
        Self {
            max,
            _types: PhantomData,
        }
    }
}

impl<D, E> Default for FrameCodec<D, E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<D: DeserializeOwned, E> Decoder for FrameCodec<D, E> {
    type Item = D;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<D>, FrameError> {
        let Some(header) = src.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len > self.max {
            // Refuse before reserving anything; the stream is out of sync from here on.
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        if src.len() < HEADER_LEN + len {
            src.reserve(HEADER_LEN + len - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let payload = src.split_to(len);
        Ok(Some(postcard::from_bytes(&payload)?))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<D>, FrameError> {
        match self.decode(src)? {
            Some(item) => Ok(Some(item)),
            None if src.is_empty() => Ok(None),
            None => Err(FrameError::Truncated),
        }
    }
}

impl<D, E: Serialize> Encoder<E> for FrameCodec<D, E> {
    type Error = FrameError;

    fn encode(&mut self, item: E, dst: &mut BytesMut) -> Result<(), FrameError> {
        let start = dst.len();
        dst.put_u32(0);
        if let Err(e) = postcard::to_io(&item, (&mut *dst).writer()) {
            dst.truncate(start);
            return Err(e.into());
        }
        let len = dst.len() - start - HEADER_LEN;
        if len > self.max {
            dst.truncate(start);
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        // `len <= max <= u32::MAX` was checked just above.
        dst[start..start + HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(())
    }
}

/// A [`FrameCodec`] that yields a payload which fails to decode as an `Err` item instead of a
/// stream error. tokio-util's `Framed` ends the stream after any decoder error; a server that
/// wants to answer a malformed request with an error and keep the connection uses this.
#[derive(Debug, Default)]
pub struct LenientCodec<D, E>(FrameCodec<D, E>);

impl<D, E> LenientCodec<D, E> {
    pub fn new() -> Self {
        Self(FrameCodec::new())
    }
}

impl<D: DeserializeOwned, E> Decoder for LenientCodec<D, E> {
    type Item = Result<D, FrameError>;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, FrameError> {
        match self.0.decode(src) {
            Ok(item) => Ok(item.map(Ok)),
            Err(e) if e.is_recoverable() => Ok(Some(Err(e))),
            Err(e) => Err(e),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, FrameError> {
        match self.0.decode_eof(src) {
            Ok(item) => Ok(item.map(Ok)),
            Err(e) if e.is_recoverable() => Ok(Some(Err(e))),
            Err(e) => Err(e),
        }
    }
}

impl<D, E: Serialize> Encoder<E> for LenientCodec<D, E> {
    type Error = FrameError;

    fn encode(&mut self, item: E, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.0.encode(item, dst)
    }
}

/// Serialize `item` and write it as one frame with a single `write_all`.
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, item: &T) -> Result<(), FrameError> {
    let mut buf = postcard::to_extend(item, vec![0u8; HEADER_LEN])?;
    let len = buf.len() - HEADER_LEN;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    buf[..HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    w.write_all(&buf)?;
    Ok(())
}

/// Read one frame and decode it. A clean end of stream before the first byte is
/// [`FrameError::Closed`]; an end of stream inside a frame is [`FrameError::Truncated`].
pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<T, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(e),
    })?;
    Ok(postcard::from_bytes(&payload)?)
}

#[cfg(test)]
mod tests;

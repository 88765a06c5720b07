//! Framing: a 4-byte little-endian payload length, then the payload (one message).
//!
//! Invariants:
//! - A length header above the decoder's maximum (at most [`MAX_FRAME_LEN`]) is an error as soon
//!   as its 4 bytes are seen; the payload is never buffered.
//! - [`FrameDecoder`] does no I/O: bytes in, complete payloads out, in order. After an error it
//!   stays failed (the stream cannot be resynchronised).

use crate::codec::{decode_request, decode_response};
use crate::error::WireError;
use crate::limits::{FRAME_HEADER_LEN, MAX_FRAME_LEN, MAX_REQUEST_LEN};
use crate::message::{Request, Response};

/// Prefixes `payload` with its length. Fails if it exceeds [`MAX_FRAME_LEN`].
pub fn encode_frame(payload: &[u8]) -> Result<Vec<u8>, WireError> {
    let len = check_len(payload.len() as u64, MAX_FRAME_LEN)?;
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + len);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// The payload length a frame header announces, checked against [`MAX_FRAME_LEN`].
pub fn frame_len(header: [u8; FRAME_HEADER_LEN]) -> Result<usize, WireError> {
    check_len(u64::from(u32::from_le_bytes(header)), MAX_FRAME_LEN)
}

fn check_len(len: u64, max: usize) -> Result<usize, WireError> {
    match usize::try_from(len) {
        Ok(n) if n <= max => Ok(n),
        _ => Err(WireError::FrameTooLarge { len, max }),
    }
}

/// The payload of `bytes`, which must be exactly one frame of at most [`MAX_FRAME_LEN`] payload
/// bytes. For a request stream's whole content use [`decode_request_frame`], which applies the
/// smaller request limit [`MAX_REQUEST_LEN`].
pub fn split_single_frame(bytes: &[u8]) -> Result<&[u8], WireError> {
    split_frame(bytes, MAX_FRAME_LEN)
}

fn split_frame(bytes: &[u8], max: usize) -> Result<&[u8], WireError> {
    let Some(header) = bytes.first_chunk::<FRAME_HEADER_LEN>() else {
        return Err(WireError::IncompleteFrame {
            buffered: bytes.len(),
        });
    };
    let len = check_len(u64::from(u32::from_le_bytes(*header)), max)?;
    let rest = &bytes[FRAME_HEADER_LEN..];
    if rest.len() < len {
        return Err(WireError::IncompleteFrame {
            buffered: bytes.len(),
        });
    }
    if rest.len() > len {
        return Err(WireError::TrailingBytes {
            message: "frame",
            count: rest.len() - len,
        });
    }
    Ok(rest)
}

/// Decodes a request stream's whole content: exactly one frame holding one request. A header
/// announcing more than [`MAX_REQUEST_LEN`] bytes is [`WireError::FrameTooLarge`] (answered with
/// `FrameTooLarge`, protocol-spec/wire.md §3), whatever follows it.
pub fn decode_request_frame(bytes: &[u8]) -> Result<Request, WireError> {
    decode_request(split_frame(bytes, MAX_REQUEST_LEN)?)
}

/// Decodes exactly one frame holding one response.
pub fn decode_response_frame(bytes: &[u8]) -> Result<Response, WireError> {
    decode_response(split_single_frame(bytes)?)
}

/// Incremental frame splitter: push received bytes, pull complete payloads.
///
/// ```
/// use nayose_wire::{FrameDecoder, Request, decode_request, encode_request_frame};
/// let frame = encode_request_frame(&Request::Info)?;
/// let mut dec = FrameDecoder::new();
/// for b in &frame {
///     dec.push(std::slice::from_ref(b));
/// }
/// let payload = dec.next_frame()?.expect("a whole frame was pushed");
/// assert_eq!(decode_request(&payload)?, Request::Info);
/// dec.finish()?; // nothing left over at the end of the stream
/// # Ok::<(), nayose_wire::WireError>(())
/// ```
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    max_len: usize,
    failed: Option<WireError>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new()
    }
}

impl FrameDecoder {
    /// A decoder accepting payloads up to [`MAX_FRAME_LEN`].
    pub fn new() -> Self {
        FrameDecoder::with_max_len(MAX_FRAME_LEN)
    }

    /// A decoder accepting payloads up to `max_len`, itself capped at [`MAX_FRAME_LEN`].
    pub fn with_max_len(max_len: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            max_len: max_len.min(MAX_FRAME_LEN),
            failed: None,
        }
    }

    /// Appends received bytes. Call [`FrameDecoder::next_frame`] until it returns `None` after
    /// each push, so that an oversize header is refused before its payload accumulates.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete payload, `Ok(None)` if more bytes are needed, or the error that stopped
    /// the stream ([`WireError::FrameTooLarge`]).
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, WireError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let avail = &self.buf[self.start..];
        let Some(header) = avail.first_chunk::<FRAME_HEADER_LEN>() else {
            return Ok(None);
        };
        let len = match check_len(u64::from(u32::from_le_bytes(*header)), self.max_len) {
            Ok(len) => len,
            Err(e) => {
                self.failed = Some(e.clone());
                self.buf = Vec::new();
                self.start = 0;
                return Err(e);
            }
        };
        let Some(payload) = avail.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
            return Ok(None);
        };
        let payload = payload.to_vec();
        self.start += FRAME_HEADER_LEN + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(Some(payload))
    }

    /// Bytes held that do not yet form a complete frame (or not yet pulled).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Called at the end of the stream (FIN): fails if a partial frame is left over.
    pub fn finish(&self) -> Result<(), WireError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.buffered() {
            0 => Ok(()),
            buffered => Err(WireError::IncompleteFrame { buffered }),
        }
    }
}

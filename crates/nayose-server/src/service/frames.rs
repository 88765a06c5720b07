//! Reading one request frame from a stream (bounded, trailing bytes refused) and writing
//! response frames.

use nayose_wire::{
    ErrorCode, ErrorResponse, FRAME_HEADER_LEN, MAX_REQUEST_LEN, Request, Response, WireError,
    decode_request, encode_response_frame, frame_len,
};
use std::time::Duration;

use nayose_wire::StreamCode;
use quinn::VarInt;
use tracing::error;

pub(super) enum ReadFail {
    /// The frame or message is bad: answer with this error (and stop the stream if `stop`).
    Bad(WireError, bool),
    /// The stream or connection went away; nothing to answer.
    Gone,
}

pub(super) async fn read_request(
    recv: &mut quinn::RecvStream,
    bytes_in: &mut u64,
) -> Result<Request, ReadFail> {
    let mut hdr = [0u8; FRAME_HEADER_LEN];
    match recv.read_exact(&mut hdr).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(n)) => {
            return Err(ReadFail::Bad(
                WireError::IncompleteFrame { buffered: n },
                false,
            ));
        }
        Err(quinn::ReadExactError::ReadError(_)) => return Err(ReadFail::Gone),
    }
    *bytes_in += FRAME_HEADER_LEN as u64;
    let len = frame_len(hdr).map_err(|e| ReadFail::Bad(e, true))?;
    // No request is longer than a full Evaluate (wire.md §5): refuse longer frames before
    // allocating, so a client cannot make the server hold 4 MiB per stream.
    if len > MAX_REQUEST_LEN {
        return Err(ReadFail::Bad(
            WireError::FrameTooLarge {
                len: len as u64,
                max: MAX_REQUEST_LEN,
            },
            true,
        ));
    }
    let mut payload = vec![0u8; len];
    match recv.read_exact(&mut payload).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(n)) => {
            return Err(ReadFail::Bad(
                WireError::IncompleteFrame {
                    buffered: FRAME_HEADER_LEN + n,
                },
                false,
            ));
        }
        Err(quinn::ReadExactError::ReadError(_)) => return Err(ReadFail::Gone),
    }
    *bytes_in += len as u64;
    let mut extra = [0u8; 1];
    match recv.read(&mut extra).await {
        Ok(None) => {}
        Ok(Some(n)) => {
            return Err(ReadFail::Bad(
                WireError::TrailingBytes {
                    message: "frame",
                    count: n,
                },
                true,
            ));
        }
        Err(_) => return Err(ReadFail::Gone),
    }
    decode_request(&payload).map_err(|e| ReadFail::Bad(e, false))
}

pub(super) fn err_resp(code: ErrorCode, message: &str) -> Response {
    Response::Error(ErrorResponse::new(code, message))
}

pub(super) fn encode(r: &Response) -> Option<Vec<u8>> {
    match encode_response_frame(r) {
        Ok(f) => Some(f),
        Err(e) => {
            error!("cannot encode a {} response: {e}", r.name());
            None
        }
    }
}

/// Why a response frame was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WriteFail {
    /// The frame could not be encoded, or the stream or connection went away.
    Gone,
    /// The peer did not take the frame within the write deadline (it does not read, or keeps
    /// its flow-control window too small): the stream was reset with `StreamCode::Timeout`.
    Stalled,
}

/// Writes one frame within `deadline` (`write_timeout_ms`); a stream that stalls longer is
/// reset, so a client that does not read cannot hold the request's slots.
pub(super) async fn write_bytes(
    send: &mut quinn::SendStream,
    frame: &[u8],
    deadline: Duration,
) -> Result<(), WriteFail> {
    match tokio::time::timeout(deadline, send.write_all(frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(WriteFail::Gone),
        Err(_) => {
            let _ = send.reset(VarInt::from_u32(StreamCode::Timeout.to_u32()));
            Err(WriteFail::Stalled)
        }
    }
}

pub(super) async fn write_frame(
    send: &mut quinn::SendStream,
    r: &Response,
    bytes_out: &mut u64,
    deadline: Duration,
) -> Result<(), WriteFail> {
    let frame = encode(r).ok_or(WriteFail::Gone)?;
    write_bytes(send, &frame, deadline).await?;
    *bytes_out += frame.len() as u64;
    Ok(())
}

//! Reading one request frame from a stream (bounded, trailing bytes refused) and writing
//! response frames.

use nayose_wire::{
    ErrorCode, ErrorResponse, FRAME_HEADER_LEN, MAX_REQUEST_LEN, Request, Response, WireError,
    decode_request, encode_response_frame, frame_len,
};
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

pub(super) async fn write_frame(
    send: &mut quinn::SendStream,
    r: &Response,
    bytes_out: &mut u64,
) -> Result<(), ()> {
    let frame = encode(r).ok_or(())?;
    send.write_all(&frame).await.map_err(|_| ())?;
    *bytes_out += frame.len() as u64;
    Ok(())
}

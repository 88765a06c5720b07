//! Message encoding and decoding: the one bincode configuration and the checks around it.
//!
//! Invariants:
//! - [`CONFIG`] is the only bincode configuration of nayose; protocol-spec/wire.md writes out
//!   the bytes it produces for every field, and the golden tests check them.
//! - Decoding never panics, checks the payload against [`MAX_FRAME_LEN`] first, reads the 4-byte
//!   message type itself (so an unknown type is a typed error), decodes by borrowing from the
//!   input (strings are length-checked before they are copied), and rejects trailing bytes.

use bincode::config::{Configuration, Fixint, Limit, LittleEndian};
use bincode::error::DecodeError;
use serde::{Deserialize, Serialize};

use crate::error::WireError;
use crate::frame::encode_frame;
use crate::limits::{MAX_FRAME_LEN, MAX_REQUEST_LEN};
use crate::message::{REQUEST_NAMES, RESPONSE_NAMES, Request, Response};
use crate::reject::Rejection;

/// The bincode configuration of nayose/2: little-endian, fixed-size integers (enum variant
/// index as u32, lengths as u64), and a decode limit of [`MAX_FRAME_LEN`] bytes.
pub type WireConfig = Configuration<LittleEndian, Fixint, Limit<MAX_FRAME_LEN>>;

/// The one bincode configuration used for every message.
pub const CONFIG: WireConfig = bincode::config::standard()
    .with_little_endian()
    .with_fixed_int_encoding()
    .with_limit::<MAX_FRAME_LEN>();

/// Encodes a request as a message payload (no frame header).
///
/// Fails only if the encoded message would exceed [`MAX_FRAME_LEN`], which the types' limits
/// make impossible.
pub fn encode_request(request: &Request) -> Result<Vec<u8>, WireError> {
    encode(request, request.name())
}

/// Encodes a response as a message payload (no frame header).
///
/// Fails with [`WireError::OutOfSpec`] if a public field breaks a rule of the spec (an Info
/// with epoch 0, `oldest_delta_base` above `epoch` or `max_batch` outside 1..=4096, a BaseChunk
/// running past `total`, a DeltaChunk of more than 65 536 removed tags and upserts together, an
/// EpochChanged or KeyPeriodChanged error without the current state).
pub fn encode_response(response: &Response) -> Result<Vec<u8>, WireError> {
    response.check()?;
    encode(response, response.name())
}

/// Encodes a request as one complete frame (length header and payload).
pub fn encode_request_frame(request: &Request) -> Result<Vec<u8>, WireError> {
    encode_frame(&encode_request(request)?)
}

/// Encodes a response as one complete frame (length header and payload).
pub fn encode_response_frame(response: &Response) -> Result<Vec<u8>, WireError> {
    encode_frame(&encode_response(response)?)
}

/// Decodes a request from a message payload (no frame header), which must hold exactly one
/// request and nothing after it.
///
/// A payload longer than [`MAX_REQUEST_LEN`] (the largest request) is
/// [`WireError::FrameTooLarge`].
pub fn decode_request(payload: &[u8]) -> Result<Request, WireError> {
    decode(payload, MAX_REQUEST_LEN, "request", &REQUEST_NAMES)
}

/// Decodes a response from a message payload (no frame header), which must hold exactly one
/// response and nothing after it.
pub fn decode_response(payload: &[u8]) -> Result<Response, WireError> {
    decode(payload, MAX_FRAME_LEN, "response", &RESPONSE_NAMES)
}

fn encode<T: Serialize>(value: &T, name: &'static str) -> Result<Vec<u8>, WireError> {
    let bytes = bincode::serde::encode_to_vec(value, CONFIG).map_err(|e| WireError::Encode {
        message: name,
        detail: e.to_string(),
    })?;
    if bytes.len() > MAX_FRAME_LEN {
        return Err(WireError::FrameTooLarge {
            len: bytes.len() as u64,
            max: MAX_FRAME_LEN,
        });
    }
    Ok(bytes)
}

fn decode<'a, T: Deserialize<'a>>(
    payload: &'a [u8],
    max: usize,
    direction: &'static str,
    names: &[&'static str],
) -> Result<T, WireError> {
    if payload.len() > max {
        return Err(WireError::FrameTooLarge {
            len: payload.len() as u64,
            max,
        });
    }
    let Some(type_bytes) = payload.first_chunk::<4>() else {
        return Err(WireError::MissingType {
            direction,
            len: payload.len(),
        });
    };
    let value = u32::from_le_bytes(*type_bytes);
    let Some(&name) = usize::try_from(value).ok().and_then(|i| names.get(i)) else {
        return Err(WireError::UnknownMessageType { direction, value });
    };
    let (message, read) = bincode::serde::borrow_decode_from_slice::<T, _>(payload, CONFIG)
        .map_err(|e| decode_error(name, e))?;
    if read != payload.len() {
        return Err(WireError::TrailingBytes {
            message: name,
            count: payload.len().saturating_sub(read),
        });
    }
    Ok(message)
}

fn decode_error(message: &'static str, e: DecodeError) -> WireError {
    match e {
        DecodeError::UnexpectedEnd { additional } => WireError::Truncated {
            message,
            missing: additional,
        },
        DecodeError::LimitExceeded => WireError::InvalidEncoding {
            message,
            detail: format!(
                "a length field announces more than the {MAX_FRAME_LEN} bytes a frame can hold"
            ),
        },
        DecodeError::OtherString(ref s) => match Rejection::parse(s) {
            Some(Rejection::Count(field, count)) => {
                let (min, max) = field.count_bounds();
                WireError::CountOutOfRange {
                    message,
                    field: field.name(),
                    count,
                    min,
                    max,
                }
            }
            Some(Rejection::Invalid(field, value)) => WireError::InvalidField {
                message,
                field: field.name(),
                value,
                reason: field.requirement(),
            },
            None => WireError::InvalidEncoding {
                message,
                detail: s.clone(),
            },
        },
        other => WireError::InvalidEncoding {
            message,
            detail: other.to_string(),
        },
    }
}

//! The one error type of the wire codec.
//!
//! Invariant: every way a frame or message can be rejected has its own variant naming the
//! message, the field and the offending value, so a receiver can log precisely what a peer sent
//! and answer with the right `ErrorCode` (see [`WireError::error_code`]).

use crate::message::ErrorCode;

/// Why bytes could not be framed, decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A frame's length header announces more than [`crate::MAX_FRAME_LEN`] payload bytes; the
    /// payload was not read or buffered.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// Payload length announced by the header.
        len: u64,
        /// The maximum allowed payload length.
        max: usize,
    },
    /// The stream ended (FIN) in the middle of a frame.
    #[error("stream ended inside a frame: {buffered} bytes of an incomplete frame were buffered")]
    IncompleteFrame {
        /// Bytes received of the incomplete frame (header included).
        buffered: usize,
    },
    /// A message is shorter than its 4-byte type field.
    #[error("{direction} message of {len} bytes is too short to hold its 4-byte type")]
    MissingType {
        /// `"request"` or `"response"`.
        direction: &'static str,
        /// Length of the payload that was received.
        len: usize,
    },
    /// The 4-byte type field holds no known message type.
    #[error("unknown {direction} message type {value}")]
    UnknownMessageType {
        /// `"request"` or `"response"`.
        direction: &'static str,
        /// The type value received.
        value: u32,
    },
    /// A message ended before all its fields were read.
    #[error("{message} message is truncated: at least {missing} more bytes were needed")]
    Truncated {
        /// Name of the message (e.g. `"Evaluate"`).
        message: &'static str,
        /// Bytes missing at the point the decoder stopped.
        missing: usize,
    },
    /// A message was followed by bytes that belong to no field.
    #[error("{message} message is followed by {count} trailing bytes")]
    TrailingBytes {
        /// Name of the message.
        message: &'static str,
        /// Number of unread bytes.
        count: usize,
    },
    /// A length-prefixed list or string has a count outside its allowed range. Checked before
    /// anything was allocated for it.
    #[error("{message}.{field}: count {count} is outside the allowed range {min}..={max}")]
    CountOutOfRange {
        /// Name of the message.
        message: &'static str,
        /// Name of the field.
        field: &'static str,
        /// The count (elements, entries or bytes) that was announced.
        count: u64,
        /// Smallest allowed count.
        min: u64,
        /// Largest allowed count.
        max: u64,
    },
    /// A fixed-size field holds a value the spec forbids.
    #[error("{message}.{field}: value {value} is invalid: {reason}")]
    InvalidField {
        /// Name of the message.
        message: &'static str,
        /// Name of the field.
        field: &'static str,
        /// The offending value (the number itself, or the offending byte/bit index).
        value: u64,
        /// What the spec requires of this field.
        reason: &'static str,
    },
    /// A primitive was badly encoded: an Option tag other than 0 or 1, a string that is not
    /// UTF-8, an integer that does not fit the platform.
    #[error("{message} message has an invalid encoding: {detail}")]
    InvalidEncoding {
        /// Name of the message.
        message: &'static str,
        /// What the decoder found.
        detail: String,
    },
    /// A message could not be encoded. Cannot happen for values built through this crate's
    /// constructors; reported rather than panicking.
    #[error("could not encode {message}: {detail}")]
    Encode {
        /// Name of the message.
        message: &'static str,
        /// What the encoder reported.
        detail: String,
    },
    /// A value given to a constructor violates a limit of the spec.
    #[error("{field}: {reason} (got {value})")]
    OutOfSpec {
        /// Name of the field being built.
        field: &'static str,
        /// The offending value (count, length or number).
        value: u64,
        /// What the spec requires.
        reason: &'static str,
    },
}

impl WireError {
    /// The [`ErrorCode`] a server answers with when a request fails to frame or decode with this
    /// error: [`ErrorCode::FrameTooLarge`] for oversize frames, [`ErrorCode::BatchTooLarge`] for an
    /// Evaluate batch over the limit, [`ErrorCode::BadRequest`] for everything else.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            WireError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            WireError::CountOutOfRange {
                field: "elements",
                count,
                max,
                ..
            } if count > max => ErrorCode::BatchTooLarge,
            _ => ErrorCode::BadRequest,
        }
    }
}

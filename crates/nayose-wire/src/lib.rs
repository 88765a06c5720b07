//! The nayose/2 wire codec: every byte of `protocol-spec/wire.md`.
//!
//! - [`limits`]: field lengths and hard limits (normative constants).
//! - [`types`]: fixed-size byte strings and bounded lists, valid by construction.
//! - [`message`]: [`Request`], [`Response`] and [`ErrorCode`].
//! - [`codec`]: the one bincode configuration, [`encode_request`] / [`decode_request`] and the
//!   response equivalents.
//! - [`frame`]: 4-byte little-endian length framing and the incremental [`FrameDecoder`].
//! - [`transport`]: QUIC application close and stream codes.
//!
//! Invariants: decoding never panics, never allocates ahead of the bytes it has checked, and
//! rejects oversize frames, unknown message types, out-of-range counts, invalid fields and
//! trailing bytes with a typed [`WireError`]. The crate does no I/O and knows nothing of
//! cryptography: elements, keys, proofs, tags and labels are opaque fixed-size byte strings.

pub mod codec;
pub mod error;
pub mod frame;
pub mod limits;
pub mod message;
mod reject;
pub mod transport;
pub mod types;

pub use codec::{
    CONFIG, WireConfig, decode_request, decode_response, encode_request, encode_request_frame,
    encode_response, encode_response_frame,
};
pub use error::WireError;
pub use frame::{
    FrameDecoder, decode_request_frame, decode_response_frame, encode_frame, frame_len,
    split_single_frame,
};
pub use limits::*;
pub use message::{
    Announcement, BaseChunk, BaseEnd, CurrentState, DeltaChunk, DeltaEnd, ErrorCode, ErrorResponse,
    EvaluateRequest, EvaluateResponse, FetchBaseRequest, FetchDeltaRequest, InfoResponse, Request,
    Response,
};
pub use transport::{CloseCode, StreamCode};
pub use types::{
    ChunkList, Element, ElementBatch, EncryptedLabel, EntityId, Entry, ErrorMessage, GapBytes,
    KeyPeriodId, Proof, PublicKeyBytes, SignedEpochStatement, SignedKeyPeriodStatement,
    TableDigest, Tag, UpsertChain,
};

//! The messages of nayose/1: requests, responses and error codes (protocol-spec/wire.md).
//!
//! Invariants:
//! - The declaration order of the variants of [`Request`] and [`Response`] is their 4-byte type
//!   on the wire (bincode encodes serde's variant index as u32 LE); never reorder them.
//! - The declaration order of struct fields is their order on the wire; never reorder them.
//! - A decoded message satisfies every field rule of the spec: counts are bounded by the types
//!   of [`crate::types`], and the rules that span fields are checked by `Raw*` conversions here.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::WireError;
use crate::limits::{LABEL_LEN, MAX_BATCH_ELEMENTS, MAX_PREFIX_BITS, TAG_LEN};
use crate::reject::{Field, Rejection};
use crate::types::{
    ElementBatch, EntryList, EpochId, ErrorMessage, Proof, PublicKeyBytes, TagPrefix,
};

/// A request: the one frame a client sends on a new bidirectional stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Type 0: ask for the current epoch's parameters and the client's quota.
    Info,
    /// Type 1: evaluate a batch of blinded elements under the epoch's key.
    Evaluate(EvaluateRequest),
    /// Type 2: fetch the entries whose tags start with a prefix (k-anon mode).
    FetchRange(FetchRangeRequest),
    /// Type 3: stream the whole table from an entry offset (full mode).
    FetchAll(FetchAllRequest),
}

/// Body of [`Request::Evaluate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvaluateRequest {
    /// The epoch whose key the client expects (from Info).
    pub epoch: EpochId,
    /// Blinded elements, 1 to [`MAX_BATCH_ELEMENTS`].
    pub elements: ElementBatch,
}

/// Body of [`Request::FetchRange`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRangeRequest {
    /// The epoch whose table the client expects.
    pub epoch: EpochId,
    /// The range: every entry whose tag starts with this prefix.
    pub prefix: TagPrefix,
}

/// Body of [`Request::FetchAll`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchAllRequest {
    /// The epoch whose table the client expects.
    pub epoch: EpochId,
    /// Index of the first entry wanted (0 for a fresh download; entries already held to resume).
    pub offset: u64,
}

/// A response frame. Which responses may answer which request: [`Request::accepts`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Type 0: answers Info.
    Info(InfoResponse),
    /// Type 1: answers Evaluate.
    Evaluated(EvaluateResponse),
    /// Type 2: answers FetchRange.
    Range(RangeResponse),
    /// Type 3: one chunk of a FetchAll stream.
    TableChunk(TableChunk),
    /// Type 4: the last frame of a successful FetchAll stream.
    TableEnd(TableEnd),
    /// Type 5: the request failed; the last frame on the stream.
    Error(ErrorResponse),
}

/// Body of [`Response::Info`]: the current epoch and this client's allowance.
///
/// On the wire `tag_len` and `label_len` (one byte each, after `table_entries`) carry
/// [`TAG_LEN`] and [`LABEL_LEN`]; a decoder rejects any other value, so they are not fields here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "RawInfo", try_from = "RawInfo")]
pub struct InfoResponse {
    /// The current epoch.
    pub epoch: EpochId,
    /// The epoch's VOPRF public key pkS.
    pub public_key: PublicKeyBytes,
    /// Number of entries in the epoch's table.
    pub table_entries: u64,
    /// Longest prefix, in bits, FetchRange accepts (at most 64): the largest length at which
    /// every range holds at least `min_range_entries` entries. `None` when k-anon mode is not
    /// offered (disabled, or the table has fewer than `min_range_entries` entries).
    pub max_prefix_bits: Option<u8>,
    /// Least number of entries the server returns for a range (k of k-anon mode).
    pub min_range_entries: u32,
    /// Most elements the server accepts in one Evaluate (1 to [`MAX_BATCH_ELEMENTS`]).
    pub max_batch: u32,
    /// Evaluations this client may still request in the current quota day.
    pub quota_left: u64,
    /// Seconds until the quota day ends and `quota_left` is reset.
    pub quota_reset_secs: u32,
}

#[derive(Clone, Serialize, Deserialize)]
struct RawInfo {
    epoch: EpochId,
    public_key: PublicKeyBytes,
    table_entries: u64,
    tag_len: u8,
    label_len: u8,
    max_prefix_bits: Option<u8>,
    min_range_entries: u32,
    max_batch: u32,
    quota_left: u64,
    quota_reset_secs: u32,
}

impl From<InfoResponse> for RawInfo {
    fn from(i: InfoResponse) -> Self {
        RawInfo {
            epoch: i.epoch,
            public_key: i.public_key,
            table_entries: i.table_entries,
            tag_len: TAG_LEN as u8,
            label_len: LABEL_LEN as u8,
            max_prefix_bits: i.max_prefix_bits,
            min_range_entries: i.min_range_entries,
            max_batch: i.max_batch,
            quota_left: i.quota_left,
            quota_reset_secs: i.quota_reset_secs,
        }
    }
}

impl TryFrom<RawInfo> for InfoResponse {
    type Error = Rejection;

    fn try_from(r: RawInfo) -> Result<Self, Rejection> {
        if usize::from(r.tag_len) != TAG_LEN {
            return Err(Rejection::Invalid(Field::TagLen, u64::from(r.tag_len)));
        }
        if usize::from(r.label_len) != LABEL_LEN {
            return Err(Rejection::Invalid(Field::LabelLen, u64::from(r.label_len)));
        }
        let info = InfoResponse {
            epoch: r.epoch,
            public_key: r.public_key,
            table_entries: r.table_entries,
            max_prefix_bits: r.max_prefix_bits,
            min_range_entries: r.min_range_entries,
            max_batch: r.max_batch,
            quota_left: r.quota_left,
            quota_reset_secs: r.quota_reset_secs,
        };
        info.rejection().map_or(Ok(info), Err)
    }
}

impl InfoResponse {
    fn rejection(&self) -> Option<Rejection> {
        if let Some(bits) = self.max_prefix_bits.filter(|b| *b > MAX_PREFIX_BITS) {
            return Some(Rejection::Invalid(Field::MaxPrefixBits, u64::from(bits)));
        }
        if self.max_batch == 0 || self.max_batch as usize > MAX_BATCH_ELEMENTS {
            return Some(Rejection::Invalid(
                Field::MaxBatch,
                u64::from(self.max_batch),
            ));
        }
        None
    }
}

/// Body of [`Response::Evaluated`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvaluateResponse {
    /// The epoch whose key evaluated the batch (equal to the request's).
    pub epoch: EpochId,
    /// Evaluated elements, in request order, as many as requested.
    pub elements: ElementBatch,
    /// One batched DLEQ proof over all pairs (blinded, evaluated) under pkS.
    pub proof: Proof,
}

/// Body of [`Response::Range`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeResponse {
    /// The epoch of the table (equal to the request's).
    pub epoch: EpochId,
    /// The prefix requested.
    pub prefix: TagPrefix,
    /// Every entry whose tag starts with `prefix`, ascending by tag, labels for this client.
    pub entries: EntryList,
}

/// Body of [`Response::TableChunk`]: entries `offset .. offset + entries.len()` of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawTableChunk")]
pub struct TableChunk {
    /// The epoch of the table (equal to the request's).
    pub epoch: EpochId,
    /// Index of the first entry of this chunk in the table.
    pub offset: u64,
    /// Number of entries in the whole table.
    pub total: u64,
    /// The entries, ascending by tag, labels for this client; `offset + len <= total`.
    pub entries: EntryList,
}

#[derive(Deserialize)]
struct RawTableChunk {
    epoch: EpochId,
    offset: u64,
    total: u64,
    entries: EntryList,
}

impl TableChunk {
    fn rejection(&self) -> Option<Rejection> {
        match self.offset.checked_add(self.entries.len() as u64) {
            Some(end) if end <= self.total => None,
            _ => Some(Rejection::Invalid(Field::ChunkEnd, self.offset)),
        }
    }
}

impl TryFrom<RawTableChunk> for TableChunk {
    type Error = Rejection;

    fn try_from(r: RawTableChunk) -> Result<Self, Rejection> {
        let chunk = TableChunk {
            epoch: r.epoch,
            offset: r.offset,
            total: r.total,
            entries: r.entries,
        };
        chunk.rejection().map_or(Ok(chunk), Err)
    }
}

/// Body of [`Response::TableEnd`]: every entry from the request's offset to `total` was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEnd {
    /// The epoch of the table.
    pub epoch: EpochId,
    /// Number of entries in the whole table.
    pub total: u64,
}

/// Body of [`Response::Error`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawError")]
pub struct ErrorResponse {
    /// What went wrong.
    pub code: ErrorCode,
    /// Seconds after which retrying may succeed; 0 when no retry time is known or meaningful.
    pub retry_after_secs: u32,
    /// The server's current epoch: present (tag 1) for [`ErrorCode::EpochChanged`], optional
    /// otherwise.
    pub current_epoch: Option<EpochId>,
    /// Text for logs and people; never parsed by programs.
    pub message: ErrorMessage,
}

#[derive(Deserialize)]
struct RawError {
    code: ErrorCode,
    retry_after_secs: u32,
    current_epoch: Option<EpochId>,
    message: ErrorMessage,
}

impl ErrorResponse {
    /// An error with no retry time and no epoch (use [`ErrorResponse::epoch_changed`] for that
    /// code); `message` is cut to [`crate::MAX_ERROR_MESSAGE_LEN`] bytes.
    pub fn new(code: ErrorCode, message: &str) -> Self {
        ErrorResponse {
            code,
            retry_after_secs: 0,
            current_epoch: None,
            message: ErrorMessage::truncating(message),
        }
    }

    /// An [`ErrorCode::EpochChanged`] error naming the server's current epoch.
    pub fn epoch_changed(current: EpochId, message: &str) -> Self {
        ErrorResponse {
            current_epoch: Some(current),
            ..ErrorResponse::new(ErrorCode::EpochChanged, message)
        }
    }

    fn rejection(&self) -> Option<Rejection> {
        if self.code == ErrorCode::EpochChanged && self.current_epoch.is_none() {
            return Some(Rejection::Invalid(Field::CurrentEpoch, 0));
        }
        None
    }
}

impl TryFrom<RawError> for ErrorResponse {
    type Error = Rejection;

    fn try_from(r: RawError) -> Result<Self, Rejection> {
        let e = ErrorResponse {
            code: r.code,
            retry_after_secs: r.retry_after_secs,
            current_epoch: r.current_epoch,
            message: r.message,
        };
        e.rejection().map_or(Ok(e), Err)
    }
}

/// Why a request failed: a u16 on the wire. protocol-spec/wire.md, "Error codes", says what a
/// client does with each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum ErrorCode {
    /// 1: the request frame or message was malformed or broke a rule of the spec.
    BadRequest = 1,
    /// 2: the client certificate's id is not an accredited client.
    NotAccredited = 2,
    /// 3: the request needs more evaluations than the client's quota has left today.
    QuotaExhausted = 3,
    /// 4: the request named an epoch that is not the current one; `current_epoch` names it.
    EpochChanged = 4,
    /// 5: the range has fewer entries than the minimum, or its prefix is longer than allowed.
    RangeTooSmall = 5,
    /// 6: the range has more entries than fit one Range response; use a longer prefix.
    RangeTooLarge = 6,
    /// 7: the Evaluate batch has more elements than Info's `max_batch`.
    BatchTooLarge = 7,
    /// 8: the request frame's length exceeds the maximum frame size.
    FrameTooLarge = 8,
    /// 9: the server or this client's allowance of concurrent work is saturated; retry later.
    Busy = 9,
    /// 10: the server failed; the request may be retried later.
    Internal = 10,
    /// 11: the server is shutting down; reconnect later.
    ShuttingDown = 11,
    /// 12: a FetchAll offset beyond the end of the table.
    OffsetOutOfRange = 12,
    /// 13: FetchRange was sent to a server that does not offer k-anon mode.
    ModeNotOffered = 13,
    /// 14: an Evaluate element is not the encoding of a valid non-identity ristretto255 point.
    InvalidElement = 14,
}

impl ErrorCode {
    /// Every code, in numeric order.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::BadRequest,
        ErrorCode::NotAccredited,
        ErrorCode::QuotaExhausted,
        ErrorCode::EpochChanged,
        ErrorCode::RangeTooSmall,
        ErrorCode::RangeTooLarge,
        ErrorCode::BatchTooLarge,
        ErrorCode::FrameTooLarge,
        ErrorCode::Busy,
        ErrorCode::Internal,
        ErrorCode::ShuttingDown,
        ErrorCode::OffsetOutOfRange,
        ErrorCode::ModeNotOffered,
        ErrorCode::InvalidElement,
    ];

    /// The wire value.
    pub fn to_u16(self) -> u16 {
        self as u16
    }

    /// The code with wire value `v`, if defined.
    pub fn from_u16(v: u16) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.to_u16() == v)
    }

    /// True if the same request may succeed later without change (after `retry_after_secs`).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Busy | ErrorCode::Internal | ErrorCode::ShuttingDown
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?} ({})", self.to_u16())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.to_u16())
    }
}

struct CodeVisitor;

impl Visitor<'_> for CodeVisitor {
    type Value = ErrorCode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a u16 error code")
    }

    fn visit_u16<E: de::Error>(self, v: u16) -> Result<ErrorCode, E> {
        ErrorCode::from_u16(v)
            .ok_or_else(|| Rejection::Invalid(Field::ErrorCode, u64::from(v)).into_de())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_u16(CodeVisitor)
    }
}

impl Request {
    /// The message's name in the spec.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Info => "Info",
            Request::Evaluate(_) => "Evaluate",
            Request::FetchRange(_) => "FetchRange",
            Request::FetchAll(_) => "FetchAll",
        }
    }

    /// The epoch the request names, if it names one (all but Info do).
    pub fn epoch(&self) -> Option<&EpochId> {
        match self {
            Request::Info => None,
            Request::Evaluate(r) => Some(&r.epoch),
            Request::FetchRange(r) => Some(&r.epoch),
            Request::FetchAll(r) => Some(&r.epoch),
        }
    }

    /// True if `response` may appear on this request's stream: Info→Info, Evaluate→Evaluated,
    /// FetchRange→Range, FetchAll→TableChunk/TableEnd, and Error for any. A client treats any
    /// other response as a protocol violation.
    pub fn accepts(&self, response: &Response) -> bool {
        matches!(
            (self, response),
            (_, Response::Error(_))
                | (Request::Info, Response::Info(_))
                | (Request::Evaluate(_), Response::Evaluated(_))
                | (Request::FetchRange(_), Response::Range(_))
                | (
                    Request::FetchAll(_),
                    Response::TableChunk(_) | Response::TableEnd(_)
                )
        )
    }
}

impl Response {
    /// The message's name in the spec.
    pub fn name(&self) -> &'static str {
        match self {
            Response::Info(_) => "Info",
            Response::Evaluated(_) => "Evaluated",
            Response::Range(_) => "Range",
            Response::TableChunk(_) => "TableChunk",
            Response::TableEnd(_) => "TableEnd",
            Response::Error(_) => "Error",
        }
    }

    /// Checks the rules spanning fields that the public fields allow breaking, so an invalid
    /// response is refused at encoding rather than by the peer.
    pub(crate) fn check(&self) -> Result<(), WireError> {
        let rejection = match self {
            Response::Info(i) => i.rejection(),
            Response::TableChunk(c) => c.rejection(),
            Response::Error(e) => e.rejection(),
            Response::Evaluated(_) | Response::Range(_) | Response::TableEnd(_) => None,
        };
        match rejection {
            None => Ok(()),
            Some(Rejection::Invalid(field, value) | Rejection::Count(field, value)) => {
                Err(WireError::OutOfSpec {
                    field: field.name(),
                    value,
                    reason: field.requirement(),
                })
            }
        }
    }
}

/// Names of request types by wire value.
pub(crate) const REQUEST_NAMES: [&str; 4] = ["Info", "Evaluate", "FetchRange", "FetchAll"];

/// Names of response types by wire value.
pub(crate) const RESPONSE_NAMES: [&str; 6] = [
    "Info",
    "Evaluated",
    "Range",
    "TableChunk",
    "TableEnd",
    "Error",
];

//! The messages of nayose/2: requests, responses and error codes (protocol-spec/wire.md).
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
use crate::limits::{
    LABEL_LEN, MAX_BATCH_ELEMENTS, MAX_ENTRIES_PER_CHUNK, MAX_RICE_PARAMETER, TAG_LEN,
};
use crate::reject::{Field, Rejection};
use crate::types::{
    ChunkList, ElementBatch, EncryptedLabel, EntityId, Entry, ErrorMessage, GapBytes, KeyPeriodId,
    Proof, PublicKeyBytes, SignedEpochStatement, SignedKeyPeriodStatement, TableDigest, Tag,
    UpsertChain,
};

/// A request: the first 4 bytes of its payload are the variant index (u32 LE).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// 0: the current key period, epoch, digest and this client's quotas.
    Info,
    /// 1: evaluate a batch of blinded elements under the key period's key.
    Evaluate(EvaluateRequest),
    /// 2: the table of the current epoch, from an entry offset (a base download).
    FetchBase(FetchBaseRequest),
    /// 3: the deltas of every epoch after `from_epoch` up to the current one.
    FetchDelta(FetchDeltaRequest),
}

/// Evaluate: blinded elements for the key period the client expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvaluateRequest {
    /// The key period id from Info.
    pub key_period: KeyPeriodId,
    /// Blinded elements, 1 to 4096.
    pub elements: ElementBatch,
}

/// FetchBase: the base of `epoch` (the current one) from entry `offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchBaseRequest {
    /// The key period id from Info.
    pub key_period: KeyPeriodId,
    /// The epoch whose base is wanted (must be current).
    pub epoch: u32,
    /// The first entry wanted (0 for a fresh download, entries held for a resume).
    pub offset: u64,
}

/// FetchDelta: the deltas after `from_epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchDeltaRequest {
    /// The key period id from Info.
    pub key_period: KeyPeriodId,
    /// The epoch of the client's verified table.
    pub from_epoch: u32,
}

/// A response: the first 4 bytes of its payload are the variant index (u32 LE).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// 0: answers Info.
    Info(InfoResponse),
    /// 1: answers Evaluate.
    Evaluated(EvaluateResponse),
    /// 2: one chunk of a base download.
    BaseChunk(BaseChunk),
    /// 3: the end of a base download.
    BaseEnd(BaseEnd),
    /// 4: one chunk of one epoch's delta.
    DeltaChunk(DeltaChunk),
    /// 5: the end of a delta download.
    DeltaEnd(DeltaEnd),
    /// 6: the request failed.
    Error(ErrorResponse),
}

/// Info: the public state of the server and this client's quotas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "RawInfo", try_from = "RawInfo")]
pub struct InfoResponse {
    /// The current key period.
    pub key_period: KeyPeriodId,
    /// The key period's VOPRF public key pkS.
    pub public_key: PublicKeyBytes,
    /// The current epoch (at least 1: the number 0 never names an epoch).
    pub epoch: u32,
    /// Entries in the current epoch's table.
    pub table_entries: u64,
    /// The current epoch's table digest.
    pub table_digest: TableDigest,
    /// The current epoch's upsert chain.
    pub upsert_chain: UpsertChain,
    /// The least `from_epoch` a FetchDelta can name (equal to `epoch` if no delta is kept).
    pub oldest_delta_base: u32,
    /// The largest Evaluate batch the server accepts (1..=4096).
    pub max_batch: u32,
    /// Evaluations left today (JST day).
    pub quota_left_today: u64,
    /// Seconds until the daily quota resets.
    pub quota_reset_secs: u32,
    /// Evaluations left in this key period.
    pub quota_left_key_period: u64,
    /// The management body's signed statements of this key period and this epoch, if the
    /// server has them (protocol-spec/announcements.md). Boxed: most responses are small.
    pub announcement: Option<Box<Announcement>>,
    /// The entity the server derived from this connection's certificate: the domain of the
    /// labels it sends this client (wire.md §2.3).
    pub entity: EntityId,
}

/// The two signed statements that cover an Info (protocol-spec/announcements.md §4): opaque,
/// fixed-length bytes to the codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// The signed statement of the key period (binds the key period id to pkS).
    pub key_period_statement: SignedKeyPeriodStatement,
    /// The signed statement of the epoch (binds epoch, N, digest and upsert chain).
    pub epoch_statement: SignedEpochStatement,
}

#[derive(Clone, Serialize, Deserialize)]
struct RawInfo {
    key_period: KeyPeriodId,
    public_key: PublicKeyBytes,
    epoch: u32,
    table_entries: u64,
    table_digest: TableDigest,
    upsert_chain: UpsertChain,
    oldest_delta_base: u32,
    max_batch: u32,
    quota_left_today: u64,
    quota_reset_secs: u32,
    quota_left_key_period: u64,
    tag_len: u8,
    label_len: u8,
    announcement: Option<Box<Announcement>>,
    entity: EntityId,
}

impl From<InfoResponse> for RawInfo {
    fn from(i: InfoResponse) -> Self {
        RawInfo {
            key_period: i.key_period,
            public_key: i.public_key,
            epoch: i.epoch,
            table_entries: i.table_entries,
            table_digest: i.table_digest,
            upsert_chain: i.upsert_chain,
            oldest_delta_base: i.oldest_delta_base,
            max_batch: i.max_batch,
            quota_left_today: i.quota_left_today,
            quota_reset_secs: i.quota_reset_secs,
            quota_left_key_period: i.quota_left_key_period,
            tag_len: TAG_LEN as u8,
            label_len: LABEL_LEN as u8,
            announcement: i.announcement,
            entity: i.entity,
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
            key_period: r.key_period,
            public_key: r.public_key,
            epoch: r.epoch,
            table_entries: r.table_entries,
            table_digest: r.table_digest,
            upsert_chain: r.upsert_chain,
            oldest_delta_base: r.oldest_delta_base,
            max_batch: r.max_batch,
            quota_left_today: r.quota_left_today,
            quota_reset_secs: r.quota_reset_secs,
            quota_left_key_period: r.quota_left_key_period,
            announcement: r.announcement,
            entity: r.entity,
        };
        info.rejection().map_or(Ok(info), Err)
    }
}

impl InfoResponse {
    fn rejection(&self) -> Option<Rejection> {
        if self.epoch == 0 {
            return Some(Rejection::Invalid(Field::InfoEpoch, 0));
        }
        if self.max_batch == 0 || self.max_batch as usize > MAX_BATCH_ELEMENTS {
            return Some(Rejection::Invalid(
                Field::MaxBatch,
                u64::from(self.max_batch),
            ));
        }
        if self.oldest_delta_base > self.epoch {
            return Some(Rejection::Invalid(
                Field::OldestDelta,
                u64::from(self.oldest_delta_base),
            ));
        }
        None
    }
}

/// Evaluated: the evaluated elements, in request order, and one batched DLEQ proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvaluateResponse {
    /// The key period whose key evaluated.
    pub key_period: KeyPeriodId,
    /// Evaluated elements, one per requested element.
    pub elements: ElementBatch,
    /// The batched DLEQ proof against pkS.
    pub proof: Proof,
}

/// One chunk of a base download: one entry block (protocol-spec/table.md §9.5) of the entries
/// `offset .. offset + labels.len()`, every label under the pad of `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawBaseChunk")]
pub struct BaseChunk {
    /// The key period.
    pub key_period: KeyPeriodId,
    /// The epoch of the base.
    pub epoch: u32,
    /// Index of the first entry of this chunk.
    pub offset: u64,
    /// Entries in the whole table.
    pub total: u64,
    /// The Rice parameter of `gaps` (0..=71).
    pub rice: u8,
    /// The tag of the chunk's first entry.
    pub first_tag: Tag,
    /// The Rice-coded gaps between consecutive tags.
    pub gaps: GapBytes,
    /// The encrypted labels, one per entry (1 to 65,536), in tag order.
    pub labels: ChunkList<EncryptedLabel>,
}

#[derive(Deserialize)]
struct RawBaseChunk {
    key_period: KeyPeriodId,
    epoch: u32,
    offset: u64,
    total: u64,
    rice: u8,
    first_tag: Tag,
    gaps: GapBytes,
    labels: ChunkList<EncryptedLabel>,
}

impl TryFrom<RawBaseChunk> for BaseChunk {
    type Error = Rejection;

    fn try_from(r: RawBaseChunk) -> Result<Self, Rejection> {
        let c = BaseChunk {
            key_period: r.key_period,
            epoch: r.epoch,
            offset: r.offset,
            total: r.total,
            rice: r.rice,
            first_tag: r.first_tag,
            gaps: r.gaps,
            labels: r.labels,
        };
        c.rejection().map_or(Ok(c), Err)
    }
}

impl BaseChunk {
    fn rejection(&self) -> Option<Rejection> {
        if self.labels.is_empty() {
            return Some(Rejection::Count(Field::BlockLabels, 0));
        }
        if self.rice > MAX_RICE_PARAMETER {
            return Some(Rejection::Invalid(
                Field::RiceParameter,
                u64::from(self.rice),
            ));
        }
        match self.offset.checked_add(self.labels.len() as u64) {
            Some(end) if end <= self.total => None,
            _ => Some(Rejection::Invalid(Field::ChunkEnd, self.offset)),
        }
    }
}

/// The end of a base download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseEnd {
    /// The key period.
    pub key_period: KeyPeriodId,
    /// The epoch of the base.
    pub epoch: u32,
    /// Entries in the whole table.
    pub total: u64,
}

/// One chunk of the delta of `epoch`: removed tags and upserted entries (version = `epoch`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawDeltaChunk")]
pub struct DeltaChunk {
    /// The key period.
    pub key_period: KeyPeriodId,
    /// The epoch whose delta this chunk carries.
    pub epoch: u32,
    /// Tags removed in `epoch`, ascending.
    pub removed: ChunkList<Tag>,
    /// Entries added or relabelled in `epoch`, ascending by tag.
    pub upserts: ChunkList<Entry>,
}

#[derive(Deserialize)]
struct RawDeltaChunk {
    key_period: KeyPeriodId,
    epoch: u32,
    removed: ChunkList<Tag>,
    upserts: ChunkList<Entry>,
}

impl TryFrom<RawDeltaChunk> for DeltaChunk {
    type Error = Rejection;

    fn try_from(r: RawDeltaChunk) -> Result<Self, Rejection> {
        let c = DeltaChunk {
            key_period: r.key_period,
            epoch: r.epoch,
            removed: r.removed,
            upserts: r.upserts,
        };
        c.rejection().map_or(Ok(c), Err)
    }
}

impl DeltaChunk {
    fn rejection(&self) -> Option<Rejection> {
        let n = self.removed.len() + self.upserts.len();
        (n > MAX_ENTRIES_PER_CHUNK).then_some(Rejection::Invalid(Field::DeltaSize, n as u64))
    }
}

/// The end of a delta download: the client's table is now at `epoch` with `total` entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaEnd {
    /// The key period.
    pub key_period: KeyPeriodId,
    /// The epoch reached (the server's current epoch).
    pub epoch: u32,
    /// Entries in that epoch's table.
    pub total: u64,
}

/// The server's current state, carried by EpochChanged and KeyPeriodChanged errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentState {
    /// The current key period.
    pub key_period: KeyPeriodId,
    /// The current epoch.
    pub epoch: u32,
}

/// Error: why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawError")]
pub struct ErrorResponse {
    /// The error code.
    pub code: ErrorCode,
    /// Seconds after which a retry can succeed (0: not time-bound).
    pub retry_after_secs: u32,
    /// The current state (present for EpochChanged and KeyPeriodChanged).
    pub current: Option<CurrentState>,
    /// A human-readable message (no secrets, no peer data).
    pub message: ErrorMessage,
}

#[derive(Deserialize)]
struct RawError {
    code: ErrorCode,
    retry_after_secs: u32,
    current: Option<CurrentState>,
    message: ErrorMessage,
}

impl ErrorResponse {
    /// An error with `code` and `message` (truncated to 1024 bytes at a char boundary).
    pub fn new(code: ErrorCode, message: &str) -> Self {
        ErrorResponse {
            code,
            retry_after_secs: 0,
            current: None,
            message: ErrorMessage::truncating(message),
        }
    }

    /// An error carrying the server's current state (EpochChanged, KeyPeriodChanged).
    pub fn with_current(code: ErrorCode, current: CurrentState, message: &str) -> Self {
        ErrorResponse {
            current: Some(current),
            ..ErrorResponse::new(code, message)
        }
    }
}

impl TryFrom<RawError> for ErrorResponse {
    type Error = Rejection;

    fn try_from(r: RawError) -> Result<Self, Rejection> {
        let e = ErrorResponse {
            code: r.code,
            retry_after_secs: r.retry_after_secs,
            current: r.current,
            message: r.message,
        };
        e.rejection().map_or(Ok(e), Err)
    }
}

impl ErrorResponse {
    fn rejection(&self) -> Option<Rejection> {
        (matches!(
            self.code,
            ErrorCode::EpochChanged | ErrorCode::KeyPeriodChanged
        ) && self.current.is_none())
        .then_some(Rejection::Invalid(Field::CurrentEpoch, 0))
    }
}

/// Why a request failed: a u16 on the wire. protocol-spec/wire.md says what a client does with
/// each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum ErrorCode {
    /// 1: the request frame or message was malformed or broke a rule of the spec.
    BadRequest = 1,
    /// 2: the client certificate is not accredited.
    NotAccredited = 2,
    /// 3: the batch needs more evaluations than a quota (daily or key period) has left.
    QuotaExhausted = 3,
    /// 4: FetchBase named an epoch that is not the current one; `current` names it.
    EpochChanged = 4,
    /// 5: the request named a key period that is not the current one; `current` names it.
    KeyPeriodChanged = 5,
    /// 6: the deltas from `from_epoch` are not kept (or `from_epoch` is in the future).
    DeltaUnavailable = 6,
    /// 7: more elements than `max_batch`.
    BatchTooLarge = 7,
    /// 8: the request frame is longer than the largest request.
    FrameTooLarge = 8,
    /// 9: the server is at its concurrency limit; retry after `retry_after_secs`.
    Busy = 9,
    /// 10: the server failed.
    Internal = 10,
    /// 11: the server is stopping.
    ShuttingDown = 11,
    /// 12: a FetchBase offset beyond the table.
    OffsetOutOfRange = 12,
    /// 14: a blinded element is not a valid, non-identity ristretto255 encoding.
    InvalidElement = 14,
    /// 15: the batch would take the entity past its hard cap on evaluations (in the key period
    /// or in the rolling window); nothing was evaluated or charged; only the management body
    /// can lift it.
    HardCapReached = 15,
}

impl ErrorCode {
    /// Every defined code, ascending.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::BadRequest,
        ErrorCode::NotAccredited,
        ErrorCode::QuotaExhausted,
        ErrorCode::EpochChanged,
        ErrorCode::KeyPeriodChanged,
        ErrorCode::DeltaUnavailable,
        ErrorCode::BatchTooLarge,
        ErrorCode::FrameTooLarge,
        ErrorCode::Busy,
        ErrorCode::Internal,
        ErrorCode::ShuttingDown,
        ErrorCode::OffsetOutOfRange,
        ErrorCode::InvalidElement,
        ErrorCode::HardCapReached,
    ];

    /// The code's wire value.
    pub fn to_u16(self) -> u16 {
        self as u16
    }

    /// The code with wire value `v`, if defined.
    pub fn from_u16(v: u16) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.to_u16() == v)
    }

    /// Whether the same request may succeed if sent again later.
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
    /// The request's name in the spec.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Info => "Info",
            Request::Evaluate(_) => "Evaluate",
            Request::FetchBase(_) => "FetchBase",
            Request::FetchDelta(_) => "FetchDelta",
        }
    }

    /// The key period the request names, if any.
    pub fn key_period(&self) -> Option<&KeyPeriodId> {
        match self {
            Request::Info => None,
            Request::Evaluate(r) => Some(&r.key_period),
            Request::FetchBase(r) => Some(&r.key_period),
            Request::FetchDelta(r) => Some(&r.key_period),
        }
    }

    /// Whether `response` may answer this request.
    pub fn accepts(&self, response: &Response) -> bool {
        matches!(
            (self, response),
            (_, Response::Error(_))
                | (Request::Info, Response::Info(_))
                | (Request::Evaluate(_), Response::Evaluated(_))
                | (
                    Request::FetchBase(_),
                    Response::BaseChunk(_) | Response::BaseEnd(_)
                )
                | (
                    Request::FetchDelta(_),
                    Response::DeltaChunk(_) | Response::DeltaEnd(_)
                )
        )
    }
}

impl Response {
    /// The response's name in the spec.
    pub fn name(&self) -> &'static str {
        match self {
            Response::Info(_) => "Info",
            Response::Evaluated(_) => "Evaluated",
            Response::BaseChunk(_) => "BaseChunk",
            Response::BaseEnd(_) => "BaseEnd",
            Response::DeltaChunk(_) => "DeltaChunk",
            Response::DeltaEnd(_) => "DeltaEnd",
            Response::Error(_) => "Error",
        }
    }

    /// Whether this is the last frame of its stream.
    pub fn is_final(&self) -> bool {
        !matches!(self, Response::BaseChunk(_) | Response::DeltaChunk(_))
    }

    /// The key period the response names, if any.
    pub fn key_period(&self) -> Option<&KeyPeriodId> {
        match self {
            Response::Info(r) => Some(&r.key_period),
            Response::Evaluated(r) => Some(&r.key_period),
            Response::BaseChunk(r) => Some(&r.key_period),
            Response::BaseEnd(r) => Some(&r.key_period),
            Response::DeltaChunk(r) => Some(&r.key_period),
            Response::DeltaEnd(r) => Some(&r.key_period),
            Response::Error(_) => None,
        }
    }
}

impl Response {
    /// Checks the cross-field rules a decoder enforces, so nothing is sent that a conforming
    /// receiver would reject.
    pub(crate) fn check(&self) -> Result<(), WireError> {
        let rejection = match self {
            Response::Info(i) => i.rejection(),
            Response::BaseChunk(c) => c.rejection(),
            Response::DeltaChunk(c) => c.rejection(),
            Response::Error(e) => e.rejection(),
            Response::Evaluated(_) | Response::BaseEnd(_) | Response::DeltaEnd(_) => None,
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
pub(crate) const REQUEST_NAMES: [&str; 4] = ["Info", "Evaluate", "FetchBase", "FetchDelta"];

/// Names of response types by wire value.
pub(crate) const RESPONSE_NAMES: [&str; 7] = [
    "Info",
    "Evaluated",
    "BaseChunk",
    "BaseEnd",
    "DeltaChunk",
    "DeltaEnd",
    "Error",
];

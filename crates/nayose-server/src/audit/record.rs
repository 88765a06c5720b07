//! The audit record (one JSON line), the head file and the plain SHA-256 link.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::scan::broken;
use crate::error::ServerError;
use crate::fsutil::atomic_write;

/// The `prev` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The `event` of the first record of every segment but the first (written by a rotation).
pub const ROTATED_EVENT: &str = "rotated";

/// One audit record (one line of `audit.log` or of a segment). Field order is the line's key order; absent
/// optional fields are omitted from the line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Position in the log, from 1.
    pub seq: u64,
    /// When the record was written, RFC 3339 UTC.
    pub time: String,
    /// `connected`, `closed` (connection events), `request` (one per request answered with
    /// data, written before its answer is sent), `fetch_end` (the end of a FetchBase or
    /// FetchDelta stream) or `refusals` (the refused and failed requests and connections of one
    /// client, address, kind and outcome in one interval: `count`, and `detail` naming the
    /// event: `request`, `refused`, `handshake_failed`) or `rotated` (the first record of a
    /// segment after a rotation of the log file: `detail` names the segment closed).
    pub event: String,
    /// Client id from the certificate (empty if none could be read).
    pub client: String,
    /// SHA-256 (hex) of the client's end-entity certificate (DER).
    pub cert_sha256: String,
    /// The peer's IP address and port.
    pub peer: String,
    /// The server's id of the QUIC connection.
    pub conn: u64,
    /// The QUIC stream id of a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<u64>,
    /// `Info`, `Evaluate`, `FetchBase`, `FetchDelta`, or `Invalid` (undecodable request).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub op: String,
    /// The key period the request named (`<number>-<key check>`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_period_requested: String,
    /// The server's current key period for the request.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_period_current: String,
    /// The epoch a FetchBase named (or a FetchDelta's `from_epoch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch_requested: Option<u32>,
    /// The server's current epoch for the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch_current: Option<u32>,
    /// The epoch a FetchDelta stream reached (its DeltaEnd `epoch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch_reached: Option<u32>,
    /// Blinded elements in an Evaluate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elements: Option<u64>,
    /// Entries (FetchBase) or delta items (FetchDelta) to be sent (`request`) or sent
    /// (`fetch_end`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<u64>,
    /// FetchBase start offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Request bytes received on the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<u64>,
    /// Response bytes sent (single-frame answers: the frame about to be sent; `fetch_end`: the
    /// whole stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
    /// Milliseconds from the start of the request (or connection) to this record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Evaluations left today before the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_before: Option<u64>,
    /// Evaluations left today after the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_after: Option<u64>,
    /// Evaluations left in the key period before the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_period_quota_before: Option<u64>,
    /// Evaluations left in the key period after the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_period_quota_after: Option<u64>,
    /// `ok`, or the error / close code.
    pub outcome: String,
    /// How many refusals a `refusals` record stands for (refused and failed requests and
    /// connections are counted per client, address, kind and outcome, and written once per
    /// `audit_refusal_interval_secs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Server-written text only (never the peer's): the refusal reason, the size of a
    /// malformed request, the request count on `closed`, the certificate's serial and issuer on
    /// `connected`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// The id of the operator's audit key this record is authenticated with (see
    /// [`AuditKey`]); absent in an unkeyed log.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_id: String,
    /// The link of the previous line: HMAC-SHA256 under the audit key (hex) if that line
    /// carries a `key_id`, its SHA-256 (hex) otherwise.
    pub prev: String,
}

/// The contents of `audit.head`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditHead {
    /// The last record's `seq`: the number of records since record 1, over every segment.
    pub count: u64,
    /// SHA-256 hex of the last record's line (GENESIS_HASH when empty).
    pub hash: String,
}

/// SHA-256 (hex) of a line without its newline: the link of an unkeyed record.
pub(crate) fn line_hash(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line).as_slice())
}

/// A whole file, or `None` if it does not exist.
pub(super) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, ServerError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ServerError::io("cannot read", path)(e)),
    }
}

/// The head file, or `None` if there is none.
pub(super) fn read_head(path: &Path) -> Result<Option<AuditHead>, ServerError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| broken(path, format!("the head file is unreadable: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ServerError::Io {
            action: "cannot read",
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// A record before `append` assigns `seq` and `prev` (their values here are ignored).
pub(crate) type AuditEntry = AuditRecord;

/// Replaces the head file atomically with (`count`, `hash`).
pub(crate) fn write_head(path: &Path, count: u64, hash: &str) -> Result<(), ServerError> {
    let head = AuditHead {
        count,
        hash: hash.to_string(),
    };
    let bytes = serde_json::to_vec(&head)
        .map_err(|e| ServerError::Internal(format!("audit head encoding: {e}")))?;
    atomic_write(path, &bytes)
}

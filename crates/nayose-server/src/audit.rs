//! The audit log: one hash-chained record per request, durable before the answer is sent.
//!
//! `DATA_DIR/audit/audit.log` holds one JSON object per line ([`AuditRecord`]). Each record's
//! `prev` is the SHA-256 (hex) of the previous line's bytes (without its newline); the first
//! record's `prev` is 64 zeros; `seq` counts from 1. `DATA_DIR/audit/audit.head` holds the number
//! of records and the SHA-256 of the last line ([`AuditHead`]); it is replaced atomically after
//! every append. Appending a record = write the line, `sync_data`, then replace the head; only
//! then is the answer sent.
//!
//! What verification detects ([`verify_audit`]):
//! - an edited record: its hash changes, so the next record's `prev` (or, for the last record,
//!   the head's hash) no longer matches;
//! - a removed record: a `seq` gap and a `prev` mismatch at the following record;
//! - a truncated log (last records removed): fewer records than the head counts, or a last
//!   hash different from the head's.
//!
//! Limits: someone able to rewrite both files consistently (recompute the whole chain and the
//! head) is not detected by the files alone. The server therefore writes the head (count and
//! hash) into its status log line at every status interval; shipping that log off the machine
//! anchors the chain: a later verification must reproduce every anchored (count, hash) pair.
//!
//! Crash behaviour: a crash between the line's sync and the head's replacement leaves records
//! after the head that chain correctly ("unanchored"); a crash mid-line leaves a final line
//! without newline ("torn"). Verification reports both without failing; the server, when it
//! opens the log, removes a torn final line and advances the head over unanchored records.
//!
//! Records carry what protocol-spec/security.md §5.2 requires (time, client id, certificate
//! fingerprint, peer, connection and stream, request type, key periods and epochs requested and
//! current, counts, offsets, bytes, duration, both quotas before and after, outcome) and never a
//! number, element, proof, OPRF output, tag, label key, label, encrypted label, person id or
//! key.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ServerError;
use crate::fsutil::{FILE_MODE, atomic_write, create_dir_private, fsync_dir};
use crate::layout::DataDir;

/// The `prev` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record (one line of `audit.log`). Field order is the line's key order; absent
/// optional fields are omitted from the line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Position in the log, from 1.
    pub seq: u64,
    /// When the record was written, RFC 3339 UTC.
    pub time: String,
    /// `connected`, `refused`, `closed` (connection events), `request` (one per request, written
    /// before its answer is sent) or `fetch_end` (the end of a FetchBase or FetchDelta stream).
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
    /// Free text: the refusal reason, the decoder's error for a malformed request, the close
    /// reason, the certificate's serial and issuer on `connected`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// SHA-256 hex of the previous line.
    pub prev: String,
}

/// The contents of `audit.head`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditHead {
    /// Number of records in the log.
    pub count: u64,
    /// SHA-256 hex of the last record's line (GENESIS_HASH when empty).
    pub hash: String,
}

/// What [`verify_audit`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSummary {
    /// Records verified (the whole chain, anchored or not).
    pub records: u64,
    /// Records the head file covers.
    pub anchored: u64,
    /// SHA-256 of the last verified record.
    pub last_hash: String,
    /// Time of the first record, if any.
    pub first_time: Option<String>,
    /// Time of the last record, if any.
    pub last_time: Option<String>,
    /// Whether the log ends in an incomplete line (a crash mid-append; ignored).
    pub torn_tail: bool,
}

impl std::fmt::Display for AuditSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "audit log OK: {} records, chain intact", self.records)?;
        writeln!(f, "  last hash  {}", self.last_hash)?;
        if let (Some(a), Some(b)) = (&self.first_time, &self.last_time) {
            writeln!(f, "  period     {a} .. {b}")?;
        }
        if self.anchored < self.records {
            writeln!(
                f,
                "  note: {} record(s) after the head file (a crash between append and head \
                 update); the server anchors them when it next starts",
                self.records - self.anchored
            )?;
        }
        if self.torn_tail {
            writeln!(
                f,
                "  note: the log ends in an incomplete line (a crash mid-append)"
            )?;
        }
        Ok(())
    }
}

fn line_hash(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line).as_slice())
}

fn broken(path: &Path, reason: String) -> ServerError {
    ServerError::AuditBroken {
        path: path.to_path_buf(),
        reason,
    }
}

struct Scan {
    records: u64,
    last_hash: String,
    first_time: Option<String>,
    last_time: Option<String>,
    /// Byte length of the complete lines.
    complete_len: u64,
    torn_tail: bool,
    /// Hash after each of the first `want` records (only the one at `want`).
    hash_at_head: Option<String>,
}

/// Walks the chain; fails at the first inconsistency.
fn scan(log: &Path, bytes: &[u8], head_count: u64) -> Result<Scan, ServerError> {
    let mut s = Scan {
        records: 0,
        last_hash: GENESIS_HASH.to_string(),
        first_time: None,
        last_time: None,
        complete_len: 0,
        torn_tail: false,
        hash_at_head: (head_count == 0).then(|| GENESIS_HASH.to_string()),
    };
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            s.torn_tail = true;
            break;
        };
        let line = &rest[..nl];
        rest = &rest[nl + 1..];
        let n = s.records + 1;
        let rec: AuditRecord = serde_json::from_slice(line).map_err(|e| {
            broken(
                log,
                format!("record {n} (line {n}) is not a valid record: {e}"),
            )
        })?;
        if rec.seq != n {
            return Err(broken(
                log,
                format!(
                    "line {n} has seq {} where {n} was expected: a record was removed or inserted",
                    rec.seq
                ),
            ));
        }
        if rec.prev != s.last_hash {
            return Err(broken(
                log,
                format!(
                    "record {n}: its prev hash does not match record {}: record {} was modified \
                     or removed",
                    n - 1,
                    n - 1
                ),
            ));
        }
        s.last_hash = line_hash(line);
        s.records = n;
        s.complete_len += nl as u64 + 1;
        if s.first_time.is_none() {
            s.first_time = Some(rec.time.clone());
        }
        s.last_time = Some(rec.time);
        if n == head_count {
            s.hash_at_head = Some(s.last_hash.clone());
        }
    }
    Ok(s)
}

fn read_head(path: &Path) -> Result<Option<AuditHead>, ServerError> {
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

fn read_log(path: &Path) -> Result<Option<Vec<u8>>, ServerError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ServerError::Io {
            action: "cannot read",
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Verifies the data directory's audit log against itself and its head file.
pub fn verify_audit(data_dir: &Path) -> Result<AuditSummary, ServerError> {
    let data = DataDir::new(data_dir);
    let (log, head_path) = (data.audit_log(), data.audit_head());
    let head = read_head(&head_path)?;
    let bytes = read_log(&log)?;
    let head_count = head.as_ref().map_or(0, |h| h.count);
    let bytes = match (bytes, &head) {
        (None, None) => Vec::new(),
        (None, Some(h)) if h.count > 0 => {
            return Err(broken(
                &log,
                format!(
                    "the log is missing but its head file records {} records",
                    h.count
                ),
            ));
        }
        (None, Some(_)) => Vec::new(),
        (Some(b), None) if !b.is_empty() => {
            return Err(broken(
                &head_path,
                "the head file is missing: the end of the log cannot be checked for truncation"
                    .into(),
            ));
        }
        (Some(b), _) => b,
    };
    let s = scan(&log, &bytes, head_count)?;
    if let Some(h) = &head {
        if s.records < h.count {
            return Err(broken(
                &log,
                format!(
                    "the log holds {} records but its head records {}: the log was truncated \
                     ({} record(s) missing at the end)",
                    s.records,
                    h.count,
                    h.count - s.records
                ),
            ));
        }
        if s.hash_at_head.as_deref() != Some(h.hash.as_str()) {
            return Err(broken(
                &log,
                format!(
                    "record {} does not hash to the value in the head file: the end of the log \
                     was modified or replaced",
                    h.count
                ),
            ));
        }
    }
    Ok(AuditSummary {
        records: s.records,
        anchored: head_count,
        last_hash: s.last_hash,
        first_time: s.first_time,
        last_time: s.last_time,
        torn_tail: s.torn_tail,
    })
}

/// A record before `append` assigns `seq` and `prev` (their values here are ignored).
pub(crate) type AuditEntry = AuditRecord;

struct Writer {
    file: File,
    count: u64,
    last_hash: String,
}

/// The open audit log of a running server.
pub(crate) struct AuditLog {
    log: PathBuf,
    head: PathBuf,
    w: Mutex<Writer>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens the log for appending after verifying it; repairs a torn final line and anchors
    /// records after the head (both left by a crash). Refuses a log that fails verification.
    pub(crate) fn open(data: &DataDir) -> Result<Self, ServerError> {
        create_dir_private(&data.audit_dir())?;
        let (log, head) = (data.audit_log(), data.audit_head());
        let summary = verify_audit(data.root()).map_err(|e| match e {
            ServerError::AuditBroken { path, reason } => ServerError::AuditBroken {
                path,
                reason: format!(
                    "{reason}. The server does not append to a broken chain: keep the files as \
                     evidence, move audit/ aside to start a new log"
                ),
            },
            other => other,
        })?;
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(FILE_MODE)
            .open(&log)
            .map_err(ServerError::io("cannot open", &log))?;
        if summary.torn_tail {
            let bytes = read_log(&log)?.unwrap_or_default();
            let keep = bytes
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i as u64 + 1);
            tracing::warn!(path = %log.display(), "removing an incomplete final audit line left by a crash");
            file.set_len(keep)
                .map_err(ServerError::io("cannot truncate", &log))?;
            file.sync_all()
                .map_err(ServerError::io("cannot fsync", &log))?;
        }
        fsync_dir(&data.audit_dir())?;
        let w = Writer {
            file,
            count: summary.records,
            last_hash: summary.last_hash,
        };
        if summary.anchored != summary.records || !head.exists() {
            if summary.anchored != summary.records {
                tracing::warn!(
                    records = summary.records - summary.anchored,
                    "anchoring audit records written after the last head update"
                );
            }
            write_head(&head, w.count, &w.last_hash)?;
        }
        Ok(AuditLog {
            log,
            head,
            w: Mutex::new(w),
        })
    }

    /// Appends one record durably (line, sync, head). Returns the record's sequence number.
    pub(crate) fn append(&self, e: AuditEntry) -> Result<u64, ServerError> {
        let mut w = self.w.lock().unwrap_or_else(|p| p.into_inner());
        let rec = AuditRecord {
            seq: w.count + 1,
            prev: w.last_hash.clone(),
            ..e
        };
        let mut line = serde_json::to_vec(&rec)
            .map_err(|err| ServerError::Internal(format!("audit record encoding: {err}")))?;
        let hash = line_hash(&line);
        line.push(b'\n');
        w.file
            .write_all(&line)
            .map_err(ServerError::io("cannot append to", &self.log))?;
        w.file
            .sync_data()
            .map_err(ServerError::io("cannot fsync", &self.log))?;
        w.count += 1;
        w.last_hash = hash;
        write_head(&self.head, w.count, &w.last_hash)?;
        Ok(w.count)
    }

    /// The current head (count, hash), for the status line.
    pub(crate) fn head(&self) -> AuditHead {
        let w = self.w.lock().unwrap_or_else(|p| p.into_inner());
        AuditHead {
            count: w.count,
            hash: w.last_hash.clone(),
        }
    }
}

fn write_head(path: &Path, count: u64, hash: &str) -> Result<(), ServerError> {
    let head = AuditHead {
        count,
        hash: hash.to_string(),
    };
    let bytes = serde_json::to_vec(&head)
        .map_err(|e| ServerError::Internal(format!("audit head encoding: {e}")))?;
    atomic_write(path, &bytes)
}

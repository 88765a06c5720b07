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
//! Records carry no number, point, tag, label or key: only time, client id, peer address,
//! operation, counts, epoch, prefix range and outcome.

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

/// One audit record (one line of `audit.log`). Field order is the line's key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Position in the log, from 1.
    pub seq: u64,
    /// When the request was answered, RFC 3339 UTC.
    pub time: String,
    /// Client id from the certificate (empty if the peer presented none that parsed).
    pub client: String,
    /// The peer's IP address and port.
    pub peer: String,
    /// `Info`, `Evaluate`, `FetchRange`, `FetchAll`, `Connect` (a refused connection) or
    /// `Invalid` (a request that could not be decoded).
    pub op: String,
    /// The epoch the answer used, `<number>-<key check>` (empty when none).
    pub epoch: String,
    /// Blinded elements evaluated (Evaluate).
    pub elements: u64,
    /// Table entries sent (FetchRange, FetchAll).
    pub entries: u64,
    /// FetchRange prefix, `<bits>/<hex>` (empty otherwise).
    pub prefix: String,
    /// FetchAll start offset.
    pub offset: u64,
    /// `ok`, or the error code name the client received.
    pub outcome: String,
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

/// Fields of a record, before `seq` and `prev` are assigned.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditEntry {
    pub(crate) time: String,
    pub(crate) client: String,
    pub(crate) peer: String,
    pub(crate) op: &'static str,
    pub(crate) epoch: String,
    pub(crate) elements: u64,
    pub(crate) entries: u64,
    pub(crate) prefix: String,
    pub(crate) offset: u64,
    pub(crate) outcome: String,
}

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
            time: e.time,
            client: e.client,
            peer: e.peer,
            op: e.op.to_string(),
            epoch: e.epoch,
            elements: e.elements,
            entries: e.entries,
            prefix: e.prefix,
            offset: e.offset,
            outcome: e.outcome,
            prev: w.last_hash.clone(),
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

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
//! **Keyed records.** With `audit_key_file` in server.toml ([`AuditKey`]: at least 32 bytes,
//! owner-only, outside the data directory) every record carries `key_id` (16 hex digits of
//! SHA-256 over a label and the key) and its link is HMAC-SHA256 under the key instead of
//! SHA-256: the next record's `prev` and the head hold it. Without the key nobody can edit,
//! insert or replace a record and recompute the chain; a log rewritten from some record on as an
//! unkeyed chain is refused ([`verify_audit_with`]: no unkeyed record after a keyed one, and a
//! given key must authenticate the last record). Someone holding only the files can still cut
//! records off the end and rewrite the head to the last kept record's link: keep the head
//! values the status log lines print (`audit_records`, `audit_head`) off the machine.
//!
//! Crash behaviour: a crash between the line's sync and the head's replacement leaves records
//! after the head that chain correctly ("unanchored"); a crash or a full disk mid-line leaves a
//! last line that is not a whole record (no newline, or not a record): a torn tail.
//! Verification reports both without failing; the server, when it opens the log, cuts a torn
//! tail off (never joining it to the next record), reports it in its log (a warning with the
//! bytes removed), and advances the head over unanchored records. An append that fails (disk full) cuts
//! its partial line off at once.
//!
//! **Peer text never enters a record.** A connection's close reason and a malformed request's
//! bytes are the peer's free text (a client once closed with a patient's number as the reason):
//! records keep only codes and lengths (`closed by peer: code 7 (reason of 33 bytes not
//! recorded)`, `undecodable request of N bytes`).
//!
//! Records carry what protocol-spec/security.md §5.2 requires (time, client id, certificate
//! fingerprint, peer, connection and stream, request type, key periods and epochs requested and
//! current, counts, offsets, bytes, duration, both quotas before and after, outcome) and never a
//! number, element, proof, OPRF output, tag, label key, label, encrypted label, person id or
//! key.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::ServerError;
use crate::fsutil::{FILE_MODE, atomic_write, create_dir_private, fsync_dir, read_secret};
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
    /// `connected`, `closed` (connection events), `request` (one per request answered with
    /// data, written before its answer is sent), `fetch_end` (the end of a FetchBase or
    /// FetchDelta stream) or `refusals` (the refused and failed requests and connections of one
    /// client, address, kind and outcome in one interval: `count`, and `detail` naming the
    /// event: `request`, `refused`, `handshake_failed`).
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
    /// Anchors checked against the log ([`verify_audit_anchored`]).
    pub anchors_checked: u64,
}

impl std::fmt::Display for AuditSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "audit log OK: {} records, chain intact", self.records)?;
        writeln!(f, "  last hash  {}", self.last_hash)?;
        if let (Some(a), Some(b)) = (&self.first_time, &self.last_time) {
            writeln!(f, "  period     {a} .. {b}")?;
        }
        if self.anchors_checked > 0 {
            writeln!(
                f,
                "  anchors    {} checked, every anchored head is in the log",
                self.anchors_checked
            )?;
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
                "  note: the log ends in an incomplete record (a crash or a full disk \
                 mid-append); the server cuts it off when it next starts"
            )?;
        }
        Ok(())
    }
}

pub(crate) fn line_hash(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line).as_slice())
}

/// HMAC-SHA256 (RFC 2104) of `msg` under `key` (RustCrypto's `hmac`).
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    // HMAC takes keys of any length, so this cannot fail.
    let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(key) else {
        unreachable!("HMAC accepts keys of every length")
    };
    mac.update(msg);
    let mut out = [0u8; 32];
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// Least length of an audit key file.
pub const AUDIT_KEY_MIN_LEN: usize = 32;

/// The operator's audit key: records are linked with HMAC-SHA256 under it, so someone who can
/// write the log but does not hold the key cannot edit, insert or replace a record without
/// [`verify_audit_with`] noticing. It is read from `audit_key_file` (server.toml), which must be
/// owner-only and outside the data directory; keep a copy where the verifier runs.
pub struct AuditKey {
    key: Zeroizing<Vec<u8>>,
    id: String,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl AuditKey {
    /// A key from its bytes (at least [`AUDIT_KEY_MIN_LEN`]).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < AUDIT_KEY_MIN_LEN {
            return None;
        }
        let mut h = Sha256::new();
        h.update(b"nayose audit key id\0");
        h.update(bytes);
        let id = hex::encode(&h.finalize().as_slice()[..8]);
        Some(AuditKey {
            key: Zeroizing::new(bytes.to_vec()),
            id,
        })
    }

    /// Reads an audit key file: owner-only, at least [`AUDIT_KEY_MIN_LEN`] bytes, and (when
    /// `data_dir` is given) not inside the data directory, where whoever can rewrite the log
    /// could read it too. Create one with `head -c 32 /dev/urandom > FILE; chmod 600 FILE`.
    pub fn load(path: &Path, data_dir: Option<&Path>) -> Result<Self, ServerError> {
        let bad = |reason: String| ServerError::AuditKey {
            path: path.to_path_buf(),
            reason,
        };
        if let Some(dir) = data_dir {
            let canon =
                |p: &Path| std::fs::canonicalize(p).map_err(ServerError::io("cannot resolve", p));
            if canon(path)?.starts_with(canon(dir)?) {
                return Err(bad(format!(
                    "it is inside the data directory {}; keep the audit key elsewhere (another \
                     file system or a secrets mount), so that whoever can rewrite the log \
                     cannot read the key",
                    dir.display()
                )));
            }
        }
        let bytes = read_secret(path)?;
        AuditKey::from_bytes(&bytes).ok_or_else(|| {
            bad(format!(
                "it holds {} bytes, an audit key has at least {AUDIT_KEY_MIN_LEN}; create one \
                 with: head -c 32 /dev/urandom > {}; chmod 600 {}",
                bytes.len(),
                path.display(),
                path.display()
            ))
        })
    }

    /// The key's public id (16 hex digits), written into every record it authenticates.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn link(&self, line: &[u8]) -> String {
        hex::encode(hmac_sha256(&self.key, line))
    }
}

fn broken(path: &Path, reason: String) -> ServerError {
    ServerError::AuditBroken {
        path: path.to_path_buf(),
        reason,
    }
}

pub(crate) struct Scan {
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

/// Walks the chain; fails at the first inconsistency. A last line that is not a whole record
/// (no newline, or not a record at all: a crash or a full disk mid-append) is a torn tail, not
/// an error; it is never joined with what follows.
pub(crate) fn scan(
    log: &Path,
    bytes: &[u8],
    head_count: u64,
    key: Option<&AuditKey>,
    anchors: &[AuditAnchor],
) -> Result<Scan, ServerError> {
    let mut by_seq: BTreeMap<u64, Vec<&AuditAnchor>> = BTreeMap::new();
    for a in anchors {
        by_seq.entry(a.seq).or_default().push(a);
    }
    let check_anchors = |n: u64, link: &str| -> Result<(), ServerError> {
        for a in by_seq.get(&n).into_iter().flatten() {
            if a.link != link {
                return Err(broken(
                    log,
                    format!(
                        "record {n} does not match the anchor written at {}: the log was \
                         rewritten at or before record {n}",
                        a.time
                    ),
                ));
            }
        }
        Ok(())
    };
    check_anchors(0, GENESIS_HASH)?;
    let mut s = Scan {
        records: 0,
        last_hash: GENESIS_HASH.to_string(),
        first_time: None,
        last_time: None,
        complete_len: 0,
        torn_tail: false,
        hash_at_head: (head_count == 0).then(|| GENESIS_HASH.to_string()),
    };
    let mut keyed_seen = false;
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            s.torn_tail = true;
            break;
        };
        let line = &rest[..nl];
        rest = &rest[nl + 1..];
        let n = s.records + 1;
        let rec: AuditRecord = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(_) if rest.is_empty() => {
                s.torn_tail = true;
                break;
            }
            Err(e) => {
                return Err(broken(
                    log,
                    format!("record {n} (line {n}) is not a valid record: {e}"),
                ));
            }
        };
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
        s.last_hash = if rec.key_id.is_empty() {
            if keyed_seen {
                return Err(broken(
                    log,
                    format!(
                        "record {n} is not authenticated with the audit key, but earlier \
                         records are: records from {n} on were replaced"
                    ),
                ));
            }
            line_hash(line)
        } else {
            keyed_seen = true;
            match key {
                None => {
                    return Err(broken(
                        log,
                        format!(
                            "record {n} is authenticated with audit key {}: give its key file \
                             (`nayose server audit verify --key-file FILE`)",
                            rec.key_id
                        ),
                    ));
                }
                Some(k) if k.id() != rec.key_id => {
                    return Err(broken(
                        log,
                        format!(
                            "record {n} is authenticated with audit key {}, the key file given \
                             is key {}",
                            rec.key_id,
                            k.id()
                        ),
                    ));
                }
                Some(k) => k.link(line),
            }
        };
        check_anchors(n, &s.last_hash)?;
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
    if let Some((&seq, a)) = by_seq.range(s.records + 1..).next_back() {
        return Err(broken(
            log,
            format!(
                "the log holds {} records but the anchor written at {} records {seq}: records \
                 were cut off the end of the log",
                s.records,
                a.first().map_or("", |a| a.time.as_str())
            ),
        ));
    }
    if key.is_some() && s.records > 0 && !keyed_seen {
        return Err(broken(
            log,
            "an audit key was given but no record is authenticated with it: the records were \
             replaced, or the log was written without a key"
                .into(),
        ));
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

/// Verifies the data directory's audit log against itself and its head file (an unkeyed log;
/// a log with records authenticated by an audit key needs [`verify_audit_with`]).
pub fn verify_audit(data_dir: &Path) -> Result<AuditSummary, ServerError> {
    verify_audit_with(data_dir, None)
}

/// Verifies the audit log, checking every record authenticated with `key` against it.
pub fn verify_audit_with(
    data_dir: &Path,
    key: Option<&AuditKey>,
) -> Result<AuditSummary, ServerError> {
    verify_inner(data_dir, key, &[]).map(|(s, _)| s)
}

/// [`verify_audit_with`], and every anchor of the anchors file `anchors` (written by
/// [`anchor_audit`] or by the server's `audit_anchor_file`) must still be in the log: the
/// record at the anchor's `seq` must have the anchor's `link`. So cutting anchored records off
/// the end, or rewriting anything up to an anchor (even with the key), is detected.
pub fn verify_audit_anchored(
    data_dir: &Path,
    key: Option<&AuditKey>,
    anchors: &Path,
) -> Result<AuditSummary, ServerError> {
    let list = read_anchors(anchors)?;
    let mut s = verify_inner(data_dir, key, &list).map(|(s, _)| s)?;
    s.anchors_checked = list.len() as u64;
    Ok(s)
}

/// [`verify_audit_with`], and the byte length of the log's whole records.
fn verify_inner(
    data_dir: &Path,
    key: Option<&AuditKey>,
    anchors: &[AuditAnchor],
) -> Result<(AuditSummary, u64), ServerError> {
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
    let s = scan(&log, &bytes, head_count, key, anchors)?;
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
    Ok((
        AuditSummary {
            records: s.records,
            anchored: head_count,
            last_hash: s.last_hash,
            first_time: s.first_time,
            last_time: s.last_time,
            torn_tail: s.torn_tail,
            anchors_checked: 0,
        },
        s.complete_len,
    ))
}

/// A record before `append` assigns `seq` and `prev` (their values here are ignored).
pub(crate) type AuditEntry = AuditRecord;

struct Writer {
    file: File,
    count: u64,
    last_hash: String,
    /// Byte length of the whole records: a failed append is cut back to it.
    len: u64,
}

/// The open audit log of a running server.
pub(crate) struct AuditLog {
    log: PathBuf,
    head: PathBuf,
    key: Option<AuditKey>,
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
    pub(crate) fn open(data: &DataDir, key: Option<AuditKey>) -> Result<Self, ServerError> {
        create_dir_private(&data.audit_dir())?;
        let (log, head) = (data.audit_log(), data.audit_head());
        let (summary, good_len) =
            verify_inner(data.root(), key.as_ref(), &[]).map_err(|e| match e {
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
            let total = file
                .metadata()
                .map_err(ServerError::io("cannot stat", &log))?
                .len();
            tracing::warn!(
                path = %log.display(),
                bytes = total.saturating_sub(good_len),
                records = summary.records,
                "removing an incomplete last audit record (a crash or a full disk mid-append); \
                 the log ends at the last whole record"
            );
            file.set_len(good_len)
                .map_err(ServerError::io("cannot truncate", &log))?;
            file.sync_all()
                .map_err(ServerError::io("cannot fsync", &log))?;
        }
        fsync_dir(&data.audit_dir())?;
        let w = Writer {
            file,
            count: summary.records,
            last_hash: summary.last_hash,
            len: good_len,
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
            key,
            w: Mutex::new(w),
        })
    }

    /// Appends one record durably (line, sync, head). Returns the record's sequence number.
    pub(crate) fn append(&self, e: AuditEntry) -> Result<u64, ServerError> {
        let mut w = self.w.lock().unwrap_or_else(|p| p.into_inner());
        let rec = AuditRecord {
            seq: w.count + 1,
            prev: w.last_hash.clone(),
            key_id: self
                .key
                .as_ref()
                .map(|k| k.id().to_string())
                .unwrap_or_default(),
            ..e
        };
        let mut line = serde_json::to_vec(&rec)
            .map_err(|err| ServerError::Internal(format!("audit record encoding: {err}")))?;
        let hash = match &self.key {
            Some(k) => k.link(&line),
            None => line_hash(&line),
        };
        line.push(b'\n');
        let written = w
            .file
            .write_all(&line)
            .map_err(ServerError::io("cannot append to", &self.log))
            .and_then(|()| {
                w.file
                    .sync_data()
                    .map_err(ServerError::io("cannot fsync", &self.log))
            });
        if let Err(e) = written {
            // A partly written line (disk full) is cut off, so the next record is never joined
            // to it; if even that fails, the next start removes it.
            let _ = w.file.set_len(w.len).and_then(|()| w.file.sync_data());
            return Err(e);
        }
        w.len += line.len() as u64;
        w.count += 1;
        w.last_hash = hash;
        write_head(&self.head, w.count, &w.last_hash)?;
        Ok(w.count)
    }

    /// Appends the current head to the anchors file `anchors` (see [`anchor_audit`]).
    pub(crate) fn anchor(&self, anchors: &Path, time: String) -> Result<AuditAnchor, ServerError> {
        let head = self.head();
        let a = AuditAnchor {
            time,
            seq: head.count,
            link: head.hash,
            key_id: self
                .key
                .as_ref()
                .map(|k| k.id().to_string())
                .unwrap_or_default(),
        };
        append_anchor(anchors, &a)?;
        Ok(a)
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

/// One line of an anchors file: the audit chain's head at `time`. Anchors are kept outside the
/// data directory (another file system, a write-once store, or shipped off the machine), so
/// whoever can rewrite the log cannot rewrite them too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditAnchor {
    /// When the anchor was taken, RFC 3339 UTC.
    pub time: String,
    /// The number of records then (the last record's `seq`).
    pub seq: u64,
    /// The last record's link (HMAC-SHA256 under the audit key, or SHA-256), as in the head.
    pub link: String,
    /// The audit key's id, if the log is keyed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_id: String,
}

/// Refuses an anchors file inside the data directory (it would be rewritten with the log).
pub fn check_anchor_path(anchors: &Path, data_dir: &Path) -> Result<(), ServerError> {
    let canon = |p: &Path| std::fs::canonicalize(p).map_err(ServerError::io("cannot resolve", p));
    let parent = crate::fsutil::parent_of(anchors);
    let name = anchors
        .file_name()
        .ok_or_else(|| ServerError::AuditAnchors {
            path: anchors.to_path_buf(),
            reason: "it names no file".into(),
        })?;
    if canon(&parent)?.join(name).starts_with(canon(data_dir)?) {
        return Err(ServerError::AuditAnchors {
            path: anchors.to_path_buf(),
            reason: format!(
                "it is inside the data directory {}; keep the anchors where whoever can \
                 rewrite the log cannot (another file system, or shipped off the machine)",
                data_dir.display()
            ),
        });
    }
    Ok(())
}

pub(crate) fn append_anchor(path: &Path, a: &AuditAnchor) -> Result<(), ServerError> {
    let mut line = serde_json::to_vec(a)
        .map_err(|e| ServerError::Internal(format!("audit anchor encoding: {e}")))?;
    line.push(b'\n');
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(ServerError::io("cannot open", path))?;
    f.write_all(&line)
        .map_err(ServerError::io("cannot append to", path))?;
    f.sync_data().map_err(ServerError::io("cannot fsync", path))
}

/// Reads an anchors file (one [`AuditAnchor`] per line).
pub fn read_anchors(path: &Path) -> Result<Vec<AuditAnchor>, ServerError> {
    let text = std::fs::read_to_string(path).map_err(ServerError::io("cannot read", path))?;
    parse_anchors(path, &text)
}

/// The anchors of an anchors file's text (`path` names it in errors).
pub(crate) fn parse_anchors(path: &Path, text: &str) -> Result<Vec<AuditAnchor>, ServerError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| ServerError::AuditAnchors {
                path: path.to_path_buf(),
                reason: format!("line {} is not an anchor: {e}", i + 1),
            })
        })
        .collect()
}

/// `nayose server audit anchor`: verifies the log (with `key` if it is keyed) and appends its
/// head (`seq`, `link`) to the anchors file `anchors`, which must be outside the data
/// directory. Returns the anchor written.
pub fn anchor_audit(
    data_dir: &Path,
    key: Option<&AuditKey>,
    anchors: &Path,
    time: String,
) -> Result<AuditAnchor, ServerError> {
    check_anchor_path(anchors, data_dir)?;
    let s = verify_audit_with(data_dir, key)?;
    let a = AuditAnchor {
        time,
        seq: s.records,
        link: s.last_hash,
        key_id: key.map(|k| k.id().to_string()).unwrap_or_default(),
    };
    append_anchor(anchors, &a)?;
    Ok(a)
}

pub(crate) fn write_head(path: &Path, count: u64, hash: &str) -> Result<(), ServerError> {
    let head = AuditHead {
        count,
        hash: hash.to_string(),
    };
    let bytes = serde_json::to_vec(&head)
        .map_err(|e| ServerError::Internal(format!("audit head encoding: {e}")))?;
    atomic_write(path, &bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn entry(client: &str) -> AuditEntry {
        AuditEntry {
            time: "2026-01-01T00:00:00Z".into(),
            event: "request".into(),
            client: client.into(),
            outcome: "ok".into(),
            ..AuditEntry::default()
        }
    }

    fn key(byte: u8) -> AuditKey {
        AuditKey::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // RFC 4231 test cases 2 and 6 (a key longer than the block).
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn keyed_records_verify_only_with_their_key_and_cannot_be_rewritten_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::create(dir.path()).unwrap();
        let log = AuditLog::open(&data, Some(key(7))).unwrap();
        for c in ["a", "b", "c"] {
            log.append(entry(c)).unwrap();
        }
        drop(log);
        let ok = verify_audit_with(dir.path(), Some(&key(7))).unwrap();
        assert_eq!(ok.records, 3);
        let text = std::fs::read_to_string(data.audit_log()).unwrap();
        let head = std::fs::read(data.audit_head()).unwrap();
        assert!(text.contains(&format!("\"key_id\":\"{}\"", key(7).id())));

        let e = verify_audit(dir.path()).unwrap_err().to_string();
        assert!(e.contains("--key-file") && e.contains(key(7).id()), "{e}");
        let e = verify_audit_with(dir.path(), Some(&key(8)))
            .unwrap_err()
            .to_string();
        assert!(e.contains(key(7).id()) && e.contains(key(8).id()), "{e}");
        // Someone who can write the log but has no key: an edited record breaks the chain...
        let edited = text.replacen("\"client\":\"b\"", "\"client\":\"x\"", 1);
        std::fs::write(data.audit_log(), &edited).unwrap();
        let e = verify_audit_with(dir.path(), Some(&key(7)))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("record 3") && e.contains("record 2 was modified"),
            "{e}"
        );
        // ... and so does rewriting the whole log as an unkeyed chain with a matching head.
        let mut prev = GENESIS_HASH.to_string();
        let mut out = String::new();
        for line in text.lines() {
            let mut r: AuditRecord = serde_json::from_str(line).unwrap();
            r.key_id.clear();
            r.prev = prev;
            let l = serde_json::to_string(&r).unwrap();
            prev = line_hash(l.as_bytes());
            out.push_str(&l);
            out.push('\n');
        }
        std::fs::write(data.audit_log(), &out).unwrap();
        write_head(&data.audit_head(), 3, &prev).unwrap();
        verify_audit(dir.path()).unwrap();
        let e = verify_audit_with(dir.path(), Some(&key(7)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no record is authenticated"), "{e}");
        // A keyed log does not open without its key.
        std::fs::write(data.audit_log(), &text).unwrap();
        std::fs::write(data.audit_head(), &head).unwrap();
        assert!(AuditLog::open(&data, None).is_err());
        AuditLog::open(&data, Some(key(7))).unwrap();
    }

    #[test]
    fn a_partial_last_record_is_cut_at_start_never_joined_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::create(dir.path()).unwrap();
        let log = AuditLog::open(&data, Some(key(1))).unwrap();
        for c in ["a", "b", "c"] {
            log.append(entry(c)).unwrap();
        }
        drop(log);
        let whole = std::fs::read(data.audit_log()).unwrap();
        // A crash mid-append, without and with a newline after the partial record.
        for tail in [&b"{\"seq\":4,\"ti"[..], &b"{\"seq\":4,\"ti\n"[..]] {
            let mut torn = whole.clone();
            torn.extend_from_slice(tail);
            std::fs::write(data.audit_log(), &torn).unwrap();
            let s = verify_audit_with(dir.path(), Some(&key(1))).unwrap();
            assert!(s.torn_tail && s.records == 3, "{s:?}");
            assert!(s.to_string().contains("incomplete"));

            let log = AuditLog::open(&data, Some(key(1))).unwrap();
            log.append(entry("d")).unwrap();
            drop(log);
            let after = std::fs::read_to_string(data.audit_log()).unwrap();
            assert!(after.as_bytes().starts_with(&whole));
            let lines: Vec<&str> = after.lines().collect();
            assert_eq!(lines.len(), 4, "{after}");
            assert!(lines[3].starts_with("{\"seq\":4,") && lines[3].contains("\"client\":\"d\""));
            let s = verify_audit_with(dir.path(), Some(&key(1))).unwrap();
            assert!(!s.torn_tail && s.records == 4);
            std::fs::write(data.audit_log(), &whole).unwrap();
            write_head(
                &data.audit_head(),
                3,
                &scan(&data.audit_log(), &whole, 0, Some(&key(1)), &[])
                    .unwrap()
                    .last_hash,
            )
            .unwrap();
        }
        // A damaged record that is not the last one is an error, not a tail.
        let mut bad = whole.clone();
        bad.extend_from_slice(b"garbage\n");
        bad.extend_from_slice(&whole[..whole.iter().position(|&b| b == b'\n').unwrap() + 1]);
        std::fs::write(data.audit_log(), &bad).unwrap();
        assert!(verify_audit_with(dir.path(), Some(&key(1))).is_err());
    }

    #[test]
    fn audit_key_files_must_be_private_long_enough_and_outside_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let write = |p: &Path, len: usize, mode: u32| {
            std::fs::write(p, vec![9u8; len]).unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        let good = dir.path().join("audit.key");
        write(&good, 32, 0o600);
        assert_eq!(
            AuditKey::load(&good, Some(&data)).unwrap().id(),
            AuditKey::from_bytes(&[9; 32]).unwrap().id()
        );
        let inside = data.join("audit.key");
        write(&inside, 32, 0o600);
        let e = AuditKey::load(&inside, Some(&data))
            .unwrap_err()
            .to_string();
        assert!(e.contains("inside the data directory"), "{e}");
        write(&good, 32, 0o640);
        let e = AuditKey::load(&good, Some(&data)).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        write(&good, 16, 0o600);
        let e = AuditKey::load(&good, Some(&data)).unwrap_err().to_string();
        assert!(e.contains("16 bytes") && e.contains("/dev/urandom"), "{e}");
    }
}

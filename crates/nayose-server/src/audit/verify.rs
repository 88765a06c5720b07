//! `nayose server audit verify`: the log against itself, its head file and anchors.

use std::path::Path;

use super::anchor::{AuditAnchor, read_anchors};
use super::key::AuditKey;
use super::record::read_head;
use super::scan::{broken, scan};
use crate::error::ServerError;
use crate::layout::DataDir;

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
pub(super) fn verify_inner(
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

//! The chain walk shared by verification, the server's start and the fuzz target.

use std::collections::BTreeMap;
use std::path::Path;

use super::anchor::AuditAnchor;
use super::key::AuditKey;
use super::record::{AuditRecord, GENESIS_HASH, line_hash};
use crate::error::ServerError;

/// An [`ServerError::AuditBroken`] naming `path`.
pub(super) fn broken(path: &Path, reason: String) -> ServerError {
    ServerError::AuditBroken {
        path: path.to_path_buf(),
        reason,
    }
}

pub(crate) struct Scan {
    pub(super) records: u64,
    pub(super) last_hash: String,
    pub(super) first_time: Option<String>,
    pub(super) last_time: Option<String>,
    /// Byte length of the complete lines.
    pub(super) complete_len: u64,
    pub(super) torn_tail: bool,
    /// Hash after each of the first `want` records (only the one at `want`).
    pub(super) hash_at_head: Option<String>,
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

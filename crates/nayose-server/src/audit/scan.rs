//! The chain walk shared by verification, the server's start and the fuzz target.
//!
//! A [`Chain`] walks the files of one log in order (the closed segments by their first record,
//! then `audit.log`) and fails at the first inconsistency. Where it starts:
//! - at record 1, whose `prev` must be [`GENESIS_HASH`];
//! - or, when the oldest segments are not there (archived), at the first record present, which
//!   must then be a `rotated` record (the first record of every segment but the first): its
//!   `prev` (the link of the record before it) is taken as written, checked only against an
//!   anchor of that record if one is given, and anchors of older records are counted as not
//!   checked ([`Chain::anchors_unchecked`]). With an audit key the `rotated` record is itself
//!   authenticated, so nobody without the key can make a file start at a record of their choice.
//!
//! Across files, each file's first record must follow the previous file's last one (a gap is a
//! removed segment, an overlap a copied or renamed one) and be a `rotated` record.

use std::collections::BTreeMap;
use std::path::Path;

use super::anchor::AuditAnchor;
use super::key::AuditKey;
use super::record::{AuditRecord, GENESIS_HASH, ROTATED_EVENT, line_hash};
use crate::error::ServerError;

/// An [`ServerError::AuditBroken`] naming `path`.
pub(super) fn broken(path: &Path, reason: String) -> ServerError {
    ServerError::AuditBroken {
        path: path.to_path_buf(),
        reason,
    }
}

/// Which kind of file a [`Chain`] walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A closed segment (`audit.<first record>.log`): whole records only, at least one.
    Segment,
    /// `audit.log`: may be empty, and may end in an incomplete record (a crash mid-append).
    Live,
}

/// What one file held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileWalk {
    /// Whole records in the file.
    pub(super) records: u64,
    /// The `seq` of its first whole record.
    pub(super) first_seq: Option<u64>,
    /// Byte length of its whole records.
    pub(super) complete_len: u64,
    /// Whether it ends in an incomplete record (only `audit.log` may).
    pub(super) torn_tail: bool,
}

/// The state of a walk over the files of one log (see the module docs).
pub(crate) struct Chain<'a> {
    key: Option<&'a AuditKey>,
    anchors: BTreeMap<u64, Vec<&'a AuditAnchor>>,
    head_count: u64,
    started: bool,
    keyed_seen: bool,
    /// The first record walked (1 unless the oldest segments are elsewhere).
    pub(super) first_seq: u64,
    /// The `seq` of the last record walked (the number of records since record 1).
    pub(super) last_seq: u64,
    /// The link of the last record walked.
    pub(super) last_hash: String,
    /// Time of the first and of the last record walked.
    pub(super) first_time: Option<String>,
    pub(super) last_time: Option<String>,
    /// The link of record `head_count`, once walked (or the start link, if that is the record
    /// before the first one walked).
    pub(super) hash_at_head: Option<String>,
    /// Anchors of records older than the walk's start (not present, so not checked).
    pub(super) anchors_unchecked: u64,
}

impl<'a> Chain<'a> {
    /// A walk that checks every record linked under `key`, every anchor of `anchors`, and
    /// remembers the link of record `head_count`.
    pub(crate) fn new(
        key: Option<&'a AuditKey>,
        anchors: &'a [AuditAnchor],
        head_count: u64,
    ) -> Self {
        let mut by_seq: BTreeMap<u64, Vec<&AuditAnchor>> = BTreeMap::new();
        for a in anchors {
            by_seq.entry(a.seq).or_default().push(a);
        }
        Chain {
            key,
            anchors: by_seq,
            head_count,
            started: false,
            keyed_seen: false,
            first_seq: 1,
            last_seq: 0,
            last_hash: GENESIS_HASH.to_string(),
            first_time: None,
            last_time: None,
            hash_at_head: None,
            anchors_unchecked: 0,
        }
    }

    fn check_anchors(&self, file: &Path, n: u64, link: &str) -> Result<(), ServerError> {
        for a in self.anchors.get(&n).into_iter().flatten() {
            if a.link != link {
                return Err(broken(
                    file,
                    format!(
                        "record {n} does not match the anchor written at {}: the log was \
                         rewritten at or before record {n}",
                        a.time
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Starts the walk just before `first` (record 1, or a segment's `rotated` record).
    fn start(&mut self, file: &Path, first: &AuditRecord) -> Result<(), ServerError> {
        if first.seq > 1 {
            if first.event != ROTATED_EVENT {
                return Err(broken(
                    file,
                    format!(
                        "the first record here is record {}, which does not start a segment \
                         (a `{ROTATED_EVENT}` record): records before it were cut out of the \
                         log",
                        first.seq
                    ),
                ));
            }
            self.first_seq = first.seq;
            self.last_seq = first.seq - 1;
            self.last_hash = first.prev.clone();
            self.anchors_unchecked = self
                .anchors
                .range(..self.last_seq)
                .map(|(_, v)| v.len() as u64)
                .sum();
        }
        self.started = true;
        self.check_anchors(file, self.last_seq, &self.last_hash)?;
        if self.head_count == self.last_seq {
            self.hash_at_head = Some(self.last_hash.clone());
        }
        Ok(())
    }

    /// Walks one file's records, continuing the chain of the files walked before.
    pub(crate) fn walk(
        &mut self,
        file: &Path,
        bytes: &[u8],
        role: Role,
    ) -> Result<FileWalk, ServerError> {
        let mut w = FileWalk {
            records: 0,
            first_seq: None,
            complete_len: 0,
            torn_tail: false,
        };
        let mut rest = bytes;
        let mut line_no = 0u64;
        while !rest.is_empty() {
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                w.torn_tail = true;
                break;
            };
            let line = &rest[..nl];
            rest = &rest[nl + 1..];
            line_no += 1;
            let n = self.last_seq + 1;
            let rec: AuditRecord = match serde_json::from_slice(line) {
                Ok(r) => r,
                Err(_) if rest.is_empty() => {
                    w.torn_tail = true;
                    break;
                }
                Err(e) => {
                    return Err(broken(
                        file,
                        format!("record {n} (line {line_no}) is not a valid record: {e}"),
                    ));
                }
            };
            if !self.started {
                self.start(file, &rec)?;
            } else if w.records == 0 {
                self.check_file_start(file, &rec)?;
            }
            let n = self.last_seq + 1;
            self.record(file, line, line_no, rec)?;
            w.first_seq.get_or_insert(n);
            w.records += 1;
            w.complete_len += nl as u64 + 1;
        }
        if role == Role::Segment {
            if w.torn_tail {
                return Err(broken(
                    file,
                    format!(
                        "the segment ends in an incomplete record after {} whole record(s); a \
                         segment is closed whole, so it was cut or appended to",
                        w.records
                    ),
                ));
            }
            if w.records == 0 {
                return Err(broken(file, "the segment holds no record".into()));
            }
        }
        Ok(w)
    }

    /// A later file's first record: it follows the previous file's last and starts a segment.
    fn check_file_start(&self, file: &Path, rec: &AuditRecord) -> Result<(), ServerError> {
        let want = self.last_seq + 1;
        if rec.seq > want {
            return Err(broken(
                file,
                format!(
                    "the file starts at record {}, but the files before it end at record {}: \
                     records {want}..{} are missing (a segment was removed)",
                    rec.seq,
                    self.last_seq,
                    rec.seq - 1
                ),
            ));
        }
        if rec.seq < want {
            return Err(broken(
                file,
                format!(
                    "the file starts at record {}, but the files before it already hold \
                     records up to {}: segments overlap (a copied or renamed file)",
                    rec.seq, self.last_seq
                ),
            ));
        }
        if rec.event != ROTATED_EVENT {
            return Err(broken(
                file,
                format!(
                    "record {} starts the file but is not a `{ROTATED_EVENT}` record: the file \
                     was not started by a rotation",
                    rec.seq
                ),
            ));
        }
        Ok(())
    }

    /// One whole record: its place, its link to the previous one, its own link.
    fn record(
        &mut self,
        file: &Path,
        line: &[u8],
        line_no: u64,
        rec: AuditRecord,
    ) -> Result<(), ServerError> {
        let n = self.last_seq + 1;
        if rec.seq != n {
            return Err(broken(
                file,
                format!(
                    "line {line_no} has seq {} where {n} was expected: a record was removed or \
                     inserted",
                    rec.seq
                ),
            ));
        }
        if rec.prev != self.last_hash {
            return Err(broken(
                file,
                format!(
                    "record {n}: its prev hash does not match record {}: record {} was modified \
                     or removed",
                    n - 1,
                    n - 1
                ),
            ));
        }
        let link = if rec.key_id.is_empty() {
            if self.keyed_seen {
                return Err(broken(
                    file,
                    format!(
                        "record {n} is not authenticated with the audit key, but earlier \
                         records are: records from {n} on were replaced"
                    ),
                ));
            }
            line_hash(line)
        } else {
            self.keyed_seen = true;
            match self.key {
                None => {
                    return Err(broken(
                        file,
                        format!(
                            "record {n} is authenticated with audit key {}: give its key file \
                             (`--key-file FILE`)",
                            rec.key_id
                        ),
                    ));
                }
                Some(k) if k.id() != rec.key_id => {
                    return Err(broken(
                        file,
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
        self.check_anchors(file, n, &link)?;
        self.last_seq = n;
        self.last_hash = link;
        if self.first_time.is_none() {
            self.first_time = Some(rec.time.clone());
        }
        self.last_time = Some(rec.time);
        if n == self.head_count {
            self.hash_at_head = Some(self.last_hash.clone());
        }
        Ok(())
    }

    /// Ends the walk (`file` names the log in errors): every anchor must be in the records
    /// walked, and a key given must authenticate them.
    pub(crate) fn finish(&mut self, file: &Path) -> Result<(), ServerError> {
        if !self.started {
            // No record at all: the chain is at its genesis.
            self.started = true;
            self.check_anchors(file, 0, GENESIS_HASH)?;
            if self.head_count == 0 {
                self.hash_at_head = Some(GENESIS_HASH.to_string());
            }
        }
        if let Some((&seq, a)) = self.anchors.range(self.last_seq + 1..).next_back() {
            return Err(broken(
                file,
                format!(
                    "the log holds {} records but the anchor written at {} records {seq}: \
                     records were cut off the end of the log",
                    self.last_seq,
                    a.first().map_or("", |a| a.time.as_str())
                ),
            ));
        }
        if self.key.is_some() && self.last_seq >= self.first_seq && !self.keyed_seen {
            return Err(broken(
                file,
                "an audit key was given but no record is authenticated with it: the records \
                 were replaced, or the log was written without a key"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Walks one file as `audit.log` alone (the fuzz target's entry and the tests').
pub(crate) fn scan<'a>(
    log: &Path,
    bytes: &[u8],
    head_count: u64,
    key: Option<&'a AuditKey>,
    anchors: &'a [AuditAnchor],
) -> Result<Chain<'a>, ServerError> {
    let mut chain = Chain::new(key, anchors, head_count);
    chain.walk(log, bytes, Role::Live)?;
    chain.finish(log)?;
    Ok(chain)
}

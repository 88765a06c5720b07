//! `nayose server audit verify`: the log's segments and `audit.log` against each other, the
//! head file and anchors.
//!
//! The files are read while a server may append and rotate: the head file first (so the files
//! hold at least the records it counts), then the segments in chain order, then `audit.log`. A
//! rotation in between renames `audit.log` to a segment the listing missed; the segments are
//! therefore listed again afterwards, and a verification during which they changed is done
//! again (at most three times).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::anchor::{AuditAnchor, read_anchors};
use super::key::AuditKey;
use super::record::{AuditHead, read_head, read_optional};
use super::scan::{Chain, Role, broken};
use super::segment::{LIVE_NAME, list_segments, segment_name};
use crate::error::ServerError;
use crate::layout::DataDir;

/// What [`verify_audit`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSummary {
    /// The last record's `seq`: the records of the chain since record 1 (anchored or not).
    pub records: u64,
    /// The first record verified: 1, or the first record of the oldest segment present when
    /// older segments were moved away (see [`VerifyOptions::archive`]).
    pub first_verified: u64,
    /// Closed segment files verified (`audit.<first record>.log`), besides `audit.log`.
    pub segments: u64,
    /// Of them, those read from the archive directory only.
    pub archived_segments: u64,
    /// Records the head file covers.
    pub anchored: u64,
    /// The link of the last verified record.
    pub last_hash: String,
    /// Time of the first record verified, if any.
    pub first_time: Option<String>,
    /// Time of the last record, if any.
    pub last_time: Option<String>,
    /// Whether `audit.log` ends in an incomplete line (a crash mid-append; ignored).
    pub torn_tail: bool,
    /// Whether a rotation stopped after closing a segment and before `audit.log` got its
    /// first record (a crash); the server completes it at its next start.
    pub rotation_pending: bool,
    /// Anchors checked against the log ([`verify_audit_anchored`]).
    pub anchors_checked: u64,
    /// Anchors of records older than `first_verified - 1`: not present, so not checked.
    pub anchors_unchecked: u64,
}

impl std::fmt::Display for AuditSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first_verified <= 1 {
            writeln!(f, "audit log OK: {} records, chain intact", self.records)?;
        } else {
            let before = self.first_verified - 1;
            writeln!(
                f,
                "audit log OK from record {}: records {}..{} verified, chain intact",
                self.first_verified, self.first_verified, self.records
            )?;
            writeln!(
                f,
                "  NOT CHECKED: records 1..{before} are in segments that are not here (moved \
                 away: archived, or removed); verification starts at the `rotated` record \
                 {}, whose link to record {before} is taken as written. Give --archive DIR to \
                 verify the archived segments too",
                self.first_verified
            )?;
        }
        if self.segments > 0 {
            write!(f, "  files      {} closed segment(s)", self.segments)?;
            if self.archived_segments > 0 {
                write!(f, " ({} from the archive)", self.archived_segments)?;
            }
            writeln!(f, " and {LIVE_NAME}")?;
        }
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
        if self.anchors_unchecked > 0 {
            writeln!(
                f,
                "  anchors    {} NOT CHECKED: they anchor records before {}, which are not here",
                self.anchors_unchecked,
                self.first_verified.saturating_sub(1)
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
        if self.rotation_pending {
            writeln!(
                f,
                "  note: a rotation was interrupted after closing the segment that ends at \
                 record {} ({LIVE_NAME} has no record yet); the server completes it when it \
                 next starts",
                self.records
            )?;
        }
        Ok(())
    }
}

/// What `audit verify` reads besides `DATA_DIR/audit/`, and checks the log against.
#[derive(Debug, Default, Clone, Copy)]
pub struct VerifyOptions<'a> {
    /// The audit key: required when records are authenticated with one; every such record is
    /// checked against it.
    pub key: Option<&'a AuditKey>,
    /// An anchors file (written by [`super::anchor_audit`] or the server's
    /// `audit_anchor_file`): the record at each anchor's `seq` must have the anchor's `link`.
    pub anchors: Option<&'a Path>,
    /// A directory holding segments moved out of `audit/` (archived): verified in chain order
    /// with those still there. A segment in both places must be the same bytes in both.
    pub archive: Option<&'a Path>,
}

/// Verifies the data directory's audit log against itself and its head file (an unkeyed log;
/// a log with records authenticated by an audit key needs [`verify_audit_with`]).
pub fn verify_audit(data_dir: &Path) -> Result<AuditSummary, ServerError> {
    verify_audit_opts(data_dir, &VerifyOptions::default())
}

/// Verifies the audit log, checking every record authenticated with `key` against it.
pub fn verify_audit_with(
    data_dir: &Path,
    key: Option<&AuditKey>,
) -> Result<AuditSummary, ServerError> {
    verify_audit_opts(
        data_dir,
        &VerifyOptions {
            key,
            ..VerifyOptions::default()
        },
    )
}

/// [`verify_audit_with`], and every anchor of the anchors file `anchors` (written by
/// [`super::anchor_audit`] or by the server's `audit_anchor_file`) must still be in the log:
/// the record at the anchor's `seq` must have the anchor's `link`. So cutting anchored records
/// off the end, or rewriting anything up to an anchor (even with the key), is detected.
pub fn verify_audit_anchored(
    data_dir: &Path,
    key: Option<&AuditKey>,
    anchors: &Path,
) -> Result<AuditSummary, ServerError> {
    verify_audit_opts(
        data_dir,
        &VerifyOptions {
            key,
            anchors: Some(anchors),
            archive: None,
        },
    )
}

/// `nayose server audit verify`: every segment (those of `audit/` and of the archive) and
/// `audit.log` in chain order, the head file, and the anchors (see [`VerifyOptions`]).
pub fn verify_audit_opts(
    data_dir: &Path,
    opts: &VerifyOptions<'_>,
) -> Result<AuditSummary, ServerError> {
    let anchors = match opts.anchors {
        Some(p) => read_anchors(p)?,
        None => Vec::new(),
    };
    let data = DataDir::new(data_dir);
    let mut attempt = 0;
    loop {
        let before = list_segments(&data.audit_dir())?;
        let r = verify_once(&data, opts.archive, opts.key, &anchors);
        attempt += 1;
        if attempt == 3 || list_segments(&data.audit_dir())? == before {
            return r.map(|mut s| {
                s.anchors_checked = anchors.len() as u64 - s.anchors_unchecked;
                s
            });
        }
    }
}

/// A segment to verify: where it is, and a second copy that must be the same.
struct Located {
    first: u64,
    path: PathBuf,
    copy: Option<PathBuf>,
    archived: bool,
}

/// The segments of `audit/` and of `archive`, in chain order.
fn gather(dir: &Path, archive: Option<&Path>) -> Result<Vec<Located>, ServerError> {
    let mut all: BTreeMap<u64, Located> = BTreeMap::new();
    for s in list_segments(dir)? {
        all.insert(
            s.first,
            Located {
                first: s.first,
                path: s.path,
                copy: None,
                archived: false,
            },
        );
    }
    if let Some(a) = archive {
        std::fs::read_dir(a).map_err(ServerError::io("cannot list the archive", a))?;
        for s in list_segments(a)? {
            match all.get_mut(&s.first) {
                Some(here) => here.copy = Some(s.path),
                None => {
                    all.insert(
                        s.first,
                        Located {
                            first: s.first,
                            path: s.path,
                            copy: None,
                            archived: true,
                        },
                    );
                }
            }
        }
    }
    Ok(all.into_values().collect())
}

fn read(path: &Path) -> Result<Vec<u8>, ServerError> {
    std::fs::read(path).map_err(ServerError::io("cannot read", path))
}

fn verify_once(
    data: &DataDir,
    archive: Option<&Path>,
    key: Option<&AuditKey>,
    anchors: &[AuditAnchor],
) -> Result<AuditSummary, ServerError> {
    let (log, head_path) = (data.audit_log(), data.audit_head());
    let head = read_head(&head_path)?;
    let mut chain = Chain::new(key, anchors, head.as_ref().map_or(0, |h| h.count));
    let segments = gather(&data.audit_dir(), archive)?;
    for s in &segments {
        let bytes = read(&s.path)?;
        if let Some(copy) = &s.copy
            && read(copy)? != bytes
        {
            return Err(broken(
                &s.path,
                format!(
                    "the archive holds another file of this name ({}) with different bytes",
                    copy.display()
                ),
            ));
        }
        walk_segment(&mut chain, &s.path, s.first, &bytes)?;
    }
    let live = read_optional(&log)?;
    let walked = match &live {
        Some(b) => Some(chain.walk(&log, b, Role::Live)?),
        None => None,
    };
    chain.finish(&log)?;
    check_head(
        &chain,
        head.as_ref(),
        &log,
        &head_path,
        live.is_some() || !segments.is_empty(),
    )?;
    Ok(AuditSummary {
        records: chain.last_seq,
        first_verified: chain.first_seq,
        segments: segments.len() as u64,
        archived_segments: segments.iter().filter(|s| s.archived).count() as u64,
        anchored: head.as_ref().map_or(0, |h| h.count),
        last_hash: chain.last_hash,
        first_time: chain.first_time,
        last_time: chain.last_time,
        torn_tail: walked.as_ref().is_some_and(|w| w.torn_tail),
        rotation_pending: !segments.is_empty() && walked.as_ref().is_none_or(|w| w.records == 0),
        anchors_checked: 0,
        anchors_unchecked: chain.anchors_unchecked,
    })
}

/// Walks one closed segment, whose name must give its first record.
pub(super) fn walk_segment(
    chain: &mut Chain<'_>,
    path: &Path,
    first: u64,
    bytes: &[u8],
) -> Result<(), ServerError> {
    let w = chain.walk(path, bytes, Role::Segment)?;
    if w.first_seq != Some(first) {
        return Err(broken(
            path,
            format!(
                "the file's name says its first record is {first}, but it is record {} (it \
                 should be named {}): segment files were renamed",
                w.first_seq.unwrap_or(0),
                segment_name(w.first_seq.unwrap_or(0))
            ),
        ));
    }
    Ok(())
}

/// The head file against the walked chain: it must name a record walked (or the one just
/// before the first walked), with that record's link. `files` says whether any log file
/// exists.
pub(super) fn check_head(
    chain: &Chain<'_>,
    head: Option<&AuditHead>,
    log: &Path,
    head_path: &Path,
    files: bool,
) -> Result<(), ServerError> {
    let any_record = chain.last_seq >= chain.first_seq;
    let Some(h) = head else {
        if any_record {
            return Err(broken(
                head_path,
                "the head file is missing: the end of the log cannot be checked for truncation"
                    .into(),
            ));
        }
        return Ok(());
    };
    if !files && h.count > 0 {
        return Err(broken(
            log,
            format!(
                "the log is missing but its head file records {} records",
                h.count
            ),
        ));
    }
    if chain.last_seq < h.count {
        return Err(broken(
            log,
            format!(
                "the log holds {} records but its head records {}: the log was truncated ({} \
                 record(s) missing at the end)",
                chain.last_seq,
                h.count,
                h.count - chain.last_seq
            ),
        ));
    }
    if h.count + 1 < chain.first_seq {
        return Err(broken(
            head_path,
            format!(
                "the head file records {} records, but the log here starts at record {}: the \
                 head file is older than the log (it was replaced)",
                h.count, chain.first_seq
            ),
        ));
    }
    if chain.hash_at_head.as_deref() != Some(h.hash.as_str()) {
        return Err(broken(
            log,
            format!(
                "record {} does not hash to the value in the head file: the end of the log \
                 was modified or replaced",
                h.count
            ),
        ));
    }
    Ok(())
}

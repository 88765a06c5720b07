//! Anchors files: the chain's head appended, outside the data directory, for `audit verify
//! --anchors`.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::key::AuditKey;
use super::verify::verify_audit_with;
use crate::error::ServerError;
use crate::fsutil::FILE_MODE;

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

/// Appends one anchor line to `path` (created owner-only) and syncs it.
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

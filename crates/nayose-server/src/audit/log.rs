//! The running server's audit writer: append (line, sync, head), repair at open, anchors.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::anchor::{AuditAnchor, append_anchor};
use super::key::AuditKey;
use super::record::{AuditEntry, AuditHead, AuditRecord, line_hash, write_head};
use super::verify::verify_inner;
use crate::error::ServerError;
use crate::fsutil::{FILE_MODE, create_dir_private, fsync_dir};
use crate::layout::DataDir;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::audit::{GENESIS_HASH, scan, verify_audit, verify_audit_with};

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
}

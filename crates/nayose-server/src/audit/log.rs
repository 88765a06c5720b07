//! The running server's audit writer: append (line, sync, head), repair at open, anchors;
//! its rotation is in `rotate.rs`.
//!
//! **Open.** [`AuditLog::open`] walks `audit.log` from its first record (record 1, or the
//! `rotated` record a rotation started it with) against the head file, so a start reads one
//! file however long the log's history; `audit verify` checks the closed segments. When
//! `audit.log` holds no record but segments exist (a rotation stopped after closing a segment),
//! it walks the last segment instead and completes the rotation. It then cuts a torn tail off
//! and advances the head over records written after it (both left by a crash).
//!
//! **Append.** Under one mutex: the line, `sync_data`, the head replaced atomically; only then
//! is the answer sent. A failed write is cut back to the last whole record at once. When
//! `audit.log` has grown past the rotation size, the same call then rotates (the record is
//! already durable; a failed rotation is logged and tried again a minute later).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use super::anchor::{AuditAnchor, append_anchor};
use super::key::AuditKey;
use super::record::{
    AuditEntry, AuditHead, AuditRecord, line_hash, read_head, read_optional, write_head,
};
use super::scan::{Chain, Role, broken};
use super::segment::list_segments;
use super::verify::{check_head, walk_segment};
use crate::error::ServerError;
use crate::fsutil::{FILE_MODE, create_dir_private, fsync_dir};
use crate::layout::DataDir;

/// The writer's state, under [`AuditLog`]'s mutex.
pub(super) struct Writer {
    /// `audit.log`, open for appending; `None` between a rotation's rename and the first
    /// record of the new file (a failed step: the next append completes it).
    pub(super) file: Option<File>,
    /// The last record's `seq`.
    pub(super) count: u64,
    /// The last record's link.
    pub(super) last_hash: String,
    /// Byte length of `audit.log`'s whole records: a failed append is cut back to it.
    pub(super) len: u64,
    /// The `seq` of `audit.log`'s first record (`count + 1` while it has none).
    pub(super) live_first: u64,
    /// The first record of the segment a rotation closed, until the new `audit.log` has its
    /// `rotated` record.
    pub(super) closed: Option<u64>,
    /// After a failed rotation: no new attempt before this.
    pub(super) retry_rotation_at: Option<Instant>,
}

/// The open audit log of a running server (or of `audit rotate`).
pub(crate) struct AuditLog {
    pub(super) dir: PathBuf,
    pub(super) log: PathBuf,
    pub(super) head: PathBuf,
    pub(super) key: Option<AuditKey>,
    /// Rotate when `audit.log` reaches this many bytes (0: never).
    pub(super) rotate_bytes: u64,
    pub(super) w: Mutex<Writer>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

/// Adds what the server does about a broken chain to the reason.
fn refuse_broken(e: ServerError) -> ServerError {
    match e {
        ServerError::AuditBroken { path, reason } => ServerError::AuditBroken {
            path,
            reason: format!(
                "{reason}. The server does not append to a broken chain: keep the files as \
                 evidence, move audit/ aside to start a new log"
            ),
        },
        other => other,
    }
}

impl AuditLog {
    /// Opens the log for appending (see the module docs); rotates `audit.log` when it reaches
    /// `rotate_bytes` (0: never). Refuses a log that fails verification.
    pub(crate) fn open(
        data: &DataDir,
        key: Option<AuditKey>,
        rotate_bytes: u64,
    ) -> Result<Self, ServerError> {
        let dir = data.audit_dir();
        create_dir_private(&dir)?;
        let (log, head) = (data.audit_log(), data.audit_head());
        let (w, anchored, pending) =
            Self::recover(&dir, &log, &head, key.as_ref()).map_err(refuse_broken)?;
        let this = AuditLog {
            dir,
            log,
            head,
            key,
            rotate_bytes,
            w: Mutex::new(w),
        };
        let mut w = this.w.lock().unwrap_or_else(|p| p.into_inner());
        if anchored != Some(w.count) {
            if anchored.is_some() {
                tracing::warn!(
                    records = w.count - anchored.unwrap_or(0),
                    "anchoring audit records written after the last head update"
                );
            }
            write_head(&this.head, w.count, &w.last_hash)?;
        }
        if pending {
            tracing::warn!(
                segment_ends_at = w.count,
                "completing an audit log rotation that was interrupted after closing a segment"
            );
            this.start_segment(&mut w, crate::rfc3339_now())?;
        }
        drop(w);
        Ok(this)
    }

    /// Walks what the open needs, repairs a torn tail; returns the writer, the head file's
    /// count (`None`: no head file) and whether a rotation must be completed.
    fn recover(
        dir: &Path,
        log: &Path,
        head_path: &Path,
        key: Option<&AuditKey>,
    ) -> Result<(Writer, Option<u64>, bool), ServerError> {
        let head = read_head(head_path)?;
        let head_count = head.as_ref().map_or(0, |h| h.count);
        let segments = list_segments(dir)?;
        let live = read_optional(log)?;
        let live_bytes = live.as_deref().unwrap_or_default();
        let mut chain = Chain::new(key, &[], head_count);
        let walked = chain.walk(log, live_bytes, Role::Live)?;
        let mut closed = None;
        match (walked.first_seq, segments.last()) {
            (Some(first), Some(last)) if first <= last.first => {
                return Err(broken(
                    log,
                    format!(
                        "it starts at record {first}, not after the segment {} (which starts \
                         at record {}): files were renamed",
                        last.path.display(),
                        last.first
                    ),
                ));
            }
            (None, Some(last)) => {
                // A rotation closed `last` and stopped before the new file had a record.
                chain = Chain::new(key, &[], head_count);
                let bytes = std::fs::read(&last.path)
                    .map_err(ServerError::io("cannot read", &last.path))?;
                walk_segment(&mut chain, &last.path, last.first, &bytes)?;
                closed = Some(last.first);
            }
            _ => {}
        }
        chain.finish(log)?;
        check_head(
            &chain,
            head.as_ref(),
            log,
            head_path,
            live.is_some() || !segments.is_empty(),
        )?;
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(FILE_MODE)
            .open(log)
            .map_err(ServerError::io("cannot open", log))?;
        if walked.torn_tail {
            tracing::warn!(
                path = %log.display(),
                bytes = live_bytes.len() as u64 - walked.complete_len,
                records = chain.last_seq,
                "removing an incomplete last audit record (a crash or a full disk mid-append); \
                 the log ends at the last whole record"
            );
            file.set_len(walked.complete_len)
                .map_err(ServerError::io("cannot truncate", log))?;
            file.sync_all()
                .map_err(ServerError::io("cannot fsync", log))?;
        }
        fsync_dir(dir)?;
        let w = Writer {
            file: Some(file),
            count: chain.last_seq,
            last_hash: chain.last_hash,
            len: walked.complete_len,
            live_first: walked.first_seq.unwrap_or(chain.last_seq + 1),
            closed,
            retry_rotation_at: None,
        };
        Ok((w, head.map(|h| h.count), closed.is_some()))
    }

    /// Appends one record durably (line, sync, head), then rotates if `audit.log` has reached
    /// the rotation size. Returns the record's sequence number.
    pub(crate) fn append(&self, e: AuditEntry) -> Result<u64, ServerError> {
        let mut w = self.w.lock().unwrap_or_else(|p| p.into_inner());
        if w.closed.is_some() {
            // A rotation closed the last file and could not start the next one: start it now.
            self.start_segment(&mut w, e.time.clone())?;
        }
        let time = e.time.clone();
        let seq = self.write_record(&mut w, e)?;
        if self.rotate_bytes > 0
            && w.len >= self.rotate_bytes
            && w.retry_rotation_at.is_none_or(|t| Instant::now() >= t)
            && let Err(err) = self.rotate_locked(&mut w, time)
        {
            tracing::error!(
                "cannot rotate the audit log (it keeps growing; the next attempt is in a \
                 minute): {err}"
            );
            w.retry_rotation_at = Some(Instant::now() + std::time::Duration::from_secs(60));
        }
        Ok(seq)
    }

    /// Writes one record into `audit.log` (which must be open) and replaces the head.
    pub(super) fn write_record(&self, w: &mut Writer, e: AuditEntry) -> Result<u64, ServerError> {
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
        let len = w.len;
        let Some(file) = w.file.as_mut() else {
            return Err(ServerError::Internal(
                "the audit log file is not open (a rotation did not complete)".into(),
            ));
        };
        let written = file
            .write_all(&line)
            .map_err(ServerError::io("cannot append to", &self.log))
            .and_then(|()| {
                file.sync_data()
                    .map_err(ServerError::io("cannot fsync", &self.log))
            });
        if let Err(e) = written {
            // A partly written line (disk full) is cut off, so the next record is never joined
            // to it; if even that fails, the next start removes it.
            let _ = file.set_len(len).and_then(|()| file.sync_data());
            return Err(e);
        }
        w.len += line.len() as u64;
        w.count += 1;
        w.last_hash = hash;
        write_head(&self.head, w.count, &w.last_hash)?;
        Ok(w.count)
    }

    /// Appends the current head to the anchors file `anchors` (see [`super::anchor_audit`]).
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
    use crate::audit::record::{AuditRecord, line_hash, write_head};
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
        let log = AuditLog::open(&data, Some(key(7)), 0).unwrap();
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
        assert!(AuditLog::open(&data, None, 0).is_err());
        AuditLog::open(&data, Some(key(7)), 0).unwrap();
    }

    #[test]
    fn a_partial_last_record_is_cut_at_start_never_joined_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::create(dir.path()).unwrap();
        let log = AuditLog::open(&data, Some(key(1)), 0).unwrap();
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

            let log = AuditLog::open(&data, Some(key(1)), 0).unwrap();
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

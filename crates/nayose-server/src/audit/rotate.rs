//! Rotation of `audit/audit.log`: the file is closed as a segment and a new one continues the
//! chain, so no file grows without bound and old segments can be archived.
//!
//! Steps (under the writer's mutex, so no record is appended in between):
//! 1. `audit.log` is cut to its whole records (a failed append left none beyond them) and
//!    renamed to `audit.<seq of its first record, 20 digits>.log` (never over an existing file),
//!    and the directory is synced;
//! 2. a new `audit.log` is created and gets, as its first record, a `rotated` record (`seq` =
//!    the closed segment's last + 1, `prev` = its last record's link, `key_id` and the HMAC
//!    link as for every record), written and synced like any record; then the head.
//!
//! So the chain, the `seq` numbers and the audit key continue across files; nothing is copied,
//! so no record is ever written twice. A crash after step 1 leaves the closed segment and no
//! `audit.log` (or an empty one, or one with an incomplete record): [`AuditLog::open`] then
//! walks the last segment against the head file, cuts the incomplete record and writes the
//! `rotated` record, completing the rotation. A crash after the `rotated` record and before
//! the head leaves one record after the head, which the open anchors as after any append.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::key::AuditKey;
use super::log::{AuditLog, Writer};
use super::record::{AuditEntry, ROTATED_EVENT};
use super::scan::broken;
use super::segment::{LIVE_NAME, segment_name};
use crate::error::ServerError;
use crate::fsutil::{FILE_MODE, fsync_dir};
use crate::layout::DataDir;

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRotation {
    /// The segment file `audit.log` became.
    pub segment: PathBuf,
    /// Its first record.
    pub first: u64,
    /// Its last record; the new `audit.log` starts at the next one, a `rotated` record.
    pub last: u64,
}

impl std::fmt::Display for AuditRotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "closed {} (records {}..{}); {LIVE_NAME} continues the chain at record {} (a \
             `{ROTATED_EVENT}` record linked to record {})",
            self.segment.display(),
            self.first,
            self.last,
            self.last + 1,
            self.last
        )
    }
}

impl AuditLog {
    /// Rotates now (`audit rotate`); `None` if `audit.log` holds no record.
    pub(crate) fn rotate(&self, time: String) -> Result<Option<AuditRotation>, ServerError> {
        let mut w = self.w.lock().unwrap_or_else(|p| p.into_inner());
        self.rotate_locked(&mut w, time)
    }

    /// The rotation's steps (module docs); `time` is the `rotated` record's.
    pub(super) fn rotate_locked(
        &self,
        w: &mut Writer,
        time: String,
    ) -> Result<Option<AuditRotation>, ServerError> {
        if w.closed.is_some() {
            // The previous rotation's new file has no record yet: finish that one first.
            self.start_segment(w, time)?;
            return Ok(None);
        }
        if w.count < w.live_first {
            return Ok(None);
        }
        let (first, last) = (w.live_first, w.count);
        if let Some(file) = &w.file {
            let actual = file
                .metadata()
                .map_err(ServerError::io("cannot stat", &self.log))?
                .len();
            if actual != w.len {
                file.set_len(w.len)
                    .and_then(|()| file.sync_all())
                    .map_err(ServerError::io("cannot truncate", &self.log))?;
            }
        }
        let segment = self.dir.join(segment_name(first));
        match std::fs::symlink_metadata(&segment) {
            Ok(_) => {
                return Err(broken(
                    &segment,
                    format!(
                        "it exists already, so {LIVE_NAME} (records {first}..{last}) cannot be \
                         closed under its name (a segment copied back into audit/?); move it \
                         away, and the next rotation closes {LIVE_NAME}"
                    ),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ServerError::io("cannot stat", &segment)(e)),
        }
        std::fs::rename(&self.log, &segment)
            .map_err(ServerError::io("cannot rename", &self.log))?;
        w.file = None;
        w.closed = Some(first);
        fsync_dir(&self.dir)?;
        self.start_segment(w, time)?;
        tracing::info!(
            segment = %segment.display(),
            first,
            last,
            "audit log rotated: {LIVE_NAME} closed as a segment, the chain continues in a new \
             {LIVE_NAME}"
        );
        Ok(Some(AuditRotation {
            segment,
            first,
            last,
        }))
    }

    /// Step 2: a new `audit.log` (unless it is open already, empty) and its `rotated` record.
    pub(super) fn start_segment(&self, w: &mut Writer, time: String) -> Result<(), ServerError> {
        let Some(closed) = w.closed else {
            return Err(ServerError::Internal(
                "an audit segment start without a closed segment".into(),
            ));
        };
        if w.file.is_none() {
            let file = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(FILE_MODE)
                .open(&self.log)
                .map_err(ServerError::io("cannot create", &self.log))?;
            // The file was created after the rename, by this writer: whatever an earlier
            // attempt left in it is not a record.
            file.set_len(0)
                .map_err(ServerError::io("cannot truncate", &self.log))?;
            fsync_dir(&self.dir)?;
            w.file = Some(file);
            w.len = 0;
        }
        w.live_first = w.count + 1;
        let rec = AuditEntry {
            time,
            event: ROTATED_EVENT.into(),
            outcome: "ok".into(),
            detail: format!(
                "segment start: records {closed}..{} are in {}",
                w.count,
                segment_name(closed)
            ),
            ..AuditEntry::default()
        };
        self.write_record(w, rec)?;
        w.closed = None;
        Ok(())
    }
}

/// `nayose server audit rotate`: closes `audit.log` as a segment now (see the module docs).
/// Takes the serve lock, so it fails while a server runs on the data directory (a running
/// server rotates by itself at `audit_rotate_bytes`). Opening the log verifies `audit.log` and
/// repairs what a crash left, as a server start does; a keyed log needs its `key`. `None`:
/// `audit.log` holds no record, so nothing was rotated.
pub fn rotate_audit(
    data_dir: &Path,
    key: Option<AuditKey>,
    time: String,
) -> Result<Option<AuditRotation>, ServerError> {
    let data = DataDir::new(data_dir);
    if !data.audit_dir().is_dir() {
        return Ok(None);
    }
    let _serving = crate::safety::lock_serve(&data, false).map_err(|e| match e {
        ServerError::ServeLocked { path } => ServerError::AuditRotateServing { path },
        other => other,
    })?;
    let log = AuditLog::open(&data, key, 0)?;
    log.rotate(time)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::audit::record::AuditRecord;
    use crate::audit::segment::list_segments;
    use crate::audit::{AuditAnchor, GENESIS_HASH, VerifyOptions, verify_audit_opts};
    use std::fs;

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

    /// Every record of every file of `dir`'s log, in chain order (segments, then audit.log).
    fn all_records(data: &DataDir) -> Vec<(PathBuf, AuditRecord)> {
        let mut files: Vec<PathBuf> = list_segments(&data.audit_dir())
            .unwrap()
            .into_iter()
            .map(|s| s.path)
            .collect();
        files.push(data.audit_log());
        let mut out = Vec::new();
        for f in files {
            for line in fs::read_to_string(&f).unwrap_or_default().lines() {
                out.push((f.clone(), serde_json::from_str(line).unwrap()));
            }
        }
        out
    }

    /// A keyed (or unkeyed) log of `n` appended records rotated by size every few records.
    fn rotated_log(dir: &Path, k: Option<u8>, n: usize) -> DataDir {
        let data = DataDir::create(dir).unwrap();
        let log = AuditLog::open(&data, k.map(key), 700).unwrap();
        for i in 0..n {
            log.append(entry(&format!("c{i}"))).unwrap();
        }
        data
    }

    fn opts(k: Option<&AuditKey>) -> VerifyOptions<'_> {
        VerifyOptions {
            key: k,
            ..VerifyOptions::default()
        }
    }

    #[test]
    fn rotation_by_size_continues_seq_links_and_key_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let data = rotated_log(dir.path(), Some(3), 30);
        let segments = list_segments(&data.audit_dir()).unwrap();
        assert!(segments.len() >= 5, "{segments:?}");
        let recs = all_records(&data);
        // One chain: seq 1.., each `prev` the previous record's HMAC link, one key throughout.
        let k = key(3);
        let mut prev = GENESIS_HASH.to_string();
        let mut file_starts = 0;
        for (i, (file, r)) in recs.iter().enumerate() {
            assert_eq!(r.seq, i as u64 + 1);
            assert_eq!(r.prev, prev, "record {}", r.seq);
            assert_eq!(r.key_id, k.id());
            let starts_file = i == 0 || recs[i - 1].0 != *file;
            if starts_file && r.seq > 1 {
                file_starts += 1;
                assert_eq!(r.event, ROTATED_EVENT, "{r:?}");
                let closed = &recs[i - 1].0;
                assert!(
                    r.detail
                        .contains(&closed.file_name().unwrap().to_string_lossy().to_string())
                );
            } else {
                assert_ne!(r.event, ROTATED_EVENT, "{r:?}");
            }
            if *file != data.audit_log() {
                assert!(fs::metadata(file).unwrap().len() >= 700 || starts_file);
            }
            let line = serde_json::to_vec(r).unwrap();
            prev = k.link(&line);
        }
        assert_eq!(file_starts, segments.len());
        // 30 requests and one `rotated` record per segment closed.
        assert_eq!(recs.len(), 30 + segments.len());
        let s = verify_audit_opts(dir.path(), &opts(Some(&k))).unwrap();
        assert_eq!(
            (s.records, s.first_verified, s.segments, s.anchored),
            (
                recs.len() as u64,
                1,
                segments.len() as u64,
                recs.len() as u64
            )
        );
        assert_eq!(s.last_hash, prev);
        let text = s.to_string();
        assert!(
            text.contains(&format!("{} records, chain intact", recs.len())),
            "{text}"
        );
        assert!(
            text.contains(&format!("{} closed segment(s)", segments.len())),
            "{text}"
        );
        assert!(verify_audit_opts(dir.path(), &opts(None)).is_err());
        assert!(verify_audit_opts(dir.path(), &opts(Some(&key(4)))).is_err());
        // A restart continues the live file; a segment's bytes never change afterwards.
        let before: Vec<Vec<u8>> = segments
            .iter()
            .map(|s| fs::read(&s.path).unwrap())
            .collect();
        let log = AuditLog::open(&data, Some(key(3)), 700).unwrap();
        assert_eq!(log.head().count, recs.len() as u64);
        log.append(entry("after")).unwrap();
        for (s, b) in segments.iter().zip(&before) {
            assert_eq!(&fs::read(&s.path).unwrap(), b);
        }
        verify_audit_opts(dir.path(), &opts(Some(&k))).unwrap();
    }

    /// Copies `from`'s audit directory to a fresh data directory under `to`.
    fn copy(from: &DataDir, to: &Path) -> DataDir {
        let d = DataDir::create(to).unwrap();
        fs::create_dir_all(d.audit_dir()).unwrap();
        for e in fs::read_dir(from.audit_dir()).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), d.audit_dir().join(e.file_name())).unwrap();
        }
        d
    }

    fn err(d: &DataDir, o: &VerifyOptions<'_>) -> String {
        verify_audit_opts(d.root(), o).unwrap_err().to_string()
    }

    #[test]
    fn edited_removed_copied_and_reordered_segments_are_detected() {
        let tmp = tempfile::tempdir().unwrap();
        let data = rotated_log(&tmp.path().join("orig"), None, 30);
        let segs = list_segments(&data.audit_dir()).unwrap();
        let name = |i: usize| segs[i].path.file_name().unwrap().to_owned();
        let o = VerifyOptions::default();
        verify_audit_opts(data.root(), &o).unwrap();

        // A record edited inside a segment: the next record's link fails.
        let d = copy(&data, &tmp.path().join("edited"));
        let p = d.audit_dir().join(name(1));
        let text = fs::read_to_string(&p).unwrap();
        let edited = text.replacen("\"client\":\"c", "\"client\":\"x", 1);
        assert_ne!(edited, text);
        fs::write(&p, edited).unwrap();
        let e = err(&d, &o);
        assert!(e.contains("was modified or removed"), "{e}");

        // A segment in the middle removed: a gap.
        let d = copy(&data, &tmp.path().join("removed"));
        fs::remove_file(d.audit_dir().join(name(2))).unwrap();
        let e = err(&d, &o);
        assert!(e.contains("are missing (a segment was removed)"), "{e}");

        // Two segments swapped (each under the other's name): names and order no longer agree.
        let d = copy(&data, &tmp.path().join("swapped"));
        let (a, b) = (d.audit_dir().join(name(1)), d.audit_dir().join(name(2)));
        fs::rename(&a, d.audit_dir().join("x")).unwrap();
        fs::rename(&b, &a).unwrap();
        fs::rename(d.audit_dir().join("x"), &b).unwrap();
        let e = err(&d, &o);
        assert!(e.contains("missing") || e.contains("renamed"), "{e}");

        // A segment copied under a later name: an overlap.
        let d = copy(&data, &tmp.path().join("copied"));
        let last = segs.last().unwrap().first;
        let live_first = all_records(&data)
            .iter()
            .find(|(f, _)| *f == data.audit_log())
            .unwrap()
            .1
            .seq;
        fs::copy(
            d.audit_dir().join(name(0)),
            d.audit_dir().join(segment_name(live_first + 100)),
        )
        .unwrap();
        assert!(last < live_first);
        let e = err(&d, &o);
        assert!(e.contains("renamed") || e.contains("overlap"), "{e}");

        // A segment cut at its end, or appended to: not closed whole.
        let d = copy(&data, &tmp.path().join("cut"));
        let p = d.audit_dir().join(name(1));
        let mut bytes = fs::read(&p).unwrap();
        bytes.truncate(bytes.len() - 5);
        fs::write(&p, &bytes).unwrap();
        let e = err(&d, &o);
        assert!(e.contains("incomplete record"), "{e}");

        // audit.log removed, the head rewritten to the last segment's end: the `rotated` record
        // is gone, the rest looks like an interrupted rotation; with the head kept, truncation.
        let d = copy(&data, &tmp.path().join("live-removed"));
        fs::remove_file(d.audit_log()).unwrap();
        let e = err(&d, &o);
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn archived_segments_are_reported_not_checked_and_verified_with_the_archive() {
        let tmp = tempfile::tempdir().unwrap();
        let data = rotated_log(&tmp.path().join("orig"), Some(5), 30);
        let k = key(5);
        let segs = list_segments(&data.audit_dir()).unwrap();
        let total = verify_audit_opts(data.root(), &opts(Some(&k))).unwrap();
        let start = segs[2].first;
        // Anchors at records 3 (archived), start - 1 and the end.
        let recs = all_records(&data);
        let link = |seq: u64| -> String {
            if seq == total.records {
                return total.last_hash.clone();
            }
            recs[seq as usize].1.prev.clone()
        };
        let anchors = tmp.path().join("anchors.jsonl");
        for seq in [3, start - 1, total.records] {
            crate::audit::append_anchor(
                &anchors,
                &AuditAnchor {
                    time: "t".into(),
                    seq,
                    link: link(seq),
                    key_id: k.id().into(),
                },
            )
            .unwrap();
        }

        // The two oldest segments moved to an archive.
        let archive = tmp.path().join("archive");
        fs::create_dir(&archive).unwrap();
        for s in &segs[..2] {
            fs::rename(&s.path, archive.join(s.path.file_name().unwrap())).unwrap();
        }
        let o = VerifyOptions {
            key: Some(&k),
            anchors: Some(&anchors),
            archive: None,
        };
        let s = verify_audit_opts(data.root(), &o).unwrap();
        assert_eq!((s.first_verified, s.records), (start, total.records));
        assert_eq!((s.anchors_checked, s.anchors_unchecked), (2, 1));
        let text = s.to_string();
        assert!(
            text.contains(&format!("audit log OK from record {start}"))
                && text.contains(&format!(
                    "records 1..{} are in segments that are not here",
                    start - 1
                ))
                && text.contains("1 NOT CHECKED"),
            "{text}"
        );
        // With the archive: the whole chain again.
        let with = VerifyOptions {
            archive: Some(&archive),
            ..o
        };
        let s = verify_audit_opts(data.root(), &with).unwrap();
        assert_eq!((s.first_verified, s.archived_segments), (1, 2));
        assert_eq!((s.anchors_checked, s.anchors_unchecked), (3, 0));
        // An archived copy that differs from the one still in audit/ is refused.
        let third = segs[2].path.file_name().unwrap();
        let mut changed = fs::read(&segs[2].path).unwrap();
        changed[10] ^= 1;
        fs::write(archive.join(third), &changed).unwrap();
        let e = verify_audit_opts(data.root(), &with)
            .unwrap_err()
            .to_string();
        assert!(e.contains("different bytes"), "{e}");
        fs::remove_file(archive.join(third)).unwrap();

        // The oldest present segment must start with its `rotated` record: cutting records off
        // its start is detected, and without the key its record cannot be forged.
        let first = &segs[2].path;
        let orig = fs::read_to_string(first).unwrap();
        let rest: String = orig.lines().skip(1).map(|l| format!("{l}\n")).collect();
        fs::rename(first, data.audit_dir().join(segment_name(start + 1))).unwrap();
        fs::write(data.audit_dir().join(segment_name(start + 1)), &rest).unwrap();
        let e = err(&data, &o);
        assert!(e.contains("does not start a segment"), "{e}");
        fs::remove_file(data.audit_dir().join(segment_name(start + 1))).unwrap();
        let mut r: AuditRecord = serde_json::from_str(orig.lines().next().unwrap()).unwrap();
        r.prev = "ab".repeat(32);
        let forged = format!("{}\n{rest}", serde_json::to_string(&r).unwrap());
        fs::write(first, forged).unwrap();
        let e = err(&data, &opts(Some(&k)));
        assert!(
            e.contains(&format!("record {}: its prev hash", start + 1)),
            "{e}"
        );
        // ... and an anchor of the record before the start checks its link.
        fs::write(first, &orig).unwrap();
        verify_audit_opts(data.root(), &o).unwrap();
        let bad = tmp.path().join("bad-anchor.jsonl");
        crate::audit::append_anchor(
            &bad,
            &AuditAnchor {
                time: "t".into(),
                seq: start - 1,
                link: "cd".repeat(32),
                key_id: k.id().into(),
            },
        )
        .unwrap();
        let e = err(
            &data,
            &VerifyOptions {
                anchors: Some(&bad),
                ..o
            },
        );
        assert!(
            e.contains(&format!("record {} does not match the anchor", start - 1)),
            "{e}"
        );
        // A head older than the oldest segment present was replaced.
        crate::audit::write_head(&data.audit_head(), start - 2, &"00".repeat(32)).unwrap();
        let e = err(&data, &opts(Some(&k)));
        assert!(e.contains("older than the log"), "{e}");
    }

    /// Snapshot of a data directory's audit files (names and bytes).
    fn snapshot(d: &DataDir) -> Vec<(std::ffi::OsString, Vec<u8>)> {
        let mut v: Vec<_> = fs::read_dir(d.audit_dir())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name(), fs::read(e.path()).unwrap())
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_crash_at_every_step_of_a_rotation_is_completed_and_loses_or_repeats_no_record() {
        let tmp = tempfile::tempdir().unwrap();
        let k = key(9);
        let base = DataDir::create(&tmp.path().join("base")).unwrap();
        let log = AuditLog::open(&base, Some(key(9)), 0).unwrap();
        for i in 0..10 {
            log.append(entry(&format!("c{i}"))).unwrap();
        }
        drop(log);
        let head_before = fs::read(base.audit_head()).unwrap();
        // The complete rotation, for the bytes of its `rotated` record.
        let real = copy(&base, &tmp.path().join("real"));
        let r = AuditLog::open(&real, Some(key(9)), 0)
            .unwrap()
            .rotate("2026-01-02T00:00:00Z".into())
            .unwrap()
            .unwrap();
        assert_eq!((r.first, r.last), (1, 10));
        let rotated_line = fs::read(real.audit_log()).unwrap();

        type Step = fn(&DataDir, &[u8], &[u8]);
        let steps: [(&str, Step); 4] = [
            ("renamed", |d, _, _| {
                fs::rename(d.audit_log(), d.audit_dir().join(segment_name(1))).unwrap();
            }),
            ("created", |d, _, _| {
                fs::rename(d.audit_log(), d.audit_dir().join(segment_name(1))).unwrap();
                fs::write(d.audit_log(), b"").unwrap();
            }),
            ("torn", |d, line, _| {
                fs::rename(d.audit_log(), d.audit_dir().join(segment_name(1))).unwrap();
                fs::write(d.audit_log(), &line[..40]).unwrap();
            }),
            ("unanchored", |d, line, head| {
                fs::rename(d.audit_log(), d.audit_dir().join(segment_name(1))).unwrap();
                fs::write(d.audit_log(), line).unwrap();
                fs::write(d.audit_head(), head).unwrap();
            }),
        ];
        for (name, step) in steps {
            let d = copy(&base, &tmp.path().join(name));
            step(&d, &rotated_line, &head_before);
            // What the crash left verifies, with a note.
            let s = verify_audit_opts(d.root(), &opts(Some(&k))).unwrap();
            let text = s.to_string();
            match name {
                "unanchored" => {
                    assert_eq!((s.records, s.anchored), (11, 10), "{name}");
                    assert!(text.contains("after the head file"), "{text}");
                }
                _ => {
                    assert!(s.rotation_pending && s.records == 10, "{name}: {s:?}");
                    assert!(text.contains("rotation was interrupted"), "{text}");
                    assert_eq!(s.torn_tail, name == "torn");
                }
            }
            // The server's open completes it; the next record follows.
            let log = AuditLog::open(&d, Some(key(9)), 0).unwrap();
            assert_eq!(log.head().count, 11, "{name}");
            log.append(entry("next")).unwrap();
            drop(log);
            let s = verify_audit_opts(d.root(), &opts(Some(&k))).unwrap();
            assert!(
                (s.records, s.anchored, s.segments) == (12, 12, 1)
                    && !s.rotation_pending
                    && !s.torn_tail,
                "{name}: {s:?}"
            );
            let recs = all_records(&d);
            let seqs: Vec<u64> = recs.iter().map(|(_, r)| r.seq).collect();
            assert_eq!(seqs, (1..=12).collect::<Vec<u64>>(), "{name}");
            assert_eq!(recs[10].1.event, ROTATED_EVENT, "{name}");
            assert_eq!(recs[10].0, d.audit_log(), "{name}");
            assert_eq!(recs[11].1.client, "next", "{name}");
        }
    }

    #[test]
    fn audit_rotate_refuses_beside_a_running_server_and_rotates_otherwise() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::create(tmp.path()).unwrap();
        let log = AuditLog::open(&data, Some(key(2)), 0).unwrap();
        for i in 0..5 {
            log.append(entry(&format!("c{i}"))).unwrap();
        }
        drop(log);
        let serving = crate::safety::lock_serve(&data, false).unwrap();
        let before = snapshot(&data);
        let e = rotate_audit(tmp.path(), Some(key(2)), "t".into())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("serve.lock") && e.contains("audit_rotate_bytes"),
            "{e}"
        );
        assert_eq!(snapshot(&data), before, "nothing changed");
        drop(serving);
        // A keyed log needs its key.
        assert!(rotate_audit(tmp.path(), None, "t".into()).is_err());
        assert_eq!(snapshot(&data), before, "nothing changed");
        let r = rotate_audit(tmp.path(), Some(key(2)), "t".into())
            .unwrap()
            .unwrap();
        assert_eq!((r.first, r.last), (1, 5));
        assert_eq!(r.segment, data.audit_dir().join(segment_name(1)));
        assert!(r.to_string().contains("records 1..5"), "{r}");
        let s = verify_audit_opts(tmp.path(), &opts(Some(&key(2)))).unwrap();
        assert_eq!((s.records, s.segments), (6, 1));
        let none = tempfile::tempdir().unwrap();
        assert_eq!(rotate_audit(none.path(), None, "t".into()).unwrap(), None);
    }

    /// protocol-spec/flows.md §6.1's example, from a real rotation: the `rotated` record's line,
    /// its HMAC link and the head, byte for byte (the link cross-checked with Python's hmac).
    #[test]
    fn the_rotated_record_is_the_spec_example_byte_for_byte() {
        const LINE: &str = concat!(
            r#"{"seq":1001,"time":"2026-11-29T09:00:00.000Z","event":"rotated","client":"","#,
            r#""cert_sha256":"","peer":"","conn":0,"outcome":"ok","detail":"segment start: "#,
            r#"records 1..1000 are in audit.00000000000000000001.log","key_id":"#,
            r#""2e2a6541cfce1371","prev":"#,
            r#""1111111111111111111111111111111111111111111111111111111111111111"}"#
        );
        const LINK: &str = "42e427464033e2ce888b0ff11ce7ce2ac723465b5c2db38bd9bb7759c9fda14b";
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::create(dir.path()).unwrap();
        let log = AuditLog::open(&data, Some(key(0x2a)), 0).unwrap();
        {
            // The writer as it is after record 1000 of a file that started at record 1.
            let mut w = log.w.lock().unwrap();
            w.count = 1000;
            w.last_hash = "1".repeat(64);
            w.live_first = 1;
        }
        let r = log
            .rotate("2026-11-29T09:00:00.000Z".into())
            .unwrap()
            .unwrap();
        assert_eq!((r.first, r.last), (1, 1000));
        assert_eq!(LINE.len(), 309);
        assert_eq!(
            fs::read_to_string(data.audit_log()).unwrap(),
            format!("{LINE}\n")
        );
        assert_eq!(key(0x2a).id(), "2e2a6541cfce1371");
        assert_eq!(key(0x2a).link(LINE.as_bytes()), LINK);
        assert_eq!(
            fs::read_to_string(data.audit_head()).unwrap(),
            format!(r#"{{"count":1001,"hash":"{LINK}"}}"#)
        );
    }
}

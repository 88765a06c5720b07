//! Local safety of a serving data directory (issue 11 item 4): secret-file permissions, the
//! serve lock, and epochs that only move forward.
//!
//! - **Permissions.** [`check_secret_files`] refuses every secret file of the data directory
//!   that the group or others can read or write, with the same check and message as
//!   `server build` uses for the label master key ([`crate::fsutil::check_owner_only`]): the
//!   label master keys (`label-master.key`, `keyperiods/*/label-master.key`), the person-id
//!   key (`person-id.key`, where the build runs), the VOPRF keys
//!   (`keyperiods/*/oprf.key`), every kept epoch's `table.bin`, `persons.bin` and `index.bin`,
//!   the deltas, and everything in `state/` and `audit/` (quota counters, audit log, head and
//!   anchors). `server serve` runs it before it loads anything, `server check` as part of the
//!   check; the epoch loader checks the files it reads once more when it reads them.
//! - **Serve lock.** [`lock_serve`] takes an exclusive lock on `DATA_DIR/serve.lock` (separate
//!   from `build.lock`: a build runs while the server serves). Two servers on one data
//!   directory would each grant a client its whole quota; the second one fails at start, naming
//!   the lock file. The OS releases the lock when the process exits, even on SIGKILL.
//!   Replicas whose quotas and audit log are in PostgreSQL (`postgres`) take it shared: they
//!   may serve one data directory together, never beside a server with the file state.
//!   `audit rotate` takes it too, so it never renames `audit.log` under a running server.
//! - **Build lock for a key rotation.** [`lock_build_for_key_rotation`]: `rotate-label-key`
//!   takes `DATA_DIR/build.lock` (the lock a build holds) and fails, naming it and changing
//!   nothing, while a build runs. It needs no serve lock: the server never reads
//!   `DATA_DIR/label-master.key` (each key period serves with its own copy).
//! - **Epochs only move forward.** `state/served-epoch` holds the greatest epoch this data
//!   directory has served ([`ServedEpoch`]), written (atomically) before a new epoch is served.
//!   A server does not start on a `current` older than it, and a running server never switches
//!   to an older epoch than the one it serves: it logs an error and keeps serving the newer one
//!   (a rolled-back `current` could otherwise hand clients a table they have already moved past).

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::ServerError;
use crate::fsutil::{FILE_MODE, atomic_write, check_owner_only};
use crate::layout::{
    DataDir, INDEX, KEY_PERIOD_LABEL_MASTER_KEY, OPRF_KEY, PERSONS, TABLE, parse_delta_file_name,
    parse_dir_name,
};

/// The sub-directories of `dir` whose names are 20-digit numbers (epochs, key periods).
fn numbered_dirs(dir: &Path) -> Result<Vec<PathBuf>, ServerError> {
    let mut out = Vec::new();
    for ent in list(dir)? {
        if ent.file_name().to_str().and_then(parse_dir_name).is_some() {
            out.push(ent.path());
        }
    }
    out.sort();
    Ok(out)
}

/// The entries of `dir` (none when it does not exist).
fn list(dir: &Path) -> Result<Vec<fs::DirEntry>, ServerError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ServerError::io("cannot list", dir)(e)),
    };
    rd.map(|e| e.map_err(ServerError::io("cannot list", dir)))
        .collect()
}

/// Checks `path` if it exists.
fn check_if_present(path: &Path) -> Result<bool, ServerError> {
    match fs::symlink_metadata(path) {
        Ok(_) => check_owner_only(path).map(|()| true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(ServerError::io("cannot stat", path)(e)),
    }
}

/// Refuses the first secret file of the data directory that is not owner-only (see the module
/// docs for the list). Returns how many files were checked.
pub(crate) fn check_secret_files(data: &DataDir) -> Result<usize, ServerError> {
    let mut checked = 0;
    let mut check = |p: &Path| -> Result<(), ServerError> {
        checked += usize::from(check_if_present(p)?);
        Ok(())
    };
    check(&data.label_master_key())?;
    check(&data.person_id_key())?;
    for kp in numbered_dirs(&data.key_periods())? {
        check(&kp.join(OPRF_KEY))?;
        check(&kp.join(KEY_PERIOD_LABEL_MASTER_KEY))?;
    }
    for ep in numbered_dirs(&data.epochs())? {
        for f in [TABLE, PERSONS, INDEX] {
            check(&ep.join(f))?;
        }
    }
    for ent in list(&data.deltas())? {
        if ent
            .file_name()
            .to_str()
            .and_then(parse_delta_file_name)
            .is_some()
        {
            check(&ent.path())?;
        }
    }
    for dir in [data.state(), data.audit_dir()] {
        for ent in list(&dir)? {
            let path = ent.path();
            if fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
                check(&path)?;
            }
        }
    }
    Ok(checked)
}

/// Opens (creating it owner-only) the lock file `path` and tries to lock it, shared or
/// exclusive, for up to `patience`; `None`: another process holds it.
pub(crate) fn try_lock_file(
    path: &Path,
    shared: bool,
    patience: Duration,
) -> Result<Option<fs::File>, ServerError> {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
        .map_err(ServerError::io("cannot open", path))?;
    let deadline = Instant::now() + patience;
    loop {
        let locked = if shared {
            file.try_lock_shared()
        } else {
            file.try_lock()
        };
        match locked {
            Ok(()) => return Ok(Some(file)),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(e)) => return Err(ServerError::io("cannot lock", path)(e)),
        }
    }
}

/// Takes the exclusive serve lock (`DATA_DIR/serve.lock`); it is held as long as the returned
/// file is open. Fails at once if another process holds it.
pub(crate) fn lock_serve(data: &DataDir, shared: bool) -> Result<fs::File, ServerError> {
    // Replicas with their state in PostgreSQL share the lock; a server with the file state
    // (quota.json, audit.log) holds it alone, beside no replica.
    let path = data.serve_lock();
    try_lock_file(&path, shared, Duration::ZERO)?.ok_or(ServerError::ServeLocked { path })
}

/// How long a build and `rotate-label-key` wait for a busy build lock: a child process forked by another
/// thread holds a copy of an open lock until it execs (a moment), a build holds it far longer.
pub(crate) const BUILD_LOCK_PATIENCE: Duration = Duration::from_secs(2);

/// Takes the build lock (`DATA_DIR/build.lock`) for `rotate-label-key`, which must not run
/// beside a build: a build reads the label master key when it starts (and copies it into a new
/// key period), or creates it on a first build, so a key replaced meanwhile could leave the
/// data directory's key and the new key period's copy different without the operator knowing
/// which is in force. Fails with [`ServerError::LabelKeyRotationDuringBuild`], naming the lock,
/// while a build holds it (after [`BUILD_LOCK_PATIENCE`]).
pub(crate) fn lock_build_for_key_rotation(data: &DataDir) -> Result<fs::File, ServerError> {
    let path = data.build_lock();
    try_lock_file(&path, false, BUILD_LOCK_PATIENCE)?
        .ok_or(ServerError::LabelKeyRotationDuringBuild { path })
}

/// The greatest epoch this data directory has served (`state/served-epoch`, decimal).
#[derive(Debug)]
pub(crate) struct ServedEpoch {
    path: PathBuf,
    greatest: u32,
}

impl ServedEpoch {
    /// Reads `state/served-epoch` (0 when it does not exist yet).
    pub(crate) fn open(data: &DataDir) -> Result<Self, ServerError> {
        let path = data.served_epoch();
        let greatest = match fs::read_to_string(&path) {
            Ok(s) => s.trim().parse().map_err(|_| ServerError::CorruptState {
                path: path.clone(),
                reason: format!(
                    "it should hold the greatest epoch number served, and holds {:?}",
                    s.chars().take(24).collect::<String>()
                ),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(ServerError::io("cannot read", &path)(e)),
        };
        Ok(ServedEpoch { path, greatest })
    }

    /// The greatest epoch served so far (0: none).
    pub(crate) fn greatest(&self) -> u32 {
        self.greatest
    }

    /// Refuses `epoch` if it is older than an epoch already served.
    pub(crate) fn check(&self, epoch: u32) -> Result<(), ServerError> {
        if epoch < self.greatest {
            return Err(ServerError::EpochRolledBack {
                current: epoch,
                served: self.greatest,
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    /// Records (durably) that `epoch` is about to be served; refuses an older one.
    pub(crate) fn advance(&mut self, epoch: u32) -> Result<(), ServerError> {
        self.check(epoch)?;
        if epoch > self.greatest {
            atomic_write(&self.path, format!("{epoch}\n").as_bytes())?;
            self.greatest = epoch;
        }
        Ok(())
    }
}

/// `nayose server check`: refuses a secret file readable by group or others (anywhere in the
/// data directory, not only the files the current epoch needs) and a `current` older than an
/// epoch already served, then loads and fully checks the current epoch (checksums, digest, key
/// files, tag order, the kept deltas): what a server start would do, without serving.
pub fn check_current_epoch(data_dir: &Path) -> Result<crate::EpochSummary, ServerError> {
    let data = DataDir::new(data_dir);
    check_secret_files(&data)?;
    let summary = crate::epoch::check_current_epoch(data_dir)?;
    ServedEpoch::open(&data)?.check(summary.number)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn served_epoch_only_moves_forward_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::create(dir.path()).unwrap();
        crate::fsutil::create_dir_private(&data.state()).unwrap();
        let mut s = ServedEpoch::open(&data).unwrap();
        assert_eq!(s.greatest(), 0);
        s.advance(3).unwrap();
        s.advance(5).unwrap();
        s.advance(5).unwrap();
        let e = s.advance(4).unwrap_err().to_string();
        assert!(e.contains("epoch 4") && e.contains("epoch 5"), "{e}");
        let s = ServedEpoch::open(&data).unwrap();
        assert_eq!(s.greatest(), 5);
        assert!(s.check(4).is_err() && s.check(5).is_ok() && s.check(6).is_ok());
        let mode = fs::metadata(data.served_epoch())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::write(data.served_epoch(), "five\n").unwrap();
        let e = ServedEpoch::open(&data).unwrap_err().to_string();
        assert!(e.contains("served-epoch"), "{e}");
    }

    #[test]
    fn a_second_serve_lock_fails_and_the_first_is_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::create(dir.path()).unwrap();
        let first = lock_serve(&data, false).unwrap();
        let e = lock_serve(&data, false).unwrap_err().to_string();
        assert!(e.contains("serve.lock"), "{e}");
        assert!(
            lock_serve(&data, true).is_err(),
            "no replica beside a file-state server"
        );
        drop(first);
        // Replicas with their state in PostgreSQL share it, and keep a file-state server out.
        let a = lock_serve(&data, true).unwrap();
        let b = lock_serve(&data, true).unwrap();
        assert!(lock_serve(&data, false).is_err());
        drop((a, b));
        lock_serve(&data, false).unwrap();
    }
}

//! Crash-safe file primitives: atomic replacement, directory sync, owner-only files.
//!
//! Invariants:
//! - [`atomic_write`] never leaves a half-written file under the final name: it writes a
//!   uniquely named temporary file in the same directory, fsyncs it, renames it over the target
//!   and fsyncs the directory, so after a crash the target holds either the old or the new bytes.
//! - Files and directories the server creates are owner-only (0600 / 0700) from creation on
//!   (they are opened with that mode, never chmod-ed afterwards).
//! - [`check_owner_only`] refuses a secret file that the group or others can read or write.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::ServerError;

/// Mode of every file the server creates.
pub(crate) const FILE_MODE: u32 = 0o600;
/// Mode of every directory the server creates.
pub(crate) const DIR_MODE: u32 = 0o700;

/// Creates `dir` and its missing parents with mode 0700 (existing directories are kept as they
/// are).
pub(crate) fn create_dir_private(dir: &Path) -> Result<(), ServerError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(ServerError::io("cannot create directory", dir))
}

/// Fsyncs a directory, making renames and file creations inside it durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), ServerError> {
    let d = File::open(dir).map_err(ServerError::io("cannot open directory", dir))?;
    d.sync_all()
        .map_err(ServerError::io("cannot fsync directory", dir))
}

/// Creates a new file (failing if it exists) with mode 0600, for writing.
pub(crate) fn create_new_private(path: &Path) -> Result<File, ServerError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(ServerError::io("cannot create", path))
}

/// A temporary name next to `path`: `.<name>.tmp-<pid>-<random>`.
pub(crate) fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tag: u64 = rand::random();
    path.with_file_name(format!(".{name}.tmp-{}-{tag:016x}", std::process::id()))
}

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Replaces `path` with `bytes` atomically and durably (temp file, fsync, rename, fsync dir).
/// The file gets mode 0600.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), ServerError> {
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut f = create_new_private(&tmp)?;
        f.write_all(bytes)
            .map_err(ServerError::io("cannot write", &tmp))?;
        f.sync_all()
            .map_err(ServerError::io("cannot fsync", &tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(ServerError::io("cannot rename into place", path))?;
        fsync_dir(&parent_of(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// How old a temporary file of a live process must be to count as abandoned anyway (an
/// [`atomic_write`] lasts milliseconds; the writer's pid may have been reused).
pub(crate) const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// The writer's pid of a [`temp_sibling`] name (`.<name>.tmp-<pid>-<random>`), if it is one.
fn temp_file_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let (_, tail) = rest.rsplit_once(".tmp-")?;
    let (pid, random) = tail.split_once('-')?;
    if random.is_empty() || !random.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` is gone (Linux `/proc`; `false` where `/proc` cannot tell).
fn process_gone(pid: u32) -> bool {
    Path::new("/proc/self").exists() && !Path::new("/proc").join(pid.to_string()).exists()
}

/// Removes the temporary files [`atomic_write`] left in `dir` when its process died before the
/// rename (they may hold secrets: keys, label keys): a `.<name>.tmp-<pid>-<random>` file
/// whose writer process is gone or that is older than [`STALE_TEMP_AGE`]. A temporary file of
/// a live process (a server writing its quota state right now) is left alone. Returns the
/// removed paths; a missing `dir` is nothing to do.
pub(crate) fn remove_stale_temp_files(dir: &Path) -> Result<Vec<PathBuf>, ServerError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ServerError::io("cannot list", dir)(e)),
    };
    let mut removed = Vec::new();
    for ent in rd {
        let ent = ent.map_err(ServerError::io("cannot list", dir))?;
        let Some(pid) = ent.file_name().to_str().and_then(temp_file_pid) else {
            continue;
        };
        let path = ent.path();
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ServerError::io("cannot stat", &path)(e)),
        };
        if !meta.is_file() {
            continue;
        }
        let old = meta
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= STALE_TEMP_AGE);
        if old || (pid != std::process::id() && process_gone(pid)) {
            match fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ServerError::io("cannot remove", &path)(e)),
            }
        }
    }
    if !removed.is_empty() {
        fsync_dir(dir)?;
    }
    Ok(removed)
}

/// Refuses `path` if its group or other permission bits are set (a secret file must be
/// owner-only), with an error naming the `chmod` that fixes it.
pub(crate) fn check_owner_only(path: &Path) -> Result<(), ServerError> {
    let meta = fs::metadata(path).map_err(ServerError::io("cannot stat", path))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(ServerError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Reads a secret file after checking that it is owner-only.
pub(crate) fn read_secret(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, ServerError> {
    check_owner_only(path)?;
    fs::read(path)
        .map(zeroize::Zeroizing::new)
        .map_err(ServerError::io("cannot read", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        check_owner_only(&p).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temp left");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let e = check_owner_only(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 600") && e.contains("0644"), "{e}");
    }

    #[test]
    fn stale_temp_files_are_removed_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // pid_max is at most 2^22 on Linux: this writer is certainly gone.
        let dead = d.join(".delta.bin.tmp-4294967-00000000deadbeef");
        let fresh_own = temp_sibling(&d.join("quota.json"));
        let old_own = temp_sibling(&d.join("current"));
        let unrelated = d.join(".hidden");
        let not_temp = d.join("x.tmp-1-zz");
        for p in [&dead, &fresh_own, &old_own, &unrelated, &not_temp] {
            fs::write(p, b"secret").unwrap();
        }
        let old = std::time::SystemTime::now() - STALE_TEMP_AGE - STALE_TEMP_AGE;
        File::options()
            .write(true)
            .open(&old_own)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let mut removed = remove_stale_temp_files(d).unwrap();
        removed.sort();
        let mut expected = vec![dead.clone(), old_own.clone()];
        expected.sort();
        assert_eq!(removed, expected);
        assert!(!dead.exists() && !old_own.exists());
        assert!(fresh_own.exists() && unrelated.exists() && not_temp.exists());
        assert!(
            remove_stale_temp_files(&d.join("missing"))
                .unwrap()
                .is_empty()
        );
        assert_eq!(temp_file_pid(".a.tmp-12-00ff"), Some(12));
        assert_eq!(temp_file_pid("a.tmp-12-00ff"), None);
    }
}

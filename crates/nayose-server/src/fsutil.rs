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
}

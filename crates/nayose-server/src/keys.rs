//! Key files: the label master key K_L, each key period's VOPRF key skS and the person-id key
//! K_P (`crate::person_map`).
//!
//! Both are 32 raw bytes in an owner-only (0600) file, generated from the OS RNG. They are read
//! only after [`crate::fsutil::check_owner_only`] passes, held in zeroizing types, and never
//! formatted: `Debug` of the key types prints nothing secret and no function here logs bytes.
//!
//! skS is generated once per key period (`keyperiods/<n>/oprf.key`), never per epoch.
//! `DATA_DIR/label-master.key` is the K_L the *next* key period will use: a build that starts a
//! key period copies it once into `keyperiods/<n>/label-master.key`, and every epoch of that key
//! period uses that copy (K_L is fixed within a key period, table.md §4). A rotation
//! ([`rotate_label_master_key`]) therefore takes effect with the next new key period; until
//! then a build of the next epoch refuses to run, so the operator cannot believe a rotation is
//! in force when it is not. A rotation holds the build lock (`DATA_DIR/build.lock`), so it never
//! runs beside a build, which reads the key when it starts.

use std::path::{Path, PathBuf};

use nayose_oprf::ServerKey;
use nayose_table::{LABEL_MASTER_KEY_LEN, LabelMasterKey, LabelMasterKeyId};
use rand::TryRngCore;
use rand::rngs::OsRng;
use zeroize::Zeroizing;

use crate::error::ServerError;
use crate::fsutil::{atomic_write, read_secret};
use crate::layout::DataDir;
use crate::person_map::PersonIdKey;

const KEY_LEN: usize = 32;

fn os_random_32() -> Result<Zeroizing<[u8; KEY_LEN]>, ServerError> {
    let mut k = Zeroizing::new([0u8; KEY_LEN]);
    OsRng.try_fill_bytes(k.as_mut()).map_err(|e| {
        ServerError::Internal(format!("the OS random number generator failed: {e}"))
    })?;
    Ok(k)
}

fn read_key_bytes(path: &Path) -> Result<Zeroizing<[u8; KEY_LEN]>, ServerError> {
    let bytes = read_secret(path)?;
    let arr: [u8; KEY_LEN] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| ServerError::BadKeyFile {
            path: path.to_path_buf(),
            reason: format!(
                "it holds {} bytes, a key file holds exactly {KEY_LEN}",
                bytes.len()
            ),
        })?;
    Ok(Zeroizing::new(arr))
}

/// A fresh label master key from the OS RNG.
pub(crate) fn generate_label_master_key() -> Result<LabelMasterKey, ServerError> {
    loop {
        let bytes = os_random_32()?;
        // from_bytes only rejects 32 zero bytes (probability 2^-256).
        if let Ok(k) = LabelMasterKey::from_bytes(&bytes) {
            return Ok(k);
        }
    }
}

/// A fresh VOPRF key from the OS RNG.
pub(crate) fn generate_oprf_key() -> Result<ServerKey, ServerError> {
    let mut rng = OsRng.unwrap_err();
    Ok(ServerKey::generate(&mut rng))
}

/// Reads a label master key file (must be owner-only).
pub(crate) fn read_label_master_key(path: &Path) -> Result<LabelMasterKey, ServerError> {
    let bytes = read_key_bytes(path)?;
    LabelMasterKey::from_bytes(&bytes).map_err(|e| ServerError::BadKeyFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Writes a label master key file atomically (0600).
pub(crate) fn write_label_master_key(path: &Path, key: &LabelMasterKey) -> Result<(), ServerError> {
    let bytes: Zeroizing<[u8; LABEL_MASTER_KEY_LEN]> = key.to_bytes();
    atomic_write(path, bytes.as_ref())
}

/// The data directory's person-id key K_P, if its file exists.
pub(crate) fn read_person_id_key(data: &DataDir) -> Result<Option<PersonIdKey>, ServerError> {
    let path = data.person_id_key();
    match std::fs::symlink_metadata(&path) {
        Ok(_) => Ok(Some(PersonIdKey::from_bytes(&read_key_bytes(&path)?))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ServerError::io("cannot stat", &path)(e)),
    }
}

/// Creates the data directory's person-id key from the OS RNG (the file must not exist).
pub(crate) fn create_person_id_key(data: &DataDir) -> Result<PersonIdKey, ServerError> {
    let bytes = os_random_32()?;
    atomic_write(&data.person_id_key(), bytes.as_ref())?;
    Ok(PersonIdKey::from_bytes(&bytes))
}

/// Reads a key period's VOPRF key file (must be owner-only).
pub(crate) fn read_oprf_key(path: &Path) -> Result<ServerKey, ServerError> {
    let bytes = read_key_bytes(path)?;
    ServerKey::from_bytes(&bytes).map_err(|e| ServerError::BadKeyFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The data directory's label master key, created from the OS RNG if it does not exist yet.
pub(crate) fn load_or_create_label_master_key(
    data: &DataDir,
) -> Result<(LabelMasterKey, bool), ServerError> {
    let path = data.label_master_key();
    match std::fs::symlink_metadata(&path) {
        Ok(_) => Ok((read_label_master_key(&path)?, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = generate_label_master_key()?;
            write_label_master_key(&path, &key)?;
            Ok((key, true))
        }
        Err(e) => Err(ServerError::Io {
            action: "cannot stat",
            path,
            source: e,
        }),
    }
}

/// What [`rotate_label_master_key`] did.
#[derive(Debug, Clone)]
pub struct RotationReport {
    /// The key file that was replaced or created.
    pub path: PathBuf,
    /// Public id of the previous key (`None` if there was none).
    pub old_key_id: Option<LabelMasterKeyId>,
    /// Public id of the new key.
    pub new_key_id: LabelMasterKeyId,
}

impl std::fmt::Display for RotationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.old_key_id {
            Some(old) => writeln!(f, "label master key rotated: {old} -> {}", self.new_key_id)?,
            None => writeln!(f, "label master key created: {}", self.new_key_id)?,
        }
        writeln!(f, "key file: {}", self.path.display())?;
        write!(
            f,
            "the new key takes effect with the next NEW KEY PERIOD (`nayose server build \
             --new-key-period`); until then builds of the current key period are refused. Every \
             client's labels change with the new key period (labels from before and after cannot \
             be compared)"
        )
    }
}

/// Replaces the label master key of `data_dir` with a fresh one from the OS RNG (the explicit
/// operator command; K_L otherwise persists across key periods). The running key period keeps
/// its own copy: the new key is used from the next new key period on (`new_key_period` in
/// [`crate::BuildOptions`]); a build of another epoch of the current key period is refused
/// until then. It takes the build lock first and fails, changing nothing, while a build runs
/// ([`ServerError::LabelKeyRotationDuringBuild`]); a running server is not affected.
pub fn rotate_label_master_key(data_dir: &Path) -> Result<RotationReport, ServerError> {
    let data = DataDir::create(data_dir)?;
    // Held until the new key is in place, so no build starts (or runs) meanwhile.
    let _build = crate::safety::lock_build_for_key_rotation(&data)?;
    let path = data.label_master_key();
    let old_key_id = match std::fs::symlink_metadata(&path) {
        Ok(_) => Some(read_label_master_key(&path)?.key_id()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(ServerError::Io {
                action: "cannot stat",
                path,
                source: e,
            });
        }
    };
    let key = generate_label_master_key()?;
    write_label_master_key(&path, &key)?;
    tracing::info!(old = ?old_key_id.map(|k| k.to_string()), new = %key.key_id(), "label master key rotated");
    Ok(RotationReport {
        path,
        old_key_id,
        new_key_id: key.key_id(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_rotation_fails_while_a_build_holds_the_lock_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::create(dir.path()).unwrap();
        let (first, created) = load_or_create_label_master_key(&data).unwrap();
        assert!(created);
        let key_bytes = std::fs::read(data.label_master_key()).unwrap();
        // A build holds the lock (as `build::files::lock_build` does: an exclusive lock on
        // DATA_DIR/build.lock through another open file).
        let build = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(data.build_lock())
            .unwrap();
        build.try_lock().unwrap();
        let e = rotate_label_master_key(dir.path()).unwrap_err();
        assert!(
            matches!(e, ServerError::LabelKeyRotationDuringBuild { .. }),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains(&data.build_lock().display().to_string()) && msg.contains("not changed"),
            "{msg}"
        );
        assert_eq!(std::fs::read(data.label_master_key()).unwrap(), key_bytes);
        // Released (the build ended): the rotation runs.
        drop(build);
        let r = rotate_label_master_key(dir.path()).unwrap();
        assert_eq!(r.old_key_id, Some(first.key_id()));
        assert_ne!(r.new_key_id, first.key_id());
        assert_ne!(std::fs::read(data.label_master_key()).unwrap(), key_bytes);
    }
}

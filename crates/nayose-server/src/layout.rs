//! The data directory layout (every path the server reads or writes).
//!
//! ```text
//! DATA_DIR/                          0700
//!   label-master.key                 0600  K_L for the NEXT key period to start (a rotation
//!                                          replaces it; the running key period keeps its copy)
//!   person-id.key                    0600  K_P: keys person ids into the person map (never
//!                                          rotated; back it up with the data directory)
//!   current                          0600  name of the current epoch directory + "\n"
//!   last-epoch                       0600  the greatest epoch number ever allocated (decimal)
//!   build.lock                       0600  empty; a running build holds an exclusive lock on it
//!   serve.lock                       0600  empty; a running server holds an exclusive lock on it
//!   keyperiods/                      0700
//!     00000000000000000001/          0700  one key period (written once when it starts)
//!       keyperiod.toml               0600  number, key period id, pkS, K_L id, first epoch
//!       oprf.key                     0600  skS, 32 bytes
//!       label-master.key             0600  the K_L of this key period (fixed for its lifetime)
//!   epochs/                          0700
//!     00000000000000000001/          0700  one published epoch (never modified once renamed)
//!       manifest.toml                0600  format 2: numbers, ids, counts, digest, checksums
//!       table.bin                    0600  header + 56-byte records sorted by tag
//!       persons.bin                  0600  header + (person key, random serial) sorted by key
//!                                          (no person id: crate::person_map)
//!       index.bin                    0600  header + (canonical number, tag) sorted by number
//!     .build-<pid>-<random>/         an unfinished build (ignored; removed by the next build;
//!                                          holds the epoch's delta as `delta.bin` until the
//!                                          epoch directory is renamed into place)
//!   deltas/                          0700
//!     00000000000000000007.bin       0600  the delta of epoch 7 (self-contained: removed tags,
//!                                          upserted tags, label keys and serials)
//!   state/quota.json                 0600  evaluations used per client, per day and key period
//!   state/served-epoch               0600  the greatest epoch ever served (epochs only move forward)
//!   audit/audit.log                  0600  hash-chained JSON lines, one per request (the live
//!                                          file: records from the last rotation on)
//!   audit/audit.<20 digits>.log      0600  a closed segment of the log, named after its first
//!                                          record's seq (written by a rotation, never modified;
//!                                          may be moved away to an archive)
//!   audit/audit.head                 0600  count and hash of the last record
//! ```
//!
//! Invariants: an epoch or key period directory name is exactly 20 decimal digits (its number),
//! so a build in progress (`.build-*`) can never be mistaken for a published one; the label
//! master key is never copied into an epoch directory, only once into its key period's
//! directory when the key period starts.

use std::path::{Path, PathBuf};

use crate::error::ServerError;
use crate::fsutil::create_dir_private;

/// Paths inside one data directory.
#[derive(Debug, Clone)]
pub(crate) struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The layout of `root` (nothing is created).
    pub(crate) fn new(root: &Path) -> Self {
        DataDir {
            root: root.to_path_buf(),
        }
    }

    /// The layout of `root`, creating the directory (0700) if it does not exist.
    pub(crate) fn create(root: &Path) -> Result<Self, ServerError> {
        create_dir_private(root)?;
        Ok(Self::new(root))
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn label_master_key(&self) -> PathBuf {
        self.root.join("label-master.key")
    }

    pub(crate) fn person_id_key(&self) -> PathBuf {
        self.root.join("person-id.key")
    }

    pub(crate) fn current(&self) -> PathBuf {
        self.root.join("current")
    }

    pub(crate) fn epochs(&self) -> PathBuf {
        self.root.join("epochs")
    }

    pub(crate) fn epoch_dir(&self, number: u32) -> PathBuf {
        self.epochs().join(epoch_dir_name(u64::from(number)))
    }

    pub(crate) fn build_lock(&self) -> PathBuf {
        self.root.join("build.lock")
    }

    pub(crate) fn serve_lock(&self) -> PathBuf {
        self.root.join("serve.lock")
    }

    pub(crate) fn served_epoch(&self) -> PathBuf {
        self.state().join("served-epoch")
    }

    pub(crate) fn last_epoch(&self) -> PathBuf {
        self.root.join("last-epoch")
    }

    pub(crate) fn key_periods(&self) -> PathBuf {
        self.root.join("keyperiods")
    }

    pub(crate) fn key_period_dir(&self, number: u64) -> PathBuf {
        self.key_periods().join(epoch_dir_name(number))
    }

    pub(crate) fn deltas(&self) -> PathBuf {
        self.root.join("deltas")
    }

    pub(crate) fn delta_file(&self, epoch: u32) -> PathBuf {
        self.deltas()
            .join(format!("{}.bin", epoch_dir_name(u64::from(epoch))))
    }

    pub(crate) fn state(&self) -> PathBuf {
        self.root.join("state")
    }

    pub(crate) fn quota(&self) -> PathBuf {
        self.state().join("quota.json")
    }

    pub(crate) fn audit_dir(&self) -> PathBuf {
        self.root.join("audit")
    }

    pub(crate) fn audit_log(&self) -> PathBuf {
        self.audit_dir().join("audit.log")
    }

    pub(crate) fn audit_head(&self) -> PathBuf {
        self.audit_dir().join("audit.head")
    }
}

/// Files inside one epoch directory.
pub(crate) const MANIFEST: &str = "manifest.toml";
pub(crate) const TABLE: &str = "table.bin";
pub(crate) const PERSONS: &str = "persons.bin";
pub(crate) const INDEX: &str = "index.bin";
/// The epoch's delta inside an unfinished build directory; moved to `deltas/` (never over an
/// existing file) once the epoch directory is in place.
pub(crate) const BUILD_DELTA: &str = "delta.bin";

/// Files inside one key period directory.
pub(crate) const KEY_PERIOD_META: &str = "keyperiod.toml";
pub(crate) const OPRF_KEY: &str = "oprf.key";
pub(crate) const KEY_PERIOD_LABEL_MASTER_KEY: &str = "label-master.key";

/// The directory name of epoch or key period `number`: 20 decimal digits.
pub(crate) fn epoch_dir_name(number: u64) -> String {
    format!("{number:020}")
}

/// The number of a directory name, if it is a published epoch's (or key period's) name.
pub(crate) fn parse_dir_name(name: &str) -> Option<u64> {
    if name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()) {
        name.parse().ok()
    } else {
        None
    }
}

/// The epoch number of a published epoch directory name (20 digits, a u32 value, not 0).
pub(crate) fn parse_epoch_dir_name(name: &str) -> Option<u32> {
    parse_dir_name(name)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n > 0)
}

/// The epoch of a delta file name (`<20 digits>.bin`).
pub(crate) fn parse_delta_file_name(name: &str) -> Option<u32> {
    name.strip_suffix(".bin").and_then(parse_epoch_dir_name)
}

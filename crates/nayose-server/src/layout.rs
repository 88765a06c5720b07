//! The data directory layout (every path the server reads or writes).
//!
//! ```text
//! DATA_DIR/                          0700
//!   label-master.key                 0600  K_L, 32 bytes (persists across epochs)
//!   current                          0600  name of the current epoch directory + "\n"
//!   epochs/                          0700
//!     00000000000000000001/          0700  one published epoch (never modified once renamed)
//!       manifest.toml                0600  numbers, persons, ids, checksums
//!       oprf.key                     0600  skS, 32 bytes
//!       label-master.key             0600  copy of K_L taken at build time
//!       table.bin                    0600  header + 52-byte records sorted by tag
//!       persons.bin                  0600  header + person ids
//!     .build-<pid>-<random>/         an unfinished build (ignored; removed by the next build)
//!   state/quota.json                 0600  evaluations used per client and quota day
//!   audit/audit.log                  0600  hash-chained JSON lines, one per request
//!   audit/audit.head                 0600  count and hash of the last record
//! ```
//!
//! Invariant: an epoch directory name is exactly 20 decimal digits (its sequence number), so a
//! build in progress (`.build-*`) can never be mistaken for a published epoch.

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

    pub(crate) fn current(&self) -> PathBuf {
        self.root.join("current")
    }

    pub(crate) fn epochs(&self) -> PathBuf {
        self.root.join("epochs")
    }

    pub(crate) fn epoch_dir(&self, number: u64) -> PathBuf {
        self.epochs().join(epoch_dir_name(number))
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
pub(crate) const OPRF_KEY: &str = "oprf.key";
pub(crate) const EPOCH_LABEL_MASTER_KEY: &str = "label-master.key";
pub(crate) const TABLE: &str = "table.bin";
pub(crate) const PERSONS: &str = "persons.bin";

/// The directory name of epoch `number`: 20 decimal digits.
pub(crate) fn epoch_dir_name(number: u64) -> String {
    format!("{number:020}")
}

/// The epoch number of a directory name, if it is a published epoch's name.
pub(crate) fn parse_epoch_dir_name(name: &str) -> Option<u64> {
    if name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()) {
        name.parse().ok()
    } else {
        None
    }
}

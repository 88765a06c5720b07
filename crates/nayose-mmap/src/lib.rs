//! Read-only memory maps of verified files: the one place nayose uses `unsafe`.
//!
//! The server serves an epoch's table (56 bytes per number) from its data directory. Reading it
//! into the heap costs as much memory as the file, twice during an epoch switch; mapping it lets
//! the kernel's page cache hold it instead, shared between the old and the new epoch's files,
//! and the heap stays small (issue 10).
//!
//! [`VerifiedMap::open`] maps a file read-only and verifies its SHA-256 against the value the
//! caller expects (the epoch's manifest) before handing out any byte, so the type can only hold
//! a file that matched its checksum when it was mapped.
//!
//! **Why the one `unsafe` is sound here** ([`map_read_only`]). `memmap2::Mmap::map` is unsafe
//! because Rust assumes the bytes behind a `&[u8]` never change, while another process could
//! modify a mapped file (undefined behaviour) or truncate it (SIGBUS on access). nayose maps
//! only files for which that cannot happen short of an attacker who already controls the
//! server's account: (1) epoch files are written once into a temporary directory, fsynced and
//! renamed into place; nothing in nayose ever opens them for writing again (a new epoch is a
//! new directory; an old one is removed by unlinking, which leaves existing mappings intact);
//! (2) they are owner-only files in the owner-only data directory, checked by the caller before
//! mapping; (3) the content is verified against the manifest's SHA-256 right after mapping,
//! so a file swapped before the map is refused. A party that can rewrite those files as the
//! server's user can also read the OPRF and label keys beside them; that is outside what this
//! map defends.
//!
//! What the map does not do: mapped pages live in the page cache, which cannot be zeroized on
//! drop as heap buffers are. The same bytes are on disk in the same directory, so this adds no
//! copy an attacker could not read from the file.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use sha2::{Digest, Sha256};

/// Why a file could not be mapped.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The file could not be opened, inspected or mapped.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The file's SHA-256 is not the expected one.
    #[error("{path}: SHA-256 does not match the manifest (the file was changed or damaged)")]
    Checksum {
        /// The file.
        path: PathBuf,
    },
}

/// A read-only map of a file whose SHA-256 matched the expected value when it was mapped.
pub struct VerifiedMap {
    map: Option<Mmap>,
    path: PathBuf,
}

impl std::fmt::Debug for VerifiedMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the bytes: the files hold label keys.
        f.debug_struct("VerifiedMap")
            .field("path", &self.path)
            .field("len", &self.bytes().len())
            .finish()
    }
}

impl VerifiedMap {
    /// Maps `path` read-only and checks that its SHA-256 is `expected_sha256`.
    pub fn open(path: &Path, expected_sha256: &[u8; 32]) -> Result<Self, MapError> {
        let io_err = |action: &'static str| {
            move |source: io::Error| MapError::Io {
                action,
                path: path.to_path_buf(),
                source,
            }
        };
        let file = File::open(path).map_err(io_err("cannot open"))?;
        let len = file.metadata().map_err(io_err("cannot inspect"))?.len();
        // A zero-length file cannot be mapped; it has nothing to hold anyway.
        let map = if len == 0 {
            None
        } else {
            Some(map_read_only(&file).map_err(io_err("cannot map"))?)
        };
        let out = VerifiedMap {
            map,
            path: path.to_path_buf(),
        };
        let sum = Sha256::digest(out.bytes());
        if sum.as_slice() != expected_sha256.as_slice() {
            return Err(MapError::Checksum {
                path: path.to_path_buf(),
            });
        }
        Ok(out)
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or_default()
    }

    /// The mapped file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Maps `file` read-only (shared, so pages come from and stay in the page cache).
///
/// The only `unsafe` in nayose: see the module documentation for why it is sound for the files
/// nayose maps, and [`VerifiedMap::open`], the only caller, which verifies the content.
#[allow(unsafe_code)]
fn map_read_only(file: &File) -> io::Result<Mmap> {
    // SAFETY: the files mapped through `VerifiedMap::open` are epoch files, written once and
    // never modified or truncated while published (module documentation, points 1–3); the
    // mapping is read-only, so nothing in this process writes through it either.
    unsafe { Mmap::map(file) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sha(b: &[u8]) -> [u8; 32] {
        Sha256::digest(b).into()
    }

    #[test]
    fn a_file_maps_when_its_checksum_matches_and_is_refused_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("table.bin");
        std::fs::write(&p, b"nayose-table-v2\nrecords").unwrap();
        let m = VerifiedMap::open(&p, &sha(b"nayose-table-v2\nrecords")).unwrap();
        assert_eq!(m.bytes(), b"nayose-table-v2\nrecords");
        assert!(
            !format!("{m:?}").contains("records"),
            "Debug prints no bytes"
        );
        match VerifiedMap::open(&p, &sha(b"something else")) {
            Err(MapError::Checksum { path }) => assert_eq!(path, p),
            other => panic!("expected a checksum error, got {other:?}"),
        }
    }

    #[test]
    fn an_empty_file_and_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty");
        std::fs::write(&p, b"").unwrap();
        assert_eq!(VerifiedMap::open(&p, &sha(b"")).unwrap().bytes(), b"");
        let missing = dir.path().join("missing");
        let e = VerifiedMap::open(&missing, &sha(b""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot open") && e.contains("missing"), "{e}");
    }

    #[test]
    fn a_file_unlinked_after_mapping_stays_readable() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("old-epoch");
        std::fs::write(&p, b"kept").unwrap();
        let m = VerifiedMap::open(&p, &sha(b"kept")).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert_eq!(m.bytes(), b"kept");
    }
}

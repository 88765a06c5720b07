//! The on-disk cache of one epoch's full table, as received by one client from one server.
//!
//! Layout of `<cache_dir>/<server name>/<client id>/<epoch>.table` (all integers LE):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 16 | magic `NAYOSE-TABLE-v1` + `\n` |
//! | 16 | 16 | epoch id |
//! | 32 | 32 | the epoch's VOPRF public key pkS |
//! | 64 | 32 | identity = SHA-512(len ‖ server name ‖ len ‖ client id)\[..32\] (u16 BE lengths) |
//! | 96 | 8 | entry count N |
//! | 104 | 32·N | entries: tag (16) ‖ encrypted label (16), ascending by tag |
//! | 104+32N | 32 | checksum = SHA-512(every preceding byte)\[..32\] |
//!
//! Invariants: labels are encrypted per client and epoch, so a cache file is keyed — by its path
//! and again by its header — by server name, client id, epoch id and public key; a file is used
//! only if its size, header and checksum all match, otherwise it is ignored and replaced. Files
//! are written to a temporary name, fsynced and renamed, so a crash never leaves a file that
//! looks complete; after a new epoch's file is complete, the older epochs' files of the same
//! server and client are deleted (they can never be used again).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use nayose_table::{EncryptedLabel, Tag};
use nayose_wire::{ENTRY_LEN, EpochId, PublicKeyBytes};
use sha2::{Digest, Sha512};

const MAGIC: &[u8; 16] = b"NAYOSE-TABLE-v1\n";
const HEADER_LEN: usize = 104;
const CHECKSUM_LEN: usize = 32;
/// Entries read per block when replaying a cache file.
pub(crate) const READ_BLOCK: usize = 65_536;

/// Whose table a cache file holds.
#[derive(Debug, Clone)]
pub(crate) struct CacheKey {
    pub(crate) server_name: String,
    pub(crate) client_id: String,
    pub(crate) epoch: EpochId,
    pub(crate) public_key: PublicKeyBytes,
}

impl CacheKey {
    fn identity(&self) -> [u8; 32] {
        let mut h = Sha512::new();
        for part in [self.server_name.as_bytes(), self.client_id.as_bytes()] {
            h.update((part.len() as u16).to_be_bytes());
            h.update(part);
        }
        let d = h.finalize();
        let mut out = [0u8; 32];
        out.copy_from_slice(&d[..32]);
        out
    }

    fn header(&self, total: u64) -> [u8; HEADER_LEN] {
        let mut hdr = [0u8; HEADER_LEN];
        hdr[..16].copy_from_slice(MAGIC);
        hdr[16..32].copy_from_slice(self.epoch.as_bytes());
        hdr[32..64].copy_from_slice(self.public_key.as_bytes());
        hdr[64..96].copy_from_slice(&self.identity());
        hdr[96..104].copy_from_slice(&total.to_le_bytes());
        hdr
    }

    /// The directory holding this server's and client's cache files.
    fn dir(&self, root: &Path) -> PathBuf {
        root.join(safe_component(&self.server_name))
            .join(safe_component(&self.client_id))
    }

    fn file_name(&self) -> String {
        format!("{}.table", hex::encode(self.epoch.as_bytes()))
    }

    /// The cache file's path under `root`.
    pub(crate) fn path(&self, root: &Path) -> PathBuf {
        self.dir(root).join(self.file_name())
    }
}

/// A path component from a name: `[A-Za-z0-9._-]` kept, anything else as `%XX`; never `.`/`..`.
fn safe_component(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_') || (b == b'.' && !out.is_empty()) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() { "%".into() } else { out }
}

fn checksum(h: Sha512) -> [u8; CHECKSUM_LEN] {
    let d = h.finalize();
    let mut out = [0u8; CHECKSUM_LEN];
    out.copy_from_slice(&d[..CHECKSUM_LEN]);
    out
}

/// Why a cache file was not used.
#[derive(Debug)]
pub(crate) enum CacheMiss {
    /// No file for this key.
    Absent,
    /// A file exists but is damaged, stale or for another key.
    Invalid(String),
    /// The consumer of the entries failed (e.g. the matcher rejected them).
    Consumer(String),
}

/// Replays the cached table for `key`, if a valid one with `total` entries exists: `consume`
/// gets blocks of entries in file order. The checksum is verified at the end; on
/// [`CacheMiss::Invalid`] the caller must discard whatever `consume` built.
pub(crate) fn replay(
    root: &Path,
    key: &CacheKey,
    total: u64,
    mut consume: impl FnMut(&[(Tag, EncryptedLabel)]) -> Result<(), String>,
) -> Result<(), CacheMiss> {
    let path = key.path(root);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(CacheMiss::Absent),
        Err(e) => return Err(CacheMiss::Invalid(format!("{}: {e}", path.display()))),
    };
    let invalid = |why: &str| CacheMiss::Invalid(format!("{}: {why}", path.display()));
    let expected_len = (total as u128) * ENTRY_LEN as u128 + (HEADER_LEN + CHECKSUM_LEN) as u128;
    let len = file.metadata().map_err(|e| invalid(&e.to_string()))?.len();
    if u128::from(len) != expected_len {
        return Err(invalid("size does not match the epoch's table"));
    }
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut hdr = [0u8; HEADER_LEN];
    r.read_exact(&mut hdr)
        .map_err(|e| invalid(&e.to_string()))?;
    if hdr != key.header(total) {
        return Err(invalid("header is for another server, client or epoch"));
    }
    let mut h = Sha512::new();
    h.update(hdr);
    let mut left = total;
    let mut buf = vec![0u8; READ_BLOCK * ENTRY_LEN];
    let mut entries = Vec::with_capacity(READ_BLOCK);
    while left > 0 {
        let n = left.min(READ_BLOCK as u64) as usize;
        let bytes = &mut buf[..n * ENTRY_LEN];
        r.read_exact(bytes).map_err(|e| invalid(&e.to_string()))?;
        h.update(&*bytes);
        entries.clear();
        entries.extend(bytes.chunks_exact(ENTRY_LEN).map(split_entry));
        consume(&entries).map_err(CacheMiss::Consumer)?;
        left -= n as u64;
    }
    let mut sum = [0u8; CHECKSUM_LEN];
    r.read_exact(&mut sum)
        .map_err(|e| invalid(&e.to_string()))?;
    if sum != checksum(h) {
        return Err(invalid("checksum mismatch (damaged file)"));
    }
    Ok(())
}

fn split_entry(b: &[u8]) -> (Tag, EncryptedLabel) {
    let mut tag = [0u8; 16];
    let mut label = [0u8; 16];
    tag.copy_from_slice(&b[..16]);
    label.copy_from_slice(&b[16..32]);
    (Tag(tag), EncryptedLabel(label))
}

/// Writes a cache file as the table arrives; [`CacheWriter::finish`] publishes it.
pub(crate) struct CacheWriter {
    root: PathBuf,
    key: CacheKey,
    tmp: PathBuf,
    file: Option<BufWriter<File>>,
    hash: Sha512,
    total: u64,
    written: u64,
}

impl CacheWriter {
    /// Starts a cache file for `key` holding `total` entries.
    pub(crate) fn create(root: &Path, key: &CacheKey, total: u64) -> std::io::Result<Self> {
        let dir = key.dir(root);
        std::fs::create_dir_all(&dir)?;
        // The entries are this client's (encrypted) labels: keep them to the owner.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let tmp = dir.join(format!(
            ".{}.{}.partial",
            key.file_name(),
            std::process::id()
        ));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        let mut w = CacheWriter {
            root: root.to_owned(),
            key: key.clone(),
            tmp,
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            hash: Sha512::new(),
            total,
            written: 0,
        };
        let hdr = key.header(total);
        w.write(&hdr)?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hash.update(bytes);
        match self.file.as_mut() {
            Some(f) => f.write_all(bytes),
            None => Err(std::io::Error::other("cache file already finished")),
        }
    }

    /// Appends the next entries (must continue exactly where the last call stopped).
    pub(crate) fn append(&mut self, entries: &[nayose_wire::Entry]) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(entries.len() * ENTRY_LEN);
        for e in entries {
            bytes.extend_from_slice(e.tag.as_bytes());
            bytes.extend_from_slice(e.label.as_bytes());
        }
        self.write(&bytes)?;
        self.written += entries.len() as u64;
        Ok(())
    }

    /// Writes the checksum, fsyncs, renames into place, and deletes the same server's and
    /// client's files of other epochs.
    pub(crate) fn finish(mut self) -> std::io::Result<PathBuf> {
        if self.written != self.total {
            return Err(std::io::Error::other(format!(
                "cache holds {} of {} entries",
                self.written, self.total
            )));
        }
        let sum = checksum(std::mem::take(&mut self.hash));
        let Some(mut f) = self.file.take() else {
            return Err(std::io::Error::other("cache file already finished"));
        };
        f.write_all(&sum)?;
        let file = f.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        let path = self.key.path(&self.root);
        std::fs::rename(&self.tmp, &path)?;
        let keep = self.key.file_name();
        if let Ok(dir) = std::fs::read_dir(self.key.dir(&self.root)) {
            for entry in dir.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.ends_with(".table") && name != keep {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(path)
    }
}

impl Drop for CacheWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use nayose_wire::{EncryptedLabel as WLabel, Entry, Tag as WTag};

    fn key(epoch: u8) -> CacheKey {
        CacheKey {
            server_name: "linkage.example.jp".into(),
            client_id: "hospital-a".into(),
            epoch: EpochId([epoch; 16]),
            public_key: PublicKeyBytes([7; 32]),
        }
    }

    fn entries(n: usize) -> Vec<Entry> {
        (0..n)
            .map(|i| {
                let mut t = [0u8; 16];
                t[..8].copy_from_slice(&(i as u64).to_be_bytes());
                Entry {
                    tag: WTag(t),
                    label: WLabel([i as u8; 16]),
                }
            })
            .collect()
    }

    fn write(root: &Path, k: &CacheKey, e: &[Entry]) -> PathBuf {
        let mut w = CacheWriter::create(root, k, e.len() as u64).unwrap();
        for c in e.chunks(3) {
            w.append(c).unwrap();
        }
        w.finish().unwrap()
    }

    fn read(
        root: &Path,
        k: &CacheKey,
        total: u64,
    ) -> Result<Vec<(Tag, EncryptedLabel)>, CacheMiss> {
        let mut got = Vec::new();
        replay(root, k, total, |b| {
            got.extend_from_slice(b);
            Ok(())
        })?;
        Ok(got)
    }

    #[test]
    fn round_trip_and_keying() {
        let dir = tempfile::tempdir().unwrap();
        let e = entries(10);
        let path = write(dir.path(), &key(1), &e);
        assert!(
            path.ends_with("linkage.example.jp/hospital-a/01010101010101010101010101010101.table")
        );
        let got = read(dir.path(), &key(1), 10).unwrap();
        assert_eq!(got.len(), 10);
        assert_eq!(got[3].0.0, e[3].tag.0);
        assert_eq!(got[3].1.0, e[3].label.0);
        // Another epoch, another client, another total: not used.
        assert!(matches!(
            read(dir.path(), &key(2), 10),
            Err(CacheMiss::Absent)
        ));
        let mut other = key(1);
        other.client_id = "hospital-b".into();
        assert!(matches!(
            read(dir.path(), &other, 10),
            Err(CacheMiss::Absent)
        ));
        assert!(matches!(
            read(dir.path(), &key(1), 9),
            Err(CacheMiss::Invalid(_))
        ));
        // Same path, different public key in the header: not used.
        let mut pk = key(1);
        pk.public_key = PublicKeyBytes([8; 32]);
        assert!(matches!(
            read(dir.path(), &pk, 10),
            Err(CacheMiss::Invalid(_))
        ));
    }

    #[test]
    fn damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &key(1), &entries(5));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER_LEN + 40] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        match read(dir.path(), &key(1), 5) {
            Err(CacheMiss::Invalid(why)) => assert!(why.contains("checksum"), "{why}"),
            other => panic!("{:?}", other.map(|v| v.len())),
        }
    }

    #[test]
    fn unfinished_writer_leaves_nothing_and_new_epoch_evicts_old() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut w = CacheWriter::create(dir.path(), &key(1), 5).unwrap();
            w.append(&entries(2)).unwrap();
        }
        let sub = key(1).dir(dir.path());
        assert_eq!(std::fs::read_dir(&sub).unwrap().count(), 0);
        let mut w = CacheWriter::create(dir.path(), &key(1), 5).unwrap();
        w.append(&entries(2)).unwrap();
        assert!(
            w.finish().is_err(),
            "incomplete table must not be published"
        );
        assert_eq!(std::fs::read_dir(&sub).unwrap().count(), 0);
        write(dir.path(), &key(1), &entries(4));
        write(dir.path(), &key(2), &entries(4));
        let names: Vec<_> = std::fs::read_dir(&sub)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![key(2).file_name()]);
        assert!(read(dir.path(), &key(2), 4).is_ok());
    }

    #[test]
    fn names_are_safe_path_components() {
        assert_eq!(safe_component("a.b-c_9"), "a.b-c_9");
        assert_eq!(safe_component(".."), "%2E.");
        assert_eq!(safe_component("a/b"), "a%2Fb");
        assert_eq!(safe_component(""), "%");
    }
}

//! The client's caches on disk, per (server name, client id, key period): what the link core
//! asks to persist ([`nayose_proto::Action`]) and hands back on the next run.
//!
//! `<cache_dir>/<server name>/<client id>/<key period id hex>/` (directories 0700, files 0600):
//!
//! * `oprf.bin` — OPRF outputs of the numbers evaluated in this key period. Header: magic
//!   `NAYOSE-OPRF-v2\n\0` (16) ‖ key period id (16); then records of 88 bytes:
//!   cache key (16) ‖ o_y (64) ‖ check (8) = SHA-512(key period id ‖ cache key ‖ o_y)\[..8\].
//!   Appended after each verified batch; on load every record is checked and the file is cut
//!   back to its last good record (a crash mid-append loses only that batch).
//! * `table.bin` — the last verified table state, about 11 bytes per entry. Magic
//!   `NAYOSE-STATE-v3\n` (16) ‖ key period id (16) ‖ epoch (u32 LE) ‖ upsert chain (32) ‖ entry
//!   count N (u64 LE) ‖ block count B (u64 LE) ‖ B state blocks (`StateBlock::write_to`:
//!   an entry block and its pad epochs, protocol-spec/table.md §9.5) ‖ checksum =
//!   SHA-512(every preceding byte)\[..32\]. Written to a temporary name, fsynced, renamed.
//!   Every block is decoded on load, and the core checks the table digest against Info.
//! * `base.partial` — an unfinished base download. Magic `NAYOSE-BASE-v3\n\0` (16) ‖ key period
//!   id (16) ‖ epoch (u32 LE) ‖ entry blocks as received (`EntryBlock::write_to`), appended per
//!   chunk; a trailing partial block is cut off on load, and every block is decoded before
//!   use. A damaged partial base is caught by the digest at its end.
//!
//! Invariants: a file is used only if its header names the key period of its directory and its
//! checks pass; otherwise it is deleted and rebuilt. Caches of any other key period are deleted
//! when a run learns the current one (they can never be used again). o_y values are secrets:
//! held in zeroizing buffers, never logged.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use nayose_oprf::Output;
use nayose_proto::{Caches, PartialBase};
use nayose_table::{ClientTable, EntryBlock, KeyPeriodId, StateBlock, UpsertChain};
use sha2::{Digest, Sha512};
use zeroize::Zeroizing;

const OPRF_MAGIC: &[u8; 16] = b"NAYOSE-OPRF-v2\n\0";
const STATE_MAGIC: &[u8; 16] = b"NAYOSE-STATE-v3\n";
const BASE_MAGIC: &[u8; 16] = b"NAYOSE-BASE-v3\n\0";
/// Magic, key period id, epoch, upsert chain, entry count, block count.
const STATE_HEADER: usize = 16 + 16 + 4 + 32 + 8 + 8;
const OPRF_RECORD: usize = 16 + 64 + 8;

/// The cache directory of one server and client, or none (caching disabled).
#[derive(Debug, Clone)]
pub(crate) struct CacheStore {
    dir: Option<PathBuf>,
}

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

fn kp_hex(kp: KeyPeriodId) -> String {
    kp.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn open_private(path: &Path, append: bool) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create(true);
    if append {
        o.append(true);
    } else {
        o.truncate(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let f = o.open(path)?;
    // `mode` applies only to a file this call creates: tighten an existing one too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(f)
}

fn read_secret(path: &Path) -> Option<Zeroizing<Vec<u8>>> {
    let mut f = File::open(path).ok()?;
    let mut buf = Zeroizing::new(Vec::new());
    f.read_to_end(&mut buf).ok()?;
    Some(buf)
}

fn oprf_check(kp: KeyPeriodId, key: &[u8], o: &[u8]) -> [u8; 8] {
    let mut h = Sha512::new();
    h.update(kp.as_bytes());
    h.update(key);
    h.update(o);
    let d = h.finalize();
    let mut c = [0u8; 8];
    c.copy_from_slice(&d[..8]);
    c
}

fn state_checksum(bytes: &[u8]) -> [u8; 32] {
    let d = Sha512::digest(bytes);
    let mut c = [0u8; 32];
    c.copy_from_slice(&d[..32]);
    c
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Decodes `oprf.bin` of `kp`: the outputs of its records up to the first damaged one, and the
/// length of that good prefix; `None` if the header is wrong.
pub(crate) fn decode_oprf(
    kp: KeyPeriodId,
    bytes: &[u8],
) -> Option<(HashMap<[u8; 16], Output>, usize)> {
    if bytes.len() < 32 || &bytes[..16] != OPRF_MAGIC || bytes[16..32] != kp.as_bytes()[..] {
        return None;
    }
    let mut out = HashMap::new();
    let mut good = 32;
    for r in bytes[32..].chunks_exact(OPRF_RECORD) {
        let (key, rest) = r.split_at(16);
        let (o, check) = rest.split_at(64);
        if oprf_check(kp, key, o) != check {
            break;
        }
        let mut k = [0u8; 16];
        k.copy_from_slice(key);
        let mut v = [0u8; 64];
        v.copy_from_slice(o);
        out.insert(k, Output::from_bytes(v));
        v.fill(0);
        good += OPRF_RECORD;
    }
    Some((out, good))
}

/// Appends the records of `entries` to `buf` (after the header of `kp` if `header`).
pub(crate) fn encode_oprf(
    kp: KeyPeriodId,
    header: bool,
    entries: &[([u8; 16], Output)],
    buf: &mut Vec<u8>,
) {
    if header {
        buf.extend_from_slice(OPRF_MAGIC);
        buf.extend_from_slice(kp.as_bytes());
    }
    for (k, o) in entries {
        buf.extend_from_slice(k);
        buf.extend_from_slice(o.as_bytes());
        buf.extend_from_slice(&oprf_check(kp, k, o.as_bytes()));
    }
}

impl CacheStore {
    /// The store under `root` for one server name and entity (`root` = None: no caching). The
    /// entity is the one the server names in Info (the labels' domain), so a certificate moved
    /// to another entity never reads the caches of the first.
    pub(crate) fn new(root: Option<&Path>, server_name: &str, entity: &str) -> Self {
        CacheStore {
            dir: root.map(|r| {
                r.join(safe_component(server_name))
                    .join(safe_component(entity))
            }),
        }
    }

    fn kp_dir(&self, kp: KeyPeriodId) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(kp_hex(kp)))
    }

    /// Loads the caches of `kp` (each checked; a bad file is deleted) and deletes the caches of
    /// every other key period. Returns notes on what was discarded.
    pub(crate) fn load(&self, kp: KeyPeriodId) -> (Caches, Vec<String>) {
        let mut notes = Vec::new();
        let (Some(root), Some(dir)) = (&self.dir, self.kp_dir(kp)) else {
            return (Caches::default(), notes);
        };
        if let Ok(rd) = std::fs::read_dir(root) {
            for e in rd.flatten() {
                if e.path() != dir && e.path().is_dir() {
                    let _ = std::fs::remove_dir_all(e.path());
                    notes.push("deleted the caches of an earlier key period".to_owned());
                }
            }
        }
        // A table being written when an earlier run was killed (personal data: never leave it).
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(".table.bin.") && name.ends_with(".tmp") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let caches = Caches {
            oprf: self.load_oprf(kp, &dir, &mut notes),
            table: self.load_table(kp, &dir, &mut notes),
            partial: self.load_partial(kp, &dir, &mut notes),
        };
        (caches, notes)
    }

    fn load_oprf(
        &self,
        kp: KeyPeriodId,
        dir: &Path,
        notes: &mut Vec<String>,
    ) -> HashMap<[u8; 16], Output> {
        let path = dir.join("oprf.bin");
        let Some(bytes) = read_secret(&path) else {
            return HashMap::new();
        };
        let Some((out, good)) = decode_oprf(kp, &bytes) else {
            let _ = std::fs::remove_file(&path);
            notes.push("the OPRF cache had a wrong header and was deleted".to_owned());
            return HashMap::new();
        };
        if good != bytes.len() {
            // Cut back to the last good record (a crash mid-append, or damage).
            if let Ok(f) = OpenOptions::new().write(true).open(&path) {
                let _ = f.set_len(good as u64);
            }
            notes.push("the OPRF cache ended in a damaged record; it was cut back".to_owned());
        }
        out
    }

    fn load_table(
        &self,
        kp: KeyPeriodId,
        dir: &Path,
        notes: &mut Vec<String>,
    ) -> Option<ClientTable> {
        let path = dir.join("table.bin");
        let bytes = std::fs::read(&path).ok()?;
        let parsed = (|| {
            if bytes.len() < STATE_HEADER + 32
                || &bytes[..16] != STATE_MAGIC
                || bytes[16..32] != kp.as_bytes()[..]
            {
                return None;
            }
            let body_end = bytes.len() - 32;
            if state_checksum(&bytes[..body_end]) != bytes[body_end..] {
                return None;
            }
            let epoch = u32_at(&bytes, 32)?;
            let mut chain = [0u8; 32];
            chain.copy_from_slice(&bytes[36..68]);
            let n = u64_at(&bytes, 68)?;
            let b = u64_at(&bytes, 76)?;
            // Each stored block holds at least one entry in at least 26 bytes.
            if b > (body_end as u64) / 26 {
                return None;
            }
            let mut rest = &bytes[STATE_HEADER..body_end];
            let mut blocks = Vec::with_capacity(b as usize);
            for _ in 0..b {
                let (block, r) = StateBlock::read_from(rest)?;
                blocks.push(block);
                rest = r;
            }
            if !rest.is_empty() {
                return None;
            }
            let t = ClientTable::from_state_blocks(kp, epoch, UpsertChain(chain), blocks).ok()?;
            (t.len() as u64 == n).then_some(t)
        })();
        if parsed.is_none() {
            let _ = std::fs::remove_file(&path);
            notes.push("the cached table failed its check and was deleted".to_owned());
        }
        parsed
    }

    fn load_partial(
        &self,
        kp: KeyPeriodId,
        dir: &Path,
        notes: &mut Vec<String>,
    ) -> Option<PartialBase> {
        let path = dir.join("base.partial");
        let bytes = std::fs::read(&path).ok()?;
        if bytes.len() < 36 || &bytes[..16] != BASE_MAGIC || bytes[16..32] != kp.as_bytes()[..] {
            let _ = std::fs::remove_file(&path);
            notes.push("a partial base download had a wrong header and was deleted".to_owned());
            return None;
        }
        let epoch = u32_at(&bytes, 32)?;
        let mut blocks = Vec::new();
        let mut rest = &bytes[36..];
        while let Some((b, r)) = EntryBlock::read_from(rest) {
            blocks.push(b);
            rest = r;
        }
        let whole = bytes.len() - rest.len();
        if whole != bytes.len()
            && let Ok(f) = OpenOptions::new().write(true).open(&path)
        {
            let _ = f.set_len(whole as u64);
        }
        match PartialBase::new(kp, epoch, blocks) {
            Ok(p) => Some(p),
            Err(_) => {
                let _ = std::fs::remove_file(&path);
                notes.push("a partial base download was damaged and was deleted".to_owned());
                None
            }
        }
    }

    /// Appends verified outputs to the OPRF cache of `kp`.
    pub(crate) fn save_oprf(
        &self,
        kp: KeyPeriodId,
        entries: &[([u8; 16], Output)],
    ) -> std::io::Result<()> {
        let Some(dir) = self.kp_dir(kp) else {
            return Ok(());
        };
        private_dir(&dir)?;
        let path = dir.join("oprf.bin");
        let new = !path.exists();
        let mut f = open_private(&path, true)?;
        let mut buf = Zeroizing::new(Vec::with_capacity(32 + entries.len() * OPRF_RECORD));
        encode_oprf(kp, new, entries, &mut buf);
        f.write_all(&buf)?;
        f.sync_data()
    }

    /// Appends `block` to the partial base of (kp, epoch) at `offset` (0 starts it anew).
    pub(crate) fn append_partial(
        &self,
        kp: KeyPeriodId,
        epoch: u32,
        offset: u64,
        block: &EntryBlock,
    ) -> std::io::Result<()> {
        let Some(dir) = self.kp_dir(kp) else {
            return Ok(());
        };
        private_dir(&dir)?;
        let path = dir.join("base.partial");
        let mut buf = Vec::with_capacity(36 + block.encoded_len() + 8);
        let mut f = if offset == 0 {
            buf.extend_from_slice(BASE_MAGIC);
            buf.extend_from_slice(kp.as_bytes());
            buf.extend_from_slice(&epoch.to_le_bytes());
            open_private(&path, false)?
        } else {
            if !path.exists() {
                return Err(std::io::Error::other(
                    "the partial base this chunk continues is gone from the cache directory",
                ));
            }
            open_private(&path, true)?
        };
        block.write_to(&mut buf);
        f.write_all(&buf)?;
        f.sync_data()
    }

    /// Deletes the partial base of `kp`.
    pub(crate) fn discard_partial(&self, kp: KeyPeriodId) {
        if let Some(dir) = self.kp_dir(kp) {
            let _ = std::fs::remove_file(dir.join("base.partial"));
        }
    }

    /// Replaces the table state of its key period atomically and deletes the partial base.
    pub(crate) fn save_table(&self, table: &ClientTable) -> std::io::Result<()> {
        let Some(dir) = self.kp_dir(table.key_period()) else {
            return Ok(());
        };
        private_dir(&dir)?;
        let mut buf = Vec::with_capacity(STATE_HEADER + table.len() * 12 + 32);
        buf.extend_from_slice(STATE_MAGIC);
        buf.extend_from_slice(table.key_period().as_bytes());
        buf.extend_from_slice(&table.epoch().to_le_bytes());
        buf.extend_from_slice(&table.chain().0);
        buf.extend_from_slice(&(table.len() as u64).to_le_bytes());
        buf.extend_from_slice(&(table.blocks().len() as u64).to_le_bytes());
        for b in table.blocks() {
            b.write_to(&mut buf);
        }
        let sum = state_checksum(&buf);
        buf.extend_from_slice(&sum);
        let tmp = dir.join(format!(".table.bin.{}.tmp", std::process::id()));
        let written = (|| {
            let mut f = open_private(&tmp, false)?;
            f.write_all(&buf)?;
            f.sync_all()?;
            std::fs::rename(&tmp, dir.join("table.bin"))
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written?;
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        self.discard_partial(table.key_period());
        Ok(())
    }

    /// Deletes the table state of `kp`.
    pub(crate) fn discard_table(&self, kp: KeyPeriodId) {
        if let Some(dir) = self.kp_dir(kp) {
            let _ = std::fs::remove_file(dir.join("table.bin"));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use nayose_table::{EncryptedLabel, Tag};

    fn kp(n: u64) -> KeyPeriodId {
        KeyPeriodId::new(n, &[n as u8; 32])
    }

    fn block(tags: &[u8]) -> EntryBlock {
        let e: Vec<_> = tags
            .iter()
            .map(|b| (Tag([*b; 9]), EncryptedLabel([b ^ 0xff; 4])))
            .collect();
        EntryBlock::encode(&e).unwrap()
    }

    #[test]
    fn everything_round_trips_and_damage_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = CacheStore::new(Some(dir.path()), "server.example", "hospital-a");
        let k = kp(1);
        store
            .save_oprf(k, &[([1; 16], Output::from_bytes([2; 64]))])
            .unwrap();
        store
            .save_oprf(k, &[([3; 16], Output::from_bytes([4; 64]))])
            .unwrap();
        store.append_partial(k, 5, 0, &block(&[1, 2])).unwrap();
        store.append_partial(k, 5, 2, &block(&[3])).unwrap();
        // A block cut short by a crash is dropped on load.
        let kd = dir.path().join("server.example/hospital-a").join(kp_hex(k));
        let mut f = OpenOptions::new()
            .append(true)
            .open(kd.join("base.partial"))
            .unwrap();
        f.write_all(&[7, 0, 0]).unwrap();
        let (c, notes) = store.load(k);
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(c.oprf.len(), 2);
        assert_eq!(c.oprf[&[3u8; 16]].as_bytes(), &[4u8; 64]);
        let p = c.partial.unwrap();
        assert_eq!((p.len(), p.blocks().len()), (3, 2));
        let chain = UpsertChain::first(k, 5);
        let mut t = ClientTable::from_base(k, 5, chain, vec![block(&[1, 2]), block(&[3])]).unwrap();
        t.apply_delta(6, &[Tag([2; 9])], &[(Tag([4; 9]), EncryptedLabel([1; 4]))])
            .unwrap();
        store.save_table(&t).unwrap();
        let (c, _) = store.load(k);
        assert_eq!(c.table.unwrap(), t);
        assert!(
            c.partial.is_none(),
            "a saved state deletes the partial base"
        );

        // Damage: flip a byte of the state and of the second OPRF record.
        let mut b = std::fs::read(kd.join("table.bin")).unwrap();
        b[50] ^= 1;
        std::fs::write(kd.join("table.bin"), b).unwrap();
        let mut b = std::fs::read(kd.join("oprf.bin")).unwrap();
        let last = b.len() - 1;
        b[last] ^= 1;
        std::fs::write(kd.join("oprf.bin"), b).unwrap();
        let (c, notes) = store.load(k);
        assert!(c.table.is_none());
        assert_eq!(c.oprf.len(), 1, "cut back to the last good record");
        assert_eq!(notes.len(), 2, "{notes:?}");

        // A temporary table left by a killed run is removed on load.
        std::fs::write(kd.join(".table.bin.999999.tmp"), b"x").unwrap();
        let _ = store.load(k);
        assert!(!kd.join(".table.bin.999999.tmp").exists());

        // Another key period: the old caches are deleted.
        let (c, _) = store.load(kp(2));
        assert!(c.oprf.is_empty());
        assert!(!kd.exists());
    }

    #[cfg(unix)]
    #[test]
    fn files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = CacheStore::new(Some(dir.path()), "s", "c");
        store
            .save_oprf(kp(1), &[([1; 16], Output::from_bytes([2; 64]))])
            .unwrap();
        let f = dir.path().join("s/c").join(kp_hex(kp(1))).join("oprf.bin");
        assert_eq!(
            std::fs::metadata(f).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

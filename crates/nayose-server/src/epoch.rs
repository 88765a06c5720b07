//! Published epochs, key periods and deltas on disk, and the snapshot the service serves.
//!
//! File formats (server-local, never on the wire; table.md §14 leaves them to the server):
//! - `table.bin`: the 16 bytes [`TABLE_MAGIC`], then `entries` records of 56 bytes
//!   (`tag (9) || 0^7 || label_key (32) || person serial (u32 LE) || version (u32 LE)`,
//!   nayose-table's record format), strictly ascending by tag.
//! - `persons.bin`: the person map (`crate::person_map`): person keys and random serials, no
//!   person id. Only builds read it; serving needs only the serials in the records.
//! - `index.bin`: the 16 bytes `INDEX_MAGIC`, `u64 LE count`, then per number
//!   `key (16) || table position (u32 LE)`, strictly ascending by key, where the key is the
//!   first 16 bytes of SHA-256 over the number's canonical encoding: the number → entry map the
//!   next build of the key period diffs against (a merge-join, then sequential access to the
//!   table). Keys of numbers are enumerable, so the file is as sensitive as the numbers.
//! - `deltas/<epoch>.bin`: the 16 bytes `DELTA_MAGIC`, key period id (16), epoch (u32 LE),
//!   previous epoch (u32 LE), removed count r (u64 LE), upsert count u (u64 LE), r removed tags
//!   ascending, u upserts ascending by tag each `tag (9) || label_key (32) || person serial
//!   (u32 LE)`, then the SHA-256 of everything before it (32). Self-contained, so it outlives
//!   its epoch's directory. Every upsert's version is the delta's epoch.
//! - `manifest.toml` ([`Manifest`], format 2) with the SHA-256 of the three epoch files and the
//!   table digest; `keyperiods/<n>/keyperiod.toml` ([`KeyPeriodMeta`]).
//!
//! Invariants of a loaded [`Epoch`] (a snapshot): every checksum matched; the records passed
//! nayose-table's `RecordTable::new` check (whole records, strictly ascending tags, reserved
//! bytes zero, no version after the epoch) and their digest equals the manifest's; skS
//! matches the key period's pkS and the key period id is `KeyPeriodId::new(number, pkS)`; the
//! key period's K_L has the key id both the key period and the manifest name. Its delta chain
//! holds, ascending, the kept deltas of the epochs after `oldest_delta_base` up to the epoch,
//! each verified (its own checksum, and the `delta_sha256` of its epoch's manifest for the
//! epoch itself and for every earlier epoch whose directory is still kept) and held open (a
//! later build may unlink the file; the open handle still reads it). The table (which holds
//! label keys) is mapped read-only through nayose-mmap after their
//! SHA-256 matched the manifest, never copied into the heap: the heap does not grow with the
//! table, and an epoch switch does not double it. Mapped pages live in the page cache, which is
//! not zeroized; the same bytes are in the owner-only files beside it (nayose-mmap's module
//! documentation says why the map is sound).

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use nayose_mmap::{MapError, VerifiedMap};
use nayose_oprf::ServerKey;
use nayose_table::{
    ClientId, EntryBlock, KeyPeriodId, LABEL_KEY_LEN, Label, LabelKey, LabelMasterKey,
    LabelPermutation, RECORD_LEN, RECORD_TAG_LEN, RecordTable, TAG_LEN, TableDigest, TableEntry,
    Tag, UpsertChain, encrypt_entry,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::ServerError;
use crate::fsutil::check_owner_only;
use crate::keys::{read_label_master_key, read_oprf_key};
use crate::layout::{
    DataDir, KEY_PERIOD_LABEL_MASTER_KEY, KEY_PERIOD_META, MANIFEST, OPRF_KEY, PERSONS, TABLE,
    parse_epoch_dir_name,
};

/// First 16 bytes of `table.bin`.
pub(crate) const TABLE_MAGIC: &[u8; 16] = b"nayose-table-v3\n";
/// First 16 bytes of `index.bin`.
pub(crate) const INDEX_MAGIC: &[u8; 16] = b"nayose-index-v3\n";
/// First 16 bytes of a delta file.
pub(crate) const DELTA_MAGIC: &[u8; 16] = b"nayose-delta-v3\n";
/// Bytes of a delta file before the lists.
const DELTA_HEADER_LEN: usize = 16 + 16 + 4 + 4 + 8 + 8;

/// The manifest of a published epoch (`manifest.toml`, format 2).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format version (2).
    pub format: u32,
    /// The epoch number.
    pub number: u32,
    /// The key period's number.
    pub key_period: u64,
    /// The key period id, 32 lowercase hex digits.
    pub key_period_id: String,
    /// The key period's VOPRF public key pkS, 64 lowercase hex digits.
    pub public_key: String,
    /// Public id of the key period's label master key, 16 hex digits.
    pub label_master_key_id: String,
    /// The previous epoch of the same key period (absent for the first epoch of a key period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_epoch: Option<u32>,
    /// Unix time (seconds) the epoch was built.
    pub created_unix: u64,
    /// Number of table entries (distinct numbers).
    pub entries: u64,
    /// Number of persons in `persons.bin`.
    pub persons: u32,
    /// Entries added against the previous epoch (all entries for a first epoch).
    pub added: u64,
    /// Entries removed against the previous epoch.
    pub removed: u64,
    /// Entries relabelled against the previous epoch.
    pub relabelled: u64,
    /// The table digest (table.md §9.4), 64 lowercase hex digits.
    pub digest: String,
    /// The upsert chain of this epoch (table.md §9.4), 64 lowercase hex digits.
    pub upsert_chain: String,
    /// SHA-256 of `table.bin`, hex.
    pub table_sha256: String,
    /// SHA-256 of `persons.bin`, hex.
    pub persons_sha256: String,
    /// SHA-256 of `index.bin`, hex.
    pub index_sha256: String,
    /// SHA-256 of the epoch's delta file (absent for the first epoch of a key period), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_sha256: Option<String>,
}

/// A key period's metadata (`keyperiods/<n>/keyperiod.toml`), written once when it starts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyPeriodMeta {
    /// Format version (1).
    pub(crate) format: u32,
    /// The key period number.
    pub(crate) number: u64,
    /// The key period id, 32 hex digits.
    pub(crate) key_period_id: String,
    /// pkS, 64 hex digits.
    pub(crate) public_key: String,
    /// The key id of the key period's label master key.
    pub(crate) label_master_key_id: String,
    /// The first epoch of the key period.
    pub(crate) first_epoch: u32,
    /// Unix time it started.
    pub(crate) created_unix: u64,
}

fn corrupt(what: &str, path: &Path, reason: impl Into<String>) -> ServerError {
    ServerError::CorruptEpoch {
        epoch: what.to_string(),
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes).as_slice())
}

pub(crate) fn to_toml<T: Serialize>(v: &T) -> Result<String, ServerError> {
    toml::to_string(v).map_err(|e| ServerError::Internal(format!("toml encoding: {e}")))
}

/// Reads `DATA_DIR/current`: the name of the current epoch directory (`None` if no epoch was
/// ever published).
pub(crate) fn read_current(data: &DataDir) -> Result<Option<String>, ServerError> {
    let path = data.current();
    match fs::read_to_string(&path) {
        Ok(s) => {
            let name = s.trim_end_matches('\n');
            if parse_epoch_dir_name(name).is_none() {
                return Err(corrupt(
                    name,
                    &path,
                    "the `current` file does not hold a 20-digit epoch directory name",
                ));
            }
            Ok(Some(name.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ServerError::Io {
            action: "cannot read",
            path,
            source: e,
        }),
    }
}

/// Numbers named by the entries of `dir` that `parse` accepts, ascending (empty if `dir` does
/// not exist).
pub(crate) fn numbered_entries<T: Ord>(
    dir: &Path,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, ServerError> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(ServerError::Io {
                action: "cannot list",
                path: dir.to_path_buf(),
                source: e,
            });
        }
    };
    for ent in rd {
        let ent = ent.map_err(ServerError::io("cannot list", dir))?;
        if let Some(n) = ent.file_name().to_str().and_then(&parse) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Numbers of the published epoch directories in `DATA_DIR/epochs`, ascending.
pub(crate) fn published_epochs(data: &DataDir) -> Result<Vec<u32>, ServerError> {
    numbered_entries(&data.epochs(), parse_epoch_dir_name)
}

fn hex_array<const N: usize>(
    what: &str,
    path: &Path,
    field: &str,
    s: &str,
) -> Result<[u8; N], ServerError> {
    let v = hex::decode(s).map_err(|_| corrupt(what, path, format!("{field} is not hex")))?;
    v.try_into()
        .map_err(|_| corrupt(what, path, format!("{field} is not {N} bytes")))
}

/// Reads and parses a manifest.
pub(crate) fn read_manifest(data: &DataDir, number: u32) -> Result<Manifest, ServerError> {
    let dir_name = crate::layout::epoch_dir_name(u64::from(number));
    let mpath = data.epoch_dir(number).join(MANIFEST);
    let text = fs::read_to_string(&mpath).map_err(ServerError::io("cannot read", &mpath))?;
    let m: Manifest =
        toml::from_str(&text).map_err(|e| corrupt(&dir_name, &mpath, e.to_string()))?;
    if m.format != 2 || m.number != number {
        return Err(corrupt(
            &dir_name,
            &mpath,
            format!(
                "format {} / number {} do not match the directory (a nayose/2 server reads \
                 manifest format 2 only)",
                m.format, m.number
            ),
        ));
    }
    Ok(m)
}

/// A key period's keys and metadata.
pub(crate) struct KeyPeriod {
    pub(crate) meta: KeyPeriodMeta,
    pub(crate) id: KeyPeriodId,
    pub(crate) key: ServerKey,
    pub(crate) public_key: [u8; 32],
    pub(crate) master: LabelMasterKey,
}

impl KeyPeriod {
    /// Loads and checks key period `number` (metadata, skS against pkS, K_L against its id).
    pub(crate) fn load(data: &DataDir, number: u64) -> Result<KeyPeriod, ServerError> {
        let what = format!("key period {number}");
        let dir = data.key_period_dir(number);
        let mpath = dir.join(KEY_PERIOD_META);
        let text = fs::read_to_string(&mpath).map_err(ServerError::io("cannot read", &mpath))?;
        let meta: KeyPeriodMeta =
            toml::from_str(&text).map_err(|e| corrupt(&what, &mpath, e.to_string()))?;
        if meta.format != 1 || meta.number != number {
            return Err(corrupt(&what, &mpath, "format or number does not match"));
        }
        let public_key: [u8; 32] = hex_array(&what, &mpath, "public_key", &meta.public_key)?;
        let id = KeyPeriodId::new(number, &public_key);
        if hex::encode(id.to_bytes()) != meta.key_period_id {
            return Err(corrupt(
                &what,
                &mpath,
                "key_period_id does not match number and public key",
            ));
        }
        let kpath = dir.join(OPRF_KEY);
        let key = read_oprf_key(&kpath)?;
        if key.public_key().to_bytes() != public_key {
            return Err(corrupt(
                &what,
                &kpath,
                "the key does not match the key period's public key",
            ));
        }
        let lpath = dir.join(KEY_PERIOD_LABEL_MASTER_KEY);
        let master = read_label_master_key(&lpath)?;
        if master.key_id().to_string() != meta.label_master_key_id {
            return Err(corrupt(
                &what,
                &lpath,
                "the label master key does not match the key period's key id",
            ));
        }
        Ok(KeyPeriod {
            meta,
            id,
            key,
            public_key,
            master,
        })
    }
}

/// Bytes of one number-index entry: key (16, big-endian) and table position (u32 LE).
pub(crate) const INDEX_ENTRY_LEN: usize = 20;

/// Writes the number index through `put`: `INDEX_MAGIC`, the count (u64 LE), then `(key,
/// table position)` pairs, already strictly ascending by key, as key (16, big-endian) and
/// position (u32 LE). The one definition of the layout: the build streams it to its file,
/// [`encode_index`] into memory.
pub(crate) fn put_index<E>(
    count: usize,
    items: impl Iterator<Item = (u128, u32)>,
    put: &mut impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    put(INDEX_MAGIC)?;
    put(&(count as u64).to_le_bytes())?;
    for (key, pos) in items {
        put(&key.to_be_bytes())?;
        put(&pos.to_le_bytes())?;
    }
    Ok(())
}

/// The number index in memory ([`put_index`]).
pub(crate) fn encode_index(
    count: usize,
    items: impl Iterator<Item = (u128, u32)>,
) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(24 + count * INDEX_ENTRY_LEN));
    put_index::<std::convert::Infallible>(count, items, &mut |b| {
        out.extend_from_slice(b);
        Ok(())
    })
    .unwrap_or_else(|never| match never {});
    out
}

/// A checked view of a number index: header and length (the order of the keys and the range
/// and uniqueness of the positions are checked by the build's merge, which reads every entry).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NumberIndex<'a> {
    entries: &'a [u8],
}

impl NumberIndex<'_> {
    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len() / INDEX_ENTRY_LEN
    }

    /// Entry `i`: (key, table position). Panics if `i >= len()`, like slice indexing.
    pub(crate) fn get(&self, i: usize) -> (u128, u32) {
        let e = &self.entries[i * INDEX_ENTRY_LEN..(i + 1) * INDEX_ENTRY_LEN];
        let mut k = [0u8; 16];
        k.copy_from_slice(&e[..16]);
        let mut p = [0u8; 4];
        p.copy_from_slice(&e[16..]);
        (u128::from_be_bytes(k), u32::from_le_bytes(p))
    }
}

/// Checks the number index's header and length.
pub(crate) fn decode_index<'a>(
    what: &str,
    path: &Path,
    bytes: &'a [u8],
) -> Result<NumberIndex<'a>, ServerError> {
    let rest = bytes.strip_prefix(INDEX_MAGIC.as_slice()).ok_or_else(|| {
        corrupt(
            what,
            path,
            "wrong file header (not a number index of this version)",
        )
    })?;
    let Some((count, entries)) = rest.split_first_chunk::<8>() else {
        return Err(corrupt(what, path, "truncated count"));
    };
    let count = u64::from_le_bytes(*count);
    if (entries.len() / INDEX_ENTRY_LEN) as u64 != count
        || !entries.len().is_multiple_of(INDEX_ENTRY_LEN)
    {
        return Err(corrupt(what, path, "length does not match the entry count"));
    }
    Ok(NumberIndex { entries })
}

/// One upsert of a delta as stored: tag, label key, person serial.
pub(crate) struct StoredUpsert {
    pub(crate) tag: Tag,
    pub(crate) label_key: LabelKey,
    pub(crate) person: u32,
}

/// Bytes of one stored upsert: tag, label key, person serial (u32 LE).
const STORED_UPSERT_LEN: usize = TAG_LEN + LABEL_KEY_LEN + 4;

/// A parsed delta file.
pub(crate) struct Delta {
    pub(crate) key_period: KeyPeriodId,
    pub(crate) epoch: u32,
    pub(crate) previous: u32,
    pub(crate) removed: Vec<Tag>,
    pub(crate) upserts: Vec<StoredUpsert>,
}

/// Encodes a delta file (the lists must already be ascending by tag); each upsert is given as
/// its 56-byte table record (tag, label key and person serial are taken from it).
pub(crate) fn encode_delta(
    key_period: KeyPeriodId,
    epoch: u32,
    previous: u32,
    removed: &[Tag],
    upserts: &[&[u8]],
) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::new());
    out.extend_from_slice(DELTA_MAGIC);
    out.extend_from_slice(key_period.as_bytes());
    out.extend_from_slice(&epoch.to_le_bytes());
    out.extend_from_slice(&previous.to_le_bytes());
    out.extend_from_slice(&(removed.len() as u64).to_le_bytes());
    out.extend_from_slice(&(upserts.len() as u64).to_le_bytes());
    for t in removed {
        out.extend_from_slice(t.as_bytes());
    }
    for record in upserts {
        // A record is tag (9) || 0^7 || label_key (32) || person serial (4) || version (4).
        out.extend_from_slice(&record[..TAG_LEN]);
        out.extend_from_slice(&record[RECORD_TAG_LEN..RECORD_TAG_LEN + LABEL_KEY_LEN + 4]);
    }
    let sum = Sha256::digest(out.as_slice());
    out.extend_from_slice(sum.as_slice());
    out
}

/// Parses and verifies a delta file's bytes.
pub(crate) fn decode_delta(what: &str, path: &Path, bytes: &[u8]) -> Result<Delta, ServerError> {
    let bad = |r: &str| corrupt(what, path, r.to_string());
    if bytes.len() < DELTA_HEADER_LEN + 32 || !bytes.starts_with(DELTA_MAGIC) {
        return Err(bad("wrong file header (not a delta file)"));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body).as_slice() != sum {
        return Err(bad("checksum does not match (damaged delta file)"));
    }
    let u32_at = |o: usize| u32::from_le_bytes([body[o], body[o + 1], body[o + 2], body[o + 3]]);
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&body[o..o + 8]);
        u64::from_le_bytes(b)
    };
    let mut kp = [0u8; 16];
    kp.copy_from_slice(&body[16..32]);
    let (epoch, previous) = (u32_at(32), u32_at(36));
    let (r, u) = (u64_at(40), u64_at(48));
    let mut rest = &body[DELTA_HEADER_LEN..];
    if (rest.len() as u64) < r.saturating_mul(TAG_LEN as u64) {
        return Err(bad("truncated removed list"));
    }
    let mut removed = Vec::with_capacity(r as usize);
    for _ in 0..r {
        let Some((t, tail)) = rest.split_first_chunk::<TAG_LEN>() else {
            return Err(bad("truncated removed list"));
        };
        removed.push(Tag(*t));
        rest = tail;
    }
    if (rest.len() as u64) != u.saturating_mul(STORED_UPSERT_LEN as u64) {
        return Err(bad("the upsert list's length does not match its count"));
    }
    let mut upserts = Vec::with_capacity(u as usize);
    for _ in 0..u {
        let Some((t, tail)) = rest.split_first_chunk::<TAG_LEN>() else {
            return Err(bad("truncated upsert"));
        };
        let Some((k, tail)) = tail.split_first_chunk::<LABEL_KEY_LEN>() else {
            return Err(bad("truncated upsert"));
        };
        let Some((p, tail)) = tail.split_first_chunk::<4>() else {
            return Err(bad("truncated upsert"));
        };
        upserts.push(StoredUpsert {
            tag: Tag(*t),
            label_key: LabelKey::from_bytes(k),
            person: u32::from_le_bytes(*p),
        });
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(bad("trailing bytes"));
    }
    let ascending =
        removed.windows(2).all(|w| w[0] < w[1]) && upserts.windows(2).all(|w| w[0].tag < w[1].tag);
    if !ascending || epoch <= previous {
        return Err(bad("lists not ascending or epochs out of order"));
    }
    Ok(Delta {
        key_period: KeyPeriodId::from_bytes(kp),
        epoch,
        previous,
        removed,
        upserts,
    })
}

/// A kept delta of the snapshot's chain: verified at load, held open.
#[derive(Debug)]
pub(crate) struct DeltaHandle {
    pub(crate) epoch: u32,
    pub(crate) previous: u32,
    file: File,
    len: u64,
}

impl DeltaHandle {
    /// Opens and fully verifies `deltas/<epoch>.bin`; `None` if it does not exist. With the
    /// file comes the SHA-256 (hex) of its bytes, for the check against its epoch's manifest.
    fn open(
        data: &DataDir,
        epoch: u32,
    ) -> Result<Option<(DeltaHandle, Delta, String)>, ServerError> {
        let path = data.delta_file(epoch);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(ServerError::Io {
                    action: "cannot open",
                    path,
                    source: e,
                });
            }
        };
        check_owner_only(&path)?;
        let mut bytes = Zeroizing::new(Vec::new());
        file.read_to_end(&mut bytes)
            .map_err(ServerError::io("cannot read", &path))?;
        let d = decode_delta(&format!("delta of epoch {epoch}"), &path, &bytes)?;
        if d.epoch != epoch {
            return Err(corrupt(
                &format!("delta of epoch {epoch}"),
                &path,
                format!("the file holds the delta of epoch {}", d.epoch),
            ));
        }
        Ok(Some((
            DeltaHandle {
                epoch,
                previous: d.previous,
                file,
                len: bytes.len() as u64,
            },
            d,
            sha256_hex(&bytes),
        )))
    }

    /// Reads the (immutable, already verified) delta again for serving.
    pub(crate) fn read(&self) -> Result<Delta, ServerError> {
        let path = format!("deltas/{}.bin", self.epoch);
        let mut bytes = Zeroizing::new(vec![0u8; self.len as usize]);
        self.file
            .read_exact_at(&mut bytes, 0)
            .map_err(ServerError::io("cannot read", &path))?;
        decode_delta(
            &format!("delta of epoch {}", self.epoch),
            path.as_ref(),
            &bytes,
        )
    }
}

/// One loaded epoch with its key period, ready to serve (the service's snapshot).
pub(crate) struct Epoch {
    number: u32,
    dir_name: String,
    kp: KeyPeriod,
    /// `table.bin`, mapped: header and records (checked at load).
    table: VerifiedMap,
    person_count: u32,
    digest: TableDigest,
    chain: UpsertChain,
    /// The kept deltas of the chain, ascending by epoch; the first one's `previous` is
    /// `oldest_delta_base`.
    deltas: Vec<DeltaHandle>,
}

impl std::fmt::Debug for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epoch")
            .field("number", &self.number)
            .field("key_period", &self.kp.id.to_string())
            .field("entries", &self.len())
            .field("persons", &self.person_count)
            .finish_non_exhaustive()
    }
}

impl Epoch {
    /// Loads and checks the epoch in directory `DATA_DIR/epochs/<dir_name>`, with its key
    /// period and up to `delta_history` deltas of its chain.
    pub(crate) fn load(
        data: &DataDir,
        dir_name: &str,
        delta_history: u32,
    ) -> Result<Epoch, ServerError> {
        let number = parse_epoch_dir_name(dir_name).ok_or_else(|| {
            corrupt(
                dir_name,
                &data.epochs(),
                "not a 20-digit epoch directory name",
            )
        })?;
        let dir = data.epoch_dir(number);
        let mpath = dir.join(MANIFEST);
        let m = read_manifest(data, number)?;
        let kp = KeyPeriod::load(data, m.key_period)?;
        if hex::encode(kp.id.to_bytes()) != m.key_period_id
            || m.label_master_key_id != kp.meta.label_master_key_id
            || m.public_key != kp.meta.public_key
        {
            return Err(corrupt(
                dir_name,
                &mpath,
                "key period id, public key or label master key id differ from the key period's",
            ));
        }

        let tpath = dir.join(TABLE);
        // Mapped, not read: the table stays in the page cache (issue 10).
        let table = map_epoch_file(data, number, TABLE, &m.table_sha256)?;
        let expected_len = (m.entries as u128) * (RECORD_LEN as u128) + 16;
        if table.bytes().len() as u128 != expected_len || !table.bytes().starts_with(TABLE_MAGIC) {
            return Err(corrupt(
                dir_name,
                &tpath,
                format!(
                    "{} bytes, expected a header and {} records",
                    table.bytes().len(),
                    m.entries
                ),
            ));
        }
        // The person map is not opened: serving needs only the serials in the records (the
        // next build checks the map against `persons_sha256` before it continues it).
        let rt = RecordTable::new(kp.id, number, &table.bytes()[16..])
            .map_err(|e| corrupt(dir_name, &tpath, e.to_string()))?;
        let chain = UpsertChain(hex_array::<32>(
            dir_name,
            &mpath,
            "upsert_chain",
            &m.upsert_chain,
        )?);
        let digest = rt.digest(&chain);
        if digest.to_string() != m.digest {
            return Err(corrupt(
                dir_name,
                &tpath,
                "the table digest does not match the manifest",
            ));
        }

        // The delta chain: from this epoch back through `previous` links while deltas are
        // kept. Only epochs after the key period's first have a delta.
        let mut deltas = Vec::new();
        if m.previous_epoch.is_some() {
            let mut e = number;
            while deltas.len() < delta_history as usize {
                let Some((h, d, sha)) = DeltaHandle::open(data, e)? else {
                    break;
                };
                if d.key_period != kp.id || (e == number && Some(d.previous) != m.previous_epoch) {
                    return Err(corrupt(
                        &format!("delta of epoch {e}"),
                        &data.delta_file(e),
                        "its key period or previous epoch does not match the epoch chain",
                    ));
                }
                // The delta must be the one its epoch was built with: a valid delta file of
                // another build of the same number (two labels under one versioned pad) is
                // refused. Earlier epochs are checked while their directory is kept.
                let em = if e == number {
                    Some(m.clone())
                } else if data.epoch_dir(e).join(MANIFEST).exists() {
                    Some(read_manifest(data, e)?)
                } else {
                    None
                };
                if let Some(em) = em
                    && (em.delta_sha256.as_deref() != Some(sha.as_str())
                        || em.previous_epoch != Some(d.previous)
                        || em.key_period_id != m.key_period_id)
                {
                    return Err(corrupt(
                        &format!("delta of epoch {e}"),
                        &data.delta_file(e),
                        format!(
                            "the delta file does not match the manifest of epoch {e} \
                             (delta_sha256 / previous_epoch / key period): it is not the \
                             delta that epoch was built with"
                        ),
                    ));
                }
                let p = h.previous;
                deltas.push(h);
                if p <= kp.meta.first_epoch {
                    break;
                }
                e = p;
            }
        }
        deltas.reverse();
        Ok(Epoch {
            number,
            dir_name: dir_name.to_string(),
            kp,
            table,
            person_count: m.persons,
            digest,
            chain,
            deltas,
        })
    }

    /// Loads the epoch `DATA_DIR/current` names.
    pub(crate) fn load_current(data: &DataDir, delta_history: u32) -> Result<Epoch, ServerError> {
        let name = read_current(data)?.ok_or_else(|| ServerError::NoEpoch {
            data_dir: data.root().to_path_buf(),
        })?;
        Self::load(data, &name, delta_history)
    }

    pub(crate) fn number(&self) -> u32 {
        self.number
    }

    pub(crate) fn dir_name(&self) -> &str {
        &self.dir_name
    }

    pub(crate) fn key_period(&self) -> KeyPeriodId {
        self.kp.id
    }

    pub(crate) fn key(&self) -> &ServerKey {
        &self.kp.key
    }

    pub(crate) fn public_key(&self) -> [u8; 32] {
        self.kp.public_key
    }

    pub(crate) fn digest(&self) -> TableDigest {
        self.digest
    }

    /// The least `from_epoch` a FetchDelta can name (the current epoch if no delta is kept).
    pub(crate) fn oldest_delta_base(&self) -> u32 {
        self.deltas.first().map_or(self.number, |d| d.previous)
    }

    /// The epochs a FetchDelta may start from below the current one: every kept delta's
    /// previous epoch, ascending.
    pub(crate) fn delta_bases(&self) -> Vec<u32> {
        self.deltas.iter().map(|d| d.previous).collect()
    }

    /// The kept deltas of the epochs after `from`, ascending.
    pub(crate) fn deltas_after(&self, from: u32) -> &[DeltaHandle] {
        let i = self.deltas.partition_point(|d| d.epoch <= from);
        &self.deltas[i..]
    }

    fn records(&self) -> &[u8] {
        &self.table.bytes()[16..]
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.records().len() / RECORD_LEN
    }

    /// Number of persons.
    pub(crate) fn persons(&self) -> usize {
        self.person_count as usize
    }

    /// The upsert chain of this epoch.
    pub(crate) fn chain(&self) -> UpsertChain {
        self.chain
    }

    /// The base entries `range` (clamped to the table; at most 65,536) as one entry block for
    /// `client`: labels of the person serials, encrypted under the pad of this epoch.
    pub(crate) fn base_block(
        &self,
        range: std::ops::Range<usize>,
        client: &ClientId,
    ) -> Result<EntryBlock, ServerError> {
        let range = range.start.min(self.len())..range.end.min(self.len());
        // The records were checked by RecordTable::new at load and the map never changes.
        let rt = RecordTable::checked_at_load(self.kp.id, self.number, self.records())
            .map_err(|e| ServerError::Internal(format!("the loaded table changed: {e}")))?;
        let perm = LabelPermutation::new(&self.kp.master, client);
        rt.base_block(range, client, &perm)
            .map_err(|e| ServerError::Internal(format!("cannot make a base chunk: {e}")))
    }

    /// Upserts of `delta` as `client` receives them (pad epoch = the delta's epoch).
    pub(crate) fn delta_upserts(
        &self,
        delta: &Delta,
        range: std::ops::Range<usize>,
        client: &ClientId,
    ) -> Vec<nayose_wire::Entry> {
        use rayon::prelude::*;
        let perm = LabelPermutation::new(&self.kp.master, client);
        let one = |u: &StoredUpsert| {
            let e = TableEntry {
                tag: u.tag,
                label_key: u.label_key.clone(),
                person: u.person,
                version: delta.epoch,
            };
            let label: Label = perm.label(u.person);
            let c = encrypt_entry(&e, client, self.kp.id, delta.epoch, &label);
            nayose_wire::Entry {
                tag: nayose_wire::Tag(e.tag.0),
                label: nayose_wire::EncryptedLabel(c.0),
            }
        };
        let items = &delta.upserts[range];
        if items.len() < 4096 {
            items.iter().map(one).collect()
        } else {
            items.par_iter().map(one).collect()
        }
    }
}

/// A published epoch as [`check_current_epoch`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochSummary {
    /// The epoch number.
    pub number: u32,
    /// The key period id as displayed (`<number>-<16 hex digits>`).
    pub key_period: String,
    /// The key period's number.
    pub key_period_number: u64,
    /// The VOPRF public key, hex.
    pub public_key: String,
    /// Table entries.
    pub entries: u64,
    /// Persons in the person map.
    pub persons: u64,
    /// The table digest, hex.
    pub digest: String,
    /// The least epoch a FetchDelta can start from.
    pub oldest_delta_base: u32,
}

impl std::fmt::Display for EpochSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "current epoch {} (key period {}; {} entries, {} persons; digest {}; deltas from \
             epoch {}), public key {}",
            self.number,
            self.key_period,
            self.entries,
            self.persons,
            self.digest,
            self.oldest_delta_base,
            self.public_key
        )
    }
}

/// Loads and fully checks the epoch `current` names (checksums, digest, key files and
/// permissions, tag order, the kept deltas): what a server start would do, without serving.
pub(crate) fn check_current_epoch(data_dir: &Path) -> Result<EpochSummary, ServerError> {
    let data = DataDir::new(data_dir);
    let e = Epoch::load_current(&data, u32::MAX)?;
    // Serving never opens the person map, but it is the one file that cannot be rebuilt
    // without changing labels: `check` verifies it too.
    let m = read_manifest(&data, e.number())?;
    drop(map_epoch_file(
        &data,
        e.number(),
        PERSONS,
        &m.persons_sha256,
    )?);
    Ok(EpochSummary {
        number: e.number(),
        key_period: e.key_period().to_string(),
        key_period_number: e.key_period().number(),
        public_key: hex::encode(e.public_key()),
        entries: e.len() as u64,
        persons: e.persons() as u64,
        digest: e.digest().to_string(),
        oldest_delta_base: e.oldest_delta_base(),
    })
}

/// Maps file `name` of epoch `number` read-only after checking it is owner-only, and verifies
/// its SHA-256 against `sha_hex` (from the manifest).
pub(crate) fn map_epoch_file(
    data: &DataDir,
    number: u32,
    name: &str,
    sha_hex: &str,
) -> Result<VerifiedMap, ServerError> {
    let what = crate::layout::epoch_dir_name(u64::from(number));
    let path = data.epoch_dir(number).join(name);
    let mut expected = [0u8; 32];
    hex::decode_to_slice(sha_hex, &mut expected)
        .map_err(|_| corrupt(&what, &path, "the manifest's SHA-256 is not 64 hex digits"))?;
    check_owner_only(&path)?;
    VerifiedMap::open(&path, &expected).map_err(|e| match e {
        MapError::Checksum { .. } => corrupt(&what, &path, "SHA-256 does not match the manifest"),
        MapError::Io {
            action,
            path,
            source,
        } => ServerError::Io {
            action,
            path,
            source,
        },
    })
}

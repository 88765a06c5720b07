//! A published epoch on disk and in memory: manifest, files, checksum-verified loading, and the
//! reads the service makes (prefix ranges, entries encrypted for one client).
//!
//! File formats (server-local, never on the wire):
//! - `table.bin`: the 16 bytes `TABLE_MAGIC`, then `entries` records of 52 bytes
//!   (`tag (16) || label_key (32) || person index (u32 LE)`, nayose-table's record format),
//!   strictly ascending by tag.
//! - `persons.bin`: the 16 bytes `PERSONS_MAGIC`, then per person `u16 LE length || id bytes`;
//!   person index i is the i-th id.
//! - `manifest.toml`: [`Manifest`]; its SHA-256 sums cover the two files byte for byte.
//!
//! Invariants of a loaded [`Epoch`]: both checksums matched the manifest; the records passed
//! nayose-table's `RecordTable::new` check once at load (whole records, strictly ascending
//! tags, person indices below the person count); skS matches the manifest's pkS and the epoch id
//! is `EpochId::new(number, pkS)`; the epoch's K_L copy has the manifest's key id. The table
//! (which holds label keys) lives in zeroizing memory. memmap2 needs `unsafe`, which this
//! workspace forbids, so the table is read into memory once at load.

use std::fs;
use std::ops::Range;
use std::path::Path;

use nayose_oprf::ServerKey;
use nayose_table::{ClientId, EpochId, LabelMasterKey, RECORD_LEN, RecordTable, TagPrefix};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::ServerError;
use crate::fsutil::{check_owner_only, read_secret};
use crate::keys::{read_label_master_key, read_oprf_key};
use crate::layout::{
    DataDir, EPOCH_LABEL_MASTER_KEY, MANIFEST, OPRF_KEY, PERSONS, TABLE, parse_epoch_dir_name,
};

/// First 16 bytes of `table.bin`.
pub(crate) const TABLE_MAGIC: &[u8; 16] = b"nayose-table-v1\n";
/// First 16 bytes of `persons.bin`.
pub(crate) const PERSONS_MAGIC: &[u8; 16] = b"nayose-persons1\n";
/// Longest person id accepted, in bytes.
pub(crate) const MAX_PERSON_ID_LEN: usize = 1024;

/// The manifest of a published epoch (`manifest.toml`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format version (1).
    pub format: u32,
    /// The epoch's sequence number.
    pub number: u64,
    /// The epoch id, 32 lowercase hex digits.
    pub epoch_id: String,
    /// The VOPRF public key pkS, 64 lowercase hex digits.
    pub public_key: String,
    /// Public id of the label master key copied into the epoch, 16 hex digits.
    pub label_master_key_id: String,
    /// Unix time (seconds) the epoch was built.
    pub created_unix: u64,
    /// Number of table entries (distinct numbers).
    pub entries: u64,
    /// Number of persons in `persons.bin`.
    pub persons: u32,
    /// SHA-256 of `table.bin`, hex.
    pub table_sha256: String,
    /// SHA-256 of `persons.bin`, hex.
    pub persons_sha256: String,
}

/// One loaded epoch, ready to serve.
pub(crate) struct Epoch {
    id: EpochId,
    dir_name: String,
    key: ServerKey,
    public_key: [u8; 32],
    master: LabelMasterKey,
    table: Zeroizing<Vec<u8>>,
    persons: Vec<Box<[u8]>>,
    max_prefix_bits: Option<u8>,
}

impl std::fmt::Debug for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epoch")
            .field("id", &self.id.to_string())
            .field("entries", &self.len())
            .field("persons", &self.persons.len())
            .finish_non_exhaustive()
    }
}

fn corrupt(dir_name: &str, path: &Path, reason: impl Into<String>) -> ServerError {
    ServerError::CorruptEpoch {
        epoch: dir_name.to_string(),
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes).as_slice())
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

/// Numbers of the published epoch directories in `DATA_DIR/epochs`, ascending.
pub(crate) fn published_epochs(data: &DataDir) -> Result<Vec<u64>, ServerError> {
    let dir = data.epochs();
    let mut out = Vec::new();
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(ServerError::Io {
                action: "cannot list",
                path: dir,
                source: e,
            });
        }
    };
    for ent in rd {
        let ent = ent.map_err(ServerError::io("cannot list", &dir))?;
        if let Some(n) = ent.file_name().to_str().and_then(parse_epoch_dir_name) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

impl Manifest {
    pub(crate) fn to_toml(&self) -> Result<String, ServerError> {
        toml::to_string(self).map_err(|e| ServerError::Internal(format!("manifest encoding: {e}")))
    }
}

fn hex_array<const N: usize>(
    dir_name: &str,
    path: &Path,
    field: &str,
    s: &str,
) -> Result<[u8; N], ServerError> {
    let v = hex::decode(s).map_err(|_| corrupt(dir_name, path, format!("{field} is not hex")))?;
    v.try_into()
        .map_err(|_| corrupt(dir_name, path, format!("{field} is not {N} bytes")))
}

/// Encodes person ids as `persons.bin`.
pub(crate) fn encode_persons<P: AsRef<[u8]>>(persons: &[P]) -> Vec<u8> {
    let total: usize = persons.iter().map(|p| 2 + p.as_ref().len()).sum();
    let mut out = Vec::with_capacity(16 + total);
    out.extend_from_slice(PERSONS_MAGIC);
    for p in persons {
        let p = p.as_ref();
        // Lengths are checked against MAX_PERSON_ID_LEN when the registry is read.
        out.extend_from_slice(&(p.len() as u16).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

fn decode_persons(
    dir_name: &str,
    path: &Path,
    bytes: &[u8],
    expected: u32,
) -> Result<Vec<Box<[u8]>>, ServerError> {
    let mut rest = bytes
        .strip_prefix(PERSONS_MAGIC.as_slice())
        .ok_or_else(|| corrupt(dir_name, path, "wrong file header (not a persons file)"))?;
    // `expected` comes from the manifest: never reserve more than the file could hold.
    let mut out = Vec::with_capacity((expected as usize).min(bytes.len() / 2));
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<2>() else {
            return Err(corrupt(dir_name, path, "truncated person id length"));
        };
        let len = u16::from_le_bytes(*len) as usize;
        let Some((id, tail)) = tail.split_at_checked(len) else {
            return Err(corrupt(dir_name, path, "truncated person id"));
        };
        out.push(Box::from(id));
        rest = tail;
    }
    if out.len() != expected as usize {
        return Err(corrupt(
            dir_name,
            path,
            format!("{} person ids, the manifest says {expected}", out.len()),
        ));
    }
    Ok(out)
}

impl Epoch {
    /// Loads and checks the epoch in directory `DATA_DIR/epochs/<dir_name>`. `min_range_entries`
    /// is k of k-anon mode (`None`: mode disabled).
    pub(crate) fn load(
        data: &DataDir,
        dir_name: &str,
        min_range_entries: Option<u32>,
    ) -> Result<Epoch, ServerError> {
        let number = parse_epoch_dir_name(dir_name).ok_or_else(|| {
            corrupt(
                dir_name,
                &data.epochs(),
                "not a 20-digit epoch directory name",
            )
        })?;
        let dir = data.epochs().join(dir_name);
        let mpath = dir.join(MANIFEST);
        let text = fs::read_to_string(&mpath).map_err(ServerError::io("cannot read", &mpath))?;
        let m: Manifest =
            toml::from_str(&text).map_err(|e| corrupt(dir_name, &mpath, e.to_string()))?;
        if m.format != 1 || m.number != number {
            return Err(corrupt(
                dir_name,
                &mpath,
                format!(
                    "format {} / number {} do not match the directory",
                    m.format, m.number
                ),
            ));
        }
        let public_key: [u8; 32] = hex_array(dir_name, &mpath, "public_key", &m.public_key)?;
        let epoch_id: [u8; 16] = hex_array(dir_name, &mpath, "epoch_id", &m.epoch_id)?;
        let id = EpochId::new(number, &public_key);
        if id.to_bytes() != epoch_id {
            return Err(corrupt(
                dir_name,
                &mpath,
                "epoch_id does not match number and public key",
            ));
        }

        let key = read_oprf_key(&dir.join(OPRF_KEY))?;
        if key.public_key().to_bytes() != public_key {
            return Err(corrupt(
                dir_name,
                &dir.join(OPRF_KEY),
                "the key does not match the manifest's public key",
            ));
        }
        let master = read_label_master_key(&dir.join(EPOCH_LABEL_MASTER_KEY))?;
        if master.key_id().to_string() != m.label_master_key_id {
            return Err(corrupt(
                dir_name,
                &dir.join(EPOCH_LABEL_MASTER_KEY),
                "the label master key does not match the manifest's key id",
            ));
        }

        let tpath = dir.join(TABLE);
        let table = read_secret(&tpath)?;
        if sha256_hex(&table) != m.table_sha256 {
            return Err(corrupt(
                dir_name,
                &tpath,
                "SHA-256 does not match the manifest",
            ));
        }
        let expected_len = (m.entries as u128) * (RECORD_LEN as u128) + 16;
        if table.len() as u128 != expected_len || !table.starts_with(TABLE_MAGIC) {
            return Err(corrupt(
                dir_name,
                &tpath,
                format!(
                    "{} bytes, expected a header and {} records",
                    table.len(),
                    m.entries
                ),
            ));
        }
        let ppath = dir.join(PERSONS);
        check_owner_only(&ppath)?;
        let pbytes = read_secret(&ppath)?;
        if sha256_hex(&pbytes) != m.persons_sha256 {
            return Err(corrupt(
                dir_name,
                &ppath,
                "SHA-256 does not match the manifest",
            ));
        }
        let persons = decode_persons(dir_name, &ppath, &pbytes, m.persons)?;

        let rt = RecordTable::new(id, m.persons, &table[16..])
            .map_err(|e| corrupt(dir_name, &tpath, e.to_string()))?;
        let max_prefix_bits = match min_range_entries {
            Some(k) => rt.k_anonymous_prefix_bits(u64::from(k))?,
            None => None,
        };
        Ok(Epoch {
            id,
            dir_name: dir_name.to_string(),
            key,
            public_key,
            master,
            table,
            persons,
            max_prefix_bits,
        })
    }

    /// Loads the epoch `DATA_DIR/current` names.
    pub(crate) fn load_current(
        data: &DataDir,
        min_range_entries: Option<u32>,
    ) -> Result<Epoch, ServerError> {
        let name = read_current(data)?.ok_or_else(|| ServerError::NoEpoch {
            data_dir: data.root().to_path_buf(),
        })?;
        Self::load(data, &name, min_range_entries)
    }

    pub(crate) fn id(&self) -> EpochId {
        self.id
    }

    pub(crate) fn dir_name(&self) -> &str {
        &self.dir_name
    }

    pub(crate) fn key(&self) -> &ServerKey {
        &self.key
    }

    pub(crate) fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// Longest FetchRange prefix (k-anon mode), `None` if the mode is not offered.
    pub(crate) fn max_prefix_bits(&self) -> Option<u8> {
        self.max_prefix_bits
    }

    fn records(&self) -> &[u8] {
        &self.table[16..]
    }

    /// The table as nayose-table's view; the records were checked by `RecordTable::new` at load
    /// and never change afterwards.
    fn view(&self) -> Result<RecordTable<'_>, nayose_table::TableError> {
        RecordTable::from_checked(self.id, self.persons.len() as u32, self.records())
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.records().len() / RECORD_LEN
    }

    /// The entries whose tag starts with `prefix` (a contiguous range: the table is sorted).
    pub(crate) fn range_for_prefix(&self, prefix: &TagPrefix) -> Range<usize> {
        self.view().map_or(0..0, |t| t.range_for_prefix(prefix))
    }

    /// Entries `range` as `client` receives them: tag and label encrypted for (client, epoch).
    /// `range` is clamped to the table.
    pub(crate) fn entries_for_client(
        &self,
        range: Range<usize>,
        client: &ClientId,
    ) -> Result<Vec<nayose_wire::Entry>, nayose_table::TableError> {
        let range = range.start.min(self.len())..range.end.min(self.len());
        let entries =
            self.view()?
                .entries_for_client_par(range, client, &self.master, &self.persons)?;
        Ok(entries
            .into_iter()
            .map(|(tag, label)| nayose_wire::Entry {
                tag: nayose_wire::Tag(tag.0),
                label: nayose_wire::EncryptedLabel(label.0),
            })
            .collect())
    }
}

/// A published epoch as [`check_current_epoch`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochSummary {
    /// The epoch's sequence number.
    pub number: u64,
    /// The epoch id, `<number>-<key check>`.
    pub epoch_id: String,
    /// The VOPRF public key, hex.
    pub public_key: String,
    /// Table entries.
    pub entries: u64,
    /// Persons in the person list.
    pub persons: u64,
}

impl std::fmt::Display for EpochSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "current epoch {} ({} entries, {} persons), public key {}",
            self.epoch_id, self.entries, self.persons, self.public_key
        )
    }
}

/// Loads and fully checks the epoch `current` names (checksums, key files and permissions, tag
/// order): what a server start would do, without serving.
pub fn check_current_epoch(data_dir: &Path) -> Result<EpochSummary, ServerError> {
    let data = DataDir::new(data_dir);
    let e = Epoch::load_current(&data, None)?;
    Ok(EpochSummary {
        number: e.id().number(),
        epoch_id: e.id().to_string(),
        public_key: hex::encode(e.public_key()),
        entries: e.len() as u64,
        persons: e.persons.len() as u64,
    })
}

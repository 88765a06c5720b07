//! The previous epoch's number index and table, read in one streaming pass each (issue 10: a
//! build's resident memory does not grow with the files it reads).
//!
//! Each file is hashed while it is read and its SHA-256 compared with the manifest's at the end
//! ([`PrevIndex::finish`], [`PrevRecords::finish`]) — before anything built from it is
//! published, so a damaged or swapped file fails the build as a [`ServerError::CorruptEpoch`]
//! and leaves the current epoch as it was. Every record is also checked as it passes:
//! index keys strictly ascending (the positions are checked by the merge that uses them); table
//! tags strictly ascending, reserved bytes zero, version not above its epoch — the invariants
//! `RecordTable::new` checks on a whole table. The person map the build continues is read the
//! same way ([`read_person_seed`]), before the registry.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use nayose_table::{RECORD_LEN, RECORD_TAG_LEN, TAG_LEN};

use super::persons::PersonTable;
use super::spool::{BUFFER, HashingReader, read_record};
use crate::epoch::{INDEX_ENTRY_LEN, INDEX_MAGIC, Manifest, TABLE_MAGIC};
use crate::error::ServerError;
use crate::fsutil::check_owner_only;
use crate::layout::{DataDir, INDEX, PERSONS, TABLE, epoch_dir_name};
use crate::person_map::{
    PersonIdKey, PersonMapError, PersonMapFormat, person_map_format, read_person_map,
};

/// One file of the previous epoch, read once from its start.
struct PrevFile {
    what: String,
    path: PathBuf,
    expected: [u8; 32],
    reader: HashingReader<BufReader<File>>,
}

impl PrevFile {
    fn open(data: &DataDir, m: &Manifest, name: &str, sha_hex: &str) -> Result<Self, ServerError> {
        let what = epoch_dir_name(u64::from(m.number));
        let path = data.epoch_dir(m.number).join(name);
        let mut expected = [0u8; 32];
        if hex::decode_to_slice(sha_hex, &mut expected).is_err() {
            return Err(corrupt(
                &what,
                &path,
                "the manifest's SHA-256 is not 64 hex digits",
            ));
        }
        check_owner_only(&path)?;
        let file = File::open(&path).map_err(ServerError::io("cannot open", &path))?;
        Ok(PrevFile {
            what,
            reader: HashingReader::new(BufReader::with_capacity(BUFFER, file)),
            path,
            expected,
        })
    }

    fn corrupt(&self, reason: impl Into<String>) -> ServerError {
        corrupt(&self.what, &self.path, reason)
    }

    fn map_error(&self, e: PersonMapError) -> ServerError {
        match e {
            PersonMapError::Io(e) => ServerError::io("cannot read", &self.path)(e),
            PersonMapError::Corrupt(reason) => self.corrupt(reason),
            PersonMapError::WrongKey => ServerError::PersonIdKeyMismatch {
                path: self.path.clone(),
                epoch: self.what.clone(),
            },
        }
    }

    /// Reads `buf.len()` bytes; `Ok(false)` at the end of the file.
    fn read(&mut self, buf: &mut [u8]) -> Result<bool, ServerError> {
        match read_record(&mut self.reader, buf) {
            Ok(more) => Ok(more),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(self.corrupt("the file ends in the middle of a record"))
            }
            Err(e) => Err(ServerError::io("cannot read", &self.path)(e)),
        }
    }

    /// Reads `buf.len()` bytes that must be there.
    fn read_header(&mut self, buf: &mut [u8]) -> Result<(), ServerError> {
        if self.read(buf)? {
            Ok(())
        } else {
            Err(self.corrupt("truncated header"))
        }
    }

    /// Checks that nothing follows and that the SHA-256 of the whole file is the manifest's.
    fn finish(self) -> Result<(), ServerError> {
        let (what, path, expected) = (self.what, self.path, self.expected);
        let (hash, extra) = self
            .reader
            .finish()
            .map_err(ServerError::io("cannot read", &path))?;
        if extra {
            return Err(corrupt(&what, &path, "bytes after the last record"));
        }
        if hash != expected {
            return Err(corrupt(&what, &path, "SHA-256 does not match the manifest"));
        }
        Ok(())
    }
}

fn corrupt(what: &str, path: &Path, reason: impl Into<String>) -> ServerError {
    ServerError::CorruptEpoch {
        epoch: what.to_string(),
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The format of the person map of the epoch of `m` (its first 16 bytes; not yet verified).
pub(super) fn person_map_format_of(
    data: &DataDir,
    m: &Manifest,
) -> Result<PersonMapFormat, ServerError> {
    let mut file = PrevFile::open(data, m, PERSONS, &m.persons_sha256)?;
    let mut head = [0u8; 16];
    file.read_header(&mut head)?;
    person_map_format(&head).map_err(|e| file.map_error(e))
}

/// The person map of the epoch of `m`, read in one pass into a new table (the seed of the
/// build), its SHA-256 checked against the manifest's at the end. A format-1 map (raw ids) is
/// keyed with `key` on the way, each id keeping its serial.
pub(super) fn read_person_seed(
    data: &DataDir,
    m: &Manifest,
    key: &PersonIdKey,
) -> Result<PersonTable, ServerError> {
    let mut file = PrevFile::open(data, m, PERSONS, &m.persons_sha256)?;
    let mut head = [0u8; 16];
    file.read_header(&mut head)?;
    let format = person_map_format(&head).map_err(|e| file.map_error(e))?;
    // The count is checked as the map is read; until then it only sizes the table.
    let mut t = PersonTable::with_capacity((m.persons as usize).min(1 << 24));
    read_person_map(&mut file.reader, format, m.persons, key, &mut |k, s| {
        t.insert_seed(k, s)
    })
    .map_err(|e| file.map_error(e))?;
    file.finish()?;
    Ok(t)
}

/// The previous number index, entry by entry.
pub(super) struct PrevIndex {
    file: PrevFile,
    left: u64,
    last: Option<u128>,
}

impl PrevIndex {
    /// Opens `index.bin` of the epoch of `m` and checks its header: the entry count must be the
    /// manifest's.
    pub(super) fn open(data: &DataDir, m: &Manifest) -> Result<Self, ServerError> {
        let mut file = PrevFile::open(data, m, INDEX, &m.index_sha256)?;
        let mut head = [0u8; 24];
        file.read_header(&mut head)?;
        if head[..16] != INDEX_MAGIC[..] {
            return Err(file.corrupt("wrong file header (not a number index of this version)"));
        }
        let mut count = [0u8; 8];
        count.copy_from_slice(&head[16..]);
        let count = u64::from_le_bytes(count);
        if count != m.entries {
            return Err(file.corrupt(format!("{count} entries, the manifest says {}", m.entries)));
        }
        Ok(PrevIndex {
            file,
            left: count,
            last: None,
        })
    }

    /// The next (key, table position); `None` after the last.
    pub(super) fn next(&mut self) -> Result<Option<(u128, u32)>, ServerError> {
        if self.left == 0 {
            return Ok(None);
        }
        let mut e = [0u8; INDEX_ENTRY_LEN];
        if !self.file.read(&mut e)? {
            return Err(self.file.corrupt("fewer entries than its count"));
        }
        self.left -= 1;
        let mut k = [0u8; 16];
        k.copy_from_slice(&e[..16]);
        let key = u128::from_be_bytes(k);
        if self.last.is_some_and(|l| l >= key) {
            return Err(self.file.corrupt("keys are not strictly ascending"));
        }
        self.last = Some(key);
        Ok(Some((
            key,
            u32::from_le_bytes([e[16], e[17], e[18], e[19]]),
        )))
    }

    /// Names the index in an error about its content.
    pub(super) fn corrupt(&self, reason: &str) -> ServerError {
        self.file.corrupt(reason)
    }

    /// After the last entry: nothing follows and the checksum is the manifest's.
    pub(super) fn finish(self) -> Result<(), ServerError> {
        if self.left != 0 {
            return Err(self.file.corrupt("not read to its end"));
        }
        self.file.finish()
    }
}

/// The previous table, record by record.
pub(super) struct PrevRecords {
    file: PrevFile,
    left: u64,
    epoch: u32,
    last: Option<[u8; TAG_LEN]>,
}

impl PrevRecords {
    /// Opens `table.bin` of the epoch of `m` and checks its header.
    pub(super) fn open(data: &DataDir, m: &Manifest) -> Result<Self, ServerError> {
        let mut file = PrevFile::open(data, m, TABLE, &m.table_sha256)?;
        let mut head = [0u8; 16];
        file.read_header(&mut head)?;
        if head != *TABLE_MAGIC {
            return Err(file.corrupt("wrong file header (not a table)"));
        }
        Ok(PrevRecords {
            file,
            left: m.entries,
            epoch: m.number,
            last: None,
        })
    }

    /// Reads the next record into `rec`; `Ok(false)` after the last.
    pub(super) fn next(&mut self, rec: &mut [u8; RECORD_LEN]) -> Result<bool, ServerError> {
        if self.left == 0 {
            return Ok(false);
        }
        if !self.file.read(rec)? {
            return Err(self
                .file
                .corrupt("fewer records than the manifest's entries"));
        }
        self.left -= 1;
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&rec[..TAG_LEN]);
        if self.last.is_some_and(|l| l >= tag) {
            return Err(self.file.corrupt("tags are not strictly ascending"));
        }
        self.last = Some(tag);
        if rec[TAG_LEN..RECORD_TAG_LEN].iter().any(|b| *b != 0) {
            return Err(self
                .file
                .corrupt("a record's reserved tag bytes are not zero"));
        }
        let version = u32::from_le_bytes([rec[52], rec[53], rec[54], rec[55]]);
        if version > self.epoch {
            return Err(self.file.corrupt(format!(
                "version {version} is after the epoch {}",
                self.epoch
            )));
        }
        Ok(true)
    }

    /// After the last record: nothing follows and the checksum is the manifest's.
    pub(super) fn finish(self) -> Result<(), ServerError> {
        if self.left != 0 {
            return Err(self.file.corrupt("not read to its end"));
        }
        self.file.finish()
    }
}

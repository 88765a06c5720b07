//! Writing a new epoch's files in a stream, each hashed as it is written (the manifest's
//! SHA-256 values), and the table digest read back from the written table.
//!
//! The byte layouts are the server's own, defined once (`crate::epoch::put_index`,
//! `crate::person_map::put_person_map`), which write here into a file and in `encode_index` /
//! `encode_person_map` into memory.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use nayose_table::{
    DigestBuilder, KeyPeriodId, RECORD_LEN, TAG_LEN, TableDigest, Tag, UpsertChain,
};

use super::persons::PersonTable;
use super::registry::NumberRow;
use super::spool::{BUFFER, SecretWriter, read_record};
use crate::epoch::{TABLE_MAGIC, put_index};
use crate::error::ServerError;
use crate::fsutil::create_new_private;
use crate::person_map::{PersonIdKey, put_person_map};

/// A new owner-only file, written through a hashing [`SecretWriter`].
pub(super) fn create_hashed(path: &Path) -> Result<SecretWriter, ServerError> {
    Ok(SecretWriter::hashed(create_new_private(path)?, path))
}

fn checksum(hash: Option<[u8; 32]>) -> Result<[u8; 32], ServerError> {
    hash.ok_or_else(|| ServerError::Internal("a file was written without its checksum".into()))
}

/// Writes `index.bin`: every number (ascending by key) and the position of its record.
pub(super) fn write_index(
    path: &Path,
    numbers: &[NumberRow],
    pos_of_row: &[u32],
) -> Result<[u8; 32], ServerError> {
    let mut w = create_hashed(path)?;
    let items = numbers
        .iter()
        .zip(pos_of_row)
        .map(|(row, &pos)| (row.key(), pos));
    put_index(numbers.len(), items, &mut |b| w.put(b))?;
    checksum(w.finish_synced()?)
}

/// Writes `persons.bin`: the person key and serial of every person ever seen in the data
/// directory, ascending by key.
pub(super) fn write_persons(
    path: &Path,
    persons: &PersonTable,
    key: &PersonIdKey,
) -> Result<[u8; 32], ServerError> {
    let mut w = create_hashed(path)?;
    put_person_map(key, persons.len() as usize, persons.sorted(), &mut |b| {
        w.put(b)
    })?;
    checksum(w.finish_synced()?)
}

/// The table digest of the table just written to `path` (`entries` records), read back in one
/// pass: the digest covers the upsert chain, which is known only once every record is written.
pub(super) fn digest_of_written(
    path: &Path,
    key_period: KeyPeriodId,
    epoch: u32,
    chain: &UpsertChain,
    entries: u64,
) -> Result<TableDigest, ServerError> {
    let file = File::open(path).map_err(ServerError::io("cannot open", path))?;
    let mut r = BufReader::with_capacity(BUFFER, file);
    let bad = |reason: String| {
        ServerError::Internal(format!("{}: {reason} (just written)", path.display()))
    };
    let mut head = [0u8; 16];
    if !read_record(&mut r, &mut head).map_err(ServerError::io("cannot read", path))?
        || head != *TABLE_MAGIC
    {
        return Err(bad("wrong header".into()));
    }
    let mut d = DigestBuilder::new(key_period, epoch, chain, entries);
    let mut rec = zeroize::Zeroizing::new([0u8; RECORD_LEN]);
    while read_record(&mut r, rec.as_mut_slice()).map_err(ServerError::io("cannot read", path))? {
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(&rec[..TAG_LEN]);
        d.push(&Tag(t)).map_err(|e| bad(e.to_string()))?;
    }
    d.finish().map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::epoch::encode_index;
    use crate::person_map::{PERSON_ENTRY_LEN, PERSON_MAP_HEADER_LEN, encode_person_map};
    use rand::SeedableRng;

    #[test]
    fn streamed_files_are_the_bytes_of_the_in_memory_encoders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let numbers = [
            NumberRow::new(3, 0, 0),
            NumberRow::new(1 << 100, 1, 1),
            NumberRow::new(u128::MAX, 2, 0),
        ];
        let pos = [2u32, 0, 1];
        let p = dir.path().join("index.bin");
        let sum = write_index(&p, &numbers, &pos).expect("index");
        let want = encode_index(3, numbers.iter().zip(pos).map(|(r, p)| (r.key(), p)));
        let got = std::fs::read(&p).expect("read");
        assert_eq!(got, want.as_slice());
        assert_eq!(hex::encode(sum), crate::epoch::sha256_hex(&got));

        let mut t = PersonTable::with_capacity(0);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let keys = [[9u8; 16], [1; 16], [5; 16], [7; 16]];
        for k in &keys {
            t.intern(k, &mut rng).expect("intern");
        }
        let p = dir.path().join("persons.bin");
        let key = PersonIdKey::from_bytes(&zeroize::Zeroizing::new([4; 32]));
        write_persons(&p, &t, &key).expect("persons");
        let s = t.serials();
        let sorted = [
            (&keys[1], s[1]),
            (&keys[2], s[2]),
            (&keys[3], s[3]),
            (&keys[0], s[0]),
        ];
        let got = std::fs::read(&p).expect("read");
        assert_eq!(got, encode_person_map(&key, 4, sorted.into_iter()));
        assert_eq!(got.len(), PERSON_MAP_HEADER_LEN + 4 * PERSON_ENTRY_LEN);
    }
}

//! A read-only view of the server-local record format (e.g. over a file read or mapped into
//! memory).
//!
//! A record is `tag (9) || 0^7 || label_key (32) || person serial (u32 LE) || version (u32 LE)`
//! = 56 bytes; a record buffer is records back to back, nothing else (any file header is the server's
//! business). Invariants of a [`RecordTable`] (checked once by [`RecordTable::new`]): the buffer
//! is a whole number of records, the tags are strictly ascending and their reserved bytes zero,
//! and no version is above the table's epoch (a person serial may be any 32-bit value: servers
//! draw them at random, table.md §3.2). This format is server-local:
//! it never crosses the wire.

use std::ops::Range;

use rayon::prelude::*;

use crate::block::EntryBlock;
use crate::consts::{MAX_BLOCK_ENTRIES, RECORD_LEN, RECORD_TAG_LEN, TAG_LEN};
use crate::digest::{DigestBuilder, TableDigest, UpsertChain};
use crate::error::TableError;
use crate::ids::{ClientId, KeyPeriodId};
use crate::label::{EncryptedLabel, Label};
use crate::perm::LabelPermutation;
use crate::table::{TableEntry, encrypt_entry};
use crate::tag::Tag;

/// Ranges at least this long are encrypted in parallel.
const PAR_THRESHOLD: usize = 4096;

/// A checked, borrowed table of 56-byte records of one epoch.
#[derive(Debug, Clone, Copy)]
pub struct RecordTable<'a> {
    key_period: KeyPeriodId,
    epoch: u32,
    bytes: &'a [u8],
}

impl<'a> RecordTable<'a> {
    /// Checks `bytes` (see the module invariants) and wraps them.
    pub fn new(key_period: KeyPeriodId, epoch: u32, bytes: &'a [u8]) -> Result<Self, TableError> {
        if !bytes.len().is_multiple_of(RECORD_LEN) {
            return Err(TableError::RecordsLength { len: bytes.len() });
        }
        let t = RecordTable {
            key_period,
            epoch,
            bytes,
        };
        let n = t.len();
        if let Some(i) = (0..n).into_par_iter().find_first(|&i| t.version(i) > epoch) {
            return Err(TableError::VersionAfterEpoch {
                index: i,
                version: t.version(i),
                epoch,
            });
        }
        if let Some(i) = (0..n)
            .into_par_iter()
            .find_first(|&i| t.record(i)[TAG_LEN..RECORD_TAG_LEN].iter().any(|b| *b != 0))
        {
            return Err(TableError::RecordTagReserved { index: i });
        }
        if let Some(i) = (1..n)
            .into_par_iter()
            .find_first(|&i| t.tag_bytes(i - 1) >= t.tag_bytes(i))
        {
            return Err(TableError::RecordsNotSorted { index: i });
        }
        Ok(t)
    }

    /// Wraps `bytes` that an earlier [`RecordTable::new`] checked and that cannot have changed
    /// since (an immutable, checksum-verified map): only the length is checked again, so a
    /// server can make a view per request without a pass over the table.
    pub fn checked_at_load(
        key_period: KeyPeriodId,
        epoch: u32,
        bytes: &'a [u8],
    ) -> Result<Self, TableError> {
        if !bytes.len().is_multiple_of(RECORD_LEN) {
            return Err(TableError::RecordsLength { len: bytes.len() });
        }
        Ok(RecordTable {
            key_period,
            epoch,
            bytes,
        })
    }

    fn record(&self, i: usize) -> &'a [u8] {
        &self.bytes[i * RECORD_LEN..(i + 1) * RECORD_LEN]
    }

    fn tag_bytes(&self, i: usize) -> &'a [u8] {
        &self.record(i)[..TAG_LEN]
    }

    fn u32_at(&self, i: usize, off: usize) -> u32 {
        let r = self.record(i);
        u32::from_le_bytes([r[off], r[off + 1], r[off + 2], r[off + 3]])
    }

    fn person_at(&self, i: usize) -> u32 {
        self.u32_at(i, RECORD_LEN - 8)
    }

    /// The key period the table belongs to.
    pub fn key_period(&self) -> KeyPeriodId {
        self.key_period
    }

    /// The table's epoch.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.bytes.len() / RECORD_LEN
    }

    /// Whether the table has no entry.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The tag of entry `i` (panics if `i >= len()`, like slice indexing).
    pub fn tag(&self, i: usize) -> Tag {
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(self.tag_bytes(i));
        Tag(t)
    }

    /// The version of entry `i`.
    pub fn version(&self, i: usize) -> u32 {
        self.u32_at(i, RECORD_LEN - 4)
    }

    /// Entry `i`, with its secret label key.
    pub fn entry(&self, i: usize) -> TableEntry {
        // A record slice is exactly RECORD_LEN bytes, so from_record cannot fail here.
        TableEntry::from_record(self.record(i)).unwrap_or_else(|_| unreachable!())
    }

    /// The index of the entry with `tag`, if any (binary search).
    pub fn find(&self, tag: &Tag) -> Option<usize> {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.tag_bytes(mid).cmp(&tag.0[..]) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// The table digest of this epoch, whose upsert chain is `chain`.
    pub fn digest(&self, chain: &UpsertChain) -> TableDigest {
        let mut b = DigestBuilder::new(self.key_period, self.epoch, chain, self.len() as u64);
        for i in 0..self.len() {
            if b.push(&self.tag(i)).is_err() {
                unreachable!("a checked record table is strictly ascending");
            }
        }
        b.finish().unwrap_or_else(|_| unreachable!())
    }

    /// The entries `range` (at most 65,536) as one entry block of a base for `client`: labels
    /// from `labels` (the client's permutation), encrypted under the pad of this epoch.
    pub fn base_block(
        &self,
        range: Range<usize>,
        client: &ClientId,
        labels: &LabelPermutation,
    ) -> Result<EntryBlock, TableError> {
        if range.start >= range.end || range.end > self.len() || range.len() > MAX_BLOCK_ENTRIES {
            return Err(TableError::RangeOutOfBounds {
                start: range.start,
                end: range.end,
                len: self.len(),
            });
        }
        let one = |chunk: Range<usize>| -> Vec<(Tag, EncryptedLabel)> {
            let serials: Vec<u32> = chunk.clone().map(|i| self.person_at(i)).collect();
            let mut plain = vec![0u32; serials.len()];
            labels.labels(&serials, &mut plain);
            chunk
                .zip(plain)
                .map(|(i, l)| {
                    let e = self.entry(i);
                    let c = encrypt_entry(
                        &e,
                        client,
                        self.key_period,
                        self.epoch,
                        &Label(l.to_be_bytes()),
                    );
                    (e.tag, c)
                })
                .collect()
        };
        const PIECE: usize = 1024;
        let pieces: Vec<Range<usize>> = range
            .clone()
            .step_by(PIECE)
            .map(|s| s..(s + PIECE).min(range.end))
            .collect();
        let entries: Vec<(Tag, EncryptedLabel)> = if range.len() < PAR_THRESHOLD {
            pieces.into_iter().flat_map(one).collect()
        } else {
            pieces.into_par_iter().flat_map_iter(one).collect()
        };
        EntryBlock::encode(&entries)
    }
}

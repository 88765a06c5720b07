//! A read-only view of the server-local record format (e.g. over a file read or mapped into
//! memory).
//!
//! A record is `tag (16) || label_key (32) || person (u32 LE) || version (u32 LE)` = 56 bytes;
//! a record buffer is records back to back, nothing else (any file header is the server's
//! business). Invariants of a [`RecordTable`] (checked once by [`RecordTable::new`]): the buffer
//! is a whole number of records, the tags are strictly ascending, every person index is below
//! the person count, and no version is above the table's epoch. This format is server-local:
//! it never crosses the wire.

use std::ops::Range;

use rayon::prelude::*;

use crate::client_table::ClientEntry;
use crate::consts::{RECORD_LEN, TAG_LEN};
use crate::digest::{DigestBuilder, TableDigest};
use crate::error::TableError;
use crate::ids::{ClientId, KeyPeriodId};
use crate::secrets::LabelMasterKey;
use crate::table::{TableEntry, encrypt_entry};
use crate::tag::Tag;

/// Ranges at least this long are encrypted in parallel.
const PAR_THRESHOLD: usize = 4096;

/// A checked, borrowed table of 56-byte records of one epoch.
#[derive(Debug, Clone, Copy)]
pub struct RecordTable<'a> {
    key_period: KeyPeriodId,
    epoch: u32,
    person_count: u32,
    bytes: &'a [u8],
}

impl<'a> RecordTable<'a> {
    /// Checks `bytes` (see the module invariants) and wraps them.
    pub fn new(
        key_period: KeyPeriodId,
        epoch: u32,
        person_count: u32,
        bytes: &'a [u8],
    ) -> Result<Self, TableError> {
        if !bytes.len().is_multiple_of(RECORD_LEN) {
            return Err(TableError::RecordsLength { len: bytes.len() });
        }
        let t = RecordTable {
            key_period,
            epoch,
            person_count,
            bytes,
        };
        let n = t.len();
        if let Some(i) = (0..n)
            .into_par_iter()
            .find_first(|&i| t.person_at(i) >= person_count)
        {
            return Err(TableError::PersonIndexOutOfRange {
                index: t.person_at(i),
                person_count,
            });
        }
        if let Some(i) = (0..n).into_par_iter().find_first(|&i| t.version(i) > epoch) {
            return Err(TableError::VersionAfterEpoch {
                index: i,
                version: t.version(i),
                epoch,
            });
        }
        if let Some(i) = (1..n)
            .into_par_iter()
            .find_first(|&i| t.tag_bytes(i - 1) >= t.tag_bytes(i))
        {
            return Err(TableError::RecordsNotSorted { index: i });
        }
        Ok(t)
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

    /// The table digest of this epoch's state.
    pub fn digest(&self) -> TableDigest {
        let mut b = DigestBuilder::new(self.key_period, self.epoch, self.len() as u64);
        for i in 0..self.len() {
            // Ascending and counted by construction (checked in `new`).
            if b.push(&self.tag(i), self.version(i)).is_err() {
                unreachable!("a checked record table is strictly ascending");
            }
        }
        b.finish().unwrap_or_else(|_| unreachable!())
    }

    /// Entries `range` as `client` receives them (a base chunk), encrypted in parallel for
    /// long ranges.
    pub fn entries_for_client<P: AsRef<[u8]> + Sync>(
        &self,
        range: Range<usize>,
        client: &ClientId,
        master: &LabelMasterKey,
        person_ids: &[P],
    ) -> Result<Vec<ClientEntry>, TableError> {
        if range.start > range.end || range.end > self.len() {
            return Err(TableError::RangeOutOfBounds {
                start: range.start,
                end: range.end,
                len: self.len(),
            });
        }
        if person_ids.len() != self.person_count as usize {
            return Err(TableError::PersonIdsMismatch {
                expected: self.person_count,
                got: person_ids.len(),
            });
        }
        let one = |i: usize| {
            let e = self.entry(i);
            encrypt_entry(
                &e,
                client,
                self.key_period,
                master,
                person_ids[e.person as usize].as_ref(),
            )
        };
        if range.len() < PAR_THRESHOLD {
            Ok(range.map(one).collect())
        } else {
            Ok(range.into_par_iter().map(one).collect())
        }
    }
}

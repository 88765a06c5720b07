//! A read-only view of the server-local record format (e.g. over a memory-mapped file).
//!
//! A record is `tag (16) || label_key (32) || person (u32 little-endian, 4)` = 52 bytes; a
//! record buffer is records back to back, nothing else (any file header is the server's
//! business). Invariants of a [`RecordTable`] (checked once by [`RecordTable::new`]): the buffer
//! is a whole number of records, the tags are strictly ascending, and every person index is
//! below the person count. This format is server-local: it never crosses the wire.

use std::ops::Range;

use rayon::prelude::*;

use crate::consts::{LABEL_KEY_LEN, RECORD_LEN, TAG_LEN};
use crate::error::TableError;
use crate::ids::{ClientId, EpochId};
use crate::kanon;
use crate::label::EncryptedLabel;
use crate::secrets::{LabelKey, LabelMasterKey};
use crate::table::{SortedRows, client_entries, client_entries_par, prefix_range};
use crate::tag::{Tag, TagPrefix};

/// An epoch table read from server-local records without copying them.
#[derive(Debug, Clone, Copy)]
pub struct RecordTable<'a> {
    epoch: EpochId,
    person_count: u32,
    bytes: &'a [u8],
}

impl<'a> RecordTable<'a> {
    /// Checks `bytes` (records back to back) and wraps them. O(N), parallel.
    pub fn new(epoch: EpochId, person_count: u32, bytes: &'a [u8]) -> Result<Self, TableError> {
        if !bytes.len().is_multiple_of(RECORD_LEN) {
            return Err(TableError::RecordsLength { len: bytes.len() });
        }
        let t = RecordTable {
            epoch,
            person_count,
            bytes,
        };
        let n = t.row_count();
        if let Some(i) = (0..n)
            .into_par_iter()
            .find_first(|&i| t.person_at(i) >= person_count)
        {
            return Err(TableError::PersonIndexOutOfRange {
                index: t.person_at(i),
                person_count,
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

    /// Wraps records that already passed [`RecordTable::new`], in O(1): a server checks its
    /// table once at load and then serves every request from the same, unchanged bytes. Only the
    /// length is checked here; the order and person-index invariants are the caller's promise.
    pub fn from_checked(
        epoch: EpochId,
        person_count: u32,
        bytes: &'a [u8],
    ) -> Result<Self, TableError> {
        if !bytes.len().is_multiple_of(RECORD_LEN) {
            return Err(TableError::RecordsLength { len: bytes.len() });
        }
        Ok(RecordTable {
            epoch,
            person_count,
            bytes,
        })
    }

    fn record(&self, i: usize) -> &'a [u8] {
        &self.bytes[i * RECORD_LEN..(i + 1) * RECORD_LEN]
    }

    fn tag_bytes(&self, i: usize) -> &'a [u8] {
        &self.record(i)[..TAG_LEN]
    }

    /// The table's epoch.
    pub fn epoch(&self) -> EpochId {
        self.epoch
    }

    /// The number of persons the entries refer to.
    pub fn person_count(&self) -> u32 {
        self.person_count
    }

    /// Number of entries N.
    pub fn len(&self) -> usize {
        self.row_count()
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The tag of entry `i` (panics if `i >= len()`, like slice indexing).
    pub fn tag(&self, i: usize) -> Tag {
        self.tag_at(i)
    }

    /// The contiguous range of entries whose tags start with `prefix` (empty if none).
    pub fn range_for_prefix(&self, prefix: &TagPrefix) -> Range<usize> {
        prefix_range(self, prefix)
    }

    /// See [`crate::EpochTable::entries_for_client`].
    pub fn entries_for_client<P: AsRef<[u8]>>(
        &self,
        range: Range<usize>,
        client: &'a ClientId,
        master: &'a LabelMasterKey,
        person_ids: &'a [P],
    ) -> Result<impl Iterator<Item = (Tag, EncryptedLabel)> + 'a, TableError> {
        client_entries(
            *self,
            self.person_count,
            range,
            client,
            self.epoch,
            master,
            person_ids,
        )
    }

    /// See [`crate::EpochTable::entries_for_client_par`].
    pub fn entries_for_client_par<P: AsRef<[u8]> + Sync>(
        &self,
        range: Range<usize>,
        client: &ClientId,
        master: &LabelMasterKey,
        person_ids: &[P],
    ) -> Result<Vec<(Tag, EncryptedLabel)>, TableError> {
        client_entries_par(
            self,
            self.person_count,
            range,
            client,
            self.epoch,
            master,
            person_ids,
        )
    }

    /// See [`crate::EpochTable::min_prefix_range_len`].
    pub fn min_prefix_range_len(&self, bits: u8) -> usize {
        kanon::min_prefix_range_len(self, bits)
    }

    /// See [`crate::EpochTable::k_anonymous_prefix_bits`].
    pub fn k_anonymous_prefix_bits(&self, k: u64) -> Result<Option<u8>, TableError> {
        kanon::k_anonymous_prefix_bits(self, k)
    }
}

impl SortedRows for RecordTable<'_> {
    fn row_count(&self) -> usize {
        self.bytes.len() / RECORD_LEN
    }
    fn tag_at(&self, i: usize) -> Tag {
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(self.tag_bytes(i));
        Tag(t)
    }
    fn key_at(&self, i: usize) -> LabelKey {
        let r = self.record(i);
        let mut k = zeroize::Zeroizing::new([0u8; LABEL_KEY_LEN]);
        k.copy_from_slice(&r[TAG_LEN..TAG_LEN + LABEL_KEY_LEN]);
        LabelKey::from_bytes(&k)
    }
    fn person_at(&self, i: usize) -> u32 {
        let r = self.record(i);
        let mut p = [0u8; 4];
        p.copy_from_slice(&r[TAG_LEN + LABEL_KEY_LEN..]);
        u32::from_le_bytes(p)
    }
}

//! The server's epoch table: entries sorted by tag, prefix ranges, per-client encryption.
//!
//! Invariants of an [`EpochTable`] (and of a [`crate::RecordTable`]): entries are in strictly
//! ascending tag order (so no two share a tag and every tag prefix is one contiguous range),
//! and every entry's person index is below the table's person count. Labels are never stored:
//! they are computed for the requesting client when entries are served.

use std::borrow::Borrow;
use std::ops::Range;

use rayon::prelude::*;
use zeroize::Zeroizing;

use crate::consts::{LABEL_KEY_LEN, OPRF_OUTPUT_LEN, RECORD_LEN, TAG_LEN};
use crate::derive::{derive_entry_secrets, encrypt_label, label_for};
use crate::error::TableError;
use crate::ids::{ClientId, EpochId};
use crate::kanon;
use crate::label::EncryptedLabel;
use crate::secrets::{LabelKey, LabelMasterKey};
use crate::tag::{Tag, TagPrefix};

/// Ranges at least this long are encrypted in parallel by `entries_for_client_par`.
const PAR_THRESHOLD: usize = 4096;

/// One entry of the server's table: the public tag, the secret label key and the index of the
/// entry's person in the server's person list.
#[derive(Clone, Debug)]
pub struct TableEntry {
    /// The entry's public tag.
    pub tag: Tag,
    /// The entry's secret label key.
    pub label_key: LabelKey,
    /// Index of the person (into the person-id list handed to `entries_for_client`).
    pub person: u32,
}

impl TableEntry {
    /// The server-local 52-byte record: `tag (16) || label_key (32) || person (u32 LE, 4)`.
    pub fn to_record(&self) -> Zeroizing<[u8; RECORD_LEN]> {
        let mut r = Zeroizing::new([0u8; RECORD_LEN]);
        r[..TAG_LEN].copy_from_slice(self.tag.as_bytes());
        r[TAG_LEN..TAG_LEN + LABEL_KEY_LEN].copy_from_slice(self.label_key.as_bytes());
        r[TAG_LEN + LABEL_KEY_LEN..].copy_from_slice(&self.person.to_le_bytes());
        r
    }

    /// Reads a server-local record (any 52 bytes are a well-formed record).
    pub fn from_record(record: &[u8; RECORD_LEN]) -> Self {
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&record[..TAG_LEN]);
        let mut key = Zeroizing::new([0u8; LABEL_KEY_LEN]);
        key.copy_from_slice(&record[TAG_LEN..TAG_LEN + LABEL_KEY_LEN]);
        let mut person = [0u8; 4];
        person.copy_from_slice(&record[TAG_LEN + LABEL_KEY_LEN..]);
        TableEntry {
            tag: Tag(tag),
            label_key: LabelKey::from_bytes(&key),
            person: u32::from_le_bytes(person),
        }
    }
}

/// Read access to a table sorted by tag; shared by [`EpochTable`] and [`crate::RecordTable`].
pub(crate) trait SortedRows: Sync {
    fn row_count(&self) -> usize;
    fn tag_at(&self, i: usize) -> Tag;
    fn key_at(&self, i: usize) -> LabelKey;
    fn person_at(&self, i: usize) -> u32;
}

impl<T: SortedRows + ?Sized> SortedRows for &T {
    fn row_count(&self) -> usize {
        (**self).row_count()
    }
    fn tag_at(&self, i: usize) -> Tag {
        (**self).tag_at(i)
    }
    fn key_at(&self, i: usize) -> LabelKey {
        (**self).key_at(i)
    }
    fn person_at(&self, i: usize) -> u32 {
        (**self).person_at(i)
    }
}

/// The first index in `0..n` for which `pred` is false (`pred` must be true then false).
pub(crate) fn partition_point(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

pub(crate) fn prefix_range<R: SortedRows + ?Sized>(rows: &R, prefix: &TagPrefix) -> Range<usize> {
    use std::cmp::Ordering::{Greater, Less};
    let n = rows.row_count();
    let start = partition_point(n, |i| prefix.cmp_tag(&rows.tag_at(i)) == Less);
    let end = partition_point(n, |i| prefix.cmp_tag(&rows.tag_at(i)) != Greater);
    start..end
}

fn check_client_args(
    n: usize,
    person_count: u32,
    range: &Range<usize>,
    person_ids: usize,
) -> Result<(), TableError> {
    if range.start > range.end || range.end > n {
        return Err(TableError::RangeOutOfBounds {
            start: range.start,
            end: range.end,
            len: n,
        });
    }
    if person_ids != person_count as usize {
        return Err(TableError::PersonIdsMismatch {
            expected: person_count,
            got: person_ids,
        });
    }
    Ok(())
}

fn encrypt_row<R: SortedRows + ?Sized, P: AsRef<[u8]>>(
    rows: &R,
    i: usize,
    client: &ClientId,
    epoch: EpochId,
    master: &LabelMasterKey,
    person_ids: &[P],
) -> (Tag, EncryptedLabel) {
    let tag = rows.tag_at(i);
    let key = rows.key_at(i);
    // In range: checked when the rows were built or loaded, and person_ids.len() was checked.
    let label = label_for(
        master,
        client,
        person_ids[rows.person_at(i) as usize].as_ref(),
    );
    (tag, encrypt_label(&key, client, epoch, &tag, &label))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn client_entries<'a, R: SortedRows + Copy + 'a, P: AsRef<[u8]>>(
    rows: R,
    person_count: u32,
    range: Range<usize>,
    client: &'a ClientId,
    epoch: EpochId,
    master: &'a LabelMasterKey,
    person_ids: &'a [P],
) -> Result<impl Iterator<Item = (Tag, EncryptedLabel)> + 'a, TableError> {
    check_client_args(rows.row_count(), person_count, &range, person_ids.len())?;
    Ok(range.map(move |i| encrypt_row(&rows, i, client, epoch, master, person_ids)))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn client_entries_par<R: SortedRows + ?Sized, P: AsRef<[u8]> + Sync>(
    rows: &R,
    person_count: u32,
    range: Range<usize>,
    client: &ClientId,
    epoch: EpochId,
    master: &LabelMasterKey,
    person_ids: &[P],
) -> Result<Vec<(Tag, EncryptedLabel)>, TableError> {
    check_client_args(rows.row_count(), person_count, &range, person_ids.len())?;
    if range.len() < PAR_THRESHOLD {
        return Ok(range
            .map(|i| encrypt_row(rows, i, client, epoch, master, person_ids))
            .collect());
    }
    Ok(range
        .into_par_iter()
        .map(|i| encrypt_row(rows, i, client, epoch, master, person_ids))
        .collect())
}

/// Collects (o_y, person index) pairs for one epoch and sorts them into an [`EpochTable`].
#[derive(Debug)]
pub struct EpochTableBuilder {
    epoch: EpochId,
    person_count: u32,
    entries: Vec<TableEntry>,
}

impl EpochTableBuilder {
    /// A builder for `epoch` whose entries refer to persons `0..person_count`.
    pub fn new(epoch: EpochId, person_count: u32) -> Self {
        Self::with_capacity(epoch, person_count, 0)
    }

    /// As [`EpochTableBuilder::new`], reserving room for `capacity` entries.
    pub fn with_capacity(epoch: EpochId, person_count: u32, capacity: usize) -> Self {
        EpochTableBuilder {
            epoch,
            person_count,
            entries: Vec::with_capacity(capacity),
        }
    }

    fn check_person(&self, person: u32) -> Result<(), TableError> {
        if person >= self.person_count {
            return Err(TableError::PersonIndexOutOfRange {
                index: person,
                person_count: self.person_count,
            });
        }
        Ok(())
    }

    /// Adds the entry of one number: its OPRF output under the epoch key and its person index.
    pub fn push(&mut self, o_y: &[u8; OPRF_OUTPUT_LEN], person: u32) -> Result<(), TableError> {
        self.check_person(person)?;
        let (tag, label_key) = derive_entry_secrets(o_y);
        self.entries.push(TableEntry {
            tag,
            label_key,
            person,
        });
        Ok(())
    }

    /// Adds many entries at once, deriving them in parallel: `outputs[i]` belongs to person
    /// `persons[i]`. Adds nothing if any argument is invalid.
    pub fn push_batch<O: Borrow<[u8; OPRF_OUTPUT_LEN]> + Sync>(
        &mut self,
        outputs: &[O],
        persons: &[u32],
    ) -> Result<(), TableError> {
        if outputs.len() != persons.len() {
            return Err(TableError::LengthMismatch {
                outputs: outputs.len(),
                persons: persons.len(),
            });
        }
        for &p in persons {
            self.check_person(p)?;
        }
        self.entries.par_extend(
            outputs
                .par_iter()
                .zip(persons.par_iter())
                .map(|(o, &person)| {
                    let (tag, label_key) = derive_entry_secrets(o.borrow());
                    TableEntry {
                        tag,
                        label_key,
                        person,
                    }
                }),
        );
        Ok(())
    }

    /// Number of entries added so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry was added yet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sorts the entries by tag. Fails with [`TableError::DuplicateTags`] if any two entries
    /// share a tag.
    pub fn finish(mut self) -> Result<EpochTable, TableError> {
        self.entries.par_sort_unstable_by(|a, b| a.tag.cmp(&b.tag));
        let e = &self.entries;
        let dups = (1..e.len())
            .into_par_iter()
            .filter(|&i| e[i - 1].tag == e[i].tag)
            .count();
        if dups > 0 {
            return Err(TableError::DuplicateTags { count: dups });
        }
        Ok(EpochTable {
            epoch: self.epoch,
            person_count: self.person_count,
            entries: self.entries,
        })
    }
}

/// One epoch's table in memory, sorted by tag (see the module invariants).
#[derive(Debug)]
pub struct EpochTable {
    epoch: EpochId,
    person_count: u32,
    entries: Vec<TableEntry>,
}

impl SortedRows for EpochTable {
    fn row_count(&self) -> usize {
        self.entries.len()
    }
    fn tag_at(&self, i: usize) -> Tag {
        self.entries[i].tag
    }
    fn key_at(&self, i: usize) -> LabelKey {
        self.entries[i].label_key.clone()
    }
    fn person_at(&self, i: usize) -> u32 {
        self.entries[i].person
    }
}

impl EpochTable {
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
        self.entries.len()
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in ascending tag order.
    pub fn entries(&self) -> &[TableEntry] {
        &self.entries
    }

    /// The contiguous range of entries whose tags start with `prefix` (empty if none).
    pub fn range_for_prefix(&self, prefix: &TagPrefix) -> Range<usize> {
        prefix_range(self, prefix)
    }

    /// The entries of `range` as `client` receives them in this epoch: each entry's tag and its
    /// person's label for `client`, encrypted under the entry's key. Labels are computed on
    /// the fly; `person_ids[i]` is the stable id of person `i`.
    pub fn entries_for_client<'a, P: AsRef<[u8]>>(
        &'a self,
        range: Range<usize>,
        client: &'a ClientId,
        master: &'a LabelMasterKey,
        person_ids: &'a [P],
    ) -> Result<impl Iterator<Item = (Tag, EncryptedLabel)> + 'a, TableError> {
        client_entries(
            self,
            self.person_count,
            range,
            client,
            self.epoch,
            master,
            person_ids,
        )
    }

    /// As [`EpochTable::entries_for_client`], computed in parallel into a vector (use for
    /// large ranges, e.g. one chunk of a full download).
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

    /// The smallest number of entries in any of the 2^bits prefix ranges of length `bits`,
    /// counting empty ranges as 0 (table.md, "k-anonymous prefix length").
    pub fn min_prefix_range_len(&self, bits: u8) -> usize {
        kanon::min_prefix_range_len(self, bits)
    }

    /// The largest prefix length L such that every one of the 2^L prefix ranges of length L
    /// (empty ones included) holds at least `k` entries; `None` if the table has fewer than
    /// `k` entries.
    pub fn k_anonymous_prefix_bits(&self, k: u64) -> Result<Option<u8>, TableError> {
        kanon::k_anonymous_prefix_bits(self, k)
    }

    /// The server-local records of all entries, in table order.
    pub fn records(&self) -> impl Iterator<Item = Zeroizing<[u8; RECORD_LEN]>> + '_ {
        self.entries.iter().map(TableEntry::to_record)
    }
}

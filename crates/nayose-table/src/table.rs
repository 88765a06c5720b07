//! The server's table entries: derivation, the 56-byte server-local record, sorting, and
//! per-client encryption of one entry.
//!
//! Invariants: a sorted entry list ([`sort_entries`]) is in strictly ascending tag order (no two
//! entries share a tag). Labels are never stored: they are computed for the requesting client
//! when entries are served ([`encrypt_entry`]), under a pad bound to the entry's version.

use rayon::prelude::*;
use zeroize::Zeroizing;

use crate::consts::{LABEL_KEY_LEN, OPRF_OUTPUT_LEN, RECORD_LEN, RECORD_TAG_LEN, TAG_LEN};
use crate::derive::{derive_entry_secrets, encrypt_label};
use crate::error::TableError;
use crate::ids::{ClientId, KeyPeriodId};
use crate::label::{EncryptedLabel, Label};
use crate::secrets::LabelKey;
use crate::tag::Tag;

/// One entry of the server's table.
#[derive(Clone, Debug)]
pub struct TableEntry {
    /// The entry's public tag.
    pub tag: Tag,
    /// The entry's secret label key.
    pub label_key: LabelKey,
    /// The serial of the entry's person (any 32-bit value, table.md §3.2; stable for as long as
    /// the data directory lives).
    pub person: u32,
    /// The epoch in which the entry was added or its label last changed.
    pub version: u32,
}

impl TableEntry {
    /// The entry of one number: its OPRF output under the key period's key, its person and version.
    pub fn derive(o_y: &[u8; OPRF_OUTPUT_LEN], person: u32, version: u32) -> Self {
        let (tag, label_key) = derive_entry_secrets(o_y);
        TableEntry {
            tag,
            label_key,
            person,
            version,
        }
    }

    /// The server-local 56-byte record:
    /// `tag (16) || label_key (32) || person (u32 LE) || version (u32 LE)`.
    pub fn to_record(&self) -> Zeroizing<[u8; RECORD_LEN]> {
        let mut r = Zeroizing::new([0u8; RECORD_LEN]);
        r[..TAG_LEN].copy_from_slice(self.tag.as_bytes());
        const K: usize = RECORD_TAG_LEN;
        r[K..K + LABEL_KEY_LEN].copy_from_slice(self.label_key.as_bytes());
        r[K + LABEL_KEY_LEN..K + LABEL_KEY_LEN + 4].copy_from_slice(&self.person.to_le_bytes());
        r[K + LABEL_KEY_LEN + 4..].copy_from_slice(&self.version.to_le_bytes());
        r
    }

    /// Reads a server-local record (any 56 bytes are a well-formed record).
    pub fn from_record(record: &[u8]) -> Result<Self, TableError> {
        if record.len() != RECORD_LEN {
            return Err(TableError::RecordsLength { len: record.len() });
        }
        if record[TAG_LEN..RECORD_TAG_LEN].iter().any(|b| *b != 0) {
            return Err(TableError::RecordTagReserved { index: 0 });
        }
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&record[..TAG_LEN]);
        let mut key = Zeroizing::new([0u8; LABEL_KEY_LEN]);
        key.copy_from_slice(&record[RECORD_TAG_LEN..RECORD_TAG_LEN + LABEL_KEY_LEN]);
        let at = RECORD_TAG_LEN + LABEL_KEY_LEN;
        let u32_at =
            |o: usize| u32::from_le_bytes([record[o], record[o + 1], record[o + 2], record[o + 3]]);
        Ok(TableEntry {
            tag: Tag(tag),
            label_key: LabelKey::from_bytes(&key),
            person: u32_at(at),
            version: u32_at(at + 4),
        })
    }
}

/// Sorts entries by tag; fails with [`TableError::DuplicateTags`] if two share a tag.
pub fn sort_entries(mut entries: Vec<TableEntry>) -> Result<Vec<TableEntry>, TableError> {
    entries.par_sort_unstable_by(|a, b| a.tag.cmp(&b.tag));
    let dups = (1..entries.len())
        .into_par_iter()
        .filter(|&i| entries[i - 1].tag == entries[i].tag)
        .count();
    if dups > 0 {
        return Err(TableError::DuplicateTags { count: dups });
    }
    Ok(entries)
}

/// Encrypts one entry's `label` (the label of its person for `client`, from a
/// [`crate::LabelPermutation`]) for `client` in `key_period` under the pad of `pad_epoch`: the
/// epoch whose state is being served (a base's epoch, or the epoch of the delta that carries the
/// entry as an upsert).
pub fn encrypt_entry(
    entry: &TableEntry,
    client: &ClientId,
    key_period: KeyPeriodId,
    pad_epoch: u32,
    label: &Label,
) -> EncryptedLabel {
    encrypt_label(
        &entry.label_key,
        client,
        key_period,
        pad_epoch,
        &entry.tag,
        label,
    )
}

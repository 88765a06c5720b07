//! The client's copy of one epoch's table: what it downloaded as a base and brought up to date
//! with deltas.
//!
//! Invariants of a [`ClientTable`]: entries are in strictly ascending tag order; every version
//! is at most the table's epoch; the epoch only grows ([`ClientTable::apply_delta`] takes the
//! next epoch's delta). Every check that can reject a delta depends only on the table (which is
//! the same for every client), never on which numbers the client holds, so a server cannot learn
//! whether a client holds a number from whether the client rejects a delta.

use crate::consts::{CLIENT_ENTRY_LEN, LABEL_LEN, TAG_LEN};
use crate::digest::{DigestBuilder, TableDigest};
use crate::error::TableError;
use crate::ids::KeyPeriodId;
use crate::label::EncryptedLabel;
use crate::tag::Tag;

/// One entry as a client holds it: tag, version, label encrypted for this client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientEntry {
    /// The entry's tag.
    pub tag: Tag,
    /// The epoch in which the entry's label last changed.
    pub version: u32,
    /// The entry's label, encrypted for this client under the versioned pad.
    pub label: EncryptedLabel,
}

impl ClientEntry {
    /// `tag (16) || version (u32 LE) || encrypted label (16)`: the base-entry layout on the
    /// wire and in the client's cache.
    pub fn to_bytes(&self) -> [u8; CLIENT_ENTRY_LEN] {
        let mut b = [0u8; CLIENT_ENTRY_LEN];
        b[..TAG_LEN].copy_from_slice(&self.tag.0);
        b[TAG_LEN..TAG_LEN + 4].copy_from_slice(&self.version.to_le_bytes());
        b[TAG_LEN + 4..].copy_from_slice(&self.label.0);
        b
    }

    /// Reads the 36-byte layout of [`ClientEntry::to_bytes`].
    pub fn from_bytes(b: &[u8; CLIENT_ENTRY_LEN]) -> Self {
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&b[..TAG_LEN]);
        let version = u32::from_le_bytes([b[16], b[17], b[18], b[19]]);
        let mut label = [0u8; LABEL_LEN];
        label.copy_from_slice(&b[TAG_LEN + 4..]);
        ClientEntry {
            tag: Tag(tag),
            version,
            label: EncryptedLabel(label),
        }
    }
}

/// What one applied delta changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeltaCounts {
    /// Entries that were not in the table before.
    pub added: u64,
    /// Entries removed.
    pub removed: u64,
    /// Entries whose label changed (same tag, new version).
    pub relabelled: u64,
}

impl std::ops::AddAssign for DeltaCounts {
    fn add_assign(&mut self, o: Self) {
        self.added += o.added;
        self.removed += o.removed;
        self.relabelled += o.relabelled;
    }
}

/// The client's table of one epoch (see the module invariants).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTable {
    key_period: KeyPeriodId,
    epoch: u32,
    entries: Vec<ClientEntry>,
}

fn check_ascending<T>(items: &[T], tag: impl Fn(&T) -> Tag) -> Result<(), TableError> {
    for i in 1..items.len() {
        if tag(&items[i - 1]) >= tag(&items[i]) {
            return Err(TableError::NotAscending {
                index: i as u64,
                tag: tag(&items[i]).to_string(),
            });
        }
    }
    Ok(())
}

impl ClientTable {
    /// A table from a base download: `entries` in the order received.
    pub fn from_entries(
        key_period: KeyPeriodId,
        epoch: u32,
        entries: Vec<ClientEntry>,
    ) -> Result<Self, TableError> {
        check_ascending(&entries, |e| e.tag)?;
        if let Some((i, e)) = entries.iter().enumerate().find(|(_, e)| e.version > epoch) {
            return Err(TableError::VersionAfterEpoch {
                index: i,
                version: e.version,
                epoch,
            });
        }
        Ok(ClientTable {
            key_period,
            epoch,
            entries,
        })
    }

    /// The key period.
    pub fn key_period(&self) -> KeyPeriodId {
        self.key_period
    }

    /// The epoch whose state this is.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The entries, ascending by tag.
    pub fn entries(&self) -> &[ClientEntry] {
        &self.entries
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry with `tag`, if any.
    pub fn get(&self, tag: &Tag) -> Option<&ClientEntry> {
        self.entries
            .binary_search_by(|e| e.tag.cmp(tag))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// The table digest of this state (compare it with the one the server states).
    pub fn digest(&self) -> TableDigest {
        let mut b = DigestBuilder::new(self.key_period, self.epoch, self.entries.len() as u64);
        for e in &self.entries {
            if b.push(&e.tag, e.version).is_err() {
                unreachable!("a ClientTable is strictly ascending");
            }
        }
        b.finish().unwrap_or_else(|_| unreachable!())
    }

    /// Applies the delta of `epoch` (which must be above the table's epoch): removes every tag
    /// of `removed` (each must be present) and inserts or replaces every entry of `upserts`
    /// with version `epoch`. Both lists strictly ascending and disjoint. On error the table is
    /// unchanged.
    pub fn apply_delta(
        &mut self,
        epoch: u32,
        removed: &[Tag],
        upserts: &[(Tag, EncryptedLabel)],
    ) -> Result<DeltaCounts, TableError> {
        if epoch <= self.epoch {
            return Err(TableError::DeltaNotNewer {
                table: self.epoch,
                delta: epoch,
            });
        }
        check_ascending(removed, |t| *t)?;
        check_ascending(upserts, |u| u.0)?;
        let mut counts = DeltaCounts::default();
        let mut out = Vec::with_capacity(self.entries.len() + upserts.len());
        let (mut r, mut u) = (0usize, 0usize);
        for e in &self.entries {
            // Upserts below this entry's tag are additions.
            while u < upserts.len() && upserts[u].0 < e.tag {
                if r < removed.len() && removed[r] == upserts[u].0 {
                    return Err(TableError::DeltaConflict {
                        tag: upserts[u].0.to_string(),
                    });
                }
                out.push(ClientEntry {
                    tag: upserts[u].0,
                    version: epoch,
                    label: upserts[u].1,
                });
                counts.added += 1;
                u += 1;
            }
            if r < removed.len() && removed[r] < e.tag {
                return Err(TableError::DeltaRemovesAbsent {
                    tag: removed[r].to_string(),
                });
            }
            let is_removed = r < removed.len() && removed[r] == e.tag;
            let is_upsert = u < upserts.len() && upserts[u].0 == e.tag;
            match (is_removed, is_upsert) {
                (true, true) => {
                    return Err(TableError::DeltaConflict {
                        tag: e.tag.to_string(),
                    });
                }
                (true, false) => {
                    counts.removed += 1;
                    r += 1;
                }
                (false, true) => {
                    out.push(ClientEntry {
                        tag: e.tag,
                        version: epoch,
                        label: upserts[u].1,
                    });
                    counts.relabelled += 1;
                    u += 1;
                }
                (false, false) => out.push(*e),
            }
        }
        if r < removed.len() {
            return Err(TableError::DeltaRemovesAbsent {
                tag: removed[r].to_string(),
            });
        }
        for up in &upserts[u..] {
            out.push(ClientEntry {
                tag: up.0,
                version: epoch,
                label: up.1,
            });
            counts.added += 1;
        }
        self.entries = out;
        self.epoch = epoch;
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(b: u8) -> Tag {
        Tag([b; 16])
    }
    fn l(b: u8) -> EncryptedLabel {
        EncryptedLabel([b; 16])
    }
    fn e(tag: u8, version: u32, label: u8) -> ClientEntry {
        ClientEntry {
            tag: t(tag),
            version,
            label: l(label),
        }
    }

    #[test]
    fn delta_adds_removes_and_relabels() {
        let kp = KeyPeriodId::new(1, &[1; 32]);
        let mut table =
            ClientTable::from_entries(kp, 3, vec![e(2, 1, 20), e(4, 3, 40), e(6, 2, 60)]).unwrap();
        let counts = table
            .apply_delta(4, &[t(4)], &[(t(1), l(10)), (t(6), l(61)), (t(9), l(90))])
            .unwrap();
        assert_eq!(
            counts,
            DeltaCounts {
                added: 2,
                removed: 1,
                relabelled: 1
            }
        );
        assert_eq!(
            table.entries(),
            &[e(1, 4, 10), e(2, 1, 20), e(6, 4, 61), e(9, 4, 90)]
        );
        assert_eq!(table.epoch(), 4);
    }

    #[test]
    fn bad_deltas_leave_the_table_unchanged() {
        let kp = KeyPeriodId::new(1, &[1; 32]);
        let table = ClientTable::from_entries(kp, 3, vec![e(2, 1, 20), e(4, 3, 40)]).unwrap();
        type Delta = (u32, Vec<Tag>, Vec<(Tag, EncryptedLabel)>);
        let cases: Vec<Delta> = vec![
            (3, vec![], vec![]),
            (4, vec![t(3)], vec![]),
            (4, vec![t(9)], vec![]),
            (4, vec![t(4)], vec![(t(4), l(1))]),
            (4, vec![t(4), t(2)], vec![]),
            (4, vec![], vec![(t(5), l(1)), (t(5), l(2))]),
        ];
        for (epoch, removed, upserts) in cases {
            let mut copy = table.clone();
            assert!(copy.apply_delta(epoch, &removed, &upserts).is_err());
            assert_eq!(copy, table);
        }
    }

    #[test]
    fn entry_bytes_roundtrip() {
        let x = e(7, 0x01020304, 9);
        let b = x.to_bytes();
        assert_eq!(&b[16..20], &[4, 3, 2, 1]);
        assert_eq!(ClientEntry::from_bytes(&b), x);
    }
}

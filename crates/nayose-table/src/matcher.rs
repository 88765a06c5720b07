//! The client side of matching: find each held number's entry in the client's table, decrypt
//! its label, group numbers by label.
//!
//! Invariants: matching happens only on a [`ClientTable`] the caller has verified against the
//! server's digest; nothing the client sends depends on its outcome. Label decryption is
//! straight-line hashing and XOR; tag look-ups are one ordinary (variable-time) merge of the
//! sorted held tags with the table, over tags that are public to the client.

use std::collections::BTreeMap;

use std::borrow::Borrow;

use rayon::prelude::*;

use crate::client_table::ClientTable;
use crate::consts::OPRF_OUTPUT_LEN;
use crate::derive::{decrypt_label, derive_entry_secrets};
use crate::ids::ClientId;
use crate::label::Label;

/// Matches `outputs` (the finalized OPRF outputs of the client's numbers, index = number index)
/// against `table`: `labels[i]` is the label of number `i`, or `None` if the table has no entry
/// for it.
pub fn match_outputs<O: Borrow<[u8; OPRF_OUTPUT_LEN]> + Sync>(
    client: &ClientId,
    table: &ClientTable,
    outputs: &[O],
) -> Matches {
    let kp = table.key_period();
    let tags: Vec<_> = outputs
        .par_iter()
        .map(|o| derive_entry_secrets(o.borrow()).0)
        .collect();
    let found = table.get_many(&tags);
    let labels = outputs
        .par_iter()
        .zip(found)
        .map(|(o, e)| {
            e.map(|e| {
                let (tag, key) = derive_entry_secrets(o.borrow());
                decrypt_label(&key, client, kp, e.pad_epoch, &tag, &e.label)
            })
        })
        .collect();
    Matches { labels }
}

/// The labels of a client's numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matches {
    labels: Vec<Option<Label>>,
}

impl Matches {
    /// The label of number `index` (`None`: not in the table).
    pub fn label(&self, index: usize) -> Option<Label> {
        self.labels.get(index).copied().flatten()
    }

    /// All labels, by number index.
    pub fn labels(&self) -> &[Option<Label>] {
        &self.labels
    }

    /// How many numbers found an entry.
    pub fn matched(&self) -> usize {
        self.labels.iter().filter(|l| l.is_some()).count()
    }

    /// How many numbers found none.
    pub fn unmatched(&self) -> usize {
        self.labels.len() - self.matched()
    }

    /// Number indices by label (one group per person).
    pub fn groups(&self) -> BTreeMap<Label, Vec<usize>> {
        let mut g: BTreeMap<Label, Vec<usize>> = BTreeMap::new();
        for (i, l) in self.labels.iter().enumerate() {
            if let Some(l) = l {
                g.entry(*l).or_default().push(i);
            }
        }
        g
    }

    /// group size → number of groups of that size.
    pub fn group_size_histogram(&self) -> BTreeMap<usize, usize> {
        let mut h = BTreeMap::new();
        for members in self.groups().values() {
            *h.entry(members.len()).or_insert(0) += 1;
        }
        h
    }
}

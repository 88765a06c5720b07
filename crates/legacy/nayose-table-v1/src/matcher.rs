//! The client side: match fetched entries against the client's own tags, decrypt, group.
//!
//! Invariants: the matcher's held entries are sorted by tag (ties by number index); fetched
//! entries are accepted only in strictly ascending tag order *across all responses of a run*
//! (FetchAll chunks in stream order; FetchRange responses in ascending prefix order, as
//! [`Matcher::prefixes`] lists them). Every check that can reject a response is therefore
//! independent of which tags the client holds, so a malicious server cannot learn whether the
//! client holds a number from whether the client rejects a response. Each held entry is matched
//! at most once. A fetched entry whose tag the client does not hold is ignored: the client
//! cannot open it.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use rayon::prelude::*;

use crate::consts::OPRF_OUTPUT_LEN;
use crate::derive::{decrypt_label, derive_entry_secrets};
use crate::error::TableError;
use crate::ids::{ClientId, EpochId};
use crate::label::{EncryptedLabel, Label};
use crate::secrets::LabelKey;
use crate::tag::{Tag, TagPrefix};

struct Held {
    tag: Tag,
    key: LabelKey,
    index: usize,
    matched: bool,
}

/// Matches one client's numbers against fetched table entries for one epoch.
pub struct Matcher {
    client: ClientId,
    epoch: EpochId,
    held: Vec<Held>,
    labels: Vec<Option<Label>>,
    /// The greatest tag absorbed so far (every later entry must be greater).
    last: Option<Tag>,
}

impl std::fmt::Debug for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matcher")
            .field("client", &self.client)
            .field("epoch", &self.epoch)
            .field("numbers", &self.labels.len())
            .field("matched", &self.held.iter().filter(|h| h.matched).count())
            .finish()
    }
}

impl Matcher {
    /// Derives the tags and label keys of the client's numbers: `outputs[i]` is the finalized
    /// OPRF output of the client's number with index `i` (in parallel for large inputs).
    pub fn new<O: Borrow<[u8; OPRF_OUTPUT_LEN]> + Sync>(
        client: ClientId,
        epoch: EpochId,
        outputs: &[O],
    ) -> Self {
        let mut held: Vec<Held> = outputs
            .par_iter()
            .enumerate()
            .map(|(index, o)| {
                let (tag, key) = derive_entry_secrets(o.borrow());
                Held {
                    tag,
                    key,
                    index,
                    matched: false,
                }
            })
            .collect();
        held.par_sort_unstable_by(|a, b| (a.tag, a.index).cmp(&(b.tag, b.index)));
        Matcher {
            client,
            epoch,
            held,
            labels: vec![None; outputs.len()],
            last: None,
        }
    }

    /// The epoch this matcher decrypts for.
    pub fn epoch(&self) -> EpochId {
        self.epoch
    }

    /// The tag of number `index`, or `None` if there is no such number.
    pub fn tag_of(&self, index: usize) -> Option<Tag> {
        self.held.iter().find(|h| h.index == index).map(|h| h.tag)
    }

    /// The distinct prefixes of length `bits` of the client's tags, ascending: what a k-anon
    /// client fetches (one range per distinct prefix).
    pub fn prefixes(&self, bits: u8) -> Result<Vec<TagPrefix>, TableError> {
        let mut out: Vec<TagPrefix> = Vec::new();
        for h in &self.held {
            let p = TagPrefix::of_tag(&h.tag, bits)?;
            if out.last() != Some(&p) {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Matches a batch of fetched entries (one chunk of the full table, or one prefix range).
    /// Entries must be in strictly ascending tag order, and the first must be greater than every
    /// entry absorbed before (responses are absorbed in table order). Returns how many of the
    /// client's numbers got a label from this batch. On error nothing is recorded.
    pub fn absorb(&mut self, entries: &[(Tag, EncryptedLabel)]) -> Result<usize, TableError> {
        if let (Some(last), Some(first)) = (self.last, entries.first()) {
            if first.0 == last {
                return Err(TableError::FetchedDuplicate {
                    tag: first.0.to_string(),
                });
            }
            if first.0 < last {
                return Err(TableError::FetchedNotSorted { index: 0 });
            }
        }
        for i in 1..entries.len() {
            if entries[i - 1].0 == entries[i].0 {
                return Err(TableError::FetchedDuplicate {
                    tag: entries[i].0.to_string(),
                });
            }
            if entries[i - 1].0 > entries[i].0 {
                return Err(TableError::FetchedNotSorted { index: i });
            }
        }
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(0);
        };
        let lo = self.held.partition_point(|h| h.tag < first.0);
        let hi = self.held.partition_point(|h| h.tag <= last.0);
        // Phase 1: find the matches (held position, fetched position) without changing state.
        let mut found = Vec::new();
        for (pos, h) in self.held[lo..hi].iter().enumerate() {
            if let Ok(j) = entries.binary_search_by(|e| e.0.cmp(&h.tag)) {
                // Unreachable while the global order above holds; kept as a second line.
                if h.matched {
                    return Err(TableError::FetchedDuplicate {
                        tag: h.tag.to_string(),
                    });
                }
                found.push((lo + pos, j));
            }
        }
        // Phase 2: decrypt and record.
        self.last = Some(last.0);
        for &(pos, j) in &found {
            let h = &mut self.held[pos];
            let label = decrypt_label(&h.key, &self.client, self.epoch, &h.tag, &entries[j].1);
            h.matched = true;
            self.labels[h.index] = Some(label);
        }
        Ok(found.len())
    }

    /// As [`Matcher::absorb`], and first checks that every entry lies in `prefix` (the range
    /// the entries were fetched for).
    pub fn absorb_range(
        &mut self,
        prefix: &TagPrefix,
        entries: &[(Tag, EncryptedLabel)],
    ) -> Result<usize, TableError> {
        if let Some((index, (tag, _))) = entries
            .iter()
            .enumerate()
            .find(|(_, (t, _))| !prefix.contains(t))
        {
            return Err(TableError::FetchedOutsidePrefix {
                index,
                tag: tag.to_string(),
                prefix: prefix.to_string(),
            });
        }
        self.absorb(entries)
    }

    /// The result so far.
    pub fn finish(self) -> Matches {
        Matches {
            labels: self.labels,
        }
    }
}

/// Labels per number index: `Some(label)` for numbers found in the table, `None` otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matches {
    labels: Vec<Option<Label>>,
}

impl Matches {
    /// The label of number `index` (`None` if it was not found or there is no such number).
    pub fn label(&self, index: usize) -> Option<Label> {
        self.labels.get(index).copied().flatten()
    }

    /// All labels by number index.
    pub fn labels(&self) -> &[Option<Label>] {
        &self.labels
    }

    /// Number of the client's numbers that were found in the table.
    pub fn matched(&self) -> usize {
        self.labels.iter().filter(|l| l.is_some()).count()
    }

    /// Number of the client's numbers that were not found.
    pub fn unmatched(&self) -> usize {
        self.labels.len() - self.matched()
    }

    /// The groups: each label with the ascending indices of the numbers that carry it (numbers
    /// in one group belong to one person).
    pub fn groups(&self) -> BTreeMap<Label, Vec<usize>> {
        let mut g: BTreeMap<Label, Vec<usize>> = BTreeMap::new();
        for (i, l) in self.labels.iter().enumerate() {
            if let Some(l) = l {
                g.entry(*l).or_default().push(i);
            }
        }
        g
    }

    /// Group-size histogram: group size → number of groups of that size (matched numbers only).
    pub fn group_size_histogram(&self) -> BTreeMap<usize, usize> {
        let mut h = BTreeMap::new();
        for members in self.groups().values() {
            *h.entry(members.len()).or_insert(0) += 1;
        }
        h
    }
}

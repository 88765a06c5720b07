//! The client's copy of one epoch's table: what it downloaded as a base and brought up to date
//! with deltas, kept as entry blocks (about 11 bytes per entry, table.md §9.5).
//!
//! Invariants of a [`ClientTable`]: its blocks decode (checked when it is made) and their tags
//! are strictly ascending across the whole table; every entry has a *pad epoch* (the epoch of the
//! base or delta that delivered its ciphertext, at most the table's epoch); the epoch only grows
//! ([`ClientTable::apply_delta`] takes a later epoch's delta) and the upsert chain follows every
//! applied delta. Every check that can reject a delta depends only on the table (which is the
//! same for every client), never on which numbers the client holds, so a server cannot learn
//! whether a client holds a number from whether the client rejects a delta.

use crate::block::EntryBlock;
use crate::consts::MAX_BLOCK_ENTRIES;
use crate::digest::{DigestBuilder, TableDigest, UpsertChain};
use crate::error::TableError;
use crate::ids::KeyPeriodId;
use crate::label::EncryptedLabel;
use crate::tag::Tag;

/// Entries per block of a state rebuilt by a delta.
pub const STATE_BLOCK_ENTRIES: usize = 4096;

/// One entry as a client holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientEntry {
    /// The entry's tag.
    pub tag: Tag,
    /// The epoch whose pad encrypted the label (the base's or the delta's epoch).
    pub pad_epoch: u32,
    /// The entry's label, encrypted for this client.
    pub label: EncryptedLabel,
}

/// What one applied delta changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeltaCounts {
    /// Entries that were not in the table before.
    pub added: u64,
    /// Entries removed.
    pub removed: u64,
    /// Entries whose label changed (same tag, new ciphertext).
    pub relabelled: u64,
}

impl std::ops::AddAssign for DeltaCounts {
    fn add_assign(&mut self, o: Self) {
        self.added += o.added;
        self.removed += o.removed;
        self.relabelled += o.relabelled;
    }
}

/// A block of a client state: an entry block and the pad epoch of each of its entries (one
/// common value and the exceptions, by index within the block).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateBlock {
    /// Tags and labels.
    pub block: EntryBlock,
    /// The pad epoch of every entry not listed in `exceptions`.
    pub pad_epoch: u32,
    /// (index in the block, pad epoch), ascending by index.
    pub exceptions: Vec<(u32, u32)>,
}

impl StateBlock {
    fn pad_epoch_of(&self, i: usize) -> u32 {
        match self.exceptions.binary_search_by_key(&(i as u32), |e| e.0) {
            Ok(k) => self.exceptions[k].1,
            Err(_) => self.pad_epoch,
        }
    }
}

impl StateBlock {
    /// Appends the stored form: the entry block's ([`EntryBlock::write_to`]), then
    /// `pad_epoch u32 LE || n u32 LE || n × (index u32 LE || pad epoch u32 LE)`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        self.block.write_to(out);
        out.extend_from_slice(&self.pad_epoch.to_le_bytes());
        out.extend_from_slice(&(self.exceptions.len() as u32).to_le_bytes());
        for (i, e) in &self.exceptions {
            out.extend_from_slice(&i.to_le_bytes());
            out.extend_from_slice(&e.to_le_bytes());
        }
    }

    /// Reads one stored state block from the front of `bytes` (not yet checked: see
    /// [`ClientTable::from_state_blocks`]).
    pub fn read_from(bytes: &[u8]) -> Option<(StateBlock, &[u8])> {
        let (block, rest) = EntryBlock::read_from(bytes)?;
        let (pad, rest) = rest.split_first_chunk::<4>()?;
        let (n, mut rest) = rest.split_first_chunk::<4>()?;
        let n = u32::from_le_bytes(*n);
        if n > block.count {
            return None;
        }
        let mut exceptions = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let (i, r) = rest.split_first_chunk::<4>()?;
            let (e, r) = r.split_first_chunk::<4>()?;
            exceptions.push((u32::from_le_bytes(*i), u32::from_le_bytes(*e)));
            rest = r;
        }
        Some((
            StateBlock {
                block,
                pad_epoch: u32::from_le_bytes(*pad),
                exceptions,
            },
            rest,
        ))
    }
}

/// The client's table of one epoch (see the module invariants).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTable {
    key_period: KeyPeriodId,
    epoch: u32,
    chain: UpsertChain,
    len: u64,
    blocks: Vec<StateBlock>,
}

impl ClientTable {
    /// A table from a base download of `epoch`: its entry blocks in the order received, every
    /// label under the pad of `epoch`; `chain` is the upsert chain the server states for
    /// `epoch` (the digest check decides whether it was true).
    pub fn from_base(
        key_period: KeyPeriodId,
        epoch: u32,
        chain: UpsertChain,
        blocks: Vec<EntryBlock>,
    ) -> Result<Self, TableError> {
        let blocks = blocks
            .into_iter()
            .map(|block| StateBlock {
                block,
                pad_epoch: epoch,
                exceptions: Vec::new(),
            })
            .collect();
        Self::from_state_blocks(key_period, epoch, chain, blocks)
    }

    /// A table from state blocks (a cached state), checking every invariant.
    pub fn from_state_blocks(
        key_period: KeyPeriodId,
        epoch: u32,
        chain: UpsertChain,
        blocks: Vec<StateBlock>,
    ) -> Result<Self, TableError> {
        let mut len = 0u64;
        let mut last: Option<Tag> = None;
        let mut tags = Vec::new();
        for b in &blocks {
            b.block.decode_tags(len, &mut tags)?;
            if let Some(l) = last
                && l >= tags[0]
            {
                return Err(TableError::NotAscending {
                    index: len,
                    tag: tags[0].to_string(),
                });
            }
            let n = u32::try_from(tags.len()).unwrap_or(u32::MAX);
            let epochs_ok = b.pad_epoch >= 1
                && b.pad_epoch <= epoch
                && b.exceptions.windows(2).all(|w| w[0].0 < w[1].0)
                && b.exceptions
                    .iter()
                    .all(|&(i, e)| i < n && e >= 1 && e <= epoch);
            if !epochs_ok {
                return Err(TableError::InvalidBlock {
                    offset: len,
                    reason: format!("its pad epochs are not between 1 and the epoch {epoch}"),
                });
            }
            last = tags.last().copied();
            len += tags.len() as u64;
        }
        Ok(ClientTable {
            key_period,
            epoch,
            chain,
            len,
            blocks,
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

    /// The upsert chain of this state.
    pub fn chain(&self) -> UpsertChain {
        self.chain
    }

    /// The state blocks (to persist them).
    pub fn blocks(&self) -> &[StateBlock] {
        &self.blocks
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Calls `f` with every entry, ascending by tag.
    pub fn for_each(&self, mut f: impl FnMut(ClientEntry)) {
        let mut tags = Vec::with_capacity(STATE_BLOCK_ENTRIES);
        for b in &self.blocks {
            if b.block.decode_tags(0, &mut tags).is_err() {
                unreachable!("the blocks of a ClientTable were checked when it was made");
            }
            let mut exc = b.exceptions.iter().peekable();
            for (i, tag) in tags.iter().enumerate() {
                let pad_epoch = match exc.peek() {
                    Some(&&(j, e)) if j as usize == i => {
                        exc.next();
                        e
                    }
                    _ => b.pad_epoch,
                };
                f(ClientEntry {
                    tag: *tag,
                    pad_epoch,
                    label: b.block.label(i),
                });
            }
        }
    }

    /// The entries (decoded: 17 bytes each in memory; prefer [`ClientTable::for_each`]).
    pub fn entries(&self) -> Vec<ClientEntry> {
        let mut v = Vec::with_capacity(self.len());
        self.for_each(|e| v.push(e));
        v
    }

    /// The entry of each of `tags`, if the table has it: one pass over the table.
    pub fn get_many(&self, tags: &[Tag]) -> Vec<Option<ClientEntry>> {
        let mut order: Vec<usize> = (0..tags.len()).collect();
        order.sort_unstable_by_key(|&i| tags[i]);
        let mut out = vec![None; tags.len()];
        let mut k = 0usize;
        if order.is_empty() {
            return out;
        }
        let mut tagbuf = Vec::with_capacity(STATE_BLOCK_ENTRIES);
        for (bi, b) in self.blocks.iter().enumerate() {
            // Skip blocks that end before the next wanted tag: the next block's first tag
            // bounds this one's last.
            if let Some(next) = self.blocks.get(bi + 1)
                && next.block.first <= tags[order[k]]
            {
                continue;
            }
            if b.block.decode_tags(0, &mut tagbuf).is_err() {
                unreachable!("the blocks of a ClientTable were checked when it was made");
            }
            for (i, t) in tagbuf.iter().enumerate() {
                while k < order.len() && tags[order[k]] < *t {
                    k += 1;
                }
                while k < order.len() && tags[order[k]] == *t {
                    out[order[k]] = Some(ClientEntry {
                        tag: *t,
                        pad_epoch: b.pad_epoch_of(i),
                        label: b.block.label(i),
                    });
                    k += 1;
                }
                if k == order.len() {
                    return out;
                }
            }
        }
        out
    }

    /// The entry with `tag`, if any.
    pub fn get(&self, tag: &Tag) -> Option<ClientEntry> {
        self.get_many(std::slice::from_ref(tag)).pop().flatten()
    }

    /// The table digest of this state (compare it with the one the server states).
    pub fn digest(&self) -> TableDigest {
        let mut b = DigestBuilder::new(self.key_period, self.epoch, &self.chain, self.len);
        self.for_each(|e| {
            if b.push(&e.tag).is_err() {
                unreachable!("a ClientTable is strictly ascending");
            }
        });
        b.finish().unwrap_or_else(|_| unreachable!())
    }

    /// Applies the delta of `epoch` (which must be above the table's epoch): removes every tag
    /// of `removed` (each must be present) and inserts or replaces every entry of `upserts`
    /// with pad epoch `epoch`; advances the upsert chain. Both lists strictly ascending and
    /// disjoint. On error the table is unchanged.
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
        let chain = self
            .chain
            .next(self.key_period, epoch, upserts.iter().map(|u| &u.0))?;
        let mut counts = DeltaCounts::default();
        let mut out = StateWriter::default();
        let (mut r, mut u) = (0usize, 0usize);
        let mut failure: Option<TableError> = None;
        self.for_each(|e| {
            if failure.is_some() {
                return;
            }
            while u < upserts.len() && upserts[u].0 < e.tag {
                if r < removed.len() && removed[r] == upserts[u].0 {
                    failure = Some(TableError::DeltaConflict {
                        tag: upserts[u].0.to_string(),
                    });
                    return;
                }
                out.push(upserts[u].0, epoch, upserts[u].1);
                counts.added += 1;
                u += 1;
            }
            if r < removed.len() && removed[r] < e.tag {
                failure = Some(TableError::DeltaRemovesAbsent {
                    tag: removed[r].to_string(),
                });
                return;
            }
            let is_removed = r < removed.len() && removed[r] == e.tag;
            let is_upsert = u < upserts.len() && upserts[u].0 == e.tag;
            match (is_removed, is_upsert) {
                (true, true) => {
                    failure = Some(TableError::DeltaConflict {
                        tag: e.tag.to_string(),
                    })
                }
                (true, false) => {
                    counts.removed += 1;
                    r += 1;
                }
                (false, true) => {
                    out.push(e.tag, epoch, upserts[u].1);
                    counts.relabelled += 1;
                    u += 1;
                }
                (false, false) => out.push(e.tag, e.pad_epoch, e.label),
            }
        });
        if let Some(f) = failure {
            return Err(f);
        }
        if r < removed.len() {
            return Err(TableError::DeltaRemovesAbsent {
                tag: removed[r].to_string(),
            });
        }
        for up in &upserts[u..] {
            if r < removed.len() && removed[r] == up.0 {
                return Err(TableError::DeltaConflict {
                    tag: up.0.to_string(),
                });
            }
            out.push(up.0, epoch, up.1);
            counts.added += 1;
        }
        let (blocks, len) = out.finish()?;
        self.blocks = blocks;
        self.len = len;
        self.epoch = epoch;
        self.chain = chain;
        Ok(counts)
    }
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

/// Cuts a stream of ascending entries into state blocks.
#[derive(Default)]
struct StateWriter {
    blocks: Vec<StateBlock>,
    pending: Vec<(Tag, EncryptedLabel)>,
    epochs: Vec<u32>,
    len: u64,
    error: Option<TableError>,
}

impl StateWriter {
    fn push(&mut self, tag: Tag, pad_epoch: u32, label: EncryptedLabel) {
        self.pending.push((tag, label));
        self.epochs.push(pad_epoch);
        if self.pending.len() == STATE_BLOCK_ENTRIES {
            self.cut();
        }
    }

    fn cut(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        // The most frequent pad epoch is the block's; the others are exceptions.
        let mut sorted = self.epochs.clone();
        sorted.sort_unstable();
        let (mut best, mut best_n, mut run_start) = (sorted[0], 0usize, 0usize);
        for i in 1..=sorted.len() {
            if i == sorted.len() || sorted[i] != sorted[run_start] {
                if i - run_start > best_n {
                    best = sorted[run_start];
                    best_n = i - run_start;
                }
                run_start = i;
            }
        }
        let exceptions = self
            .epochs
            .iter()
            .enumerate()
            .filter(|(_, e)| **e != best)
            .map(|(i, e)| (i as u32, *e))
            .collect();
        match EntryBlock::encode(&self.pending) {
            Ok(block) => self.blocks.push(StateBlock {
                block,
                pad_epoch: best,
                exceptions,
            }),
            Err(e) => self.error = Some(e),
        }
        self.len += self.pending.len() as u64;
        self.pending.clear();
        self.epochs.clear();
    }

    fn finish(mut self) -> Result<(Vec<StateBlock>, u64), TableError> {
        self.cut();
        const { assert!(STATE_BLOCK_ENTRIES <= MAX_BLOCK_ENTRIES) };
        match self.error {
            Some(e) => Err(e),
            None => Ok((self.blocks, self.len)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(b: u8) -> Tag {
        Tag([b; 9])
    }
    fn l(b: u8) -> EncryptedLabel {
        EncryptedLabel([b; 4])
    }
    fn e(tag: u8, pad_epoch: u32, label: u8) -> ClientEntry {
        ClientEntry {
            tag: t(tag),
            pad_epoch,
            label: l(label),
        }
    }
    fn base(kp: KeyPeriodId, epoch: u32, items: &[(u8, u8)]) -> ClientTable {
        let entries: Vec<_> = items.iter().map(|(a, b)| (t(*a), l(*b))).collect();
        let blocks = if entries.is_empty() {
            vec![]
        } else {
            // Two blocks, to cross a block boundary.
            let (x, y) = entries.split_at(entries.len() / 2);
            [x, y]
                .iter()
                .filter(|p| !p.is_empty())
                .map(|p| EntryBlock::encode(p).unwrap())
                .collect()
        };
        ClientTable::from_base(kp, epoch, UpsertChain::first(kp, 1), blocks).unwrap()
    }

    #[test]
    fn delta_adds_removes_and_relabels() {
        let kp = KeyPeriodId::new(1, &[1; 32]);
        let mut table = base(kp, 3, &[(2, 20), (4, 40), (6, 60)]);
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
            vec![e(1, 4, 10), e(2, 3, 20), e(6, 4, 61), e(9, 4, 90)]
        );
        assert_eq!(table.epoch(), 4);
        assert_eq!(table.get(&t(2)), Some(e(2, 3, 20)));
        assert_eq!(table.get(&t(3)), None);
        assert_eq!(
            table.get_many(&[t(9), t(0), t(1), t(9)]),
            vec![
                Some(e(9, 4, 90)),
                None,
                Some(e(1, 4, 10)),
                Some(e(9, 4, 90))
            ]
        );
        let chain = UpsertChain::first(kp, 1)
            .next(kp, 4, [t(1), t(6), t(9)].iter())
            .unwrap();
        assert_eq!(table.chain(), chain);
    }

    #[test]
    fn bad_deltas_leave_the_table_unchanged() {
        let kp = KeyPeriodId::new(1, &[1; 32]);
        let table = base(kp, 3, &[(2, 20), (4, 40)]);
        type Delta = (u32, Vec<Tag>, Vec<(Tag, EncryptedLabel)>);
        let cases: Vec<Delta> = vec![
            (3, vec![], vec![]),
            (4, vec![t(3)], vec![]),
            (4, vec![t(9)], vec![]),
            (4, vec![t(4)], vec![(t(4), l(1))]),
            (4, vec![t(9)], vec![(t(9), l(1))]),
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
    fn blocks_must_ascend_and_pad_epochs_fit() {
        let kp = KeyPeriodId::new(1, &[1; 32]);
        let c = UpsertChain::first(kp, 1);
        let b1 = EntryBlock::encode(&[(t(5), l(1))]).unwrap();
        let b2 = EntryBlock::encode(&[(t(3), l(1))]).unwrap();
        assert!(ClientTable::from_base(kp, 2, c, vec![b1.clone(), b2]).is_err());
        let s = StateBlock {
            block: b1,
            pad_epoch: 3,
            exceptions: vec![],
        };
        assert!(ClientTable::from_state_blocks(kp, 2, c, vec![s]).is_err());
    }

    #[test]
    fn many_deltas_keep_blocks_and_exceptions_right() {
        let kp = KeyPeriodId::new(1, &[1; 32]);
        let items: Vec<(u8, u8)> = (0..200u8).map(|i| (i, i)).collect();
        let mut table = base(kp, 1, &items[..100]);
        let mut expect: std::collections::BTreeMap<u8, (u32, u8)> =
            items[..100].iter().map(|(a, b)| (*a, (1, *b))).collect();
        for epoch in 2..20u32 {
            let k = epoch as u8;
            let up: Vec<(Tag, EncryptedLabel)> =
                [k * 3, 100 + k * 5].iter().map(|x| (t(*x), l(k))).collect();
            table.apply_delta(epoch, &[], &up).unwrap();
            for x in [k * 3, 100 + k * 5] {
                expect.insert(x, (epoch, k));
            }
        }
        let got: Vec<_> = table.entries();
        let want: Vec<_> = expect.iter().map(|(a, (p, b))| e(*a, *p, *b)).collect();
        assert_eq!(got, want);
    }
}

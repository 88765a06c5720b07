//! The diff of a build against the previous epoch of its key period, and the new epoch's files
//! in memory.
//!
//! Work (n = registry numbers, m = previous entries, a = added numbers):
//! 1. one merge of the registry's numbers with the previous number index, both ascending by
//!    key: O(n + m), classifying each number as kept (its previous table position) or added,
//!    and each previous entry as kept or removed; the merge also checks the index (keys strictly
//!    ascending, every position in range and named exactly once);
//! 2. the OPRF evaluation of the `a` added numbers only, then a sort of their entries by tag;
//! 3. one sequential pass over the previous table (ascending by tag) merged with the sorted
//!    added entries, writing the new table's records in tag order, the removed tags and the
//!    upserts (added and relabelled entries, version = the new epoch) as it goes.
//!
//! Invariants of the result: records strictly ascending by tag (equal tags, or an upsert
//! whose tag was removed in the same epoch, are a [`ServerError::TagCollision`]: table.md
//! §8.3); a kept entry keeps tag, label key and version unless its person id changed
//! (RELABEL: version = the new epoch); the index maps every published number to its record.

use rustc_hash::FxHashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use nayose_oprf::{Mode, ServerKey};
use nayose_table::{LabelKey, RECORD_LEN, TAG_LEN, Tag, UpsertChain, derive_entry_secrets};
use rayon::prelude::*;
use zeroize::Zeroizing;

use super::registry::Registry;
use super::{BuildProgress, CHUNK, ProgressFn};
use crate::epoch::{
    NumberIndex, PersonsView, TABLE_MAGIC, encode_delta, encode_index, encode_persons,
};
use crate::error::ServerError;

/// The previous epoch's parts the diff reads.
pub(super) struct PreviousTable<'a> {
    /// Its epoch number.
    pub number: u32,
    /// Records (56 bytes each), ascending by tag, already checked.
    pub records: &'a [u8],
    /// Its number index, header checked.
    pub index: NumberIndex<'a>,
    /// Where the index came from, for errors.
    pub index_path: &'a Path,
}

/// The new epoch's files in memory and what changed.
pub(super) struct Assembled {
    /// `TABLE_MAGIC` then the records.
    pub records: Zeroizing<Vec<u8>>,
    /// The number index.
    pub index: Zeroizing<Vec<u8>>,
    /// The delta against the previous epoch (none in a new key period).
    pub delta: Option<Zeroizing<Vec<u8>>>,
    /// Entries added (numbers evaluated).
    pub added: u64,
    /// Previous entries whose number is gone.
    pub removed: u64,
    /// Kept entries whose person changed.
    pub relabelled: u64,
    /// Persons with at least one entry.
    pub persons_used: u64,
    /// `persons.bin`: every person id ever seen in this data directory, by serial.
    pub persons: Vec<u8>,
    /// Persons in `persons.bin`.
    pub person_count: u32,
    /// The upsert chain of the new epoch.
    pub chain: UpsertChain,
    /// How long each step took.
    pub times: StepTimes,
}

/// Durations of the steps of [`assemble`].
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct StepTimes {
    /// The merge with the previous index.
    pub merge: Duration,
    /// Evaluating and sorting the added numbers.
    pub evaluate: Duration,
    /// Writing the records, the index and the delta in memory.
    pub assemble: Duration,
}

const UNSEEN: u32 = u32::MAX;
const REMOVED: u32 = u32::MAX - 1;

fn corrupt_index(prev: &PreviousTable<'_>, reason: &str) -> ServerError {
    ServerError::CorruptEpoch {
        epoch: crate::layout::epoch_dir_name(u64::from(prev.number)),
        path: prev.index_path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Step 1: for each previous position, the registry number that keeps it (or [`REMOVED`]),
/// and the registry numbers to add.
fn merge_with_index(
    reg: &Registry,
    prev: &PreviousTable<'_>,
) -> Result<(Vec<u32>, Vec<u32>), ServerError> {
    let m = prev.records.len() / RECORD_LEN;
    if prev.index.len() != m {
        return Err(corrupt_index(
            prev,
            "the index and the table hold different numbers of entries",
        ));
    }
    let mut row_at = vec![UNSEEN; m];
    let mut added = Vec::new();
    let (n, idx) = (reg.numbers.len(), prev.index);
    let (mut i, mut j) = (0usize, 0usize);
    let mut last_key: Option<u128> = None;
    let mut take = |j: usize, row: u32, last_key: &mut Option<u128>| {
        let (key, pos) = idx.get(j);
        if last_key.is_some_and(|l| l >= key) {
            return Err(corrupt_index(prev, "keys are not strictly ascending"));
        }
        *last_key = Some(key);
        match row_at.get_mut(pos as usize) {
            Some(slot) if *slot == UNSEEN => {
                *slot = row;
                Ok(())
            }
            Some(_) => Err(corrupt_index(prev, "a table position is named twice")),
            None => Err(corrupt_index(prev, "a table position is out of range")),
        }
    };
    while i < n || j < idx.len() {
        let ord = match (reg.numbers.get(i), j < idx.len()) {
            (Some(a), true) => a.key.cmp(&idx.get(j).0),
            (Some(_), false) => std::cmp::Ordering::Less,
            (None, _) => std::cmp::Ordering::Greater,
        };
        match ord {
            std::cmp::Ordering::Less => {
                added.push(i as u32);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                take(j, REMOVED, &mut last_key)?;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                take(j, i as u32, &mut last_key)?;
                i += 1;
                j += 1;
            }
        }
    }
    Ok((row_at, added))
}

/// Evaluates the registry numbers `rows` and returns their (tag, label key, row), sorted by tag.
fn evaluate_added(
    reg: &Registry,
    key: &ServerKey,
    rows: &[u32],
    progress: Option<&ProgressFn>,
) -> Result<Vec<(Tag, LabelKey, u32)>, ServerError> {
    let mut out = Vec::with_capacity(rows.len());
    let mut done = 0u64;
    for chunk in rows.chunks(CHUNK) {
        let inputs: Vec<Vec<u8>> = chunk
            .par_iter()
            .map(|&r| reg.canonical(&reg.numbers[r as usize]))
            .collect();
        let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        let outputs = key.evaluate_batch(Mode::Voprf, &refs)?;
        let derived: Vec<(Tag, LabelKey, u32)> = outputs
            .par_iter()
            .zip(chunk.par_iter())
            .map(|(o, &r)| {
                let (tag, label_key) = derive_entry_secrets(o.as_bytes());
                (tag, label_key, r)
            })
            .collect();
        out.extend(derived);
        done += chunk.len() as u64;
        if let Some(p) = progress {
            p(BuildProgress {
                phase: "evaluate",
                done,
                total: rows.len() as u64,
                bytes: false,
            });
        }
    }
    out.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn u32_at(rec: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([rec[at], rec[at + 1], rec[at + 2], rec[at + 3]])
}

/// What [`emit_table`] merges.
struct Inputs<'a> {
    /// The previous table's records, ascending by tag (empty in a new key period).
    prev_records: &'a [u8],
    /// Per previous position: the registry number keeping it, or [`REMOVED`].
    row_at: &'a [u32],
    /// The added entries (tag, label key, registry number), ascending by tag.
    added: &'a [(Tag, LabelKey, u32)],
    /// Per registry number: its person's serial.
    person_of_row: &'a [u32],
    /// Persons in the new person list.
    person_count: usize,
    /// The new epoch.
    number: u32,
}

/// The new table and what the delta needs.
struct Emitted {
    /// `TABLE_MAGIC` then the records, strictly ascending by tag.
    records: Zeroizing<Vec<u8>>,
    /// Per registry number: its record's position.
    pos_of_row: Vec<u32>,
    /// Removed tags, ascending.
    removed: Vec<Tag>,
    /// Positions of the upserted records (added or relabelled), ascending.
    upserts: Vec<u32>,
    relabelled: u64,
    persons_used: u64,
}

/// Two entries of the new table with one tag, or an added entry with the tag of an entry
/// removed in the same epoch (table.md §8.3).
#[derive(Debug, PartialEq, Eq)]
struct Collision;

/// Step 3: one pass over the previous records merged with the added entries.
fn emit_table(inp: &Inputs<'_>) -> Result<Emitted, Collision> {
    let kept = inp.row_at.iter().filter(|&&r| r != REMOVED).count();
    let total = kept + inp.added.len();
    let mut records = Zeroizing::new(Vec::with_capacity(16 + total * RECORD_LEN));
    records.extend_from_slice(TABLE_MAGIC);
    let mut out = Emitted {
        records,
        pos_of_row: vec![0u32; inp.person_of_row.len()],
        removed: Vec::new(),
        upserts: Vec::new(),
        relabelled: 0,
        persons_used: 0,
    };
    let mut used = vec![false; inp.person_count];
    let mut last_tag: Option<[u8; TAG_LEN]> = None;
    // Appends one record; checks the tags strictly ascend across kept and added entries.
    let mut push = |out: &mut Emitted, rec: &[u8; RECORD_LEN], row: u32, upsert: bool| {
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&rec[..TAG_LEN]);
        if last_tag.is_some_and(|l| l >= tag) {
            return Err(Collision);
        }
        last_tag = Some(tag);
        let pos = ((out.records.len() - 16) / RECORD_LEN) as u32;
        out.pos_of_row[row as usize] = pos;
        used[u32_at(rec, 48) as usize] = true;
        if upsert {
            out.upserts.push(pos);
        }
        out.records.extend_from_slice(rec);
        Ok(())
    };
    let added_record = |e: &(Tag, LabelKey, u32)| {
        let mut r = Zeroizing::new([0u8; RECORD_LEN]);
        // tag (9) || 0^7 || label key (32): table.md §14.
        r[..TAG_LEN].copy_from_slice(e.0.as_bytes());
        r[16..48].copy_from_slice(e.1.as_bytes());
        r[48..52].copy_from_slice(&inp.person_of_row[e.2 as usize].to_le_bytes());
        r[52..].copy_from_slice(&inp.number.to_le_bytes());
        r
    };
    let added = inp.added;
    let mut a = 0usize;
    for (p, rec) in inp.prev_records.chunks_exact(RECORD_LEN).enumerate() {
        let tag = &rec[..TAG_LEN];
        while a < added.len() && added[a].0.as_bytes().as_slice() < tag {
            push(&mut out, &added_record(&added[a]), added[a].2, true)?;
            a += 1;
        }
        if a < added.len() && added[a].0.as_bytes().as_slice() == tag {
            // An added number with the tag of a kept or a removed entry.
            return Err(Collision);
        }
        let row = inp.row_at[p];
        if row == REMOVED {
            let mut t = [0u8; TAG_LEN];
            t.copy_from_slice(tag);
            out.removed.push(Tag(t));
            continue;
        }
        let person = inp.person_of_row[row as usize];
        // Serials are stable across epochs: a different serial is a different person.
        let relabel = u32_at(rec, 48) != person;
        let mut r = Zeroizing::new([0u8; RECORD_LEN]);
        r.copy_from_slice(rec);
        r[48..52].copy_from_slice(&person.to_le_bytes());
        if relabel {
            r[52..].copy_from_slice(&inp.number.to_le_bytes());
            out.relabelled += 1;
        }
        push(&mut out, &r, row, relabel)?;
    }
    for e in &added[a..] {
        push(&mut out, &added_record(e), e.2, true)?;
    }
    out.persons_used = used.iter().filter(|u| **u).count() as u64;
    Ok(out)
}

/// Builds the new epoch `number` from `reg` and, within a key period, the previous epoch.
/// Returns the files' bytes.
///
/// `seed_persons` is the person list to continue (the previous epoch's, also across key
/// periods): every id keeps its serial (its index), new ids get the next serials, so a person's
/// labels never change while the data directory lives. `prev_chain` is the previous epoch's
/// upsert chain (`None` for the first epoch of a key period).
#[allow(clippy::too_many_arguments)]
pub(super) fn assemble(
    reg: &Registry,
    prev: Option<&PreviousTable<'_>>,
    seed_persons: Option<&PersonsView<'_>>,
    prev_chain: Option<UpsertChain>,
    key: &ServerKey,
    key_period: nayose_table::KeyPeriodId,
    number: u32,
    progress: Option<&ProgressFn>,
) -> Result<Assembled, ServerError> {
    let mut times = StepTimes::default();
    let t = Instant::now();
    let n = reg.numbers.len();
    if u32::try_from(n).is_err() || n >= REMOVED as usize {
        return Err(ServerError::Internal(
            "more than 4294967293 distinct numbers".into(),
        ));
    }
    let (row_at, to_add) = match prev {
        Some(p) => merge_with_index(reg, p)?,
        None => (Vec::new(), (0..n as u32).collect()),
    };
    times.merge = t.elapsed();
    let t = Instant::now();
    let added = evaluate_added(reg, key, &to_add, progress)?;
    drop(to_add);
    times.evaluate = t.elapsed();
    let t = Instant::now();

    // Person serials: the seed list keeps its order, then the registry's new ids.
    let mut serial_of: FxHashMap<&[u8], u32> = FxHashMap::default();
    let seed_len = seed_persons.map_or(0, |p| p.len());
    if let Some(p) = seed_persons {
        serial_of.reserve(seed_len);
        for (i, id) in p.iter().enumerate() {
            serial_of.insert(id, i as u32);
        }
    }
    let mut new_ids: Vec<&[u8]> = Vec::new();
    let mut serial_of_reg = Vec::with_capacity(reg.persons.len());
    for id in reg.persons.iter() {
        let next = seed_len + new_ids.len();
        let s = *serial_of.entry(id.as_bytes()).or_insert_with(|| {
            new_ids.push(id.as_bytes());
            next as u32
        });
        serial_of_reg.push(s);
    }
    let person_count = u32::try_from(seed_len + new_ids.len())
        .map_err(|_| ServerError::Internal("more than 4294967295 persons ever".into()))?;
    drop(serial_of);
    let person_of_row: Vec<u32> = reg
        .numbers
        .iter()
        .map(|r| serial_of_reg[r.person as usize])
        .collect();
    drop(serial_of_reg);
    let e = emit_table(&Inputs {
        prev_records: prev.map_or(&[], |p| p.records),
        row_at: &row_at,
        added: &added,
        person_of_row: &person_of_row,
        person_count: person_count as usize,
        number,
    })
    .map_err(|Collision| ServerError::TagCollision {
        key_period: key_period.to_string(),
    })?;
    let added_count = added.len() as u64;
    drop(added);
    drop(row_at);
    let Emitted {
        records,
        pos_of_row,
        removed,
        upserts,
        relabelled,
        persons_used,
    } = e;

    let index = encode_index(
        n,
        reg.numbers
            .iter()
            .zip(&pos_of_row)
            .map(|(row, &pos)| (row.key, pos)),
    );
    drop(pos_of_row);
    let body = &records[16..];
    let ups: Vec<&[u8]> = upserts
        .iter()
        .map(|&pos| &body[pos as usize * RECORD_LEN..(pos as usize + 1) * RECORD_LEN])
        .collect();
    let chain = match prev_chain {
        None => UpsertChain::first(key_period, number),
        Some(c) => {
            let tags: Vec<Tag> = ups
                .iter()
                .map(|r| {
                    let mut t = [0u8; TAG_LEN];
                    t.copy_from_slice(&r[..TAG_LEN]);
                    Tag(t)
                })
                .collect();
            c.next(key_period, number, tags.iter())
                .map_err(|e| ServerError::Internal(format!("upsert chain: {e}")))?
        }
    };
    let delta = prev.map(|p| encode_delta(key_period, number, p.number, &removed, &ups));
    drop(ups);
    let persons = encode_persons(
        person_count as usize,
        seed_persons
            .into_iter()
            .flat_map(|p| p.iter())
            .chain(new_ids.iter().copied()),
    );
    times.assemble = t.elapsed();
    Ok(Assembled {
        times,
        records,
        index,
        delta,
        added: added_count,
        removed: removed.len() as u64,
        relabelled,
        persons_used,
        persons,
        person_count,
        chain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::registry::NumberRow;

    fn record(tag: u8, person: u32, version: u32) -> [u8; RECORD_LEN] {
        let mut r = [0u8; RECORD_LEN];
        r[..TAG_LEN].copy_from_slice(&[tag; TAG_LEN]);
        r[16..48].copy_from_slice(&[tag ^ 0x5a; 32]);
        r[48..52].copy_from_slice(&person.to_le_bytes());
        r[52..].copy_from_slice(&version.to_le_bytes());
        r
    }

    fn added(tag: u8, row: u32) -> (Tag, LabelKey, u32) {
        (Tag([tag; TAG_LEN]), LabelKey::from_bytes(&[tag; 32]), row)
    }

    /// Previous table: tags 10 (row 0), 20 (removed), 30 (row 1, person changed).
    fn prev() -> Vec<u8> {
        [record(10, 0, 1), record(20, 1, 1), record(30, 1, 2)].concat()
    }

    fn inputs<'a>(
        prev: &'a [u8],
        added: &'a [(Tag, LabelKey, u32)],
        row_at: &'a [u32],
    ) -> Inputs<'a> {
        Inputs {
            prev_records: prev,
            row_at,
            added,
            // rows 0, 1, 2 (2 is added) → person serials 0, 2, 1
            person_of_row: &[0, 2, 1],
            person_count: 3,
            number: 3,
        }
    }

    #[test]
    fn merge_keeps_removes_relabels_and_adds_in_tag_order() {
        let prev = prev();
        let add = [added(25, 2)];
        let e = emit_table(&inputs(&prev, &add, &[0, REMOVED, 1])).expect("no collision");
        let recs: Vec<&[u8]> = e.records[16..].chunks(RECORD_LEN).collect();
        let tags: Vec<u8> = recs.iter().map(|r| r[0]).collect();
        assert_eq!(tags, [10, 25, 30]);
        // Kept unchanged: same bytes (version 1).
        assert_eq!(recs[0], record(10, 0, 1));
        // Added: person of row 2 (new person 1), version 3.
        assert_eq!(u32_at(recs[1], 48), 1);
        assert_eq!(u32_at(recs[1], 52), 3);
        // Relabelled: old person 1 (new 1) now person 2: version 3, label key kept.
        assert_eq!(u32_at(recs[2], 48), 2);
        assert_eq!(u32_at(recs[2], 52), 3);
        assert_eq!(recs[2][16..48], record(30, 0, 0)[16..48]);
        assert_eq!(e.removed, [Tag([20; TAG_LEN])]);
        assert_eq!(e.upserts, [1, 2]);
        assert_eq!(e.relabelled, 1);
        assert_eq!(e.pos_of_row, [0, 2, 1]);
        assert_eq!(e.persons_used, 3);
    }

    #[test]
    fn an_added_tag_equal_to_a_kept_removed_or_added_tag_is_a_collision() {
        let prev = prev();
        // Equal to a kept entry's tag.
        let add = [added(10, 2)];
        assert!(emit_table(&inputs(&prev, &add, &[0, REMOVED, 1])).is_err());
        // Equal to the tag removed in the same epoch (the delta would remove and upsert it).
        let add = [added(20, 2)];
        assert!(emit_table(&inputs(&prev, &add, &[0, REMOVED, 1])).is_err());
        // Two added entries with one tag (also after the last previous tag).
        let add = [added(40, 2), added(40, 2)];
        assert!(emit_table(&inputs(&prev, &add, &[0, REMOVED, 1])).is_err());
    }

    fn registry(keys: &[u128]) -> Registry {
        Registry {
            encoding: "UTF-8",
            mapping: String::new(),
            rows: keys.len() as u64,
            repairs: 0,
            rejected: Vec::new(),
            persons: Default::default(),
            numbers: keys
                .iter()
                .map(|&key| NumberRow {
                    key,
                    at: 0,
                    person: 0,
                    line: 2,
                })
                .collect(),
            arena: Vec::new(),
            duplicate_rows: 0,
            conflicts: Vec::new(),
            counts: Default::default(),
        }
    }

    fn index(entries: &[(u128, u32)]) -> Vec<u8> {
        encode_index(entries.len(), entries.iter().copied()).to_vec()
    }

    fn merge(keys: &[u128], idx: &[(u128, u32)]) -> Result<(Vec<u32>, Vec<u32>), ServerError> {
        let bytes = index(idx);
        let records = vec![0u8; idx.len() * RECORD_LEN];
        let prev = PreviousTable {
            number: 1,
            records: &records,
            index: crate::epoch::decode_index("1", Path::new("index.bin"), &bytes)?,
            index_path: Path::new("index.bin"),
        };
        merge_with_index(&registry(keys), &prev)
    }

    #[test]
    fn merge_classifies_every_number_and_position() {
        // Registry 1, 3, 4; previous 2 → pos 1, 3 → pos 0, 5 → pos 2.
        let (row_at, added) = merge(&[1, 3, 4], &[(2, 1), (3, 0), (5, 2)]).expect("valid");
        assert_eq!(row_at, [1, REMOVED, REMOVED]);
        assert_eq!(added, [0, 2]);
    }

    #[test]
    fn a_damaged_index_is_refused_not_trusted() {
        let bad = |idx: &[(u128, u32)]| match merge(&[1, 3], idx) {
            Err(ServerError::CorruptEpoch { reason, .. }) => reason,
            other => panic!("expected CorruptEpoch, got {other:?}"),
        };
        assert!(bad(&[(3, 0), (2, 1)]).contains("ascending"));
        assert!(bad(&[(2, 0), (3, 0)]).contains("twice"));
        assert!(bad(&[(2, 0), (3, 7)]).contains("out of range"));
    }
}

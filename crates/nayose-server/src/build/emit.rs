//! Step 3 of the diff: the new table, written in one pass.
//!
//! The previous table (streamed, ascending by tag) is merged with the evaluated entries, one
//! tag bucket at a time (each bucket read from its spill file and sorted in memory), and the
//! new records go straight to `table.bin` in tag order. As it goes, the pass records where each
//! registry number's record landed (for the number index), the removed tags and the upserts
//! (added and relabelled records, for the delta and the upsert chain; not kept in a new key
//! period, which has no delta), and which persons have an entry.
//!
//! Invariants of the output: records strictly ascending by tag (equal tags, or an added tag
//! equal to a previous entry's — kept or removed — are an [`EmitError::Collision`]: table.md
//! §8.3); a kept entry keeps tag, label key and version unless its person serial changed
//! (RELABEL: version = the new epoch); every registry number gets exactly one record.

use std::io::Read;

use nayose_table::{LABEL_KEY_LEN, RECORD_LEN, RECORD_TAG_LEN, TAG_LEN, Tag};
use rayon::prelude::*;
use zeroize::Zeroizing;

use super::evaluate::{Buckets, SPILL_LEN, bucket_of};
use super::merge::REMOVED;
use super::previous::PrevRecords;
use super::registry::NumberRow;
use super::spool::{PosReader, SecretWriter};
use crate::error::ServerError;

/// Why the pass stopped.
#[derive(Debug)]
pub(super) enum EmitError {
    /// Two entries with one tag (table.md §8.3): the epoch cannot be published.
    Collision,
    /// Reading or writing failed, or a previous file is damaged.
    Server(ServerError),
}

impl From<ServerError> for EmitError {
    fn from(e: ServerError) -> Self {
        EmitError::Server(e)
    }
}

/// What the pass reads.
pub(super) struct EmitInputs<'a> {
    /// The previous table (none in a new key period).
    pub prev: Option<PrevRecords>,
    /// Per previous position: the registry number keeping it, or [`REMOVED`].
    pub row_at: &'a [u32],
    /// The evaluated (added) entries.
    pub buckets: Buckets,
    /// The registry's numbers (for their persons).
    pub numbers: &'a [NumberRow],
    /// Serial by person index (the new person map).
    pub serials: &'a [u32],
    /// The new epoch.
    pub number: u32,
}

/// What the pass wrote and found.
pub(super) struct Emitted {
    /// Records written.
    pub entries: u64,
    /// Per registry number: its record's position.
    pub pos_of_row: Vec<u32>,
    /// Removed tags, ascending.
    pub removed: Vec<Tag>,
    /// The upserted records (56 bytes each), ascending by tag; empty without a previous table.
    pub upserts: Zeroizing<Vec<u8>>,
    /// Added entries.
    pub added: u64,
    /// Kept entries whose person changed.
    pub relabelled: u64,
    /// Persons with at least one entry.
    pub persons_used: u64,
    /// SHA-256 of the whole `table.bin` as written.
    pub table_sha256: [u8; 32],
    /// `table.bin`, written but not yet synced to disk: the caller syncs it while it writes the
    /// other files.
    pub table: std::fs::File,
}

/// The writing side of the pass.
struct Out<'a> {
    w: SecretWriter,
    entries: u64,
    last: Option<[u8; TAG_LEN]>,
    pos_of_row: Vec<u32>,
    used: Vec<u64>,
    upserts: Option<Zeroizing<Vec<u8>>>,
    numbers: &'a [NumberRow],
    serials: &'a [u32],
}

/// The serial of person index `person`.
fn serial_of(serials: &[u32], person: u32) -> Result<u32, ServerError> {
    serials
        .get(person as usize)
        .copied()
        .ok_or_else(|| ServerError::Internal("a number names no person".into()))
}

impl Out<'_> {
    fn push(
        &mut self,
        rec: &[u8; RECORD_LEN],
        row: u32,
        person: u32,
        upsert: bool,
    ) -> Result<(), EmitError> {
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&rec[..TAG_LEN]);
        if self.last.is_some_and(|l| l >= tag) {
            return Err(EmitError::Collision);
        }
        self.last = Some(tag);
        let pos = u32::try_from(self.entries)
            .map_err(|_| ServerError::Internal("more than 2^32 table entries".into()))?;
        self.pos_of_row[row as usize] = pos;
        self.used[(person / 64) as usize] |= 1 << (person % 64);
        if upsert && let Some(u) = &mut self.upserts {
            u.extend_from_slice(rec);
        }
        self.w.put(rec)?;
        self.entries += 1;
        Ok(())
    }

    /// The record of an evaluated entry.
    fn added(&mut self, e: &[u8; SPILL_LEN], number: u32) -> Result<(), EmitError> {
        let row = u32::from_le_bytes([
            e[SPILL_LEN - 4],
            e[SPILL_LEN - 3],
            e[SPILL_LEN - 2],
            e[SPILL_LEN - 1],
        ]);
        let person = self
            .numbers
            .get(row as usize)
            .ok_or_else(|| ServerError::Internal("a spilled entry names no number".into()))?
            .person;
        let serial = serial_of(self.serials, person)?;
        let mut r = Zeroizing::new([0u8; RECORD_LEN]);
        // tag (9) || 0^7 || label key (32) || person serial || version: table.md §14.
        r[..TAG_LEN].copy_from_slice(&e[..TAG_LEN]);
        r[RECORD_TAG_LEN..RECORD_TAG_LEN + LABEL_KEY_LEN]
            .copy_from_slice(&e[TAG_LEN..TAG_LEN + LABEL_KEY_LEN]);
        r[48..52].copy_from_slice(&serial.to_le_bytes());
        r[52..].copy_from_slice(&number.to_le_bytes());
        self.push(&r, row, person, true)
    }
}

/// Reads bucket `file` (`count` entries) and sorts it by tag.
fn load_bucket(
    buckets: &Buckets,
    b: usize,
) -> Result<Zeroizing<Vec<[u8; SPILL_LEN]>>, ServerError> {
    let (file, count) = &buckets.files[b];
    let count = usize::try_from(*count)
        .map_err(|_| ServerError::Internal("a bucket larger than memory".into()))?;
    let mut v = Zeroizing::new(vec![[0u8; SPILL_LEN]; count]);
    PosReader::new(file)
        .read_exact(v.as_flattened_mut())
        .map_err(ServerError::io("cannot read a spill file in", &buckets.dir))?;
    v.par_sort_unstable_by(|x, y| x[..TAG_LEN].cmp(&y[..TAG_LEN]));
    Ok(v)
}

/// Writes the new table to `w` (after its header, which the caller wrote) in one pass.
pub(super) fn emit_table(inp: EmitInputs<'_>, w: SecretWriter) -> Result<Emitted, EmitError> {
    let EmitInputs {
        mut prev,
        row_at,
        buckets,
        numbers,
        serials,
        number,
    } = inp;
    let mut out = Out {
        w,
        entries: 0,
        last: None,
        pos_of_row: vec![0u32; numbers.len()],
        used: vec![0u64; serials.len().div_ceil(64)],
        upserts: prev.as_ref().map(|_| Zeroizing::new(Vec::new())),
        numbers,
        serials,
    };
    let mut removed = Vec::new();
    let (mut added, mut relabelled) = (0u64, 0u64);
    // The next previous record not yet merged, and its position.
    let mut pending = Zeroizing::new([0u8; RECORD_LEN]);
    let mut has_pending = false;
    let mut p_pos = 0usize;
    for b in 0..buckets.files.len() {
        let entries = load_bucket(&buckets, b)?;
        let mut a = 0usize;
        loop {
            if !has_pending && let Some(p) = prev.as_mut() {
                has_pending = p.next(&mut pending)?;
            }
            if !has_pending || bucket_of(&pending[..TAG_LEN], buckets.bits) != b {
                break;
            }
            let tag = &pending[..TAG_LEN];
            while a < entries.len() && entries[a][..TAG_LEN] < *tag {
                out.added(&entries[a], number)?;
                added += 1;
                a += 1;
            }
            if a < entries.len() && entries[a][..TAG_LEN] == *tag {
                // An added number with the tag of a kept or a removed entry.
                return Err(EmitError::Collision);
            }
            let row = row_at.get(p_pos).copied().unwrap_or(REMOVED);
            p_pos += 1;
            has_pending = false;
            if row == REMOVED {
                let mut t = [0u8; TAG_LEN];
                t.copy_from_slice(tag);
                removed.push(Tag(t));
                continue;
            }
            let person = numbers
                .get(row as usize)
                .ok_or_else(|| ServerError::Internal("a kept entry names no number".into()))?
                .person;
            // Serials are stable across epochs: a different serial is a different person.
            let serial = serial_of(serials, person)?;
            let relabel = pending[48..52] != serial.to_le_bytes();
            if relabel {
                pending[48..52].copy_from_slice(&serial.to_le_bytes());
                pending[52..].copy_from_slice(&number.to_le_bytes());
                relabelled += 1;
            }
            out.push(&pending, row, person, relabel)?;
        }
        for e in &entries[a..] {
            out.added(e, number)?;
            added += 1;
        }
    }
    if has_pending {
        return Err(
            ServerError::Internal("a previous record fell outside every bucket".into()).into(),
        );
    }
    if let Some(p) = prev {
        p.finish()?;
    }
    let persons_used = out.used.iter().map(|w| u64::from(w.count_ones())).sum();
    let (table, table_sha256) = out.w.finish()?;
    Ok(Emitted {
        table,
        entries: out.entries,
        pos_of_row: out.pos_of_row,
        removed,
        upserts: out.upserts.unwrap_or_default(),
        added,
        relabelled,
        persons_used,
        table_sha256: table_sha256.ok_or_else(|| {
            ServerError::Internal("the table was written without its checksum".into())
        })?,
    })
}

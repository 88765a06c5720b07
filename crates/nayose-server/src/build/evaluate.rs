//! Step 2 of the diff: the OPRF evaluation of the added numbers, spilled into tag buckets.
//!
//! The numbers are read back from the arena in order (a sequential read), evaluated in
//! batches of `super::batch_len()` on all cores (`ServerKey::evaluate_batch_with`, VOPRF mode:
//! one fused pass that derives each entry where its output was computed), and each result —
//! `tag (9) || label key (32) || registry number (u32 LE)`, [`SPILL_LEN`] bytes — is appended to
//! the bucket of its tag's leading bits. Tags are PRF outputs, so the buckets are
//! even; [`bucket_bits`] sizes them so that one bucket (sorted in memory by the next step) stays
//! near 2^17 entries up to 2^8 buckets: 0.2 bytes per number of a national registry. Buckets
//! are unnamed spill files ([`super::spool::spill_file`]) written through zeroizing buffers.

use std::fs::File;
use std::path::{Path, PathBuf};

use nayose_oprf::{Mode, ServerKey};
use nayose_table::{LABEL_KEY_LEN, TAG_LEN, derive_entry_secrets};
use zeroize::Zeroizing;

use super::arena::ArenaReader;
use super::merge::{Classified, SKIP};
use super::registry::{Registry, canonical_into};
use super::spool::{SecretWriter, spill_file};
use super::{BuildProgress, ProgressFn, batch_len};
use crate::error::ServerError;

/// Bytes of one spilled evaluation: tag, label key, registry number.
pub(super) const SPILL_LEN: usize = TAG_LEN + LABEL_KEY_LEN + 4;

/// Most buckets (and open spill files) of one build.
const MAX_BUCKET_BITS: u32 = 8;

/// Bits of the tag that choose the bucket when `added` numbers are evaluated: about 2^17 per
/// bucket, at most 2^8 buckets.
pub(super) fn bucket_bits(added: u64) -> u32 {
    let want = added.div_ceil(1 << 17).max(1);
    want.next_power_of_two()
        .trailing_zeros()
        .min(MAX_BUCKET_BITS)
}

/// The bucket of a tag.
pub(super) fn bucket_of(tag: &[u8], bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        usize::from(tag[0] >> (8 - bits))
    }
}

/// The evaluated entries, by tag bucket.
pub(super) struct Buckets {
    /// Bits of the tag that choose the bucket.
    pub bits: u32,
    /// One spill file per bucket and how many entries it holds.
    pub files: Vec<(File, u64)>,
    /// The directory of the spill files, for errors.
    pub dir: PathBuf,
}

/// One batch of numbers to evaluate: canonical encodings and their registry numbers.
#[derive(Default)]
struct Batch {
    inputs: Vec<Vec<u8>>,
    rows: Vec<u32>,
}

/// Fills `batch` with up to `len` of the numbers to evaluate, read from `r` in order.
fn fill(
    r: &mut ArenaReader<'_>,
    cls: &Classified,
    batch: &mut Batch,
    buf: &mut Vec<u8>,
    len: usize,
) -> Result<(), ServerError> {
    while batch.inputs.len() < len {
        let Some(e) = r.next_into(buf)? else {
            break;
        };
        let row = cls.row_of_s.get(e.s as usize).copied().unwrap_or(SKIP);
        if row == SKIP {
            continue;
        }
        let mut c = Vec::new();
        canonical_into(e.body, &mut c);
        batch.inputs.push(c);
        batch.rows.push(row);
    }
    Ok(())
}

/// The spilled entries of `batch`: tag, label key, registry number.
fn evaluate(
    key: &ServerKey,
    batch: &Batch,
) -> Result<Vec<Zeroizing<[u8; SPILL_LEN]>>, ServerError> {
    let refs: Vec<&[u8]> = batch.inputs.iter().map(Vec::as_slice).collect();
    Ok(key.evaluate_batch_with(Mode::Voprf, &refs, |i, o| {
        let (tag, label_key) = derive_entry_secrets(o.as_bytes());
        let mut e = Zeroizing::new([0u8; SPILL_LEN]);
        e[..TAG_LEN].copy_from_slice(tag.as_bytes());
        e[TAG_LEN..TAG_LEN + LABEL_KEY_LEN].copy_from_slice(label_key.as_bytes());
        e[TAG_LEN + LABEL_KEY_LEN..].copy_from_slice(&batch.rows[i].to_le_bytes());
        e
    })?)
}

/// Appends evaluated entries to their buckets.
fn spill(
    writers: &mut [(SecretWriter, u64)],
    bits: u32,
    entries: &[Zeroizing<[u8; SPILL_LEN]>],
) -> Result<(), ServerError> {
    for e in entries {
        let (w, count) = &mut writers[bucket_of(&e[..TAG_LEN], bits)];
        w.put(e.as_slice())?;
        *count += 1;
    }
    Ok(())
}

/// Evaluates the numbers `cls` marks as added, reading them from `reg`'s arena in order.
///
/// A pipeline: while one batch is evaluated (on every core), the previous batch's entries are
/// spilled and the next batch is read, so the sequential work hides behind the evaluation.
pub(super) fn evaluate_added(
    reg: &Registry,
    cls: &Classified,
    key: &ServerKey,
    dir: &Path,
    progress: Option<&ProgressFn>,
) -> Result<Buckets, ServerError> {
    let bits = bucket_bits(cls.added);
    let mut writers = Vec::with_capacity(1 << bits);
    for _ in 0..1usize << bits {
        writers.push((
            SecretWriter::with_capacity(spill_file(dir)?, dir, 1 << 16),
            0u64,
        ));
    }
    if cls.added > 0 {
        let len = batch_len();
        let mut r = reg.arena.reader();
        let mut buf = Vec::new();
        let mut cur = Batch::default();
        fill(&mut r, cls, &mut cur, &mut buf, len)?;
        let mut evaluated: Vec<Zeroizing<[u8; SPILL_LEN]>> = Vec::new();
        let mut done = 0u64;
        while !cur.inputs.is_empty() {
            let mut next = Batch::default();
            let (now, side) = rayon::join(
                || evaluate(key, &cur),
                || -> Result<(), ServerError> {
                    spill(&mut writers, bits, &evaluated)?;
                    fill(&mut r, cls, &mut next, &mut buf, len)
                },
            );
            side?;
            evaluated = now?;
            done += cur.inputs.len() as u64;
            cur = next;
            if let Some(p) = progress {
                p(BuildProgress {
                    phase: "evaluate",
                    done,
                    total: cls.added,
                    bytes: false,
                });
            }
        }
        spill(&mut writers, bits, &evaluated)?;
    }
    let mut files = Vec::with_capacity(writers.len());
    for (w, count) in writers {
        let (file, _) = w.finish()?;
        files.push((file, count));
    }
    let total: u64 = files.iter().map(|f| f.1).sum();
    if total != cls.added {
        return Err(ServerError::Internal(format!(
            "{total} numbers evaluated, {} expected (the build's spill file is damaged)",
            cls.added
        )));
    }
    Ok(Buckets {
        bits,
        files,
        dir: dir.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_grow_with_the_added_numbers_up_to_256() {
        assert_eq!(bucket_bits(0), 0);
        assert_eq!(bucket_bits(1), 0);
        assert_eq!(bucket_bits(1 << 17), 0);
        assert_eq!(bucket_bits((1 << 17) + 1), 1);
        assert_eq!(bucket_bits(1_000_000), 3);
        assert_eq!(bucket_bits(50_000_000), 8);
        assert_eq!(bucket_bits(400_000_000), 8);
        assert_eq!(bucket_of(&[0xFF], 0), 0);
        assert_eq!(bucket_of(&[0xFF], 3), 7);
        assert_eq!(bucket_of(&[0x80], 1), 1);
        assert_eq!(bucket_of(&[0x7F], 8), 0x7F);
    }
}

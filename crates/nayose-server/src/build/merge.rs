//! Step 1 of the diff: which registry numbers keep a previous entry, which previous entries are
//! removed, which numbers are added (and so evaluated).
//!
//! One merge of the registry's numbers with the previous number index, both ascending by key:
//! O(n + m) time; memory 4 bytes per previous entry ([`Classified::row_at`]) and 4 per arena
//! entry ([`Classified::row_of_s`]). The merge checks the index as it reads it: keys strictly
//! ascending (by [`PrevIndex`]), every position in range and named exactly once.

use super::previous::PrevIndex;
use super::registry::Registry;
use crate::error::ServerError;

/// `row_at`: a previous position not (yet) named by the index.
pub(super) const UNSEEN: u32 = u32::MAX;
/// `row_at`: a previous position whose number is gone.
pub(super) const REMOVED: u32 = u32::MAX - 1;
/// `row_of_s`: an arena entry that is not evaluated.
pub(super) const SKIP: u32 = u32::MAX;

/// What the merge found.
pub(super) struct Classified {
    /// Per previous table position: the registry number (index into `numbers`) that keeps it,
    /// or [`REMOVED`]. Empty without a previous epoch.
    pub row_at: Vec<u32>,
    /// Per arena entry (sequence number): the registry number to evaluate, or [`SKIP`] (a kept
    /// number, or a repeated row that was resolved away).
    pub row_of_s: Vec<u32>,
    /// How many numbers are added.
    pub added: u64,
}

/// Classifies every registry number against `prev` (the previous epoch's index, `m` entries),
/// or marks them all as added when there is no previous epoch.
pub(super) fn classify(
    reg: &Registry,
    prev: Option<(PrevIndex, usize)>,
) -> Result<Classified, ServerError> {
    let n = reg.numbers.len();
    if u32::try_from(n).is_err() || n >= REMOVED as usize {
        return Err(ServerError::Internal(
            "more than 4294967293 distinct numbers".into(),
        ));
    }
    let s_len = usize::try_from(reg.arena.len())
        .map_err(|_| ServerError::Internal("the arena is larger than memory".into()))?;
    let mut row_of_s = vec![SKIP; s_len];
    let add = |i: usize, row_of_s: &mut [u32]| {
        let s = reg.numbers[i].s as usize;
        row_of_s[s] = i as u32;
    };
    let Some((mut idx, m)) = prev else {
        for i in 0..n {
            add(i, &mut row_of_s);
        }
        return Ok(Classified {
            row_at: Vec::new(),
            row_of_s,
            added: n as u64,
        });
    };
    let mut row_at = vec![UNSEEN; m];
    let mut added = 0u64;
    let take = |idx: &PrevIndex, pos: u32, row: u32, row_at: &mut [u32]| match row_at
        .get_mut(pos as usize)
    {
        Some(slot) if *slot == UNSEEN => {
            *slot = row;
            Ok(())
        }
        Some(_) => Err(idx.corrupt("a table position is named twice")),
        None => Err(idx.corrupt("a table position is out of range")),
    };
    let mut i = 0usize;
    let mut next = idx.next()?;
    loop {
        // The previous position this step settles and the number keeping it (or REMOVED);
        // `None`: the registry's number is added.
        let settled = match (reg.numbers.get(i), next) {
            (None, None) => break,
            (Some(_), None) => None,
            (None, Some((_, pos))) => Some((pos, REMOVED)),
            (Some(a), Some((key, pos))) => match a.key().cmp(&key) {
                std::cmp::Ordering::Less => None,
                std::cmp::Ordering::Greater => Some((pos, REMOVED)),
                std::cmp::Ordering::Equal => Some((pos, i as u32)),
            },
        };
        match settled {
            None => {
                add(i, &mut row_of_s);
                added += 1;
                i += 1;
            }
            Some((pos, row)) => {
                take(&idx, pos, row, &mut row_at)?;
                if row != REMOVED {
                    i += 1;
                }
                next = idx.next()?;
            }
        }
    }
    idx.finish()?;
    Ok(Classified {
        row_at,
        row_of_s,
        added,
    })
}

//! The compact base (issue 10 item 1): a base and the client's cached state of a table of
//! 1,000,000 random tags take at most 12 bytes per entry, counted byte by byte as they go on the
//! wire (BaseChunks of protocol-spec/wire.md §5.2.3) and to disk (the state blocks the client
//! stores). A size, not a time: the test is deterministic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use nayose_table::*;
use rand::{RngCore, SeedableRng};

/// BaseChunk bytes around an entry block: type 4, key period 16, epoch 4, offset 8, total 8,
/// rice 1, first tag 9, gaps length 8, labels count 8.
const CHUNK_OVERHEAD: usize = 66;

fn table(n: usize) -> Vec<(Tag, EncryptedLabel)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(10);
    let mut tags: Vec<Tag> = (0..n)
        .map(|_| {
            let mut t = [0u8; TAG_LEN];
            rng.fill_bytes(&mut t);
            Tag(t)
        })
        .collect();
    tags.sort_unstable();
    tags.dedup();
    tags.into_iter()
        .map(|t| {
            let mut l = [0u8; LABEL_LEN];
            rng.fill_bytes(&mut l);
            (t, EncryptedLabel(l))
        })
        .collect()
}

#[test]
fn a_base_and_a_cached_state_of_a_million_entries_take_at_most_12_bytes_each() {
    let entries = table(1_000_000);
    let n = entries.len();
    let blocks: Vec<EntryBlock> = entries
        .chunks(MAX_BLOCK_ENTRIES)
        .map(|c| EntryBlock::encode(c).unwrap())
        .collect();
    let wire: usize = blocks
        .iter()
        .map(|b| CHUNK_OVERHEAD + b.gaps.len() + b.labels.len())
        .sum();
    let kp = KeyPeriodId::new(1, &[1; 32]);
    let mut state = ClientTable::from_base(kp, 3, UpsertChain::first(kp, 3), blocks).unwrap();
    let mut stored = Vec::new();
    for b in state.blocks() {
        b.write_to(&mut stored);
    }
    let per_wire = wire as f64 / n as f64;
    let per_disk = stored.len() as f64 / n as f64;
    eprintln!("{n} entries: base {per_wire:.2} B/entry on the wire, {per_disk:.2} B/entry cached");
    assert!(per_wire <= 12.0, "{per_wire}");
    assert!(per_disk <= 12.0, "{per_disk}");

    // After a delta (1 % added, 0.1 % relabelled) the state is re-blocked and stays compact;
    // the relabelled and added entries carry their own pad epoch.
    let extra = table(10_000);
    let present = state.get_many(&extra.iter().map(|e| e.0).collect::<Vec<_>>());
    let mut added: Vec<(Tag, EncryptedLabel)> = extra
        .into_iter()
        .zip(present)
        .filter(|(_, p)| p.is_none())
        .map(|(e, _)| e)
        .collect();
    added.extend(
        entries
            .iter()
            .step_by(1000)
            .map(|e| (e.0, EncryptedLabel([7; 4]))),
    );
    added.sort_unstable_by_key(|e| e.0);
    let counts = state.apply_delta(4, &[], &added).unwrap();
    assert_eq!(counts.relabelled, entries.len().div_ceil(1000) as u64);
    let mut stored = Vec::new();
    for b in state.blocks() {
        b.write_to(&mut stored);
    }
    let per_disk = stored.len() as f64 / state.len() as f64;
    eprintln!("after one delta: {per_disk:.2} B/entry cached");
    assert!(per_disk <= 12.0, "{per_disk}");
    let got = state.get_many(&[entries[5000].0, entries[5001].0]);
    assert_eq!(got[0].unwrap().pad_epoch, 4, "relabelled in the delta");
    assert_eq!(got[1].unwrap().pad_epoch, 3, "from the base");
}

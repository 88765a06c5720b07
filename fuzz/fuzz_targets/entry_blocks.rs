//! Entry blocks (protocol-spec/table.md §9.5) as a base chunk carries them and as the client's
//! table cache and partial base store them: arbitrary bytes are read as stored state blocks
//! (`StateBlock::read_from`) and as stored entry blocks (`EntryBlock::read_from`), decoded, and
//! turned into a `ClientTable` (`from_state_blocks`, `from_base`) exactly as the client's cache
//! loader does. Fails on a panic, or if a block that decodes does not re-encode to the same
//! bytes (the coding is canonical for its Rice parameter), or if a table that loads does not
//! give back its own blocks' tags in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nayose_table::{ClientTable, EntryBlock, KeyPeriodId, StateBlock, UpsertChain};

fuzz_target!(|data: &[u8]| {
    let Some((&epoch, rest)) = data.split_first() else {
        return;
    };
    let epoch = u32::from(epoch) + 1;
    let kp = KeyPeriodId::from_bytes([7; 16]);
    let chain = UpsertChain([1; 32]);

    // As the client's table cache: stored state blocks back to back.
    let mut blocks = Vec::new();
    let mut r = rest;
    while let Some((b, tail)) = StateBlock::read_from(r) {
        blocks.push(b);
        r = tail;
        if blocks.len() > 64 {
            break;
        }
    }
    for b in &blocks {
        let mut tags = Vec::new();
        if b.block.decode_tags(0, &mut tags).is_ok() {
            let entries: Vec<_> = tags
                .iter()
                .enumerate()
                .map(|(i, t)| (*t, b.block.label(i)))
                .collect();
            let again = EntryBlock::encode_with(&entries, b.block.rice)
                .expect("a decoded block re-encodes");
            assert!(again == b.block, "the entry-block coding is canonical");
        }
    }
    if let Ok(t) = ClientTable::from_state_blocks(kp, epoch, chain, blocks) {
        let entries = t.entries();
        assert_eq!(entries.len(), t.len());
        assert!(entries.windows(2).all(|w| w[0].tag < w[1].tag));
        let _ = t.digest();
    }

    // As a partial base: stored entry blocks back to back.
    let mut blocks = Vec::new();
    let mut r = rest;
    while let Some((b, tail)) = EntryBlock::read_from(r) {
        blocks.push(b);
        r = tail;
        if blocks.len() > 64 {
            break;
        }
    }
    if let Ok(t) = ClientTable::from_base(kp, epoch, chain, blocks) {
        let _ = t.digest();
    }
});

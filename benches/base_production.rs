//! How fast the server produces one client's base (issue 10 item 5): for every entry, the
//! client's 4-byte label of the entry's person serial (the AES-128 Feistel permutation), the
//! pad of the base's epoch (one SHA-512) and the entry block coding (Rice-coded tag gaps), as
//! `RecordTable::base_block` does for every chunk of a base download.
//!
//! Measured on one thread (entries per second per server core) and on all cores, with a
//! baseline from the same run: SHA-512 of one 128-byte message, the primitive that bounds the
//! work (one per entry). Also prints the bytes per entry of the produced base. Run:
//! `cargo bench --bench base_production` (`NAYOSE_BASE_ENTRIES`, default 1,000,000).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use nayose_table::{
    ClientId, KeyPeriodId, LabelKey, LabelMasterKey, LabelPermutation, MAX_BLOCK_ENTRIES,
    RecordTable, TAG_LEN, TableEntry, Tag,
};
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha512};

fn main() {
    let n: usize = std::env::var("NAYOSE_BASE_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut entries: Vec<TableEntry> = (0..n)
        .map(|i| {
            let mut tag = [0u8; TAG_LEN];
            let mut key = [0u8; 32];
            rng.fill_bytes(&mut tag);
            rng.fill_bytes(&mut key);
            TableEntry {
                tag: Tag(tag),
                label_key: LabelKey::from_bytes(&key),
                person: (i / 3) as u32,
                version: 1 + (i % 5) as u32,
            }
        })
        .collect();
    entries.sort_by_key(|e| e.tag);
    entries.dedup_by_key(|e| e.tag);
    let n = entries.len();
    let records: Vec<u8> = entries.iter().flat_map(|e| *e.to_record()).collect();
    drop(entries);
    let master = LabelMasterKey::from_bytes(&[0x42; 32]).unwrap();
    let client = ClientId::new("research-db-01").unwrap();
    let kp = KeyPeriodId::new(1, &[9; 32]);
    let table = RecordTable::new(kp, 5, &records).unwrap();

    // Baseline: SHA-512 of a 128-byte message (two compressions with padding), one thread.
    let block = [0x5au8; 111];
    let t = Instant::now();
    let mut acc = 0u8;
    for i in 0..n {
        let mut h = Sha512::new();
        h.update((i as u64).to_le_bytes());
        h.update(block);
        acc ^= h.finalize()[0];
    }
    let hash_rate = n as f64 / t.elapsed().as_secs_f64();

    let produce = || -> usize {
        let perm = LabelPermutation::new(&master, &client);
        let mut bytes = 0usize;
        let mut at = 0;
        while at < n {
            let end = (at + MAX_BLOCK_ENTRIES).min(n);
            let b = table.base_block(at..end, &client, &perm).unwrap();
            // The BaseChunk around the block: 66 bytes of header and counts.
            bytes += 66 + b.gaps.len() + b.labels.len();
            at = end;
        }
        bytes
    };
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let t = Instant::now();
    let bytes = one.install(produce);
    let single = n as f64 / t.elapsed().as_secs_f64();
    let threads = rayon::current_num_threads();
    let t = Instant::now();
    let bytes_all = produce();
    let all = n as f64 / t.elapsed().as_secs_f64();
    assert_eq!(bytes, bytes_all);
    std::hint::black_box(acc);

    println!("## Base production (issue 10): {n} entries, one client\n");
    println!("| measure | per second | ratio |");
    println!("|---|---|---|");
    println!("| SHA-512 of 128 bytes, 1 thread (baseline) | {hash_rate:.0} | 1.00 |");
    println!(
        "| base entries, 1 thread (per server core) | {single:.0} | {:.2} × baseline |",
        single / hash_rate
    );
    println!(
        "| base entries, {threads} threads | {all:.0} | {:.2} × the 1-thread rate |",
        all / single
    );
    println!(
        "\nbase size: {bytes} bytes = {:.2} bytes per entry on the wire (target ≤ 12)",
        bytes as f64 / n as f64
    );
    println!(
        "target ≥ 1,000,000 entries/s per core: {}",
        if single >= 1_000_000.0 {
            "met"
        } else {
            "not met"
        }
    );
}

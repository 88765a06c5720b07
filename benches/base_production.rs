//! How fast the server produces one client's base (issue 10 item 5): per entry, the client's
//! label of the entry's person (a keyed SHA-512) and the versioned pad (a SHA-512), as
//! `nayose_table::encrypt_entry` does for every entry of a base download.
//!
//! Measured on one thread (entries per second per server core) and on all cores, with a
//! baseline from the same run: SHA-512 of one 128-byte block, the primitive that bounds the
//! work (about two such hashes per entry). Run: `cargo bench --bench base_production`
//! (`NAYOSE_BASE_ENTRIES`, default 1,000,000).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use nayose_table::{
    ClientId, KeyPeriodId, LabelKey, LabelMasterKey, TableEntry, Tag, encrypt_entry,
};
use rand::{RngCore, SeedableRng};
use rayon::prelude::*;
use sha2::{Digest, Sha512};

fn main() {
    let n: usize = std::env::var("NAYOSE_BASE_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let persons: Vec<Vec<u8>> = (0..n / 3 + 1)
        .map(|p| format!("P{p:012}").into_bytes())
        .collect();
    let entries: Vec<TableEntry> = (0..n)
        .map(|i| {
            let mut tag = [0u8; 16];
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
    let master = LabelMasterKey::from_bytes(&[0x42; 32]).unwrap();
    let client = ClientId::new("research-db-01").unwrap();
    let kp = KeyPeriodId::new(1, &[9; 32]);

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

    let one = |e: &TableEntry| {
        encrypt_entry(e, &client, kp, &master, &persons[e.person as usize])
            .label
            .0[0]
    };
    let t = Instant::now();
    for e in &entries {
        acc ^= one(e);
    }
    let single = n as f64 / t.elapsed().as_secs_f64();
    let threads = rayon::current_num_threads();
    let t = Instant::now();
    acc ^= entries.par_iter().map(one).reduce(|| 0, |a, b| a ^ b);
    let all = n as f64 / t.elapsed().as_secs_f64();
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
        "\ntarget ≥ 1,000,000 entries/s per core: {}",
        if single >= 1_000_000.0 {
            "met"
        } else {
            "not met"
        }
    );
}

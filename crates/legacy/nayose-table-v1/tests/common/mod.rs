//! Helpers shared by the integration tests (included with `mod common;`).
#![allow(dead_code, unreachable_pub)]

use nayose_table_v1::*;
use sha2::{Digest, Sha512};

/// A deterministic stand-in for an OPRF output: SHA-512 of a seed.
pub fn o(seed: u64) -> [u8; 64] {
    Sha512::digest(seed.to_be_bytes()).into()
}

pub fn master() -> LabelMasterKey {
    LabelMasterKey::from_bytes(&[0x42; 32]).unwrap()
}

pub fn client(s: &str) -> ClientId {
    ClientId::new(s).unwrap()
}

/// A table of `numbers` numbers for `persons` persons (number i belongs to person i % persons),
/// with OPRF outputs o(salt * 1_000_000 + i). Returns the table and the person ids.
pub fn table(epoch: u64, salt: u64, numbers: u64, persons: u32) -> (EpochTable, Vec<String>) {
    let outs: Vec<[u8; 64]> = (0..numbers).map(|i| o(salt * 1_000_000 + i)).collect();
    let ps: Vec<u32> = (0..numbers)
        .map(|i| (i % u64::from(persons)) as u32)
        .collect();
    let mut b = EpochTableBuilder::new(ep(epoch), persons);
    b.push_batch(&outs, &ps).unwrap();
    let ids = (0..persons).map(|p| format!("person-{p:06}")).collect();
    (b.finish().unwrap(), ids)
}

/// All records of a table, back to back.
pub fn record_bytes(t: &EpochTable) -> Vec<u8> {
    t.records().flat_map(|r| *r).collect()
}

/// The id of epoch `n` with a stand-in public key.
pub fn ep(n: u64) -> EpochId {
    EpochId::new(n, &[n as u8; 32])
}

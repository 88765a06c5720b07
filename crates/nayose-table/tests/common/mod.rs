//! A model server for the integration tests (included with `mod common;`): numbers with
//! persons (serials), epochs with adds, removals and relabels, and what a client receives.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;

use nayose_table::*;
use sha2::{Digest, Sha512};

/// A deterministic stand-in for an OPRF output: SHA-512 of a seed.
pub fn o(seed: u64) -> [u8; 64] {
    Sha512::digest(seed.to_be_bytes()).into()
}

pub fn client(s: &str) -> ClientId {
    ClientId::new(s).unwrap()
}

/// One epoch's delta as the server keeps it: removed tags, upserted entries (with their serial).
#[derive(Clone, Debug)]
pub struct ModelDelta {
    pub epoch: u32,
    pub removed: Vec<Tag>,
    pub upserts: Vec<TableEntry>,
}

/// The server side of a key period, in memory.
pub struct ModelServer {
    pub kp: KeyPeriodId,
    pub master: LabelMasterKey,
    pub epoch: u32,
    pub chain: UpsertChain,
    /// seed → person serial of the numbers in the registry.
    pub registry: BTreeMap<u64, u32>,
    /// tag → entry (its `person` is the serial).
    pub table: BTreeMap<Tag, TableEntry>,
    pub deltas: Vec<ModelDelta>,
}

impl ModelServer {
    /// The first epoch `epoch` of key period `kp` over `registry`.
    pub fn new(
        kp: KeyPeriodId,
        master: LabelMasterKey,
        epoch: u32,
        registry: BTreeMap<u64, u32>,
    ) -> Self {
        let table = registry
            .iter()
            .map(|(seed, p)| {
                let e = TableEntry::derive(&o(*seed), *p, epoch);
                (e.tag, e)
            })
            .collect();
        ModelServer {
            kp,
            master,
            epoch,
            chain: UpsertChain::first(kp, epoch),
            registry,
            table,
            deltas: Vec::new(),
        }
    }

    /// The next epoch: the registry becomes `next`.
    pub fn advance(&mut self, epoch: u32, next: BTreeMap<u64, u32>) -> &ModelDelta {
        assert!(epoch > self.epoch);
        let mut removed = Vec::new();
        let mut upserts = Vec::new();
        for (seed, _) in self.registry.iter().filter(|(s, _)| !next.contains_key(s)) {
            let tag = TableEntry::derive(&o(*seed), 0, 0).tag;
            self.table.remove(&tag);
            removed.push(tag);
        }
        for (seed, person) in &next {
            if self.registry.get(seed) != Some(person) {
                let e = TableEntry::derive(&o(*seed), *person, epoch);
                self.table.insert(e.tag, e.clone());
                upserts.push(e);
            }
        }
        removed.sort();
        upserts.sort_by_key(|u| u.tag);
        self.chain = self
            .chain
            .next(self.kp, epoch, upserts.iter().map(|u| &u.tag))
            .unwrap();
        self.registry = next;
        self.epoch = epoch;
        self.deltas.push(ModelDelta {
            epoch,
            removed,
            upserts,
        });
        self.deltas.last().unwrap()
    }

    pub fn digest(&self) -> TableDigest {
        table_digest(self.kp, self.epoch, &self.chain, self.table.keys()).unwrap()
    }

    /// The base entries a client receives (pad epoch = the current epoch).
    pub fn base_entries(&self, c: &ClientId) -> Vec<(Tag, EncryptedLabel)> {
        let perm = LabelPermutation::new(&self.master, c);
        self.table
            .values()
            .map(|e| {
                let l = perm.label(e.person);
                (e.tag, encrypt_entry(e, c, self.kp, self.epoch, &l))
            })
            .collect()
    }

    /// The base a client downloads, as entry blocks of at most `block` entries.
    pub fn base(&self, c: &ClientId, block: usize) -> Vec<EntryBlock> {
        self.base_entries(c)
            .chunks(block)
            .map(|b| EntryBlock::encode(b).unwrap())
            .collect()
    }

    /// One delta as a client receives it (pad epoch = the delta's epoch).
    pub fn delta_for(
        &self,
        d: &ModelDelta,
        c: &ClientId,
    ) -> (Vec<Tag>, Vec<(Tag, EncryptedLabel)>) {
        let perm = LabelPermutation::new(&self.master, c);
        let ups = d
            .upserts
            .iter()
            .map(|e| {
                let l = perm.label(e.person);
                (e.tag, encrypt_entry(e, c, self.kp, d.epoch, &l))
            })
            .collect();
        (d.removed.clone(), ups)
    }

    /// The label `c` must see for the number `seed` now.
    pub fn label_of(&self, c: &ClientId, seed: u64) -> Option<Label> {
        self.registry
            .get(&seed)
            .map(|p| label_for(&self.master, c, *p))
    }
}

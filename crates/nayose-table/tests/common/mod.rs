//! A model server for the integration tests (included with `mod common;`): numbers with
//! persons, epochs with adds, removals and relabels, and what a client receives.
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

/// One epoch's delta as the server keeps it: removed tags, upserted entries with their person.
#[derive(Clone, Debug)]
pub struct ModelDelta {
    pub epoch: u32,
    pub removed: Vec<Tag>,
    pub upserts: Vec<(TableEntry, String)>,
}

/// The server side of a key period, in memory.
pub struct ModelServer {
    pub kp: KeyPeriodId,
    pub master: LabelMasterKey,
    pub epoch: u32,
    /// seed → person id of the numbers in the registry.
    pub registry: BTreeMap<u64, String>,
    /// tag → (entry, person id).
    pub table: BTreeMap<Tag, (TableEntry, String)>,
    pub deltas: Vec<ModelDelta>,
}

impl ModelServer {
    /// The first epoch `epoch` of key period `kp` over `registry`.
    pub fn new(
        kp: KeyPeriodId,
        master: LabelMasterKey,
        epoch: u32,
        registry: BTreeMap<u64, String>,
    ) -> Self {
        let table = registry
            .iter()
            .map(|(seed, p)| {
                let e = TableEntry::derive(&o(*seed), 0, epoch);
                (e.tag, (e, p.clone()))
            })
            .collect();
        ModelServer {
            kp,
            master,
            epoch,
            registry,
            table,
            deltas: Vec::new(),
        }
    }

    /// The next epoch: the registry becomes `next`.
    pub fn advance(&mut self, epoch: u32, next: BTreeMap<u64, String>) -> &ModelDelta {
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
                let e = TableEntry::derive(&o(*seed), 0, epoch);
                self.table.insert(e.tag, (e.clone(), person.clone()));
                upserts.push((e, person.clone()));
            }
        }
        removed.sort();
        upserts.sort_by_key(|u| u.0.tag);
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
        table_digest(
            self.kp,
            self.epoch,
            self.table.iter().map(|(t, (e, _))| (t, e.version)),
        )
        .unwrap()
    }

    /// The base a client downloads.
    pub fn base(&self, c: &ClientId) -> Vec<ClientEntry> {
        self.table
            .values()
            .map(|(e, p)| encrypt_entry(e, c, self.kp, &self.master, p.as_bytes()))
            .collect()
    }

    /// One delta as a client receives it.
    pub fn delta_for(
        &self,
        d: &ModelDelta,
        c: &ClientId,
    ) -> (Vec<Tag>, Vec<(Tag, EncryptedLabel)>) {
        let ups = d
            .upserts
            .iter()
            .map(|(e, p)| {
                let ce = encrypt_entry(e, c, self.kp, &self.master, p.as_bytes());
                (ce.tag, ce.label)
            })
            .collect();
        (d.removed.clone(), ups)
    }

    /// The label `c` must see for the number `seed` now.
    pub fn label_of(&self, c: &ClientId, seed: u64) -> Option<Label> {
        self.registry
            .get(&seed)
            .map(|p| label_for(&self.master, c, p.as_bytes()))
    }
}

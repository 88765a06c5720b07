//! A key period through many epochs: a client that downloads a base at any epoch and applies
//! the later deltas ends with the server's state (same digest) and opens the right labels;
//! a pad is never reused for a changed label.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashSet};

use common::*;
use nayose_table::*;
use proptest::prelude::*;

fn registry(ops: &[(u64, u8)]) -> BTreeMap<u64, String> {
    ops.iter()
        .map(|(s, p)| (*s, format!("person-{p}")))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn base_plus_deltas_equals_server_state(
        first in proptest::collection::vec((0u64..60, 0u8..12), 0..40),
        steps in proptest::collection::vec(proptest::collection::vec((0u64..60, 0u8..12, any::<bool>()), 0..20), 1..6),
        start in 0usize..6,
    ) {
        let kp = KeyPeriodId::new(3, &[7; 32]);
        let master = LabelMasterKey::from_bytes(&[0x42; 32]).unwrap();
        let c = client("hospital-a");
        let mut server = ModelServer::new(kp, master, 10, registry(&first));
        let mut reg = server.registry.clone();
        let mut bases = vec![(10u32, server.base(&c))];
        for (i, step) in steps.iter().enumerate() {
            for (seed, person, remove) in step {
                if *remove { reg.remove(seed); } else { reg.insert(*seed, format!("person-{person}")); }
            }
            server.advance(11 + i as u32, reg.clone());
            bases.push((server.epoch, server.base(&c)));
        }
        let start = start.min(bases.len() - 1);
        let (epoch, base) = bases[start].clone();
        let mut table = ClientTable::from_entries(kp, epoch, base).unwrap();
        for d in server.deltas.iter().filter(|d| d.epoch > epoch) {
            let (removed, upserts) = server.delta_for(d, &c);
            table.apply_delta(d.epoch, &removed, &upserts).unwrap();
        }
        prop_assert_eq!(table.epoch(), server.epoch);
        prop_assert_eq!(table.digest(), server.digest());
        prop_assert_eq!(table.entries(), &server.base(&c)[..]);
        let seeds: Vec<u64> = (0..60).collect();
        let outs: Vec<[u8; 64]> = seeds.iter().map(|s| o(*s)).collect();
        let m = match_outputs(&c, &table, &outs);
        for (i, s) in seeds.iter().enumerate() {
            prop_assert_eq!(m.label(i), server.label_of(&c, *s));
        }
    }
}

#[test]
fn a_relabel_never_reuses_a_pad_and_other_clients_cannot_link() {
    let kp = KeyPeriodId::new(1, &[1; 32]);
    let master = LabelMasterKey::from_bytes(&[0x42; 32]).unwrap();
    let (a, b) = (client("a"), client("b"));
    let mut reg: BTreeMap<u64, String> = (0..20).map(|s| (s, format!("p{}", s % 5))).collect();
    let mut server = ModelServer::new(kp, master, 1, reg.clone());
    let mut pads = HashSet::new();
    let mut record = |server: &ModelServer| {
        for (e, _) in server.table.values() {
            let pad = label_pad(&e.label_key, &a, kp, e.version, &e.tag);
            pads.insert((e.tag, e.version, pad.to_vec()));
        }
    };
    record(&server);
    for epoch in 2..6u32 {
        // Number `epoch` moves to another person each epoch.
        reg.insert(u64::from(epoch), format!("p{}", epoch + 10));
        server.advance(epoch, reg.clone());
        record(&server);
    }
    // Every (tag, version) has one pad, and no pad value is used for two (tag, version) pairs.
    let values: HashSet<Vec<u8>> = pads.iter().map(|(_, _, p)| p.clone()).collect();
    assert_eq!(values.len(), pads.len());
    // Two clients' ciphertexts of one entry are unrelated (different pads and labels).
    let ea = server.base(&a);
    let eb = server.base(&b);
    assert!(
        ea.iter()
            .zip(&eb)
            .all(|(x, y)| x.tag == y.tag && x.label != y.label)
    );
}

#[test]
fn a_tampered_state_fails_the_digest() {
    let kp = KeyPeriodId::new(1, &[1; 32]);
    let master = LabelMasterKey::from_bytes(&[0x42; 32]).unwrap();
    let reg: BTreeMap<u64, String> = (0..10).map(|s| (s, format!("p{s}"))).collect();
    let server = ModelServer::new(kp, master, 4, reg);
    let good = server.base(&client("a"));
    let mut missing = good.clone();
    missing.remove(3);
    let mut bumped = good.clone();
    bumped[2].version = 3;
    for bad in [missing, bumped] {
        let t = ClientTable::from_entries(kp, 4, bad).unwrap();
        assert_ne!(t.digest(), server.digest());
    }
    let t = ClientTable::from_entries(kp, 4, good).unwrap();
    assert_eq!(t.digest(), server.digest());
    // A label ciphertext is not covered by the digest (the server can always lie about labels),
    // but flipping one bit flips exactly that bit of the decrypted label.
    let e = &t.entries()[0];
    let (_, key) = (0..10)
        .map(|s| derive_entry_secrets(&o(s)))
        .find(|(tag, _)| *tag == e.tag)
        .unwrap();
    let c = client("a");
    let mut flipped = e.label;
    flipped.0[0] ^= 1;
    let l1 = decrypt_label(&key, &c, kp, e.version, &e.tag, &e.label);
    let l2 = decrypt_label(&key, &c, kp, e.version, &e.tag, &flipped);
    assert_eq!(l1.0[0] ^ 1, l2.0[0]);
    assert_eq!(l1.0[1..], l2.0[1..]);
}

//! A key period through many epochs: a client that downloads a base at any epoch and applies
//! the later deltas ends with the server's state (same tags, chain and digest) and opens the
//! right labels; a pad is never reused for a changed label; a missed relabel is caught.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap};

use common::*;
use nayose_table::*;
use proptest::prelude::*;

fn registry(ops: &[(u64, u8)]) -> BTreeMap<u64, u32> {
    ops.iter().map(|(s, p)| (*s, u32::from(*p))).collect()
}

fn table_from_base(server: &ModelServer, c: &ClientId, block: usize) -> ClientTable {
    ClientTable::from_base(server.kp, server.epoch, server.chain, server.base(c, block)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn base_plus_deltas_equals_server_state(
        first in proptest::collection::vec((0u64..60, 0u8..12), 0..40),
        steps in proptest::collection::vec(proptest::collection::vec((0u64..60, 0u8..12, any::<bool>()), 0..20), 1..6),
        start in 0usize..6,
        block in 1usize..9,
    ) {
        let kp = KeyPeriodId::new(3, &[7; 32]);
        let master = LabelMasterKey::from_bytes(&[0x42; 32]).unwrap();
        let c = client("hospital-a");
        let mut server = ModelServer::new(kp, master, 10, registry(&first));
        let mut reg = server.registry.clone();
        let mut bases = vec![(10u32, server.chain, server.base(&c, block))];
        for (i, step) in steps.iter().enumerate() {
            for (seed, person, remove) in step {
                if *remove { reg.remove(seed); } else { reg.insert(*seed, u32::from(*person)); }
            }
            server.advance(11 + i as u32, reg.clone());
            bases.push((server.epoch, server.chain, server.base(&c, block)));
        }
        let start = start.min(bases.len() - 1);
        let (epoch, chain, base) = bases[start].clone();
        let mut table = ClientTable::from_base(kp, epoch, chain, base).unwrap();
        for d in server.deltas.iter().filter(|d| d.epoch > epoch) {
            let (removed, upserts) = server.delta_for(d, &c);
            table.apply_delta(d.epoch, &removed, &upserts).unwrap();
        }
        prop_assert_eq!(table.epoch(), server.epoch);
        prop_assert_eq!(table.chain(), server.chain);
        prop_assert_eq!(table.digest(), server.digest());
        let tags: Vec<Tag> = table.entries().iter().map(|e| e.tag).collect();
        let want: Vec<Tag> = server.table.keys().copied().collect();
        prop_assert_eq!(tags, want);
        let seeds: Vec<u64> = (0..60).collect();
        let outs: Vec<[u8; 64]> = seeds.iter().map(|s| o(*s)).collect();
        let m = match_outputs(&c, &table, &outs);
        for (i, s) in seeds.iter().enumerate() {
            prop_assert_eq!(m.label(i), server.label_of(&c, *s));
        }
        // The state survives its stored form.
        let mut bytes = Vec::new();
        for b in table.blocks() { b.write_to(&mut bytes); }
        let mut rest = &bytes[..];
        let mut blocks = Vec::new();
        while !rest.is_empty() {
            let (b, r) = StateBlock::read_from(rest).unwrap();
            blocks.push(b);
            rest = r;
        }
        let again = ClientTable::from_state_blocks(kp, table.epoch(), table.chain(), blocks).unwrap();
        prop_assert_eq!(again, table);
    }
}

#[test]
fn a_relabel_never_reuses_a_pad_and_other_clients_cannot_link() {
    let kp = KeyPeriodId::new(1, &[1; 32]);
    let master = LabelMasterKey::from_bytes(&[0x42; 32]).unwrap();
    let (a, b) = (client("a"), client("b"));
    let mut reg: BTreeMap<u64, u32> = (0..20).map(|s| (s, (s % 5) as u32)).collect();
    let mut server = ModelServer::new(kp, master, 1, reg.clone());
    // (tag, pad epoch) -> the label it encrypted: one label per pad, whatever is served.
    let mut seen: HashMap<(Tag, u32), Label> = HashMap::new();
    let mut record = |server: &ModelServer, bases: bool| {
        for e in server.table.values() {
            let l = label_for(&server.master, &a, e.person);
            if bases {
                assert_eq!(*seen.entry((e.tag, server.epoch)).or_insert(l), l);
            }
            assert_eq!(
                *seen.entry((e.tag, e.version)).or_insert(l),
                l,
                "pad reused"
            );
        }
    };
    record(&server, true);
    for epoch in 2..6u32 {
        // Number `epoch` moves to another person each epoch.
        reg.insert(u64::from(epoch), epoch + 10);
        server.advance(epoch, reg.clone());
        record(&server, true);
    }
    // Two clients' ciphertexts of one entry are unrelated (different pads and labels).
    let ea = server.base_entries(&a);
    let eb = server.base_entries(&b);
    assert!(ea.iter().zip(&eb).all(|(x, y)| x.0 == y.0));
    assert!(ea.iter().zip(&eb).filter(|(x, y)| x.1 == y.1).count() <= 1);
}

#[test]
fn a_tampered_state_fails_the_digest() {
    let kp = KeyPeriodId::new(1, &[1; 32]);
    let master = LabelMasterKey::from_bytes(&[0x42; 32]).unwrap();
    let reg: BTreeMap<u64, u32> = (0..10).map(|s| (s, s as u32)).collect();
    let mut server = ModelServer::new(kp, master, 4, reg.clone());
    let c = client("a");
    let good = server.base_entries(&c);
    let mut missing = good.clone();
    missing.remove(3);
    let t = ClientTable::from_base(
        kp,
        4,
        server.chain,
        vec![EntryBlock::encode(&missing).unwrap()],
    )
    .unwrap();
    assert_ne!(t.digest(), server.digest());
    let t = table_from_base(&server, &c, 4);
    assert_eq!(t.digest(), server.digest());

    // A delta that leaves out a relabel: same tags, but the chain (and so the digest) differs.
    let mut next = reg.clone();
    next.insert(2, 99);
    let d = server.advance(5, next).clone();
    let (removed, upserts) = server.delta_for(&d, &c);
    assert_eq!(upserts.len(), 1);
    let mut skipped = t.clone();
    skipped.apply_delta(5, &removed, &[]).unwrap();
    assert_ne!(skipped.digest(), server.digest());
    let mut applied = t.clone();
    applied.apply_delta(5, &removed, &upserts).unwrap();
    assert_eq!(applied.digest(), server.digest());

    // A label ciphertext is not covered by the digest (the server can always lie about labels),
    // but flipping one bit flips exactly that bit of the decrypted label.
    let e = applied.entries()[0];
    let (_, key) = (0..10)
        .map(|s| derive_entry_secrets(&o(s)))
        .find(|(tag, _)| *tag == e.tag)
        .unwrap();
    let mut flipped = e.label;
    flipped.0[0] ^= 1;
    let l1 = decrypt_label(&key, &c, kp, e.pad_epoch, &e.tag, &e.label);
    let l2 = decrypt_label(&key, &c, kp, e.pad_epoch, &e.tag, &flipped);
    assert_eq!(l1.0[0] ^ 1, l2.0[0]);
    assert_eq!(l1.0[1..], l2.0[1..]);
}

//! Server table and client matcher, end to end without the network.

#![allow(clippy::unwrap_used)] // tests may unwrap (team rules)

mod common;

use common::*;
use nayose_table_v1::*;

#[test]
fn full_download_matches_held_numbers_only() {
    let (t, ids) = table(7, 1, 3000, 1000);
    let c = client("hospital-a");
    let m = master();
    // The client holds numbers 0..20 of the table (persons 0..20, one number each, plus
    // numbers 1000 and 2000 which belong to person 0) and 5 numbers the server does not know.
    let mut held: Vec<[u8; 64]> = (0..20).map(|i| o(1_000_000 + i)).collect();
    held.push(o(1_000_000 + 1000));
    held.push(o(1_000_000 + 2000));
    held.extend((0..5).map(|i| o(9_000_000 + i)));
    let mut matcher = Matcher::new(c.clone(), ep(7), &held);
    // Full download in chunks of 700 entries.
    let mut got = 0;
    for start in (0..t.len()).step_by(700) {
        let end = (start + 700).min(t.len());
        let chunk = t.entries_for_client_par(start..end, &c, &m, &ids).unwrap();
        got += matcher.absorb(&chunk).unwrap();
    }
    assert_eq!(got, 22);
    let r = matcher.finish();
    assert_eq!(r.matched(), 22);
    assert_eq!(r.unmatched(), 5);
    for i in 0..20 {
        assert_eq!(
            r.label(i),
            Some(label_for(&m, &c, format!("person-{i:06}").as_bytes()))
        );
    }
    for i in 22..27 {
        assert_eq!(
            r.label(i),
            None,
            "a number the server does not know must not match"
        );
    }
    // Numbers 0, 20 and 21 belong to person 0.
    let g = r.groups();
    assert_eq!(g[&r.label(0).unwrap()], vec![0, 20, 21]);
    assert_eq!(g.len(), 20);
    let h = r.group_size_histogram();
    assert_eq!(h.get(&1), Some(&19));
    assert_eq!(h.get(&3), Some(&1));
}

#[test]
fn k_anon_download_gives_same_result_as_full() {
    let (t, ids) = table(3, 2, 5000, 2000);
    let c = client("regional-net_02");
    let m = master();
    let held: Vec<[u8; 64]> = (0..50)
        .map(|i| o(2_000_000 + i * 37))
        .chain([o(123)])
        .collect();

    let mut full = Matcher::new(c.clone(), ep(3), &held);
    let all = t.entries_for_client_par(0..t.len(), &c, &m, &ids).unwrap();
    full.absorb(&all).unwrap();
    let full = full.finish();

    let bits = t.k_anonymous_prefix_bits(8).unwrap().unwrap();
    assert!(t.min_prefix_range_len(bits) >= 8);
    let mut kanon = Matcher::new(c.clone(), ep(3), &held);
    for p in kanon.prefixes(bits).unwrap() {
        let r = t.range_for_prefix(&p);
        assert!(r.len() >= 8);
        let entries: Vec<_> = t.entries_for_client(r, &c, &m, &ids).unwrap().collect();
        kanon.absorb_range(&p, &entries).unwrap();
    }
    assert_eq!(kanon.finish(), full);
    assert_eq!(full.matched(), 50);
}

#[test]
fn labels_stable_across_epochs_unlinkable_across_clients() {
    // The same numbers and persons in two epochs (different OPRF keys, hence different o_y).
    let (t1, ids) = table(1, 10, 200, 100);
    let (t2, _) = table(2, 20, 200, 100);
    let m = master();
    let a = client("client-a");
    let b = client("client-b");
    let run = |t: &EpochTable, salt: u64, c: &ClientId| {
        let held: Vec<[u8; 64]> = (0..10).map(|i| o(salt * 1_000_000 + i)).collect();
        let mut mt = Matcher::new(c.clone(), t.epoch(), &held);
        mt.absorb(&t.entries_for_client_par(0..t.len(), c, &m, &ids).unwrap())
            .unwrap();
        mt.finish()
    };
    let a1 = run(&t1, 10, &a);
    let a2 = run(&t2, 20, &a);
    let b1 = run(&t1, 10, &b);
    assert_eq!(a1.matched(), 10);
    assert_eq!(a1, a2, "one client's labels are stable across epochs");
    for i in 0..10 {
        assert_ne!(a1.label(i), b1.label(i), "two clients' labels differ");
    }
    // Tags and ciphertexts differ between epochs.
    assert_ne!(t1.entries()[0].tag, t2.entries()[0].tag);
    // Another client's ciphertext for the same entry is different and opens differently.
    let ea = t1
        .entries_for_client(0..1, &a, &m, &ids)
        .unwrap()
        .next()
        .unwrap();
    let eb = t1
        .entries_for_client(0..1, &b, &m, &ids)
        .unwrap()
        .next()
        .unwrap();
    assert_eq!(ea.0, eb.0);
    assert_ne!(ea.1, eb.1);
}

#[test]
fn rotated_master_key_changes_labels() {
    let (t, ids) = table(1, 10, 50, 50);
    let c = client("client-a");
    let m2 = LabelMasterKey::from_bytes(&[0x43; 32]).unwrap();
    let e1 = t
        .entries_for_client_par(0..t.len(), &c, &master(), &ids)
        .unwrap();
    let e2 = t.entries_for_client_par(0..t.len(), &c, &m2, &ids).unwrap();
    let held = [o(10_000_000)];
    let mut a = Matcher::new(c.clone(), ep(1), &held);
    a.absorb(&e1).unwrap();
    let mut b = Matcher::new(c.clone(), ep(1), &held);
    b.absorb(&e2).unwrap();
    assert_ne!(a.finish().label(0), b.finish().label(0));
}

#[test]
fn wrong_epoch_or_client_in_matcher_decrypts_to_garbage() {
    let (t, ids) = table(5, 1, 10, 10);
    let c = client("client-a");
    let m = master();
    let e = t.entries_for_client_par(0..t.len(), &c, &m, &ids).unwrap();
    let held = [o(1_000_000)];
    let want = label_for(&m, &c, b"person-000000");
    for (cl, ep) in [(c.clone(), ep(6)), (client("client-b"), ep(5))] {
        let mut mt = Matcher::new(cl, ep, &held);
        assert_eq!(mt.absorb(&e).unwrap(), 1);
        assert_ne!(mt.finish().label(0), Some(want));
    }
}

#[test]
fn duplicate_numbers_in_registry_are_reported() {
    let mut b = EpochTableBuilder::new(ep(1), 3);
    b.push(&o(1), 0).unwrap();
    b.push(&o(2), 1).unwrap();
    b.push(&o(1), 2).unwrap();
    b.push_batch(&[o(2), o(3)], &[1, 2]).unwrap();
    let e = b.finish().unwrap_err();
    assert_eq!(e, TableError::DuplicateTags { count: 2 });
    assert!(e.to_string().contains("2 table entries"), "{e}");
}

#[test]
fn builder_rejects_bad_input() {
    let mut b = EpochTableBuilder::new(ep(1), 3);
    assert_eq!(
        b.push(&o(1), 3).unwrap_err(),
        TableError::PersonIndexOutOfRange {
            index: 3,
            person_count: 3
        }
    );
    assert!(matches!(
        b.push_batch(&[o(1)], &[0, 1]),
        Err(TableError::LengthMismatch { .. })
    ));
    assert!(b.push_batch(&[o(1), o(2)], &[0, 9]).is_err());
    assert!(b.is_empty(), "a rejected batch adds nothing");
    let t = b.finish().unwrap();
    assert!(t.is_empty());
    assert_eq!(t.k_anonymous_prefix_bits(1).unwrap(), None);
    assert_eq!(
        t.k_anonymous_prefix_bits(0),
        Err(TableError::ZeroMinimumRange)
    );
}

#[test]
fn entries_for_client_checks_arguments() {
    let (t, ids) = table(1, 1, 10, 10);
    let c = client("c");
    let m = master();
    assert!(matches!(
        t.entries_for_client(5..11, &c, &m, &ids),
        Err(TableError::RangeOutOfBounds { .. })
    ));
    assert!(matches!(
        t.entries_for_client_par(0..1, &c, &m, &ids[..9]),
        Err(TableError::PersonIdsMismatch {
            expected: 10,
            got: 9
        })
    ));
}

#[test]
fn records_roundtrip_and_validation() {
    let (t, ids) = table(9, 4, 500, 300);
    let bytes = record_bytes(&t);
    assert_eq!(bytes.len(), 500 * RECORD_LEN);
    let r = RecordTable::new(ep(9), 300, &bytes).unwrap();
    assert_eq!(r.len(), t.len());
    let c = client("c");
    let m = master();
    assert_eq!(
        r.entries_for_client_par(0..r.len(), &c, &m, &ids).unwrap(),
        t.entries_for_client_par(0..t.len(), &c, &m, &ids).unwrap()
    );
    for bits in [0u8, 1, 4, 7, 9, 12] {
        let p = TagPrefix::of_tag(&t.entries()[123].tag, bits).unwrap();
        assert_eq!(r.range_for_prefix(&p), t.range_for_prefix(&p));
        assert_eq!(r.min_prefix_range_len(bits), t.min_prefix_range_len(bits));
    }
    assert_eq!(
        r.k_anonymous_prefix_bits(5).unwrap(),
        t.k_anonymous_prefix_bits(5).unwrap()
    );
    let e = TableEntry::from_record(&t.entries()[7].to_record());
    assert_eq!(e.tag, t.entries()[7].tag);
    assert_eq!(e.person, t.entries()[7].person);
    assert_eq!(e.label_key.as_bytes(), t.entries()[7].label_key.as_bytes());

    assert_eq!(
        RecordTable::new(ep(9), 300, &bytes[..bytes.len() - 1]).unwrap_err(),
        TableError::RecordsLength {
            len: bytes.len() - 1
        }
    );
    assert!(matches!(
        RecordTable::new(ep(9), 299, &bytes),
        Err(TableError::PersonIndexOutOfRange { .. })
    ));
    let mut swapped = bytes.clone();
    swapped[..2 * RECORD_LEN].rotate_left(RECORD_LEN);
    assert_eq!(
        RecordTable::new(ep(9), 300, &swapped).unwrap_err(),
        TableError::RecordsNotSorted { index: 1 }
    );
    let mut dup = bytes.clone();
    dup.copy_within(10 * RECORD_LEN..11 * RECORD_LEN, 11 * RECORD_LEN);
    assert_eq!(
        RecordTable::new(ep(9), 300, &dup).unwrap_err(),
        TableError::RecordsNotSorted { index: 11 }
    );
}

#[test]
fn matcher_rejects_malformed_responses() {
    let (t, ids) = table(1, 1, 100, 100);
    let c = client("c");
    let m = master();
    let held: Vec<[u8; 64]> = (0..10).map(|i| o(1_000_000 + i)).collect();
    let all = t.entries_for_client_par(0..t.len(), &c, &m, &ids).unwrap();

    let mut unsorted = all.clone();
    unsorted.swap(3, 4);
    let mut mt = Matcher::new(c.clone(), ep(1), &held);
    assert_eq!(
        mt.absorb(&unsorted).unwrap_err(),
        TableError::FetchedNotSorted { index: 4 }
    );

    let mut dup = all.clone();
    dup[5] = dup[4];
    assert!(matches!(
        mt.absorb(&dup),
        Err(TableError::FetchedDuplicate { .. })
    ));
    assert_eq!(
        mt.finish().matched(),
        0,
        "a rejected response records nothing"
    );

    // Responses must come in table order: an overlap or a step back is rejected whether or not
    // the client holds the repeated entry (so rejection reveals nothing about its numbers).
    let mut mt = Matcher::new(c.clone(), ep(1), &held);
    assert_eq!(
        mt.absorb(&all[..50]).unwrap(),
        mt_count(&all[..50], &held, &c)
    );
    assert_eq!(
        mt.absorb(&all[49..60]).unwrap_err(),
        TableError::FetchedDuplicate {
            tag: all[49].0.to_string()
        }
    );
    assert_eq!(
        mt.absorb(&all[10..20]).unwrap_err(),
        TableError::FetchedNotSorted { index: 0 }
    );
    assert_eq!(mt.absorb(&[]).unwrap(), 0);
    let rest = mt.absorb(&all[50..]).unwrap();
    let r = mt.finish();
    assert_eq!(r.matched(), 10);
    assert_eq!(rest + mt_count(&all[..50], &held, &c), 10);

    // Entries outside the requested prefix.
    let mut mt = Matcher::new(c.clone(), ep(1), &held);
    let p = TagPrefix::of_tag(&all[0].0, 8).unwrap();
    let outside = all.iter().position(|e| !p.contains(&e.0)).unwrap();
    assert!(matches!(
        mt.absorb_range(&p, &all[..=outside]),
        Err(TableError::FetchedOutsidePrefix { index, .. }) if index == outside
    ));

    // A tampered ciphertext opens to a different label (there is no integrity check: TLS
    // protects the transport, and the server can choose labels anyway).
    let mut tampered = all.clone();
    for e in &mut tampered {
        e.1.0[0] ^= 1;
    }
    let mut a = Matcher::new(c.clone(), ep(1), &held);
    a.absorb(&all).unwrap();
    let mut b = Matcher::new(c, ep(1), &held);
    b.absorb(&tampered).unwrap();
    let (a, b) = (a.finish(), b.finish());
    assert_ne!(a.label(0), b.label(0));
    assert_eq!(a.label(0).unwrap().0[0] ^ 1, b.label(0).unwrap().0[0]);
}

#[test]
fn client_holding_the_same_number_twice_gets_one_group() {
    let (t, ids) = table(1, 1, 10, 10);
    let c = client("c");
    let m = master();
    let held = [o(1_000_003), o(1_000_003)];
    let mut mt = Matcher::new(c.clone(), ep(1), &held);
    assert_eq!(
        mt.absorb(&t.entries_for_client_par(0..10, &c, &m, &ids).unwrap())
            .unwrap(),
        2
    );
    let r = mt.finish();
    assert_eq!(
        r.groups().into_values().collect::<Vec<_>>(),
        vec![vec![0, 1]]
    );
    assert_eq!(mt_prefix_count(&held, 4), 1);
}

/// How many of `held` match in `entries` (a fresh matcher).
fn mt_count(entries: &[(Tag, EncryptedLabel)], held: &[[u8; 64]], c: &ClientId) -> usize {
    Matcher::new(c.clone(), ep(1), held)
        .absorb(entries)
        .unwrap()
}

fn mt_prefix_count(held: &[[u8; 64]], bits: u8) -> usize {
    Matcher::new(client("c"), ep(1), held)
        .prefixes(bits)
        .unwrap()
        .len()
}

#[test]
fn k_anon_on_hand_made_tags() {
    // 8 records with chosen tags: first bytes 0x00, 0x10, 0x40, 0x50, 0x80, 0x90, 0xc0, 0xd0.
    let firsts = [0x00u8, 0x10, 0x40, 0x50, 0x80, 0x90, 0xc0, 0xd0];
    let mut bytes = Vec::new();
    for f in firsts {
        let mut tag = [0u8; 16];
        tag[0] = f;
        bytes.extend_from_slice(&tag);
        bytes.extend_from_slice(&[1u8; 32]);
        bytes.extend_from_slice(&0u32.to_le_bytes());
    }
    let r = RecordTable::new(ep(1), 1, &bytes).unwrap();
    assert_eq!(r.min_prefix_range_len(0), 8);
    assert_eq!(r.min_prefix_range_len(1), 4);
    assert_eq!(r.min_prefix_range_len(2), 2);
    // At 3 bits, prefix 001 (0x20..0x3f) is empty.
    assert_eq!(r.min_prefix_range_len(3), 0);
    assert_eq!(r.min_prefix_range_len(64), 0);
    assert_eq!(r.k_anonymous_prefix_bits(1).unwrap(), Some(2));
    assert_eq!(r.k_anonymous_prefix_bits(2).unwrap(), Some(2));
    assert_eq!(r.k_anonymous_prefix_bits(3).unwrap(), Some(1));
    assert_eq!(r.k_anonymous_prefix_bits(5).unwrap(), Some(0));
    assert_eq!(r.k_anonymous_prefix_bits(9).unwrap(), None);
    let p = TagPrefix::new(3, &[0x20]).unwrap();
    assert_eq!(r.range_for_prefix(&p), 2..2);
    let p = TagPrefix::new(2, &[0x40]).unwrap();
    assert_eq!(r.range_for_prefix(&p), 2..4);
}

//! Unit tests of the streaming diff: the merge with the previous index, the pass that writes the
//! new table, and how both refuse damaged previous files.

use std::io::Write;
use std::path::Path;

use nayose_table::{LABEL_KEY_LEN, RECORD_LEN, TAG_LEN, Tag};

use super::arena::ArenaWriter;
use super::emit::{EmitError, EmitInputs, Emitted, emit_table};
use super::evaluate::{Buckets, SPILL_LEN};
use super::merge::{REMOVED, SKIP, classify};
use super::persons::PersonTable;
use super::previous::{PrevIndex, PrevRecords};
use super::registry::{NumberRow, Registry};
use super::spool::{SecretWriter, spill_file};
use crate::epoch::{Manifest, TABLE_MAGIC, encode_index, sha256_hex};
use crate::error::ServerError;
use crate::fsutil::{create_dir_private, create_new_private};
use crate::layout::{DataDir, INDEX, TABLE};

fn record(tag: u8, person: u32, version: u32) -> [u8; RECORD_LEN] {
    let mut r = [0u8; RECORD_LEN];
    r[..TAG_LEN].copy_from_slice(&[tag; TAG_LEN]);
    r[16..48].copy_from_slice(&[tag ^ 0x5a; 32]);
    r[48..52].copy_from_slice(&person.to_le_bytes());
    r[52..].copy_from_slice(&version.to_le_bytes());
    r
}

fn write_private(path: &Path, bytes: &[u8]) {
    let mut f = create_new_private(path).expect("create");
    f.write_all(bytes).expect("write");
}

/// Epoch 2 of a data directory in `dir`: `records` (person count 3) and `index`, with a
/// manifest that states their checksums.
fn previous(
    dir: &Path,
    records: &[[u8; RECORD_LEN]],
    index: &[(u128, u32)],
) -> (DataDir, Manifest) {
    let data = DataDir::create(dir).expect("data dir");
    create_dir_private(&data.epoch_dir(2)).expect("epoch dir");
    let mut table = TABLE_MAGIC.to_vec();
    for r in records {
        table.extend_from_slice(r);
    }
    write_private(&data.epoch_dir(2).join(TABLE), &table);
    let idx = encode_index(index.len(), index.iter().copied());
    write_private(&data.epoch_dir(2).join(INDEX), &idx);
    let m = Manifest {
        format: 2,
        number: 2,
        key_period: 1,
        key_period_id: String::new(),
        public_key: String::new(),
        label_master_key_id: String::new(),
        previous_epoch: None,
        created_unix: 0,
        entries: records.len() as u64,
        persons: 3,
        added: 0,
        removed: 0,
        relabelled: 0,
        digest: String::new(),
        upsert_chain: String::new(),
        table_sha256: sha256_hex(&table),
        persons_sha256: String::new(),
        index_sha256: sha256_hex(&idx),
        delta_sha256: None,
    };
    (data, m)
}

/// A registry of `keys` (one arena entry each, persons as given) whose arena is in `dir`.
fn registry(dir: &Path, rows: &[(u128, u32)]) -> Registry {
    let mut arena = ArenaWriter::create(dir).expect("arena");
    let mut numbers = Vec::new();
    for (i, &(key, person)) in rows.iter().enumerate() {
        let s = arena.push(i as u32 + 2, b"number").expect("push");
        numbers.push(NumberRow::new(key, s, person));
    }
    Registry {
        encoding: "UTF-8",
        mapping: String::new(),
        rows: rows.len() as u64,
        repairs: 0,
        rejected: Vec::new(),
        persons: PersonTable::with_capacity(0),
        numbers,
        arena: arena.finish().expect("finish"),
        duplicate_rows: 0,
        conflicts: Vec::new(),
        counts: Default::default(),
    }
}

#[test]
fn the_merge_classifies_every_number_and_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Registry 1, 3, 4; previous 2 → pos 1, 3 → pos 0, 5 → pos 2.
    let (data, m) = previous(
        dir.path(),
        &[record(1, 0, 1), record(2, 0, 1), record(3, 0, 1)],
        &[(2, 1), (3, 0), (5, 2)],
    );
    let reg = registry(dir.path(), &[(1, 0), (3, 0), (4, 0)]);
    let idx = PrevIndex::open(&data, &m).expect("open");
    let c = classify(&reg, Some((idx, 3))).expect("classify");
    assert_eq!(c.row_at, [1, REMOVED, REMOVED]);
    // Rows 0 and 2 are added: arena entries 0 and 2 are evaluated.
    assert_eq!(c.row_of_s, [0, SKIP, 2]);
    assert_eq!(c.added, 2);
    // Without a previous epoch every number is added.
    let c = classify(&reg, None).expect("classify");
    assert_eq!((c.row_of_s, c.added), (vec![0, 1, 2], 3));
}

#[test]
fn a_damaged_previous_index_is_refused_not_trusted() {
    let bad = |idx: &[(u128, u32)], damage: Option<usize>| {
        let dir = tempfile::tempdir().expect("tempdir");
        let recs = [record(1, 0, 1), record(2, 0, 1)];
        let (data, m) = previous(dir.path(), &recs, idx);
        if let Some(at) = damage {
            let p = data.epoch_dir(2).join(INDEX);
            let mut b = std::fs::read(&p).expect("read");
            b[at] ^= 1;
            std::fs::write(&p, b).expect("write");
        }
        let reg = registry(dir.path(), &[(1, 0), (3, 0)]);
        let idx = match PrevIndex::open(&data, &m) {
            Ok(i) => i,
            Err(ServerError::CorruptEpoch { reason, .. }) => return reason,
            Err(e) => panic!("expected CorruptEpoch, got {e:?}"),
        };
        match classify(&reg, Some((idx, 2))) {
            Err(ServerError::CorruptEpoch { reason, .. }) => reason,
            Err(e) => panic!("expected CorruptEpoch, got {e:?}"),
            Ok(_) => panic!("a damaged index was accepted"),
        }
    };
    assert!(bad(&[(3, 0), (2, 1)], None).contains("ascending"));
    assert!(bad(&[(2, 0), (3, 0)], None).contains("twice"));
    assert!(bad(&[(2, 0), (3, 7)], None).contains("out of range"));
    // A flipped high bit of the second key: still ascending, every check passes but the
    // checksum.
    assert!(bad(&[(2, 0), (3, 1)], Some(24 + 20)).contains("SHA-256"));
    // A flipped bit of the header.
    assert!(bad(&[(2, 0), (3, 1)], Some(3)).contains("header"));
}

/// Buckets (one) holding `entries` (tag byte, registry number).
fn buckets(dir: &Path, entries: &[(u8, u32)]) -> Buckets {
    let mut w = SecretWriter::new(spill_file(dir).expect("spill"), dir);
    for &(tag, row) in entries {
        let mut e = [0u8; SPILL_LEN];
        e[..TAG_LEN].copy_from_slice(&[tag; TAG_LEN]);
        e[TAG_LEN..TAG_LEN + LABEL_KEY_LEN].copy_from_slice(&[tag; 32]);
        e[TAG_LEN + LABEL_KEY_LEN..].copy_from_slice(&row.to_le_bytes());
        w.put(&e).expect("put");
    }
    let (file, _) = w.finish().expect("finish");
    Buckets {
        bits: 0,
        files: vec![(file, entries.len() as u64)],
        dir: dir.to_path_buf(),
    }
}

/// Previous table: tags 10 (kept by row 0), 20 (removed), 30 (kept by row 1, whose person
/// changed); rows 0, 1, 2 have persons 0, 2, 1; epoch 3.
fn emit(dir: &Path, added: &[(u8, u32)]) -> Result<(Emitted, Vec<u8>), EmitError> {
    let (data, m) = previous(
        dir,
        &[record(10, 0, 1), record(20, 1, 1), record(30, 1, 2)],
        &[],
    );
    let reg = registry(dir, &[(1, 0), (2, 2), (3, 1)]);
    let out_path = dir.join("new-table.bin");
    let mut w = SecretWriter::hashed(create_new_private(&out_path).expect("create"), &out_path);
    w.put(TABLE_MAGIC).expect("magic");
    let e = emit_table(
        EmitInputs {
            prev: Some(PrevRecords::open(&data, &m).expect("open")),
            row_at: &[0, REMOVED, 1],
            buckets: buckets(dir, added),
            numbers: &reg.numbers,
            serials: &[0, 1, 2],
            number: 3,
        },
        w,
    )?;
    Ok((e, std::fs::read(&out_path).expect("read")))
}

fn u32_at(rec: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([rec[at], rec[at + 1], rec[at + 2], rec[at + 3]])
}

#[test]
fn the_pass_keeps_removes_relabels_and_adds_in_tag_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (e, bytes) = emit(dir.path(), &[(25, 2)])
        .map_err(|_| "emit")
        .expect("no collision");
    let recs: Vec<&[u8]> = bytes[16..].chunks(RECORD_LEN).collect();
    let tags: Vec<u8> = recs.iter().map(|r| r[0]).collect();
    assert_eq!(tags, [10, 25, 30]);
    // Kept unchanged: same bytes (version 1).
    assert_eq!(recs[0], record(10, 0, 1));
    // Added: person of row 2 (serial 1), version 3, its label key.
    assert_eq!((u32_at(recs[1], 48), u32_at(recs[1], 52)), (1, 3));
    assert_eq!(recs[1][16..48], [25u8; 32]);
    // Relabelled: person 1 → 2, version 3, label key kept.
    assert_eq!((u32_at(recs[2], 48), u32_at(recs[2], 52)), (2, 3));
    assert_eq!(recs[2][16..48], record(30, 0, 0)[16..48]);
    assert_eq!(e.removed, [Tag([20; TAG_LEN])]);
    let ups: Vec<u8> = e.upserts.chunks(RECORD_LEN).map(|r| r[0]).collect();
    assert_eq!(ups, [25, 30]);
    assert_eq!((e.entries, e.added, e.relabelled), (3, 1, 1));
    assert_eq!(e.pos_of_row, [0, 2, 1]);
    assert_eq!(e.persons_used, 3);
    assert_eq!(hex::encode(e.table_sha256), sha256_hex(&bytes));
}

#[test]
fn an_added_tag_equal_to_a_kept_removed_or_added_tag_is_a_collision() {
    for added in [
        // Equal to a kept entry's tag.
        vec![(10, 2)],
        // Equal to the tag removed in the same epoch (the delta would remove and upsert it).
        vec![(20, 2)],
        // Two added entries with one tag (also after the last previous tag).
        vec![(40, 2), (40, 2)],
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(
            matches!(emit(dir.path(), &added), Err(EmitError::Collision)),
            "{added:?}"
        );
    }
}

#[test]
fn a_previous_table_damaged_after_its_manifest_fails_the_pass() {
    // Unsorted records, a version after the epoch, a flipped bit (any serial is valid).
    /// Records of the previous table, a byte to flip after the manifest was written, and what
    /// the error must name.
    type Case<'a> = (&'a [[u8; RECORD_LEN]], Option<usize>, &'a str);
    let cases: [Case<'_>; 3] = [
        (&[record(30, 0, 1), record(10, 0, 1)], None, "ascending"),
        (&[record(10, 0, 9)], None, "version"),
        (&[record(10, 0, 1)], Some(16 + 20), "SHA-256"),
    ];
    for (recs, flip, want) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let (data, m) = previous(dir.path(), recs, &[]);
        if let Some(at) = flip {
            let p = data.epoch_dir(2).join(TABLE);
            let mut b = std::fs::read(&p).expect("read");
            b[at] ^= 1;
            std::fs::write(&p, b).expect("write");
        }
        let reg = registry(dir.path(), &[(1, 0), (2, 0)]);
        let out_path = dir.path().join("new-table.bin");
        let w = SecretWriter::hashed(create_new_private(&out_path).expect("create"), &out_path);
        let r = emit_table(
            EmitInputs {
                prev: Some(PrevRecords::open(&data, &m).expect("open")),
                row_at: &vec![0; recs.len()],
                buckets: buckets(dir.path(), &[]),
                numbers: &reg.numbers,
                serials: &[0, 1, 2],
                number: 3,
            },
            w,
        );
        match r {
            Err(EmitError::Server(ServerError::CorruptEpoch { reason, .. })) => {
                assert!(reason.contains(want), "{want}: {reason}");
            }
            Err(e) => panic!("{want}: expected CorruptEpoch, got {e:?}"),
            Ok(_) => panic!("{want}: a damaged table was accepted"),
        }
    }
}

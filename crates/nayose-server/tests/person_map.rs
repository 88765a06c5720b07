//! The person map (issue 12 item 6): person ids never reach the data directory, serials are
//! random and stable, a lost person-id key stops the build, and a data directory whose person
//! list still holds raw ids (format 1) is converted without any serial changing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use hmac::{KeyInit, Mac};
use nayose_server::{BuildOptions, ServerError, build_epoch, check_current_epoch};
use sha2::{Digest, Sha256};

const RECORD: usize = 56;

fn epoch_dir(data: &Path, n: u32) -> PathBuf {
    data.join("epochs").join(format!("{n:020}"))
}

/// Every (number key, person serial) of epoch `n`: the index maps SHA-256(canonical)[0..16] to
/// a table position, the record there holds the serial.
fn serials_by_number(data: &Path, n: u32) -> BTreeMap<[u8; 16], u32> {
    let table = fs::read(epoch_dir(data, n).join("table.bin")).unwrap();
    let index = fs::read(epoch_dir(data, n).join("index.bin")).unwrap();
    let mut out = BTreeMap::new();
    for e in index[24..].chunks_exact(20) {
        let pos = u32::from_le_bytes(e[16..20].try_into().unwrap()) as usize;
        let r = &table[16 + pos * RECORD..16 + (pos + 1) * RECORD];
        out.insert(
            e[..16].try_into().unwrap(),
            u32::from_le_bytes(r[48..52].try_into().unwrap()),
        );
    }
    out
}

fn number_key(r: &Row) -> [u8; 16] {
    Sha256::digest(r.canonical())[..16].try_into().unwrap()
}

/// (person key, serial) of `persons.bin` (format 2) of epoch `n`.
fn person_map(data: &Path, n: u32) -> Vec<([u8; 16], u32)> {
    let b = fs::read(epoch_dir(data, n).join("persons.bin")).unwrap();
    assert_eq!(&b[..16], b"nayose-persons2\n");
    // The key check: HMAC-SHA256(K_P, "nayose person-id key check")[0..16].
    assert_eq!(&b[16..32], &person_key(data, "nayose person-id key check"));
    let count = u64::from_le_bytes(b[32..40].try_into().unwrap()) as usize;
    assert_eq!(b.len(), 40 + 20 * count);
    b[40..]
        .chunks_exact(20)
        .map(|e| {
            (
                e[..16].try_into().unwrap(),
                u32::from_le_bytes(e[16..].try_into().unwrap()),
            )
        })
        .collect()
}

fn person_key(data: &Path, id: &str) -> [u8; 16] {
    let k = fs::read(data.join("person-id.key")).unwrap();
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&k).unwrap();
    mac.update(id.as_bytes());
    mac.finalize().into_bytes()[..16].try_into().unwrap()
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn person_ids_never_reach_the_data_directory_and_serials_are_random_and_stable() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let reg = tmp.path().join("registry.csv");
    let mut rows = registry_rows(40, 0);
    for r in &mut rows {
        r.person = format!("SECRET-ID-{}", r.person);
    }
    write_registry(&reg, &rows);
    let first = build_epoch(&BuildOptions::new(&data, &reg)).unwrap();
    assert_eq!(first.persons, 40);

    // The map: one entry per person, keyed by HMAC(K_P, id), ascending, with that person's
    // serial in the table; serials distinct and not 0..n.
    let map = person_map(&data, 1);
    assert_eq!(map.len(), 40);
    assert!(map.windows(2).all(|w| w[0].0 < w[1].0));
    let by_key: BTreeMap<_, _> = map.iter().copied().collect();
    let serials = serials_by_number(&data, 1);
    for r in &rows {
        assert_eq!(
            serials[&number_key(r)],
            by_key[&person_key(&data, &r.person)],
            "{}",
            r.person
        );
    }
    let distinct: BTreeSet<u32> = map.iter().map(|e| e.1).collect();
    assert_eq!(distinct.len(), 40);
    assert!(distinct.iter().any(|&s| s >= 40), "serials look sequential");

    // Epoch 2: 3 numbers move to a new person, 5 numbers of 2 new persons arrive.
    let mut next = rows.clone();
    for r in next.iter_mut().take(3) {
        r.person = "SECRET-ID-NEW-A".into();
    }
    let mut extra = registry_rows(3, 700);
    extra.retain(|r| r.person != "P000000");
    for r in &mut extra {
        r.person = format!("SECRET-ID-NEW-{}", r.person);
    }
    next.extend(extra.iter().cloned());
    write_registry(&reg, &next);
    let second = build_epoch(&BuildOptions::new(&data, &reg)).unwrap();
    assert_eq!((second.added, second.relabelled), (extra.len() as u64, 3));
    let s2 = serials_by_number(&data, 2);
    for r in &rows[3..] {
        assert_eq!(s2[&number_key(r)], serials[&number_key(r)], "kept serial");
    }
    let moved = s2[&number_key(&next[0])];
    assert!(!distinct.contains(&moved), "a new person got an old serial");
    assert_eq!(person_map(&data, 2).len(), 40 + 1 + 2);

    // A new key period: new tags, the same serial for every number.
    let mut o = BuildOptions::new(&data, &reg);
    o.new_key_period = true;
    build_epoch(&o).unwrap();
    assert_eq!(serials_by_number(&data, 3), s2);

    // No file of the data directory holds any person id.
    let mut files = Vec::new();
    files_under(&data, &mut files);
    assert!(files.len() > 10);
    for f in &files {
        let bytes = fs::read(f).unwrap();
        assert!(
            !bytes.windows(10).any(|w| w == b"SECRET-ID-"),
            "{} holds a person id",
            f.display()
        );
    }
}

#[test]
fn a_lost_person_id_key_stops_the_build_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let reg = tmp.path().join("registry.csv");
    write_registry(&reg, &registry_rows(10, 0));
    build(&data, &reg);
    fs::remove_file(data.join("person-id.key")).unwrap();
    let err = build_epoch(&BuildOptions::new(&data, &reg)).unwrap_err();
    assert!(
        matches!(&err, ServerError::PersonIdKeyMissing { epoch, .. } if epoch.ends_with("01")),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("person-id.key") && msg.contains("restore"),
        "{msg}"
    );
    assert!(!data.join("person-id.key").exists(), "a new key was made");
    assert_eq!(current(&data), format!("{:020}", 1));
    // Also for a new key period: the map outlives key periods.
    let mut o = BuildOptions::new(&data, &reg);
    o.new_key_period = true;
    assert!(matches!(
        build_epoch(&o),
        Err(ServerError::PersonIdKeyMissing { .. })
    ));
    assert_eq!(current(&data), format!("{:020}", 1));

    // Another key (a wrong backup, or one made up to get past the error) is refused too, by the
    // map's key check, instead of giving every person a new serial.
    let key = data.join("person-id.key");
    fs::write(&key, [0x42u8; 32]).unwrap();
    fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let err = build_epoch(&BuildOptions::new(&data, &reg)).unwrap_err();
    assert!(
        matches!(&err, ServerError::PersonIdKeyMismatch { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("restore the matching person-id.key"),
        "{err}"
    );
    assert_eq!(current(&data), format!("{:020}", 1));
}

#[test]
fn server_check_verifies_the_person_map_that_serving_never_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let reg = tmp.path().join("registry.csv");
    write_registry(&reg, &registry_rows(10, 0));
    build(&data, &reg);
    check_current_epoch(&data).unwrap();
    let p = epoch_dir(&data, 1).join("persons.bin");
    let mut b = fs::read(&p).unwrap();
    let last = b.len() - 1;
    b[last] ^= 1;
    fs::write(&p, &b).unwrap();
    let err = check_current_epoch(&data).unwrap_err().to_string();
    assert!(
        err.contains("persons.bin") && err.contains("SHA-256"),
        "{err}"
    );
}

/// Rewrites epoch 1 of `data` as a data directory from before the person map: serials 0..n in
/// the records, `persons.bin` format 1 with the raw ids at their serials, no person-id key.
/// Returns the serial each person id got.
fn downgrade_to_raw_ids(data: &Path, rows: &[Row]) -> BTreeMap<String, u32> {
    let map: BTreeMap<[u8; 16], u32> = person_map(data, 1).into_iter().collect();
    let mut ids: Vec<String> = rows.iter().map(|r| r.person.clone()).collect();
    ids.sort();
    ids.dedup();
    // Old serial (random) → new serial (position in ids).
    let mut renumber = BTreeMap::new();
    let mut by_id = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        renumber.insert(map[&person_key(data, id)], i as u32);
        by_id.insert(id.clone(), i as u32);
    }
    let dir = epoch_dir(data, 1);
    let mut table = fs::read(dir.join("table.bin")).unwrap();
    for r in table[16..].chunks_exact_mut(RECORD) {
        let s = u32::from_le_bytes(r[48..52].try_into().unwrap());
        r[48..52].copy_from_slice(&renumber[&s].to_le_bytes());
    }
    let mut persons = b"nayose-persons1\n".to_vec();
    persons.extend_from_slice(&(ids.len() as u64).to_le_bytes());
    let mut end = 0u64;
    persons.extend_from_slice(&end.to_le_bytes());
    for id in &ids {
        end += id.len() as u64;
        persons.extend_from_slice(&end.to_le_bytes());
    }
    for id in &ids {
        persons.extend_from_slice(id.as_bytes());
    }
    fs::write(dir.join("table.bin"), &table).unwrap();
    fs::write(dir.join("persons.bin"), &persons).unwrap();
    let mpath = dir.join("manifest.toml");
    let mut m: toml::Table = fs::read_to_string(&mpath).unwrap().parse().unwrap();
    m.insert(
        "table_sha256".into(),
        hex::encode(Sha256::digest(&table)).into(),
    );
    m.insert(
        "persons_sha256".into(),
        hex::encode(Sha256::digest(&persons)).into(),
    );
    fs::write(&mpath, toml::to_string(&m).unwrap()).unwrap();
    fs::remove_file(data.join("person-id.key")).unwrap();
    by_id
}

#[test]
fn a_person_list_of_raw_ids_is_converted_and_every_serial_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let reg = tmp.path().join("registry.csv");
    let rows = registry_rows(30, 0);
    write_registry(&reg, &rows);
    build(&data, &reg);
    let old = downgrade_to_raw_ids(&data, &rows);
    // The old epoch still serves (the person list is not read to serve).
    check_current_epoch(&data).unwrap();

    let mut next = rows.clone();
    let extra = registry_rows(4, 900);
    next.extend(extra.iter().cloned().map(|mut r| {
        r.person = format!("N{}", r.person);
        r
    }));
    write_registry(&reg, &next);
    let r = build_epoch(&BuildOptions::new(&data, &reg)).unwrap();
    assert_eq!(
        (r.added, r.relabelled, r.removed),
        (extra.len() as u64, 0, 0)
    );
    assert!(data.join("person-id.key").exists());
    let map: BTreeMap<[u8; 16], u32> = person_map(&data, 2).into_iter().collect();
    assert_eq!(map.len(), 34);
    let serials = serials_by_number(&data, 2);
    for row in &rows {
        assert_eq!(
            serials[&number_key(row)],
            old[&row.person],
            "{}",
            row.person
        );
        assert_eq!(map[&person_key(&data, &row.person)], old[&row.person]);
    }
    for row in &next[rows.len()..] {
        let s = serials[&number_key(row)];
        assert!(
            !old.values().any(|&o| o == s),
            "a new person got an old serial"
        );
    }
    // The next build reads the converted map (format 2) with the new key.
    build(&data, &reg);
    assert_eq!(serials_by_number(&data, 3), serials);
}

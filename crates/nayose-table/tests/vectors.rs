//! Test vectors of table derivation: `protocol-spec/vectors/table-vectors.json`.
//!
//! `check_published_vectors` reads the JSON and recomputes every output from its inputs.
//! The file itself is produced by this implementation:
//!
//! ```text
//! cargo test -p nayose-table --test vectors -- --ignored --exact print_vectors --nocapture \
//!     | sed -n '/^BEGIN-JSON$/,/^END-JSON$/p' | sed '1d;$d' > protocol-spec/vectors/table-vectors.json
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (team rules)

mod common;

use std::collections::BTreeMap;

use common::{ModelServer, o};
use nayose_table::*;
use serde_json::{Value, json};

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../protocol-spec/vectors/table-vectors.json"
);

/// RFC 9497 Appendix A.1.2 (VOPRF, ristretto255-SHA512) outputs, and one synthetic o_y.
const O_Y: [(&str, &str); 3] = [
    (
        "RFC 9497 A.1.2 VOPRF ristretto255-SHA512 Test Vector 1: Finalize output for Input = 00",
        "b58cfbe118e0cb94d79b5fd6a6dafb98764dff49c14e1770b566e42402da1a7da4d8527693914139caee5bd03903af43a491351d23b430948dd50cde10d32b3c",
    ),
    (
        "RFC 9497 A.1.2 VOPRF ristretto255-SHA512 Test Vector 2: Finalize output for Input = 5a x 17",
        "8a9a2f3c7f085b65933594309041fc1898d42d0858e59f90814ae90571a6df60356f4610bf816f27afdd84f47719e480906d27ecd994985890e5f539e7ea74b6",
    ),
    (
        "synthetic: bytes 00 01 02 ... 3f",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f",
    ),
];
const MASTER: &str = "6e61796f73652f31207465737420766563746f72206c6162656c206d6173746b";
/// The key period of the multi-epoch scenario: number 7 of the RFC 9497 A.1.2 pkS.
const SCENARIO_KP: u64 = 7;
const CLIENTS: [&str; 2] = ["hospital-a.example", "regional-net_02"];
const PERSONS: [&str; 2] = ["P000000001", "P000000002"];
/// (key period number, pkS): the RFC 9497 A.1.2 VOPRF public key (the key of the o_y above)
/// and a second key period under a different (synthetic, 32 x 0x11) key.
const KEY_PERIODS: [(u64, &str); 2] = [
    (
        1,
        "c803e2cc6b05fc15064549b5920659ca4a77b2cca6f04f6b357009335476ad4e",
    ),
    (
        20261123,
        "1111111111111111111111111111111111111111111111111111111111111111",
    ),
];

fn h(b: &[u8]) -> String {
    hex::encode(b)
}

fn arr<const N: usize>(s: &str) -> [u8; N] {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// The registries of the multi-epoch scenario: (epoch, [(seed, person id)]). o_y of a seed is
/// SHA-512(I2OSP(seed, 8)).
fn registries() -> Vec<(u32, Vec<(u64, &'static str)>)> {
    vec![
        (1, vec![(1, "P1"), (2, "P1"), (3, "P2"), (4, "P3")]),
        // seed 4 removed, seed 5 added, seed 2 relabelled (moved to P4)
        (2, vec![(1, "P1"), (2, "P4"), (3, "P2"), (5, "P2")]),
        // seed 5 relabelled (merged into P1), seed 6 added; nothing removed
        (
            3,
            vec![(1, "P1"), (2, "P4"), (3, "P2"), (5, "P1"), (6, "P3")],
        ),
        // nothing changed
        (
            4,
            vec![(1, "P1"), (2, "P4"), (3, "P2"), (5, "P1"), (6, "P3")],
        ),
    ]
}

/// A key period through four epochs: per epoch the registry, the table (tag, version, person),
/// the digest, what client `hospital-a.example` receives as a base, and the delta from the
/// epoch before.
fn scenario() -> Value {
    let master = LabelMasterKey::from_bytes(&arr::<32>(MASTER)).unwrap();
    let kp = KeyPeriodId::new(SCENARIO_KP, &arr::<32>(KEY_PERIODS[0].1));
    let c = ClientId::new(CLIENTS[0]).unwrap();
    let reg = |v: &[(u64, &str)]| -> BTreeMap<u64, String> {
        v.iter().map(|(s, p)| (*s, p.to_string())).collect()
    };
    let regs = registries();
    let mut server = ModelServer::new(kp, master, regs[0].0, reg(&regs[0].1));
    let mut out = Vec::new();
    for (i, (epoch, r)) in regs.iter().enumerate() {
        let delta = if i == 0 {
            Value::Null
        } else {
            let d = server.advance(*epoch, reg(r)).clone();
            let (removed, upserts) = server.delta_for(&d, &c);
            json!({
                "removed": removed.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
                "upserts": upserts.iter().map(|(t, l)| json!({"tag": t.to_string(), "encrypted_label": h(&l.0)})).collect::<Vec<_>>()
            })
        };
        out.push(json!({
            "epoch": epoch,
            "registry": r.iter().map(|(s, p)| json!({"seed": s, "o_y": h(&o(*s)), "person_id": p})).collect::<Vec<_>>(),
            "table": server.table.iter().map(|(t, (e, p))| json!({"tag": t.to_string(), "version": e.version, "person_id": p})).collect::<Vec<_>>(),
            "digest": server.digest().to_string(),
            "base_for_client": server.base(&c).iter().map(|e| h(&e.to_bytes())).collect::<Vec<_>>(),
            "delta_for_client": delta
        }));
    }
    json!({
        "key_period_id": h(kp.as_bytes()), "label_master_key": MASTER, "client_id": CLIENTS[0],
        "epochs": out
    })
}

fn generate() -> Value {
    let master = LabelMasterKey::from_bytes(&arr::<32>(MASTER)).unwrap();
    let dst = |name: &str, d: &[u8]| json!({"name": name, "ascii": std::str::from_utf8(d).unwrap(), "hex": h(d), "len": d.len()});
    let entry_secrets: Vec<Value> = O_Y
        .iter()
        .map(|(src, o)| {
            let (tag, key) = derive_entry_secrets(&arr::<64>(o));
            json!({"o_y_source": src, "o_y": o, "tag": tag.to_string(), "label_key": h(key.as_bytes())})
        })
        .collect();
    let mut labels = Vec::new();
    for c in CLIENTS {
        for p in PERSONS {
            let l = label_for(&master, &ClientId::new(c).unwrap(), p.as_bytes());
            labels.push(json!({
                "label_master_key": MASTER, "client_id": c, "person_id_ascii": p,
                "person_id": h(p.as_bytes()), "label": h(&l.0), "label_text": l.to_string()
            }));
        }
    }
    let mut enc = Vec::new();
    for (i, (_, o)) in O_Y.iter().take(2).enumerate() {
        for c in CLIENTS {
            for (n, pk) in KEY_PERIODS {
                for version in [1u32, 2] {
                    let kp = KeyPeriodId::new(n, &arr::<32>(pk));
                    let client = ClientId::new(c).unwrap();
                    let (tag, key) = derive_entry_secrets(&arr::<64>(o));
                    let label = label_for(&master, &client, PERSONS[i].as_bytes());
                    let pad = label_pad(&key, &client, kp, version, &tag);
                    let el = encrypt_label(&key, &client, kp, version, &tag, &label);
                    enc.push(json!({
                        "o_y": o, "client_id": c, "key_period_id": h(kp.as_bytes()), "version": version,
                        "label_master_key": MASTER, "person_id": h(PERSONS[i].as_bytes()),
                        "tag": tag.to_string(), "label_key": h(key.as_bytes()), "label": h(&label.0),
                        "pad": h(&pad[..]), "encrypted_label": h(&el.0)
                    }));
                }
            }
        }
    }
    let (tag, key) = derive_entry_secrets(&arr::<64>(O_Y[0].1));
    let entry = TableEntry {
        tag,
        label_key: key,
        person: 0x0102_0304,
        version: 0x0000_0005,
    };
    json!({
        "version": "nayose/2",
        "description": "Table derivation test vectors (protocol-spec/table.md). All byte strings are lowercase hex without 0x. Produced by crates/nayose-table (tests/vectors.rs print_vectors) and re-checked by tests/vectors.rs check_published_vectors.",
        "constants": {
            "TAG_LEN": TAG_LEN, "LABEL_LEN": LABEL_LEN, "LABEL_KEY_LEN": LABEL_KEY_LEN,
            "LABEL_MASTER_KEY_LEN": LABEL_MASTER_KEY_LEN, "KEY_PERIOD_ID_LEN": KEY_PERIOD_ID_LEN,
            "TABLE_DIGEST_LEN": TABLE_DIGEST_LEN, "RECORD_LEN": RECORD_LEN, "CLIENT_ENTRY_LEN": CLIENT_ENTRY_LEN,
            "dsts": [
                dst("DST_TAG", DST_TAG), dst("DST_LABEL_KEY", DST_LABEL_KEY),
                dst("DST_LABEL", DST_LABEL), dst("DST_LABEL_PAD", DST_LABEL_PAD),
                dst("DST_LABEL_MASTER_KEY_ID", DST_LABEL_MASTER_KEY_ID),
                dst("DST_KEY_PERIOD_ID", DST_KEY_PERIOD_ID),
                dst("DST_TABLE_DIGEST", DST_TABLE_DIGEST),
                dst("DST_CACHE_KEY", DST_CACHE_KEY)
            ]
        },
        "key_period_ids": KEY_PERIODS.iter().map(|(n, pk)| json!({
            "number": n, "public_key": pk,
            "key_period_id": h(KeyPeriodId::new(*n, &arr::<32>(pk)).as_bytes())
        })).collect::<Vec<_>>(),
        "entry_secrets": entry_secrets,
        "labels": labels,
        "label_master_key_id": [{"label_master_key": MASTER, "key_id": master.key_id().to_string()}],
        "encrypted_labels": enc,
        "records": [{
            "tag": tag.to_string(), "label_key": h(entry.label_key.as_bytes()),
            "person": entry.person, "version": entry.version, "record": h(&entry.to_record()[..])
        }],
        "epochs": scenario()
    })
}

#[test]
#[ignore = "prints the vector file; run explicitly to regenerate it"]
fn print_vectors() {
    println!("BEGIN-JSON");
    println!("{}", serde_json::to_string_pretty(&generate()).unwrap());
    println!("END-JSON");
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("field {k} missing in {v}"))
}

#[test]
fn check_published_vectors() {
    let text = std::fs::read_to_string(PATH).expect("protocol-spec/vectors/table-vectors.json");
    let v: Value = serde_json::from_str(&text).unwrap();
    let c = &v["constants"];
    assert_eq!(c["TAG_LEN"], TAG_LEN);
    assert_eq!(c["LABEL_LEN"], LABEL_LEN);
    assert_eq!(c["LABEL_KEY_LEN"], LABEL_KEY_LEN);
    assert_eq!(c["RECORD_LEN"], RECORD_LEN);
    let dsts = c["dsts"].as_array().unwrap();
    for (d, want) in dsts.iter().zip([
        DST_TAG,
        DST_LABEL_KEY,
        DST_LABEL,
        DST_LABEL_PAD,
        DST_LABEL_MASTER_KEY_ID,
        DST_KEY_PERIOD_ID,
        DST_TABLE_DIGEST,
        DST_CACHE_KEY,
    ]) {
        assert_eq!(hex::decode(s(d, "hex")).unwrap(), want);
        assert_eq!(s(d, "ascii").as_bytes(), want);
    }
    assert_eq!(dsts.len(), 8);
    for e in v["key_period_ids"].as_array().unwrap() {
        let pk = arr::<32>(s(e, "public_key"));
        let id = KeyPeriodId::new(e["number"].as_u64().unwrap(), &pk);
        assert_eq!(h(id.as_bytes()), s(e, "key_period_id"));
        assert!(KeyPeriodId::from_bytes(arr::<16>(s(e, "key_period_id"))).matches_public_key(&pk));
    }

    let es = v["entry_secrets"].as_array().unwrap();
    assert!(es.len() >= 3);
    for e in es {
        let (tag, key) = derive_entry_secrets(&arr::<64>(s(e, "o_y")));
        assert_eq!(tag.to_string(), s(e, "tag"));
        assert_eq!(h(key.as_bytes()), s(e, "label_key"));
    }
    let ls = v["labels"].as_array().unwrap();
    assert!(ls.len() >= 4);
    for l in ls {
        let m = LabelMasterKey::from_bytes(&arr::<32>(s(l, "label_master_key"))).unwrap();
        let c = ClientId::new(s(l, "client_id")).unwrap();
        let p = hex::decode(s(l, "person_id")).unwrap();
        assert_eq!(p, s(l, "person_id_ascii").as_bytes());
        let label = label_for(&m, &c, &p);
        assert_eq!(h(&label.0), s(l, "label"));
        assert_eq!(label.to_string(), s(l, "label_text"));
        assert_eq!(s(l, "label_text").parse::<Label>().unwrap(), label);
    }
    for k in v["label_master_key_id"].as_array().unwrap() {
        let m = LabelMasterKey::from_bytes(&arr::<32>(s(k, "label_master_key"))).unwrap();
        assert_eq!(m.key_id().to_string(), s(k, "key_id"));
    }
    let encs = v["encrypted_labels"].as_array().unwrap();
    assert!(encs.len() >= 8);
    for e in encs {
        let m = LabelMasterKey::from_bytes(&arr::<32>(s(e, "label_master_key"))).unwrap();
        let c = ClientId::new(s(e, "client_id")).unwrap();
        let kp = KeyPeriodId::from_bytes(arr::<16>(s(e, "key_period_id")));
        let version = e["version"].as_u64().unwrap() as u32;
        let (tag, key) = derive_entry_secrets(&arr::<64>(s(e, "o_y")));
        assert_eq!(tag.to_string(), s(e, "tag"));
        assert_eq!(h(key.as_bytes()), s(e, "label_key"));
        let label = label_for(&m, &c, &hex::decode(s(e, "person_id")).unwrap());
        assert_eq!(h(&label.0), s(e, "label"));
        assert_eq!(h(&label_pad(&key, &c, kp, version, &tag)[..]), s(e, "pad"));
        let el = encrypt_label(&key, &c, kp, version, &tag, &label);
        assert_eq!(h(&el.0), s(e, "encrypted_label"));
        let published = EncryptedLabel(arr::<16>(s(e, "encrypted_label")));
        assert_eq!(
            decrypt_label(&key, &c, kp, version, &tag, &published),
            label
        );
    }
    for r in v["records"].as_array().unwrap() {
        let rec = arr::<{ RECORD_LEN }>(s(r, "record"));
        let e = TableEntry::from_record(&rec).unwrap();
        assert_eq!(u64::from(e.version), r["version"].as_u64().unwrap());
        assert_eq!(e.tag.to_string(), s(r, "tag"));
        assert_eq!(h(e.label_key.as_bytes()), s(r, "label_key"));
        assert_eq!(u64::from(e.person), r["person"].as_u64().unwrap());
        assert_eq!(*e.to_record(), rec);
    }
    // The scenario: a client that takes the epoch-1 base and applies each published delta
    // reproduces every later base and digest.
    let sc = &v["epochs"];
    let kp = KeyPeriodId::from_bytes(arr::<16>(s(sc, "key_period_id")));
    let epochs = sc["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 4);
    let base = |e: &Value| -> Vec<ClientEntry> {
        e["base_for_client"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| ClientEntry::from_bytes(&arr::<36>(b.as_str().unwrap())))
            .collect()
    };
    let e0 = &epochs[0];
    let mut table =
        ClientTable::from_entries(kp, e0["epoch"].as_u64().unwrap() as u32, base(e0)).unwrap();
    for e in epochs {
        let epoch = e["epoch"].as_u64().unwrap() as u32;
        if epoch != table.epoch() {
            let d = &e["delta_for_client"];
            let removed: Vec<Tag> = d["removed"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().parse().unwrap())
                .collect();
            let upserts: Vec<(Tag, EncryptedLabel)> = d["upserts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| {
                    (
                        s(u, "tag").parse().unwrap(),
                        EncryptedLabel(arr::<16>(s(u, "encrypted_label"))),
                    )
                })
                .collect();
            table.apply_delta(epoch, &removed, &upserts).unwrap();
        }
        assert_eq!(table.entries(), &base(e)[..]);
        assert_eq!(table.digest().to_string(), s(e, "digest"));
    }
    // The file is exactly what this implementation generates (nothing stale, nothing extra).
    assert_eq!(
        v,
        generate(),
        "table-vectors.json is stale: regenerate it (see module docs)"
    );
}

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

use nayose_table_v1::*;
use serde_json::{Value, json};

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../spec-v1/vectors/table-vectors.json"
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
const CLIENTS: [&str; 2] = ["hospital-a.example", "regional-net_02"];
const PERSONS: [&str; 2] = ["P000000001", "P000000002"];
/// (epoch number, pkS): the RFC 9497 A.1.2 VOPRF public key (the key of the o_y above) and a
/// second epoch under a different (synthetic, 32 x 0x11) key.
const EPOCHS: [(u64, &str); 2] = [
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
            for (n, pk) in EPOCHS {
                let e = EpochId::new(n, &arr::<32>(pk));
                let client = ClientId::new(c).unwrap();
                let (tag, key) = derive_entry_secrets(&arr::<64>(o));
                let label = label_for(&master, &client, PERSONS[i].as_bytes());
                let pad = label_pad(&key, &client, e, &tag);
                let el = encrypt_label(&key, &client, e, &tag, &label);
                enc.push(json!({
                    "o_y": o, "client_id": c, "epoch_id": h(e.as_bytes()), "label_master_key": MASTER,
                    "person_id": h(PERSONS[i].as_bytes()),
                    "tag": tag.to_string(), "label_key": h(key.as_bytes()), "label": h(&label.0),
                    "pad": h(&pad[..]), "encrypted_label": h(&el.0)
                }));
            }
        }
    }
    let (tag, key) = derive_entry_secrets(&arr::<64>(O_Y[0].1));
    let entry = TableEntry {
        tag,
        label_key: key,
        person: 0x0102_0304,
    };
    let prefixes: Vec<Value> = [0u8, 1, 12, 20, 128]
        .iter()
        .map(|&b| {
            let p = TagPrefix::of_tag(&tag, b).unwrap();
            json!({"tag": tag.to_string(), "bits": b, "prefix": h(p.as_bytes())})
        })
        .collect();
    json!({
        "version": "nayose/1",
        "description": "Table derivation test vectors (protocol-spec/table.md). All byte strings are lowercase hex without 0x. Produced by crates/nayose-table (tests/vectors.rs print_vectors) and re-checked by tests/vectors.rs check_published_vectors.",
        "constants": {
            "TAG_LEN": TAG_LEN, "LABEL_LEN": LABEL_LEN, "LABEL_KEY_LEN": LABEL_KEY_LEN,
            "LABEL_MASTER_KEY_LEN": LABEL_MASTER_KEY_LEN, "EPOCH_ID_LEN": EPOCH_ID_LEN,
            "RECORD_LEN": RECORD_LEN,
            "dsts": [
                dst("DST_TAG", DST_TAG), dst("DST_LABEL_KEY", DST_LABEL_KEY),
                dst("DST_LABEL", DST_LABEL), dst("DST_LABEL_PAD", DST_LABEL_PAD),
                dst("DST_LABEL_MASTER_KEY_ID", DST_LABEL_MASTER_KEY_ID),
                dst("DST_EPOCH_ID", DST_EPOCH_ID)
            ]
        },
        "epoch_ids": EPOCHS.iter().map(|(n, pk)| json!({
            "number": n, "public_key": pk,
            "epoch_id": h(EpochId::new(*n, &arr::<32>(pk)).as_bytes())
        })).collect::<Vec<_>>(),
        "entry_secrets": entry_secrets,
        "labels": labels,
        "label_master_key_id": [{"label_master_key": MASTER, "key_id": master.key_id().to_string()}],
        "encrypted_labels": enc,
        "tag_prefixes": prefixes,
        "records": [{
            "tag": tag.to_string(), "label_key": h(entry.label_key.as_bytes()),
            "person": entry.person, "record": h(&entry.to_record()[..])
        }]
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
        DST_EPOCH_ID,
    ]) {
        assert_eq!(hex::decode(s(d, "hex")).unwrap(), want);
        assert_eq!(s(d, "ascii").as_bytes(), want);
    }
    assert_eq!(dsts.len(), 6);
    for e in v["epoch_ids"].as_array().unwrap() {
        let pk = arr::<32>(s(e, "public_key"));
        let id = EpochId::new(e["number"].as_u64().unwrap(), &pk);
        assert_eq!(h(id.as_bytes()), s(e, "epoch_id"));
        assert!(EpochId::from_bytes(arr::<16>(s(e, "epoch_id"))).matches_public_key(&pk));
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
        let epoch = EpochId::from_bytes(arr::<16>(s(e, "epoch_id")));
        let (tag, key) = derive_entry_secrets(&arr::<64>(s(e, "o_y")));
        assert_eq!(tag.to_string(), s(e, "tag"));
        assert_eq!(h(key.as_bytes()), s(e, "label_key"));
        let label = label_for(&m, &c, &hex::decode(s(e, "person_id")).unwrap());
        assert_eq!(h(&label.0), s(e, "label"));
        assert_eq!(h(&label_pad(&key, &c, epoch, &tag)[..]), s(e, "pad"));
        let el = encrypt_label(&key, &c, epoch, &tag, &label);
        assert_eq!(h(&el.0), s(e, "encrypted_label"));
        let published = EncryptedLabel(arr::<16>(s(e, "encrypted_label")));
        assert_eq!(decrypt_label(&key, &c, epoch, &tag, &published), label);
    }
    for p in v["tag_prefixes"].as_array().unwrap() {
        let tag: Tag = s(p, "tag").parse().unwrap();
        let bits = p["bits"].as_u64().unwrap() as u8;
        let want = hex::decode(s(p, "prefix")).unwrap();
        let pre = TagPrefix::of_tag(&tag, bits).unwrap();
        assert_eq!(pre.as_bytes(), &want[..]);
        assert_eq!(TagPrefix::new(bits.into(), &want).unwrap(), pre);
        assert!(pre.contains(&tag));
    }
    for r in v["records"].as_array().unwrap() {
        let rec = arr::<{ RECORD_LEN }>(s(r, "record"));
        let e = TableEntry::from_record(&rec);
        assert_eq!(e.tag.to_string(), s(r, "tag"));
        assert_eq!(h(e.label_key.as_bytes()), s(r, "label_key"));
        assert_eq!(u64::from(e.person), r["person"].as_u64().unwrap());
        assert_eq!(*e.to_record(), rec);
    }
    // The file is exactly what this implementation generates (nothing stale, nothing extra).
    assert_eq!(
        v,
        generate(),
        "table-vectors.json is stale: regenerate it (see module docs)"
    );
}

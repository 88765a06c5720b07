//! Signed announcements (protocol-spec/announcements.md): golden bytes against
//! protocol-spec/vectors/announcement-vectors.json, and every rejected case of that file
//! refused by `check_info` with the failure the spec names.
//!
//! Regenerate the JSON (after a deliberate, spec-versioned change only):
//! `NAYOSE_WRITE_VECTORS=1 cargo test -p nayose-proto --test announce_vectors`

#![allow(clippy::unwrap_used)] // tests unwrap on data they built themselves

use std::path::PathBuf;

use nayose_proto::ProtoError;
use nayose_proto::announce::{
    AnnouncementKey, AnnouncementSigner, Body, Coverage, EpochFacts, Fault, Statement, Validity,
    check_info, key_id,
};
use nayose_wire::{
    Announcement, InfoResponse, KeyPeriodId, PublicKeyBytes, SignedEpochStatement,
    SignedKeyPeriodStatement, TableDigest, UpsertChain,
};
use serde_json::{Value, json};

/// RFC 8032 §7.1 TEST 1 and TEST 2 secret keys (seeds).
const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const OTHER_SEED: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
/// The facts of the Info example of wire.md §10.
const RFC_PKS: &str = "c803e2cc6b05fc15064549b5920659ca4a77b2cca6f04f6b357009335476ad4e";
const RFC_POPRF_PKS: &str = "c647bef38497bc6ec077c22af65b696efa43bff3b4a1975a3e8e0a1c5a79d631";
const DIGEST: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const CHAIN: &str = "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf";
const NOT_BEFORE: u64 = 1_796_083_200; // 2026-12-01T00:00:00Z
const NOT_AFTER: u64 = 1_830_643_200; // 2028-01-05T00:00:00Z
const CHECK_TIME: u64 = 1_800_000_000; // 2027-01-15

fn arr<const N: usize>(h: &str) -> [u8; N] {
    hex::decode(h).unwrap().try_into().unwrap()
}

fn signer(seed: &str) -> AnnouncementSigner {
    AnnouncementSigner::from_seed(&arr(seed)).unwrap()
}

fn validity() -> Validity {
    Validity {
        not_before: NOT_BEFORE,
        not_after: NOT_AFTER,
    }
}

fn kp(number: u64, pks: &str) -> [u8; 16] {
    nayose_table::KeyPeriodId::new(number, &arr(pks)).to_bytes()
}

fn facts() -> EpochFacts {
    EpochFacts {
        key_period: kp(7, RFC_PKS),
        epoch: 100,
        table_entries: 2_000_000,
        table_digest: arr(DIGEST),
        upsert_chain: arr(CHAIN),
    }
}

fn good() -> (SignedKeyPeriodStatement, SignedEpochStatement) {
    let s = signer(SEED);
    (
        s.sign_key_period(validity(), kp(7, RFC_PKS), arr(RFC_PKS))
            .unwrap(),
        s.sign_epoch(validity(), facts()).unwrap(),
    )
}

/// The Info of wire.md §10 with `announcement`.
fn info(announcement: Option<Announcement>) -> InfoResponse {
    let f = facts();
    InfoResponse {
        key_period: KeyPeriodId(f.key_period),
        public_key: PublicKeyBytes(arr(RFC_PKS)),
        epoch: f.epoch,
        table_entries: f.table_entries,
        table_digest: TableDigest(f.table_digest),
        upsert_chain: UpsertChain(f.upsert_chain),
        oldest_delta_base: 10,
        max_batch: 1024,
        quota_left_today: 49_998,
        quota_reset_secs: 3600,
        quota_left_key_period: 1_950_000,
        announcement: announcement.map(Box::new),
        entity: nayose_wire::EntityId::new("research-db-01").unwrap(),
    }
}

fn trusted() -> Vec<AnnouncementKey> {
    vec![signer(SEED).public().clone()]
}

/// Re-signs `statement` bytes with `seed` (for cases that change a signed field).
fn resign(seed: &str, statement: &[u8]) -> Vec<u8> {
    let s = Statement::parse(statement).unwrap();
    let signer = signer(seed);
    match s.body {
        Body::KeyPeriod { public_key } => signer
            .sign_key_period(s.validity, s.key_period, public_key)
            .unwrap()
            .0
            .to_vec(),
        Body::Epoch(f) => signer.sign_epoch(s.validity, f).unwrap().0.to_vec(),
    }
}

struct Case {
    name: &'static str,
    what: &'static str,
    kp: Option<Vec<u8>>,
    epoch: Option<Vec<u8>>,
    now: u64,
    fault: Fault,
}

/// Every rejected case of the vectors file.
fn rejected() -> Vec<Case> {
    let (k, e) = good();
    let (k, e) = (k.0.to_vec(), e.0.to_vec());
    let flip = |mut v: Vec<u8>, at: usize| {
        v[at] ^= 0x01;
        v
    };
    // An epoch statement signed by the other key but naming the trusted key's id.
    let mut forged = e.clone();
    let mut forged_statement = e[..140].to_vec();
    forged_statement[24..32].copy_from_slice(&key_id(&signer(SEED).public().to_bytes()));
    let sig = {
        use ed25519_dalek::Signer;
        ed25519_dalek::SigningKey::from_bytes(&arr(OTHER_SEED))
            .sign(&forged_statement)
            .to_bytes()
    };
    forged[140..].copy_from_slice(&sig);
    let mut kind_changed = k[..96].to_vec();
    kind_changed[23] = 2;
    let mut unknown_kind = k[..96].to_vec();
    unknown_kind[23] = 3;
    let stale = {
        let mut f = facts();
        f.epoch = 99;
        signer(SEED).sign_epoch(validity(), f).unwrap().0.to_vec()
    };
    let other_digest = {
        let mut f = facts();
        f.table_digest[0] ^= 0xff;
        signer(SEED).sign_epoch(validity(), f).unwrap().0.to_vec()
    };
    let kp8 = kp(8, RFC_POPRF_PKS);
    let other_kp = (
        signer(SEED)
            .sign_key_period(validity(), kp8, arr(RFC_POPRF_PKS))
            .unwrap()
            .0
            .to_vec(),
        signer(SEED)
            .sign_epoch(
                validity(),
                EpochFacts {
                    key_period: kp8,
                    ..facts()
                },
            )
            .unwrap()
            .0
            .to_vec(),
    );
    vec![
        Case {
            name: "unannounced",
            what: "Info carries no announcement",
            kp: None,
            epoch: None,
            now: CHECK_TIME,
            fault: Fault::Unannounced,
        },
        Case {
            name: "flipped-signature-bit",
            what: "the lowest bit of the epoch statement's last signature byte flipped",
            kp: Some(k.clone()),
            epoch: Some(flip(e.clone(), 203)),
            now: CHECK_TIME,
            fault: Fault::BadSignature,
        },
        Case {
            name: "flipped-statement-bit",
            what: "the lowest bit of the first table_digest byte (offset 76) flipped, signature kept",
            kp: Some(k.clone()),
            epoch: Some(flip(e.clone(), 76)),
            now: CHECK_TIME,
            fault: Fault::BadSignature,
        },
        Case {
            name: "other-key",
            what: "both statements signed with the RFC 8032 TEST 2 key, which the client does not trust",
            kp: Some(resign(OTHER_SEED, &k[..96])),
            epoch: Some(resign(OTHER_SEED, &e[..140])),
            now: CHECK_TIME,
            fault: Fault::UnknownSigner,
        },
        Case {
            name: "other-key-trusted-id",
            what: "the epoch statement signed with the TEST 2 key but naming the trusted key's id",
            kp: Some(k.clone()),
            epoch: Some(forged),
            now: CHECK_TIME,
            fault: Fault::BadSignature,
        },
        Case {
            name: "kind-changed",
            what: "the key period statement's kind byte set to 2 (epoch) and re-signed: 96 bytes cannot be an epoch statement",
            kp: Some({
                let mut v = kind_changed.clone();
                use ed25519_dalek::Signer;
                v.extend_from_slice(
                    &ed25519_dalek::SigningKey::from_bytes(&arr(SEED))
                        .sign(&kind_changed)
                        .to_bytes(),
                );
                v
            }),
            epoch: Some(e.clone()),
            now: CHECK_TIME,
            fault: Fault::Malformed,
        },
        Case {
            name: "unknown-kind",
            what: "the key period statement's kind byte set to 3 and re-signed",
            kp: Some({
                let mut v = unknown_kind.clone();
                use ed25519_dalek::Signer;
                v.extend_from_slice(
                    &ed25519_dalek::SigningKey::from_bytes(&arr(SEED))
                        .sign(&unknown_kind)
                        .to_bytes(),
                );
                v
            }),
            epoch: Some(e.clone()),
            now: CHECK_TIME,
            fault: Fault::Malformed,
        },
        Case {
            name: "other-key-period",
            what: "valid statements of key period 8 (the RFC 9497 A.1.3 key) while Info is at key period 7",
            kp: Some(other_kp.0),
            epoch: Some(other_kp.1),
            now: CHECK_TIME,
            fault: Fault::Mismatch,
        },
        Case {
            name: "stale-epoch",
            what: "a valid statement of epoch 99 while Info is at epoch 100",
            kp: Some(k.clone()),
            epoch: Some(stale),
            now: CHECK_TIME,
            fault: Fault::Mismatch,
        },
        Case {
            name: "other-digest",
            what: "a valid epoch statement whose table_digest differs from Info's",
            kp: Some(k.clone()),
            epoch: Some(other_digest),
            now: CHECK_TIME,
            fault: Fault::Mismatch,
        },
        Case {
            name: "expired",
            what: "checked at not_after",
            kp: Some(k.clone()),
            epoch: Some(e.clone()),
            now: NOT_AFTER,
            fault: Fault::NotValidNow,
        },
        Case {
            name: "not-yet-valid",
            what: "checked 601 seconds before not_before (beyond the 600-second clock skew)",
            kp: Some(k),
            epoch: Some(e),
            now: NOT_BEFORE - 601,
            fault: Fault::NotValidNow,
        },
    ]
}

fn announcement_of(kp: &Option<Vec<u8>>, epoch: &Option<Vec<u8>>) -> Option<Announcement> {
    Some(Announcement {
        key_period_statement: SignedKeyPeriodStatement(kp.as_ref()?.clone().try_into().ok()?),
        epoch_statement: SignedEpochStatement(epoch.as_ref()?.clone().try_into().ok()?),
    })
}

fn fault_of(r: Result<Coverage, ProtoError>) -> Fault {
    match r {
        Err(ProtoError::Announcement { fault, .. }) => fault,
        other => panic!("expected an announcement failure, got {other:?}"),
    }
}

fn statement_json(signed: &[u8], len: usize) -> Value {
    json!({
        "statement": hex::encode(&signed[..len]),
        "signature": hex::encode(&signed[len..]),
        "signed": hex::encode(signed),
        "signed_len": signed.len(),
    })
}

fn generated() -> Value {
    let (k, e) = good();
    let main = signer(SEED);
    let other = signer(OTHER_SEED);
    let f = facts();
    json!({
        "protocol": "nayose/2",
        "description": "Signed announcements of protocol-spec/announcements.md, produced by crates/nayose-proto and checked by its tests (tests/announce_vectors.rs). The signing key is RFC 8032 §7.1 TEST 1; `other_key` is TEST 2. The facts are those of the Info example of protocol-spec/wire.md §10 (key period 7 of the RFC 9497 A.1.2 VOPRF public key; digest and upsert chain illustrative). Integers inside statements are big-endian. Each rejected case gives the two signed statements an Info carries (null: absent), the time of the check (Unix seconds) and the failure of CheckAnnounced (announcements.md §5) it must produce, with the Info of wire.md §10 and `key` as the only trusted key.",
        "key": {
            "seed": SEED,
            "public_key": main.public().to_hex(),
            "key_id": main.public().id_hex(),
        },
        "other_key": {
            "seed": OTHER_SEED,
            "public_key": other.public().to_hex(),
            "key_id": other.public().id_hex(),
        },
        "facts": {
            "key_period": hex::encode(f.key_period),
            "public_key": RFC_PKS,
            "epoch": f.epoch,
            "table_entries": f.table_entries,
            "table_digest": DIGEST,
            "upsert_chain": CHAIN,
            "not_before": NOT_BEFORE,
            "not_after": NOT_AFTER,
        },
        "check_time": CHECK_TIME,
        "key_period_statement": statement_json(&k.0, 96),
        "epoch_statement": statement_json(&e.0, 140),
        "rejected": rejected().iter().map(|c| json!({
            "name": c.name,
            "what": c.what,
            "key_period_statement": c.kp.as_ref().map(hex::encode),
            "epoch_statement": c.epoch.as_ref().map(hex::encode),
            "now": c.now,
            "fault": c.fault.name(),
        })).collect::<Vec<_>>(),
    })
}

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../protocol-spec/vectors/announcement-vectors.json")
}

#[test]
fn vectors_file_matches_the_code() {
    let g = generated();
    if std::env::var_os("NAYOSE_WRITE_VECTORS").is_some() {
        std::fs::write(
            vectors_path(),
            serde_json::to_string_pretty(&g).unwrap() + "\n",
        )
        .unwrap();
    }
    let text = std::fs::read_to_string(vectors_path()).unwrap();
    let file: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        file, g,
        "announcement-vectors.json differs from the code's output"
    );
    assert!(!file["rejected"].as_array().unwrap().is_empty());
}

#[test]
fn file_vectors_verify_and_their_rejections_hold() {
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(vectors_path()).unwrap()).unwrap();
    let trusted =
        vec![AnnouncementKey::from_hex(file["key"]["public_key"].as_str().unwrap()).unwrap()];
    // The key id is H(DST_ANNOUNCEMENT_KEY_ID, A)[0..8].
    assert_eq!(trusted[0].id_hex(), file["key"]["key_id"].as_str().unwrap());
    let bytes = |v: &Value| v.as_str().map(|h| hex::decode(h).unwrap());
    let now = file["check_time"].as_u64().unwrap();
    let a = announcement_of(
        &bytes(&file["key_period_statement"]["signed"]),
        &bytes(&file["epoch_statement"]["signed"]),
    );
    assert_eq!(
        check_info(&trusted, &info(a), Some(now)).unwrap(),
        Coverage::Verified {
            signer: trusted[0].id()
        }
    );
    let cases = file["rejected"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for c in cases {
        let kp = bytes(&c["key_period_statement"]);
        let ep = bytes(&c["epoch_statement"]);
        let expected = c["fault"].as_str().unwrap();
        // A statement of the wrong length cannot even travel in Info: check it directly.
        let got = match announcement_of(&kp, &ep) {
            Some(a) => fault_of(check_info(&trusted, &info(Some(a)), c["now"].as_u64())),
            None if kp.is_none() => fault_of(check_info(&trusted, &info(None), Some(now))),
            None => panic!("case {} has statements of the wrong length", c["name"]),
        };
        assert_eq!(got.name(), expected, "case {}", c["name"]);
    }
}

#[test]
fn statements_parse_back_to_their_fields() {
    let (k, e) = good();
    let ks = Statement::parse(&k.0[..96]).unwrap();
    assert_eq!(ks.signer, signer(SEED).public().id());
    assert_eq!(ks.validity, validity());
    assert_eq!(
        ks.body,
        Body::KeyPeriod {
            public_key: arr(RFC_PKS)
        }
    );
    assert_eq!(ks.encode(), k.0[..96].to_vec());
    let es = Statement::parse(&e.0[..140]).unwrap();
    assert_eq!(es.body, Body::Epoch(facts()));
    assert_eq!(es.encode(), e.0[..140].to_vec());
    // The prefix: I2OSP(21, 2) || "nayose/2 announcement", then the kind.
    assert_eq!(&k.0[..23], b"\x00\x15nayose/2 announcement");
    assert_eq!(k.0[23], 1);
    assert_eq!(e.0[23], 2);
}

#[test]
fn no_key_means_unchecked_and_a_trusted_key_needs_a_clock() {
    let (k, e) = good();
    let a = Some(Announcement {
        key_period_statement: k,
        epoch_statement: e,
    });
    assert_eq!(
        check_info(&[], &info(None), None).unwrap(),
        Coverage::Unchecked
    );
    assert_eq!(
        fault_of(check_info(&trusted(), &info(a), None)),
        Fault::NotValidNow
    );
    // The skew: 600 s before not_before is accepted, 601 s is not (the vectors' case).
    assert!(check_info(&trusted(), &info(a), Some(NOT_BEFORE - 600)).is_ok());
    assert!(check_info(&trusted(), &info(a), Some(NOT_AFTER - 1)).is_ok());
}

#[test]
fn a_rotation_trusts_either_key() {
    let (k, e) = good();
    let a = Some(Announcement {
        key_period_statement: k,
        epoch_statement: e,
    });
    let both = vec![
        signer(OTHER_SEED).public().clone(),
        signer(SEED).public().clone(),
    ];
    assert!(check_info(&both, &info(a), Some(CHECK_TIME)).is_ok());
    let only_new = vec![signer(OTHER_SEED).public().clone()];
    assert_eq!(
        fault_of(check_info(&only_new, &info(a), Some(CHECK_TIME))),
        Fault::UnknownSigner
    );
}

#[test]
fn keys_and_statements_that_cannot_be_signed_are_refused() {
    // Not 64 hex digits; a small-order point (the identity, encoded as y = 1).
    assert!(AnnouncementKey::from_hex("abcd").is_err());
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert!(AnnouncementKey::from_bytes(&identity).is_err());
    // The signer refuses what a client would refuse to parse.
    let s = signer(SEED);
    let backwards = Validity {
        not_before: 5,
        not_after: 5,
    };
    assert!(
        s.sign_key_period(backwards, kp(7, RFC_PKS), arr(RFC_PKS))
            .is_err()
    );
    assert!(
        s.sign_key_period(validity(), kp(7, RFC_PKS), arr(RFC_POPRF_PKS))
            .is_err(),
        "a key period id that does not belong to the key"
    );
    assert!(
        s.sign_epoch(
            validity(),
            EpochFacts {
                epoch: 0,
                ..facts()
            }
        )
        .is_err()
    );
    // Debug never shows the seed.
    let dbg = format!("{s:?}");
    assert!(!dbg.contains(&SEED[..16]) && dbg.contains("hidden"));
}

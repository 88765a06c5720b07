//! The wire's copies of the table's lengths, key period ids and base-entry layout agree with
//! `nayose-table` (the wire crate does not depend on it, so that it can be fuzzed standalone).

#![allow(clippy::unwrap_used)] // tests unwrap on data they built themselves

use nayose_wire::{
    BASE_ENTRY_LEN, BaseChunk, BaseEntry, ChunkList, EncryptedLabel, Entry, KeyPeriodId, Response,
    Tag, decode_response, encode_response,
};
use proptest::prelude::*;

const RFC_PKS: &str = "c803e2cc6b05fc15064549b5920659ca4a77b2cca6f04f6b357009335476ad4e";

#[test]
fn lengths_agree() {
    assert_eq!(nayose_wire::TAG_LEN, nayose_table::TAG_LEN);
    assert_eq!(nayose_wire::LABEL_LEN, nayose_table::LABEL_LEN);
    assert_eq!(
        nayose_wire::KEY_PERIOD_ID_LEN,
        nayose_table::KEY_PERIOD_ID_LEN
    );
    assert_eq!(
        nayose_wire::TABLE_DIGEST_LEN,
        nayose_table::TABLE_DIGEST_LEN
    );
    assert_eq!(nayose_wire::BASE_ENTRY_LEN, nayose_table::CLIENT_ENTRY_LEN);
    assert_eq!(
        nayose_wire::ENTRY_LEN,
        nayose_table::TAG_LEN + nayose_table::LABEL_LEN
    );
    // The fixed-size wire types have the table's lengths.
    assert_eq!(Tag::LEN, nayose_table::TAG_LEN);
    assert_eq!(EncryptedLabel::LEN, nayose_table::LABEL_LEN);
    assert_eq!(KeyPeriodId::LEN, nayose_table::KEY_PERIOD_ID_LEN);
    assert_eq!(
        nayose_wire::TableDigest::LEN,
        nayose_table::TABLE_DIGEST_LEN
    );
}

#[test]
fn the_vector_key_period_is_key_period_7_of_the_rfc_key() {
    let pk: [u8; 32] = hex::decode(RFC_PKS).unwrap().try_into().unwrap();
    let id = nayose_table::KeyPeriodId::new(7, &pk);
    assert_eq!(
        hex::encode(id.to_bytes()),
        "00000000000000074eb7a0b064e017f2"
    );
    assert!(id.matches_public_key(&pk));
    // The wire carries the same 16 bytes and displays them as hex.
    let wire = KeyPeriodId(id.to_bytes());
    assert_eq!(wire.to_string(), "00000000000000074eb7a0b064e017f2");
    assert_eq!(nayose_table::KeyPeriodId::from_bytes(*wire.as_bytes()), id);
}

/// The bytes of `entries` as they sit in a BaseChunk payload (after the 48-byte header).
fn base_chunk_entry_bytes(entries: Vec<BaseEntry>) -> Vec<u8> {
    let n = entries.len();
    let chunk = Response::BaseChunk(BaseChunk {
        key_period: KeyPeriodId([0; 16]),
        epoch: 1,
        offset: 0,
        total: n as u64,
        entries: ChunkList::new(entries).unwrap(),
    });
    let payload = encode_response(&chunk).unwrap();
    assert_eq!(payload.len(), 48 + BASE_ENTRY_LEN * n);
    assert_eq!(decode_response(&payload).unwrap(), chunk);
    payload[48..].to_vec()
}

proptest! {
    #[test]
    fn base_entries_encode_like_client_entries(
        raw in proptest::collection::vec(
            (any::<[u8; 16]>(), any::<u32>(), any::<[u8; 16]>()),
            0..20,
        )
    ) {
        let wire: Vec<BaseEntry> = raw
            .iter()
            .map(|(t, v, l)| BaseEntry { tag: Tag(*t), version: *v, label: EncryptedLabel(*l) })
            .collect();
        let table: Vec<nayose_table::ClientEntry> = raw
            .iter()
            .map(|(t, v, l)| nayose_table::ClientEntry {
                tag: nayose_table::Tag(*t),
                version: *v,
                label: nayose_table::EncryptedLabel(*l),
            })
            .collect();
        let expected: Vec<u8> = table.iter().flat_map(|e| e.to_bytes()).collect();
        let got = base_chunk_entry_bytes(wire);
        prop_assert_eq!(&got, &expected);
        // And back: the table reads each 36-byte wire entry as the same entry.
        for (bytes, e) in got.chunks_exact(BASE_ENTRY_LEN).zip(&table) {
            let b: [u8; nayose_table::CLIENT_ENTRY_LEN] = bytes.try_into().unwrap();
            prop_assert_eq!(nayose_table::ClientEntry::from_bytes(&b), *e);
        }
    }

    #[test]
    fn upserts_are_tag_then_label(tag in any::<[u8; 16]>(), label in any::<[u8; 16]>()) {
        let chunk = Response::DeltaChunk(nayose_wire::DeltaChunk {
            key_period: KeyPeriodId([0; 16]),
            epoch: 2,
            removed: ChunkList::default(),
            upserts: ChunkList::new(vec![Entry { tag: Tag(tag), label: EncryptedLabel(label) }])
                .unwrap(),
        });
        let payload = encode_response(&chunk).unwrap();
        // type, key period, epoch, removed count (0), upserts count (1), then the entry.
        prop_assert_eq!(payload.len(), 40 + nayose_wire::ENTRY_LEN);
        prop_assert_eq!(&payload[40..56], &tag[..]);
        prop_assert_eq!(&payload[56..72], &label[..]);
    }
}

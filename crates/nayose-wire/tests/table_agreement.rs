//! The wire's copies of the table's lengths, key period ids and base-entry layout agree with
//! `nayose-table` (the wire crate does not depend on it, so that it can be fuzzed standalone).

#![allow(clippy::unwrap_used)] // tests unwrap on data they built themselves

use nayose_wire::{
    BaseChunk, ChunkList, EncryptedLabel, Entry, GapBytes, KeyPeriodId, Response, Tag,
    decode_response, encode_response,
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
    assert_eq!(
        nayose_wire::UPSERT_CHAIN_LEN,
        nayose_table::UPSERT_CHAIN_LEN
    );
    assert_eq!(
        nayose_wire::MAX_RICE_PARAMETER,
        nayose_table::MAX_RICE_PARAMETER
    );
    assert_eq!(
        nayose_wire::MAX_ENTRIES_PER_CHUNK,
        nayose_table::MAX_BLOCK_ENTRIES
    );
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

proptest! {
    #[test]
    fn a_base_chunk_carries_an_entry_block_field_for_field(
        mut tags in proptest::collection::vec(0u128..(1u128 << 72), 1..40),
        labels in proptest::collection::vec(any::<[u8; 4]>(), 40),
    ) {
        tags.sort_unstable();
        tags.dedup();
        let entries: Vec<_> = tags
            .iter()
            .zip(&labels)
            .map(|(t, l)| (nayose_table::Tag::from_u128(*t).unwrap(), nayose_table::EncryptedLabel(*l)))
            .collect();
        let block = nayose_table::EntryBlock::encode(&entries).unwrap();
        let chunk = Response::BaseChunk(BaseChunk {
            key_period: KeyPeriodId([0; 16]),
            epoch: 1,
            offset: 0,
            total: entries.len() as u64,
            rice: block.rice,
            first_tag: Tag(block.first.0),
            gaps: GapBytes::new(block.gaps.clone()).unwrap(),
            labels: ChunkList::new(entries.iter().map(|e| EncryptedLabel(e.1.0)).collect()).unwrap(),
        });
        let payload = encode_response(&chunk).unwrap();
        let g = block.gaps.len();
        prop_assert_eq!(payload.len(), 66 + g + 4 * entries.len());
        prop_assert_eq!(decode_response(&payload).unwrap(), chunk);
        // rice, first tag, gaps and labels sit where wire.md §5.2.3 says, as the table coded them.
        prop_assert_eq!(payload[40], block.rice);
        prop_assert_eq!(&payload[41..50], &block.first.0[..]);
        prop_assert_eq!(&payload[58..58 + g], &block.gaps[..]);
        prop_assert_eq!(&payload[66 + g..], &block.labels[..]);
    }

    #[test]
    fn upserts_are_tag_then_label(tag in any::<[u8; 9]>(), label in any::<[u8; 4]>()) {
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
        prop_assert_eq!(&payload[40..49], &tag[..]);
        prop_assert_eq!(&payload[49..53], &label[..]);
    }
}

//! The wire's copies of the table's lengths, epoch ids and prefixes agree with `nayose-table`
//! (the wire crate does not depend on it, so that it can be fuzzed standalone).

#![allow(clippy::unwrap_used)] // tests unwrap on data they built themselves

use proptest::prelude::*;

#[test]
fn lengths_agree() {
    assert_eq!(nayose_wire_v1::TAG_LEN, nayose_table_v1::TAG_LEN);
    assert_eq!(nayose_wire_v1::LABEL_LEN, nayose_table_v1::LABEL_LEN);
    assert_eq!(nayose_wire_v1::EPOCH_ID_LEN, nayose_table_v1::EPOCH_ID_LEN);
}

#[test]
fn the_vector_epoch_is_epoch_7_of_the_rfc_key() {
    let pk: [u8; 32] =
        hex::decode("c803e2cc6b05fc15064549b5920659ca4a77b2cca6f04f6b357009335476ad4e")
            .unwrap()
            .try_into()
            .unwrap();
    let id = nayose_table_v1::EpochId::new(7, &pk);
    assert_eq!(
        hex::encode(id.to_bytes()),
        "00000000000000076b717ee884e7cff7"
    );
    assert!(id.matches_public_key(&pk));
}

proptest! {
    #[test]
    fn prefixes_agree(tag in any::<[u8; 16]>(), other in any::<[u8; 16]>(), bits in 0u8..=64) {
        let wire = nayose_wire_v1::TagPrefix::of_tag(&nayose_wire_v1::Tag(tag), bits).unwrap();
        let table = nayose_table_v1::TagPrefix::of_tag(&nayose_table_v1::Tag(tag), bits).unwrap();
        prop_assert_eq!(wire.bits(), table.bits());
        // The table's canonical bytes are the wire's value cut to ceil(bits / 8) bytes.
        let n = usize::from(bits).div_ceil(8);
        prop_assert_eq!(&wire.value()[..n], table.as_bytes());
        prop_assert!(wire.value()[n..].iter().all(|b| *b == 0));
        prop_assert_eq!(
            wire.matches(&nayose_wire_v1::Tag(other)),
            table.contains(&nayose_table_v1::Tag(other))
        );
    }
}

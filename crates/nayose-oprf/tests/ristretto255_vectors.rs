//! RFC 9496 Appendix A (ristretto255) and RFC 9380 K.3 (expand_message_xmd SHA-512) vectors,
//! from `protocol-spec/vectors/ristretto255.json`, checked through the functions nayose uses:
//! element decoding (which must reject every invalid encoding and the identity), encoding of
//! generator multiples, element derivation from uniform bytes, and expand_message_xmd.
//!
//! The A.4 `SQRT_RATIO_M1` vectors test a field function that curve25519-dalek keeps private;
//! they are exercised indirectly by decoding (A.1, A.2) and derivation (A.3), which call it.

#![allow(clippy::unwrap_used)]

use curve25519_dalek::{ristretto::RistrettoPoint, scalar::Scalar};
use nayose_oprf::{OprfError, decode_element, hash_to_curve::expand_message_xmd_sha512};
use serde_json::Value;

const VECTORS: &str = include_str!("../../../protocol-spec/vectors/ristretto255.json");

fn load() -> Value {
    serde_json::from_str(VECTORS).unwrap()
}

fn arr32(h: &str) -> [u8; 32] {
    hex::decode(h).unwrap().try_into().unwrap()
}

#[test]
fn generator_multiples_encode_and_decode() {
    let v = load();
    let multiples = v["generator_multiples"].as_array().unwrap();
    assert_eq!(multiples.len(), 16);
    for m in multiples {
        let i = m["multiple"].as_u64().unwrap();
        let enc = arr32(m["encoding"].as_str().unwrap());
        let p = RistrettoPoint::mul_base(&Scalar::from(i));
        assert_eq!(p.compress().to_bytes(), enc, "Encode({i}·B)");
        match decode_element(&enc, 0) {
            Ok(q) => {
                assert_ne!(i, 0);
                assert_eq!(q, p);
            }
            Err(e) => {
                assert_eq!(i, 0, "only the identity may be refused");
                assert_eq!(e, OprfError::IdentityElement { index: 0 });
            }
        }
    }
}

#[test]
fn invalid_encodings_are_rejected() {
    let v = load();
    let invalid = v["invalid_encodings"].as_array().unwrap();
    assert_eq!(invalid.len(), 29);
    for e in invalid {
        let enc = arr32(e["encoding"].as_str().unwrap());
        assert_eq!(
            decode_element(&enc, 3),
            Err(OprfError::NonCanonicalElement { index: 3 }),
            "{} {}",
            e["category"],
            e["encoding"]
        );
    }
}

#[test]
fn elements_from_uniform_bytes() {
    let v = load();
    let cases = v["from_uniform_bytes"].as_array().unwrap();
    assert_eq!(cases.len(), 7);
    for c in cases {
        let input: [u8; 64] = hex::decode(c["input"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let out = arr32(c["output"].as_str().unwrap());
        assert_eq!(
            RistrettoPoint::from_uniform_bytes(&input)
                .compress()
                .to_bytes(),
            out
        );
    }
    let same = &v["from_uniform_bytes_same_output"];
    let inputs = same["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 4);
    let out = arr32(same["output"].as_str().unwrap());
    for i in inputs {
        let input: [u8; 64] = hex::decode(i.as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(
            RistrettoPoint::from_uniform_bytes(&input)
                .compress()
                .to_bytes(),
            out
        );
    }
}

#[test]
fn expand_message_xmd_sha512_vectors() {
    let v = load();
    let x = &v["expand_message_xmd_sha512"];
    let dst = x["DST"].as_str().unwrap().as_bytes();
    let tests = x["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 10);
    for t in tests {
        let msg = t["msg"].as_str().unwrap().as_bytes();
        let len = usize::from_str_radix(
            t["len_in_bytes"].as_str().unwrap().trim_start_matches("0x"),
            16,
        )
        .unwrap();
        let expected = hex::decode(t["uniform_bytes"].as_str().unwrap()).unwrap();
        // Split the message to check that parts are concatenated, not framed.
        let (a, b) = msg.split_at(msg.len() / 2);
        assert_eq!(
            expand_message_xmd_sha512(&[a, b], dst, len).unwrap(),
            expected
        );
    }
}

//! Conformance with every OPRF-mode and VOPRF-mode vector of RFC 9497 Appendix A.1
//! (ristretto255-SHA512), single and batch, from `protocol-spec/vectors/`. Each RFC step is
//! checked on its own: DeriveKeyPair, Blind, BlindEvaluate (+ proof), Finalize, Evaluate.
//! A replaying RNG feeds the published blinds and proof scalars.

#![allow(clippy::unwrap_used)]

use nayose_oprf::{ClientBatch, Mode, PublicKey, ServerKey};
use rand_core::{CryptoRng, RngCore};
use serde_json::Value;

const VECTORS: &str =
    include_str!("../../../protocol-spec/vectors/rfc9497-ristretto255-sha512.json");

/// Replays scalars: each 32-byte scalar is served as 64 bytes (scalar || zeros), which the
/// implementation's wide reduction maps back to exactly that scalar.
struct Replay {
    bytes: Vec<u8>,
    pos: usize,
}

impl Replay {
    fn new(scalars: &[Vec<u8>]) -> Self {
        let mut bytes = Vec::new();
        for s in scalars {
            bytes.extend_from_slice(s);
            bytes.extend_from_slice(&[0u8; 32]);
        }
        Replay { bytes, pos: 0 }
    }
}

impl RngCore for Replay {
    fn next_u32(&mut self) -> u32 {
        unimplemented!("the OPRF draws bytes only")
    }
    fn next_u64(&mut self) -> u64 {
        unimplemented!("the OPRF draws bytes only")
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        let end = self.pos + dst.len();
        assert!(
            end <= self.bytes.len(),
            "the implementation drew more randomness than the vector has"
        );
        dst.copy_from_slice(&self.bytes[self.pos..end]);
        self.pos = end;
    }
}
impl CryptoRng for Replay {}

fn list(v: &Value, field: &str) -> Vec<Vec<u8>> {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("field {field} missing"))
        .split(',')
        .map(|h| hex::decode(h).unwrap())
        .collect()
}

fn one(v: &Value, field: &str) -> Vec<u8> {
    let mut l = list(v, field);
    assert_eq!(l.len(), 1, "{field} is a single value");
    l.remove(0)
}

fn arr32(b: &[u8]) -> [u8; 32] {
    b.try_into().unwrap()
}

fn vectors(mode: &str) -> Vec<Value> {
    let all: Value = serde_json::from_str(VECTORS).unwrap();
    let v = all["modes"][mode].as_array().unwrap().clone();
    assert!(!v.is_empty(), "no {mode} vectors");
    v
}

fn key_for(mode: Mode, v: &Value) -> ServerKey {
    let seed = arr32(&one(v, "Seed"));
    let info = one(v, "KeyInfo");
    let key = ServerKey::derive(mode, &seed, &info).unwrap();
    assert_eq!(
        key.to_bytes().as_slice(),
        one(v, "skSm").as_slice(),
        "DeriveKeyPair skSm"
    );
    key
}

#[test]
fn oprf_mode_vectors() {
    let vs = vectors("OPRF");
    assert_eq!(vs.len(), 2);
    for v in &vs {
        let key = key_for(Mode::Oprf, v);
        let inputs = list(v, "Input");
        let input_refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        let batch =
            ClientBatch::blind(Mode::Oprf, &input_refs, &mut Replay::new(&list(v, "Blind")))
                .unwrap();
        let blinded: Vec<Vec<u8>> = batch
            .blinded_elements()
            .iter()
            .map(|b| b.to_vec())
            .collect();
        assert_eq!(
            blinded,
            list(v, "BlindedElement"),
            "Blind, vector {}",
            v["vector"]
        );

        let evaluated = key.blind_evaluate_batch(batch.blinded_elements()).unwrap();
        let ev: Vec<Vec<u8>> = evaluated.iter().map(|b| b.to_vec()).collect();
        assert_eq!(
            ev,
            list(v, "EvaluationElement"),
            "BlindEvaluate, vector {}",
            v["vector"]
        );

        let outputs = batch.finalize_unverified(&evaluated).unwrap();
        let expected = list(v, "Output");
        for (i, o) in outputs.iter().enumerate() {
            assert_eq!(o.as_bytes().as_slice(), expected[i].as_slice(), "Finalize");
            let direct = key.evaluate(Mode::Oprf, &inputs[i]).unwrap();
            assert_eq!(
                direct.as_bytes().as_slice(),
                expected[i].as_slice(),
                "Evaluate"
            );
        }
    }
}

#[test]
fn voprf_mode_vectors() {
    let vs = vectors("VOPRF");
    assert_eq!(vs.len(), 3);
    assert!(
        vs.iter().any(|v| v["Batch"] == 2),
        "the batch vector is present"
    );
    for v in &vs {
        let key = key_for(Mode::Voprf, v);
        assert_eq!(
            key.public_key().to_bytes().as_slice(),
            one(v, "pkSm").as_slice(),
            "pkSm"
        );
        let pk = PublicKey::from_bytes(&arr32(&one(v, "pkSm"))).unwrap();
        let inputs = list(v, "Input");
        let input_refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        let batch = ClientBatch::blind(
            Mode::Voprf,
            &input_refs,
            &mut Replay::new(&list(v, "Blind")),
        )
        .unwrap();
        let blinded: Vec<Vec<u8>> = batch
            .blinded_elements()
            .iter()
            .map(|b| b.to_vec())
            .collect();
        assert_eq!(
            blinded,
            list(v, "BlindedElement"),
            "Blind, vector {}",
            v["vector"]
        );

        let (evaluated, proof) = key
            .blind_evaluate_batch_with_proof(
                batch.blinded_elements(),
                &mut Replay::new(&[one(v, "ProofRandomScalar")]),
            )
            .unwrap();
        let ev: Vec<Vec<u8>> = evaluated.iter().map(|b| b.to_vec()).collect();
        assert_eq!(
            ev,
            list(v, "EvaluationElement"),
            "BlindEvaluate, vector {}",
            v["vector"]
        );
        assert_eq!(
            proof.to_bytes().as_slice(),
            one(v, "Proof").as_slice(),
            "GenerateProof"
        );

        let proof_bytes: [u8; 64] = one(v, "Proof").try_into().unwrap();
        let outputs = batch
            .verify(&pk, &evaluated, &proof_bytes)
            .unwrap()
            .finalize();
        let expected = list(v, "Output");
        assert_eq!(outputs.len(), expected.len());
        for (i, o) in outputs.iter().enumerate() {
            assert_eq!(o.as_bytes().as_slice(), expected[i].as_slice(), "Finalize");
            let direct = key.evaluate(Mode::Voprf, &inputs[i]).unwrap();
            assert_eq!(
                direct.as_bytes().as_slice(),
                expected[i].as_slice(),
                "Evaluate"
            );
        }
    }
}

#[test]
fn published_proofs_verify_and_tampered_ones_do_not() {
    for v in &vectors("VOPRF") {
        let pk = PublicKey::from_bytes(&arr32(&one(v, "pkSm"))).unwrap();
        let inputs = list(v, "Input");
        let input_refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        let evaluated: Vec<[u8; 32]> = list(v, "EvaluationElement")
            .iter()
            .map(|e| arr32(e))
            .collect();
        let proof: [u8; 64] = one(v, "Proof").try_into().unwrap();
        let blind = || Replay::new(&list(v, "Blind"));

        let batch = ClientBatch::blind(Mode::Voprf, &input_refs, &mut blind()).unwrap();
        assert!(batch.verify(&pk, &evaluated, &proof).is_ok());

        let mut bad = proof;
        bad[0] ^= 1;
        let batch = ClientBatch::blind(Mode::Voprf, &input_refs, &mut blind()).unwrap();
        assert!(
            batch.verify(&pk, &evaluated, &bad).is_err(),
            "flipped bit in c"
        );

        // A different key's public key must not verify.
        let other = ServerKey::derive(Mode::Voprf, &[7u8; 32], b"other").unwrap();
        let batch = ClientBatch::blind(Mode::Voprf, &input_refs, &mut blind()).unwrap();
        assert!(
            batch
                .verify(other.public_key(), &evaluated, &proof)
                .is_err(),
            "wrong key"
        );
    }
}

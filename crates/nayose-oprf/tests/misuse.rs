//! The OPRF core refuses what it must refuse, with the typed error that names it, and hides
//! what it must hide.

#![allow(clippy::unwrap_used)]

use nayose_oprf::{ClientBatch, MAX_BATCH, Mode, OprfError, ServerKey};

fn key() -> ServerKey {
    ServerKey::derive(Mode::Voprf, &[42u8; 32], b"misuse").unwrap()
}

#[test]
fn secrets_print_nothing() {
    let k = key();
    let secret_hex: String = k.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let dbg = format!("{k:?}");
    assert!(!dbg.contains(&secret_hex), "{dbg}");
    assert!(dbg.contains("<secret>"));

    let out = k.evaluate(Mode::Voprf, b"x").unwrap();
    let out_hex: String = out.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert!(!format!("{out:?}").contains(&out_hex[..16]));

    let batch = ClientBatch::blind(Mode::Voprf, &[b"secret-number"], &mut rand::rng()).unwrap();
    let dbg = format!("{batch:?}");
    assert!(
        !dbg.contains("secret-number") && !dbg.contains("115, 101"),
        "{dbg}"
    );
}

#[test]
fn bad_blinded_elements_are_named_by_position() {
    let k = key();
    let good = ClientBatch::blind(Mode::Voprf, &[b"a", b"b"], &mut rand::rng()).unwrap();
    let mut elems = good.blinded_elements().to_vec();
    elems.push([0u8; 32]);
    assert_eq!(
        k.blind_evaluate_batch(&elems).unwrap_err(),
        OprfError::IdentityElement { index: 2 }
    );
    elems[2] = [0xff; 32];
    assert_eq!(
        k.blind_evaluate_batch_with_proof(&elems, &mut rand::rng())
            .unwrap_err(),
        OprfError::NonCanonicalElement { index: 2 }
    );
    assert!(matches!(
        k.blind_evaluate_batch(&[]),
        Err(OprfError::BatchSize { len: 0, .. })
    ));
    let too_many = vec![good.blinded_elements()[0]; MAX_BATCH + 1];
    assert!(matches!(
        k.blind_evaluate_batch(&too_many),
        Err(OprfError::BatchSize { .. })
    ));
}

#[test]
fn a_voprf_batch_cannot_skip_its_proof_and_modes_do_not_mix() {
    let k = key();
    let batch = ClientBatch::blind(Mode::Voprf, &[b"a"], &mut rand::rng()).unwrap();
    let ev = k.blind_evaluate_batch(batch.blinded_elements()).unwrap();
    assert!(matches!(
        batch.finalize_unverified(&ev),
        Err(OprfError::WrongMode { .. })
    ));

    let batch = ClientBatch::blind(Mode::Oprf, &[b"a"], &mut rand::rng()).unwrap();
    let (ev, proof) = k
        .blind_evaluate_batch_with_proof(batch.blinded_elements(), &mut rand::rng())
        .unwrap();
    assert!(matches!(
        batch.verify(k.public_key(), &ev, &proof.to_bytes()),
        Err(OprfError::WrongMode { .. })
    ));
}

#[test]
fn a_swapped_or_altered_evaluation_fails_the_proof() {
    let k = key();
    let inputs: [&[u8]; 3] = [b"01130012", b"01040013", b"33120015"];
    let batch = ClientBatch::blind(Mode::Voprf, &inputs, &mut rand::rng()).unwrap();
    let (mut ev, proof) = k
        .blind_evaluate_batch_with_proof(batch.blinded_elements(), &mut rand::rng())
        .unwrap();
    ev.swap(0, 1);
    assert_eq!(
        batch
            .verify(k.public_key(), &ev, &proof.to_bytes())
            .unwrap_err(),
        OprfError::ProofInvalid
    );

    // The server answers with a different key for one element: detected.
    let batch = ClientBatch::blind(Mode::Voprf, &inputs, &mut rand::rng()).unwrap();
    let (mut ev, proof) = k
        .blind_evaluate_batch_with_proof(batch.blinded_elements(), &mut rand::rng())
        .unwrap();
    let other = ServerKey::derive(Mode::Voprf, &[1u8; 32], b"other").unwrap();
    ev[2] = other
        .blind_evaluate_batch(&batch.blinded_elements()[2..])
        .unwrap()[0];
    assert_eq!(
        batch
            .verify(k.public_key(), &ev, &proof.to_bytes())
            .unwrap_err(),
        OprfError::ProofInvalid
    );

    // Wrong count.
    let batch = ClientBatch::blind(Mode::Voprf, &inputs, &mut rand::rng()).unwrap();
    let (ev, proof) = k
        .blind_evaluate_batch_with_proof(batch.blinded_elements(), &mut rand::rng())
        .unwrap();
    assert_eq!(
        batch
            .verify(k.public_key(), &ev[..2], &proof.to_bytes())
            .unwrap_err(),
        OprfError::BatchMismatch {
            expected: 3,
            got: 2
        }
    );

    // Unreduced proof scalar.
    let batch = ClientBatch::blind(Mode::Voprf, &inputs, &mut rand::rng()).unwrap();
    let mut bad = [0xffu8; 64];
    bad[32..].copy_from_slice(&proof.to_bytes()[32..]);
    assert!(matches!(
        batch.verify(k.public_key(), &ev, &bad),
        Err(OprfError::NonCanonicalScalar { what: "proof c" })
    ));
}

#[test]
fn keys_roundtrip_and_zero_is_refused() {
    let k = key();
    let again = ServerKey::from_bytes(&k.to_bytes()).unwrap();
    assert_eq!(again.public_key(), k.public_key());
    assert_eq!(
        ServerKey::from_bytes(&[0u8; 32]).unwrap_err(),
        OprfError::ZeroKey
    );
    assert!(matches!(
        ServerKey::from_bytes(&[0xffu8; 32]),
        Err(OprfError::NonCanonicalScalar { .. })
    ));
    let big = vec![0u8; 70_000];
    assert!(matches!(
        k.evaluate(Mode::Voprf, &big),
        Err(OprfError::InputTooLong {
            index: 0,
            len: 70_000
        })
    ));
}

#[test]
fn large_batches_take_the_parallel_path_and_agree_with_direct_evaluation() {
    let k = key();
    let inputs: Vec<Vec<u8>> = (0..300u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let batch = ClientBatch::blind(Mode::Voprf, &refs, &mut rand::rng()).unwrap();
    let (ev, proof) = k
        .blind_evaluate_batch_with_proof(batch.blinded_elements(), &mut rand::rng())
        .unwrap();
    let out = batch
        .verify(k.public_key(), &ev, &proof.to_bytes())
        .unwrap()
        .finalize();
    let direct = k.evaluate_batch(Mode::Voprf, &refs).unwrap();
    for (a, b) in out.iter().zip(&direct) {
        assert_eq!(a.as_bytes(), b.as_bytes());
    }
}

#[test]
fn fused_evaluation_maps_every_output_in_order_and_names_a_bad_input_by_its_position() {
    let k = key();
    // 1,000 inputs: sixteen chunks of 64 and a short one, over rayon's pool.
    let inputs: Vec<Vec<u8>> = (0..1_000u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let mapped = k
        .evaluate_batch_with(Mode::Voprf, &refs, |i, o| (i, *o.as_bytes()))
        .unwrap();
    assert_eq!(mapped.len(), refs.len());
    for (j, (i, bytes)) in mapped.iter().enumerate() {
        assert_eq!(*i, j);
        let one = k.evaluate(Mode::Voprf, refs[j]).unwrap();
        assert_eq!(bytes, one.as_bytes(), "input {j}");
    }
    // A small batch stays on the calling thread and agrees too.
    let few = k
        .evaluate_batch_with(Mode::Voprf, &refs[..5], |_, o| *o.as_bytes())
        .unwrap();
    for (j, bytes) in few.iter().enumerate() {
        assert_eq!(bytes, mapped[j].1.as_slice());
    }
    // An input too long for RFC 9497 in the ninth chunk fails the batch at its own position.
    let big = vec![7u8; 70_000];
    let mut bad = refs.clone();
    bad[543] = &big;
    assert!(matches!(
        k.evaluate_batch_with(Mode::Voprf, &bad, |_, o| o.as_bytes()[0]),
        Err(OprfError::InputTooLong {
            index: 543,
            len: 70_000
        })
    ));
}

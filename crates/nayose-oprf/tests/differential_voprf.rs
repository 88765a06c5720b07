//! Differential test against the `voprf` crate (facebook/voprf 0.5), an independent RFC 9497
//! implementation: for 1,000 random keys and batches of random inputs, both sides compute the
//! same public keys, outputs and direct evaluations, and each side's batch proof verifies on the
//! other side.

#![allow(clippy::unwrap_used)]

use nayose_oprf::{ClientBatch, Mode, PublicKey, ServerKey};
use rand::{Rng, RngCore};
use rand_core_06::OsRng;
use voprf::{
    BlindedElement, EvaluationElement, Group, OprfClient, OprfServer, Proof, Ristretto255,
    VoprfClient, VoprfServer,
};

type Cs = Ristretto255;

fn random_inputs(rng: &mut impl Rng, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| {
            let len = rng.random_range(1..=80);
            let mut v = vec![0u8; len];
            rng.fill_bytes(&mut v);
            v
        })
        .collect()
}

#[test]
fn voprf_mode_agrees_with_the_voprf_crate() {
    let mut rng = rand::rng();
    let mut inputs_checked = 0;
    for round in 0..1000 {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let info = format!("nayose differential {round}");
        let ours = ServerKey::derive(Mode::Voprf, &seed, info.as_bytes()).unwrap();
        let theirs = VoprfServer::<Cs>::new_from_seed(&seed, info.as_bytes()).unwrap();
        let their_pk = Cs::serialize_elem(theirs.get_public_key());
        assert_eq!(
            ours.public_key().to_bytes().as_slice(),
            &their_pk[..],
            "pkS"
        );
        let pk = PublicKey::from_bytes(&ours.public_key().to_bytes()).unwrap();

        let n = 1 + (round % 4);
        let inputs = random_inputs(&mut rng, n);
        let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        inputs_checked += n;

        // Our client, their server.
        let batch = ClientBatch::blind(Mode::Voprf, &refs, &mut rng).unwrap();
        let their_blinded: Vec<BlindedElement<Cs>> = batch
            .blinded_elements()
            .iter()
            .map(|b| BlindedElement::deserialize(b).unwrap())
            .collect();
        let res = theirs
            .batch_blind_evaluate(&mut OsRng, &their_blinded)
            .unwrap();
        let evaluated: Vec<[u8; 32]> = res
            .messages
            .iter()
            .map(|m| m.serialize()[..].try_into().unwrap())
            .collect();
        let proof: [u8; 64] = res.proof.serialize()[..].try_into().unwrap();
        let ours_out = batch.verify(&pk, &evaluated, &proof).unwrap().finalize();

        // Their client, our server.
        let mut clients = Vec::new();
        let mut blinded = Vec::new();
        for input in &inputs {
            let b = VoprfClient::<Cs>::blind(input, &mut OsRng).unwrap();
            blinded.push(<[u8; 32]>::try_from(&b.message.serialize()[..]).unwrap());
            clients.push(b.state);
        }
        let (our_eval, our_proof) = ours
            .blind_evaluate_batch_with_proof(&blinded, &mut rng)
            .unwrap();
        let messages: Vec<EvaluationElement<Cs>> = our_eval
            .iter()
            .map(|e| EvaluationElement::deserialize(e).unwrap())
            .collect();
        let their_proof = Proof::<Cs>::deserialize(&our_proof.to_bytes()).unwrap();
        let their_out: Vec<Vec<u8>> = VoprfClient::batch_finalize(
            &refs,
            &clients,
            &messages,
            &their_proof,
            theirs.get_public_key(),
        )
        .expect("voprf accepts our proof")
        .map(|o| o.unwrap().to_vec())
        .collect();

        for i in 0..n {
            let direct_ours = ours.evaluate(Mode::Voprf, &inputs[i]).unwrap();
            let direct_theirs = theirs.evaluate(&inputs[i]).unwrap();
            assert_eq!(ours_out[i].as_bytes().as_slice(), their_out[i].as_slice());
            assert_eq!(direct_ours.as_bytes().as_slice(), &direct_theirs[..]);
            assert_eq!(direct_ours.as_bytes(), ours_out[i].as_bytes());
        }
    }
    assert!(inputs_checked >= 1000);
}

#[test]
fn oprf_mode_agrees_with_the_voprf_crate() {
    let mut rng = rand::rng();
    for round in 0..200 {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let ours = ServerKey::derive(Mode::Oprf, &seed, b"oprf").unwrap();
        let theirs = OprfServer::<Cs>::new_from_seed(&seed, b"oprf").unwrap();
        let input = random_inputs(&mut rng, 1).remove(0);

        let batch = ClientBatch::blind(Mode::Oprf, &[&input], &mut rng).unwrap();
        let their_eval = theirs
            .blind_evaluate(&BlindedElement::deserialize(&batch.blinded_elements()[0]).unwrap());
        let ev: [u8; 32] = their_eval.serialize()[..].try_into().unwrap();
        let ours_out = batch.finalize_unverified(&[ev]).unwrap();

        let b = OprfClient::<Cs>::blind(&input, &mut OsRng).unwrap();
        let blinded: [u8; 32] = b.message.serialize()[..].try_into().unwrap();
        let our_eval = ours.blind_evaluate_batch(&[blinded]).unwrap();
        let their_out = b
            .state
            .finalize(
                &input,
                &EvaluationElement::deserialize(&our_eval[0]).unwrap(),
            )
            .unwrap();

        assert_eq!(
            ours_out[0].as_bytes().as_slice(),
            &their_out[..],
            "round {round}"
        );
        assert_eq!(
            ours.evaluate(Mode::Oprf, &input)
                .unwrap()
                .as_bytes()
                .as_slice(),
            &theirs.evaluate(&input).unwrap()[..]
        );
    }
}

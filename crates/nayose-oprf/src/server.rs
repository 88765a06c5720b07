//! The server's operations: `BlindEvaluate` (OPRF), `BlindEvaluate` with a batched DLEQ proof
//! (VOPRF), and the direct `Evaluate` of unblinded inputs used to build an epoch's table.
//!
//! Invariants: every blinded element is decoded strictly before any work (a bad element fails
//! the whole batch, naming its position); every product with the private key is constant-time;
//! results are compressed with one field inversion per chunk; batches of
//! [`crate::PARALLEL_THRESHOLD`] or more spread over rayon's pool.

use curve25519_dalek::{ristretto::RistrettoPoint, traits::IsIdentity};
use rand_core::{CryptoRng, RngCore};
use rayon::prelude::*;

use crate::{
    ELEMENT_LEN, MAX_BATCH, Mode, OprfError, Output, ServerKey,
    dleq::{Proof, Statement, generate_proof},
    group::{PARALLEL_THRESHOLD, decode_elements, mul_compress_batch},
    hash_to_curve::{XmdPrefix, hash_to_ristretto255_with},
    output::finalize_hash,
};

fn check_batch(len: usize) -> Result<(), OprfError> {
    if len == 0 || len > MAX_BATCH {
        return Err(OprfError::BatchSize {
            len,
            max: MAX_BATCH,
        });
    }
    Ok(())
}

pub(crate) fn check_input_len(index: usize, input: &[u8]) -> Result<(), OprfError> {
    if input.len() > u16::MAX as usize {
        return Err(OprfError::InputTooLong {
            index,
            len: input.len(),
        });
    }
    Ok(())
}

/// `HashToGroup(input)` for every input, rejecting identity results (RFC 9497
/// `InvalidInputError`).
pub(crate) fn hash_inputs(mode: Mode, inputs: &[&[u8]]) -> Result<Vec<RistrettoPoint>, OprfError> {
    let dst = mode.hash_to_group_dst();
    let prefix = XmdPrefix::default();
    let one = |(i, input): (usize, &&[u8])| {
        check_input_len(i, input)?;
        let p = hash_to_ristretto255_with(&prefix, &[input], &dst);
        if p.is_identity() {
            return Err(OprfError::InvalidInput { index: i });
        }
        Ok(p)
    };
    if inputs.len() >= PARALLEL_THRESHOLD {
        inputs.par_iter().enumerate().map(one).collect()
    } else {
        inputs.iter().enumerate().map(one).collect()
    }
}

impl ServerKey {
    /// `BlindEvaluate` without a proof (OPRF mode, or the first half of VOPRF's): the encodings
    /// of `skS · C_i`, from wire bytes to wire bytes.
    pub fn blind_evaluate_batch(
        &self,
        blinded: &[[u8; ELEMENT_LEN]],
    ) -> Result<Vec<[u8; ELEMENT_LEN]>, OprfError> {
        check_batch(blinded.len())?;
        let points = decode_elements(blinded)?;
        Ok(mul_compress_batch(self.half(), &points))
    }

    /// VOPRF `BlindEvaluateBatch`: the encodings of `skS · C_i` and one DLEQ proof for the whole
    /// batch, from wire bytes to wire bytes. `rng` supplies the proof's random scalar.
    pub fn blind_evaluate_batch_with_proof<R: RngCore + CryptoRng + ?Sized>(
        &self,
        blinded: &[[u8; ELEMENT_LEN]],
        rng: &mut R,
    ) -> Result<(Vec<[u8; ELEMENT_LEN]>, Proof), OprfError> {
        check_batch(blinded.len())?;
        let points = decode_elements(blinded)?;
        let evaluated = mul_compress_batch(self.half(), &points);
        let pk = self.public_key().to_bytes();
        let st = Statement {
            mode: Mode::Voprf,
            pk: &pk,
            c_points: &points,
            c_bytes: blinded,
            d_points: None,
            d_bytes: &evaluated,
        };
        let proof = generate_proof(self.scalar(), &st, rng);
        Ok((evaluated, proof))
    }

    /// The server's direct `Evaluate(skS, input)` (RFC 9497 §3.3.1): the same value the client
    /// obtains through blind / evaluate / finalize, without blinding.
    pub fn evaluate(&self, mode: Mode, input: &[u8]) -> Result<Output, OprfError> {
        let mut out = self.evaluate_batch(mode, &[input])?;
        out.pop().ok_or(OprfError::BatchSize {
            len: 0,
            max: MAX_BATCH,
        })
    }

    /// `Evaluate` for many inputs (any number), spread over all cores when large. Used to build
    /// an epoch's table.
    pub fn evaluate_batch(&self, mode: Mode, inputs: &[&[u8]]) -> Result<Vec<Output>, OprfError> {
        let points = hash_inputs(mode, inputs)?;
        let elements = mul_compress_batch(self.half(), &points);
        let out = if inputs.len() >= PARALLEL_THRESHOLD {
            inputs
                .par_iter()
                .zip(elements.par_iter())
                .map(|(i, e)| finalize_hash(i, e))
                .collect()
        } else {
            inputs
                .iter()
                .zip(elements.iter())
                .map(|(i, e)| finalize_hash(i, e))
                .collect()
        };
        Ok(out)
    }
}

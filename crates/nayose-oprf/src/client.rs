//! The client's side: `Blind` a batch, then either verify the server's DLEQ proof (VOPRF) and
//! `Finalize`, or, in OPRF mode only, finalize without a proof.
//!
//! The types enforce the order: a [`ClientBatch`] is consumed by [`ClientBatch::verify`], which
//! returns a [`VerifiedBatch`] only if the proof verified, and only a [`VerifiedBatch`] can be
//! finalized. In OPRF mode [`ClientBatch::finalize_unverified`] finalizes directly; it refuses a
//! VOPRF batch, so a VOPRF client cannot skip its proof by mistake.
//!
//! Invariants: blinds are non-zero, secret, zeroized on drop and never printed; so are the held
//! inputs. Unblinding inverts all blinds with one scalar inversion and compresses the unblinded
//! elements with one field inversion per chunk.

use core::fmt;

use curve25519_dalek::{ristretto::RistrettoPoint, scalar::Scalar};
use rand_core::{CryptoRng, RngCore};
use rayon::prelude::*;
use zeroize::Zeroize;

use crate::{
    ELEMENT_LEN, MAX_BATCH, Mode, OprfError, Output, PROOF_LEN, PublicKey,
    dleq::{Proof, Statement, verify_proof},
    group::{
        PARALLEL_THRESHOLD, decode_elements, mul_each_compress_batch, mul_each_keep_points,
        random_scalar,
    },
    output::finalize_hash,
    server::hash_inputs,
};

/// A blinded batch waiting for the server's answer. Holds the inputs and blinds (secret).
pub struct ClientBatch {
    mode: Mode,
    inputs: Vec<Vec<u8>>,
    blinds: Vec<Scalar>,
    blinded_points: Vec<RistrettoPoint>,
    blinded: Vec<[u8; ELEMENT_LEN]>,
}

impl Drop for ClientBatch {
    fn drop(&mut self) {
        self.blinds.zeroize();
        self.inputs.zeroize();
    }
}

impl fmt::Debug for ClientBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBatch")
            .field("mode", &self.mode)
            .field("len", &self.inputs.len())
            .finish_non_exhaustive()
    }
}

impl ClientBatch {
    /// `Blind(input)` for every input: fresh blinds from `rng`, `C_i = blind_i · HashToGroup(input_i)`.
    pub fn blind<R: RngCore + CryptoRng + ?Sized>(
        mode: Mode,
        inputs: &[&[u8]],
        rng: &mut R,
    ) -> Result<Self, OprfError> {
        if inputs.is_empty() || inputs.len() > MAX_BATCH {
            return Err(OprfError::BatchSize {
                len: inputs.len(),
                max: MAX_BATCH,
            });
        }
        let points = hash_inputs(mode, inputs)?;
        let blinds: Vec<Scalar> = inputs.iter().map(|_| random_scalar(rng)).collect();
        let mut halves: Vec<Scalar> = blinds.iter().map(Scalar::div_by_2).collect();
        let (blinded_points, blinded) = mul_each_keep_points(&halves, &points);
        halves.zeroize();
        Ok(ClientBatch {
            mode,
            inputs: inputs.iter().map(|i| i.to_vec()).collect(),
            blinds,
            blinded_points,
            blinded,
        })
    }

    /// The blinded elements to send, in input order.
    pub fn blinded_elements(&self) -> &[[u8; ELEMENT_LEN]] {
        &self.blinded
    }

    /// Number of inputs in the batch.
    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    /// Always false: a batch holds at least one input.
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    /// The batch's mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn decode_evaluated(
        &self,
        evaluated: &[[u8; ELEMENT_LEN]],
    ) -> Result<Vec<RistrettoPoint>, OprfError> {
        if evaluated.len() != self.inputs.len() {
            return Err(OprfError::BatchMismatch {
                expected: self.inputs.len(),
                got: evaluated.len(),
            });
        }
        decode_elements(evaluated)
    }

    /// VOPRF: checks the server's batch proof that every `D_i = skS · C_i` for the key `pk`.
    /// Only a batch whose proof verifies can be finalized.
    pub fn verify(
        self,
        pk: &PublicKey,
        evaluated: &[[u8; ELEMENT_LEN]],
        proof: &[u8; PROOF_LEN],
    ) -> Result<VerifiedBatch, OprfError> {
        if self.mode != Mode::Voprf {
            return Err(OprfError::WrongMode {
                expected: Mode::Voprf,
                actual: self.mode,
            });
        }
        let proof = Proof::from_bytes(proof)?;
        let d_points = self.decode_evaluated(evaluated)?;
        let pk_bytes = pk.to_bytes();
        let st = Statement {
            mode: Mode::Voprf,
            pk: &pk_bytes,
            c_points: &self.blinded_points,
            c_bytes: &self.blinded,
            d_points: Some(&d_points),
            d_bytes: evaluated,
        };
        verify_proof(pk.point(), &st, &proof)?;
        Ok(VerifiedBatch {
            batch: self,
            evaluated: d_points,
        })
    }

    /// OPRF mode only: finalizes without any proof (the client cannot tell which key was used).
    pub fn finalize_unverified(
        self,
        evaluated: &[[u8; ELEMENT_LEN]],
    ) -> Result<Vec<Output>, OprfError> {
        if self.mode != Mode::Oprf {
            return Err(OprfError::WrongMode {
                expected: Mode::Oprf,
                actual: self.mode,
            });
        }
        let d_points = self.decode_evaluated(evaluated)?;
        Ok(VerifiedBatch {
            batch: self,
            evaluated: d_points,
        }
        .finalize())
    }
}

/// A batch whose evaluated elements are proven to come from the server's key (or, in OPRF mode,
/// accepted without proof). Obtainable only from [`ClientBatch::verify`].
pub struct VerifiedBatch {
    batch: ClientBatch,
    evaluated: Vec<RistrettoPoint>,
}

impl fmt::Debug for VerifiedBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedBatch")
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl VerifiedBatch {
    /// `Finalize` for every input, in input order: unblinds `N_i = blind_i^-1 · D_i` and hashes.
    pub fn finalize(self) -> Vec<Output> {
        let mut inv = self.batch.blinds.clone();
        Scalar::invert_batch_alloc(&mut inv);
        let mut halves: Vec<Scalar> = inv.iter().map(Scalar::div_by_2).collect();
        inv.zeroize();
        let unblinded = mul_each_compress_batch(&halves, &self.evaluated);
        halves.zeroize();
        let inputs = &self.batch.inputs;
        if inputs.len() >= PARALLEL_THRESHOLD {
            inputs
                .par_iter()
                .zip(unblinded.par_iter())
                .map(|(i, n)| finalize_hash(i, n))
                .collect()
        } else {
            inputs
                .iter()
                .zip(unblinded.iter())
                .map(|(i, n)| finalize_hash(i, n))
                .collect()
        }
    }
}

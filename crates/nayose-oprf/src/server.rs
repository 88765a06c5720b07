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
use zeroize::{Zeroize, Zeroizing};

use crate::{
    ELEMENT_LEN, MAX_BATCH, Mode, OprfError, Output, ServerKey,
    dleq::{Proof, Statement, generate_proof},
    group::{
        FUSED_CHUNK, PARALLEL_THRESHOLD, decode_elements, double_compress, mul_compress_batch,
    },
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

    /// `Evaluate` for many inputs (any number), spread over all cores when large.
    pub fn evaluate_batch(&self, mode: Mode, inputs: &[&[u8]]) -> Result<Vec<Output>, OprfError> {
        self.evaluate_batch_with(mode, inputs, |_, o| o)
    }

    /// The encodings of `skS · HashToGroup(x)` for one chunk of inputs (the first at position
    /// `start` of the batch), zeroized on drop, as are the products (dalek's batch encoding
    /// keeps intermediate values in buffers of its own that it frees without zeroizing).
    ///
    /// Not generic, and kept out of line, so that it is compiled once, here, whatever crate
    /// instantiates [`ServerKey::evaluate_batch_with`]: instantiated in a caller's crate, the
    /// same code measured about 8 % slower.
    #[inline(never)]
    fn evaluate_chunk(
        &self,
        prefix: &XmdPrefix,
        dst: &[u8],
        start: usize,
        ins: &[&[u8]],
    ) -> Result<Zeroizing<Vec<[u8; ELEMENT_LEN]>>, OprfError> {
        let half = self.half();
        let mut halves = Zeroizing::new(Vec::with_capacity(ins.len()));
        for (j, input) in ins.iter().enumerate() {
            check_input_len(start + j, input)?;
            let p = hash_to_ristretto255_with(prefix, &[input], dst);
            if p.is_identity() {
                return Err(OprfError::InvalidInput { index: start + j });
            }
            halves.push(half * p);
        }
        Ok(Zeroizing::new(double_compress(&halves)))
    }

    /// `Evaluate` for many inputs, each output handed to `f` (with its position) on the thread
    /// that computed it; the results of `f`, in input order. Used to build an epoch's table, where
    /// `f` derives the entry and the output is dropped (zeroized) at once.
    ///
    /// One fused pass: each chunk of 64 inputs is hashed to the group, multiplied, encoded with
    /// one field inversion, finalized and mapped on one thread, so the cores wait for each other
    /// only at the end of the call, for at most one chunk (a pass per step would make them wait
    /// at every step). Give each thread dozens of chunks to keep that wait small. The products,
    /// their encodings and each chunk's results once moved out are zeroized.
    ///
    /// An input over 65535 bytes or one hashing to the identity fails the call, naming its
    /// position: the first bad one below [`PARALLEL_THRESHOLD`] inputs; above it, the first bad
    /// one of whichever failing chunk is seen first (rayon does not order errors). Chunks
    /// evaluated before the failure was seen have been passed to `f`, whose results are dropped.
    pub fn evaluate_batch_with<T, F>(
        &self,
        mode: Mode,
        inputs: &[&[u8]],
        f: F,
    ) -> Result<Vec<T>, OprfError>
    where
        T: Send + Zeroize,
        F: Fn(usize, Output) -> T + Sync,
    {
        let dst = mode.hash_to_group_dst();
        let prefix = XmdPrefix::default();
        let chunk = |start: usize, ins: &[&[u8]]| -> Result<Vec<T>, OprfError> {
            let elements = self.evaluate_chunk(&prefix, &dst, start, ins)?;
            Ok(ins
                .iter()
                .zip(elements.iter())
                .enumerate()
                .map(|(j, (input, e))| f(start + j, finalize_hash(input, e)))
                .collect())
        };
        if inputs.len() >= PARALLEL_THRESHOLD {
            // Every chunk is a task of its own: rayon's adaptive splitting otherwise stops after
            // a few halvings, and at the end of a batch one core could wait for a large piece of
            // the other's share (in a build, the cores spent about 5 % of the evaluation outside
            // the chunks' work; with this, about 1 %).
            let parts: Vec<Vec<T>> = inputs
                .par_chunks(FUSED_CHUNK)
                .with_max_len(1)
                .enumerate()
                .map(|(c, ins)| chunk(c * FUSED_CHUNK, ins))
                .collect::<Result<_, _>>()?;
            // Moved, not copied, into `out` (sized once, never reallocated); each emptied chunk
            // buffer is zeroized before it is freed.
            let mut out = Vec::with_capacity(inputs.len());
            for mut p in parts {
                out.append(&mut p);
                p.zeroize();
            }
            Ok(out)
        } else {
            chunk(0, inputs)
        }
    }
}

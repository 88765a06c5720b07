//! ristretto255 element and scalar (de)serialization, and the batch fast paths.
//!
//! Invariants:
//! - [`decode_element`] accepts only canonical encodings of non-identity elements
//!   (RFC 9497 §2.1 `DeserializeElement`); [`decode_scalar`] only reduced scalars.
//! - [`mul_compress_batch`] returns `Encode(k_i · P_i)` for every `i` with one shared field
//!   inversion per chunk: it multiplies by `k_i / 2` and lets `double_and_compress_batch` double.
//! - Work above [`PARALLEL_THRESHOLD`] elements is split over rayon's pool; below it, it stays on
//!   the calling thread (a thread hop costs more than a few scalar multiplications).

use curve25519_dalek::{
    ristretto::{CompressedRistretto, RistrettoPoint},
    scalar::Scalar,
    traits::IsIdentity,
};
use rand_core::{CryptoRng, RngCore};
use rayon::prelude::*;

use crate::{ELEMENT_LEN, OprfError};

/// Batches with at least this many elements are spread over all cores.
pub const PARALLEL_THRESHOLD: usize = 64;

/// Elements per parallel chunk: about four chunks per thread of the current pool (so two to
/// dozens of cores balance), and never fewer than 64, so the one field inversion a chunk's batch
/// compression costs stays below 1/64 of a scalar multiplication per element.
fn chunk_len(n: usize) -> usize {
    (n / (4 * rayon::current_num_threads())).max(64)
}

/// `DeserializeElement`: a canonical, non-identity ristretto255 element.
pub fn decode_element(
    bytes: &[u8; ELEMENT_LEN],
    index: usize,
) -> Result<RistrettoPoint, OprfError> {
    let p = CompressedRistretto(*bytes)
        .decompress()
        .ok_or(OprfError::NonCanonicalElement { index })?;
    if p.is_identity() {
        return Err(OprfError::IdentityElement { index });
    }
    Ok(p)
}

/// [`decode_element`] over a batch, in parallel above the threshold; the error names the first
/// bad position.
pub(crate) fn decode_elements(
    bytes: &[[u8; ELEMENT_LEN]],
) -> Result<Vec<RistrettoPoint>, OprfError> {
    if bytes.len() >= PARALLEL_THRESHOLD {
        bytes
            .par_iter()
            .enumerate()
            .map(|(i, b)| decode_element(b, i))
            .collect()
    } else {
        bytes
            .iter()
            .enumerate()
            .map(|(i, b)| decode_element(b, i))
            .collect()
    }
}

/// `DeserializeScalar`: a scalar below the group order.
pub(crate) fn decode_scalar(bytes: &[u8; 32], what: &'static str) -> Result<Scalar, OprfError> {
    Option::from(Scalar::from_canonical_bytes(*bytes)).ok_or(OprfError::NonCanonicalScalar { what })
}

/// `RandomScalar`: a uniformly random non-zero scalar, from 64 bytes reduced modulo the order
/// (statistical distance 2^-260 from uniform). A zero draw is redrawn.
pub(crate) fn random_scalar<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Scalar {
    loop {
        let mut wide = [0u8; 64];
        rng.fill_bytes(&mut wide);
        let s = Scalar::from_bytes_mod_order_wide(&wide);
        zeroize::Zeroize::zeroize(&mut wide);
        if s != Scalar::ZERO {
            return s;
        }
    }
}

/// Inputs per chunk of a fused evaluation ([`crate::ServerKey::evaluate_batch_with`]): 64, so
/// that the one field inversion of a chunk's encoding stays below 1/64 of a scalar
/// multiplication per element while the cores finish a batch within one small chunk of each
/// other (callers give each thread dozens of chunks).
pub(crate) const FUSED_CHUNK: usize = 64;

/// `Encode(h_i + h_i)` for a slice of points, with one field inversion. dalek's list of
/// compressed points is zeroized before it is freed (its other intermediate buffers are not).
pub(crate) fn double_compress(points: &[RistrettoPoint]) -> Vec<[u8; ELEMENT_LEN]> {
    let mut compressed = RistrettoPoint::double_and_compress_batch(points);
    let out = compressed.iter().map(|c| c.to_bytes()).collect();
    zeroize::Zeroize::zeroize(&mut compressed);
    out
}

/// `Encode(k · P_i)` for every point, for one scalar `k` given as `half = k / 2`.
/// Constant-time in `k`.
pub(crate) fn mul_compress_batch(
    half: &Scalar,
    points: &[RistrettoPoint],
) -> Vec<[u8; ELEMENT_LEN]> {
    let chunk = |ps: &[RistrettoPoint]| {
        let halves: Vec<RistrettoPoint> = ps.iter().map(|p| half * p).collect();
        double_compress(&halves)
    };
    if points.len() >= PARALLEL_THRESHOLD {
        points
            .par_chunks(chunk_len(points.len()))
            .flat_map_iter(chunk)
            .collect()
    } else {
        chunk(points)
    }
}

/// `Encode(k_i · P_i)` for per-element scalars given as `halves[i] = k_i / 2`.
/// Constant-time in the scalars.
pub(crate) fn mul_each_compress_batch(
    halves: &[Scalar],
    points: &[RistrettoPoint],
) -> Vec<[u8; ELEMENT_LEN]> {
    debug_assert_eq!(halves.len(), points.len());
    let chunk = |(hs, ps): (&[Scalar], &[RistrettoPoint])| {
        let prods: Vec<RistrettoPoint> = hs.iter().zip(ps).map(|(h, p)| h * p).collect();
        double_compress(&prods)
    };
    if points.len() >= PARALLEL_THRESHOLD {
        halves
            .par_chunks(chunk_len(points.len()))
            .zip(points.par_chunks(chunk_len(points.len())))
            .flat_map_iter(chunk)
            .collect()
    } else {
        chunk((halves, points))
    }
}

/// `(H_i, Encode(2·H_i))` where `H_i = halves[i] · P_i`: the caller gets both the encodings of
/// `k_i · P_i` and, by doubling `H_i`, the points themselves. Constant-time in the scalars.
pub(crate) fn mul_each_keep_points(
    halves: &[Scalar],
    points: &[RistrettoPoint],
) -> (Vec<RistrettoPoint>, Vec<[u8; ELEMENT_LEN]>) {
    debug_assert_eq!(halves.len(), points.len());
    let chunk = |(hs, ps): (&[Scalar], &[RistrettoPoint])| {
        let h: Vec<RistrettoPoint> = hs.iter().zip(ps).map(|(s, p)| s * p).collect();
        let enc = double_compress(&h);
        h.into_iter().map(|x| x + x).zip(enc).collect::<Vec<_>>()
    };
    if points.len() >= PARALLEL_THRESHOLD {
        halves
            .par_chunks(chunk_len(points.len()))
            .zip(points.par_chunks(chunk_len(points.len())))
            .flat_map_iter(chunk)
            .unzip()
    } else {
        chunk((halves, points)).into_iter().unzip()
    }
}

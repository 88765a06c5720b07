//! The batched DLEQ proof of RFC 9497 §2.2: `ComputeComposites`, `GenerateProof`, `VerifyProof`.
//!
//! The proof shows that `pkS = k·G` and `D_i = k·C_i` for every `i` with the same `k`, for a whole
//! batch at once, through the composites `M = Σ d_i·C_i` and `Z = Σ d_i·D_i`.
//!
//! Invariants:
//! - composites are multiscalar multiplications; they use the variable-time algorithm because
//!   every input (`C_i`, `D_i`, `d_i`) is public;
//! - the prover derives `Z = k·M` (`ComputeCompositesFast`) instead of a second sum, and its
//!   secret-dependent products (`k·M`, `r·G`, `r·M`) are constant-time;
//! - the `d_i` are hashed in parallel above the batch threshold, in index order.

use core::fmt;

use curve25519_dalek::{ristretto::RistrettoPoint, scalar::Scalar, traits::VartimeMultiscalarMul};
use rand_core::{CryptoRng, RngCore};
use rayon::prelude::*;

use crate::{
    ELEMENT_LEN, Mode, OprfError, PROOF_LEN,
    group::{PARALLEL_THRESHOLD, decode_scalar, random_scalar},
    hash_to_curve::{XmdPrefix, hash_to_scalar_with},
};

/// A DLEQ proof `(c, s)`, serialized as `SerializeScalar(c) || SerializeScalar(s)`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Proof {
    c: Scalar,
    s: Scalar,
}

impl fmt::Debug for Proof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Proof(")?;
        for b in self.to_bytes() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl Proof {
    /// Parses `c || s`, rejecting unreduced scalars.
    pub fn from_bytes(bytes: &[u8; PROOF_LEN]) -> Result<Self, OprfError> {
        let mut c = [0u8; 32];
        let mut s = [0u8; 32];
        c.copy_from_slice(&bytes[..32]);
        s.copy_from_slice(&bytes[32..]);
        Ok(Proof {
            c: decode_scalar(&c, "proof c")?,
            s: decode_scalar(&s, "proof s")?,
        })
    }

    /// `c || s`.
    pub fn to_bytes(&self) -> [u8; PROOF_LEN] {
        let mut out = [0u8; PROOF_LEN];
        out[..32].copy_from_slice(self.c.as_bytes());
        out[32..].copy_from_slice(self.s.as_bytes());
        out
    }
}

/// The public inputs of a batch proof: key, blinded elements `C_i` and evaluated elements `D_i`,
/// each as points and as the encodings that enter the transcript.
pub(crate) struct Statement<'a> {
    pub(crate) mode: Mode,
    pub(crate) pk: &'a [u8; ELEMENT_LEN],
    pub(crate) c_points: &'a [RistrettoPoint],
    pub(crate) c_bytes: &'a [[u8; ELEMENT_LEN]],
    pub(crate) d_points: Option<&'a [RistrettoPoint]>,
    pub(crate) d_bytes: &'a [[u8; ELEMENT_LEN]],
}

const LEN32: [u8; 2] = (ELEMENT_LEN as u16).to_be_bytes();

/// The composite weights `d_i` (RFC 9497 §2.2.1).
fn composite_weights(st: &Statement<'_>) -> Vec<Scalar> {
    let seed_dst = st.mode.seed_dst();
    let mut h = <sha2::Sha512 as sha2::Digest>::new();
    sha2::Digest::update(&mut h, LEN32);
    sha2::Digest::update(&mut h, st.pk);
    sha2::Digest::update(&mut h, (seed_dst.len() as u16).to_be_bytes());
    sha2::Digest::update(&mut h, &seed_dst);
    let seed: [u8; 64] = sha2::Digest::finalize(h).into();
    let dst = st.mode.hash_to_scalar_dst();
    let prefix = XmdPrefix::default();
    let weight = |i: usize| {
        hash_to_scalar_with(
            &prefix,
            &[
                &64u16.to_be_bytes(),
                &seed,
                &(i as u16).to_be_bytes(),
                &LEN32,
                &st.c_bytes[i],
                &LEN32,
                &st.d_bytes[i],
                b"Composite",
            ],
            &dst,
        )
    };
    let n = st.c_bytes.len();
    if n >= PARALLEL_THRESHOLD {
        (0..n).into_par_iter().map(weight).collect()
    } else {
        (0..n).map(weight).collect()
    }
}

/// `Σ d_i · P_i`, variable-time (public inputs), split over two halves in parallel when large.
fn vartime_sum(d: &[Scalar], points: &[RistrettoPoint]) -> RistrettoPoint {
    if d.len() >= 4 * PARALLEL_THRESHOLD {
        let mid = d.len() / 2;
        let (a, b) = rayon::join(
            || RistrettoPoint::vartime_multiscalar_mul(&d[..mid], &points[..mid]),
            || RistrettoPoint::vartime_multiscalar_mul(&d[mid..], &points[mid..]),
        );
        a + b
    } else {
        RistrettoPoint::vartime_multiscalar_mul(d, points)
    }
}

/// The challenge `c = HashToScalar(transcript)` of `GenerateProof` / `VerifyProof`.
fn challenge(
    mode: Mode,
    pk: &[u8; ELEMENT_LEN],
    m: &RistrettoPoint,
    z: &RistrettoPoint,
    t2: &RistrettoPoint,
    t3: &RistrettoPoint,
) -> Scalar {
    let (a0, a1, a2, a3) = (
        m.compress().to_bytes(),
        z.compress().to_bytes(),
        t2.compress().to_bytes(),
        t3.compress().to_bytes(),
    );
    hash_to_scalar_with(
        &XmdPrefix::default(),
        &[
            &LEN32,
            pk,
            &LEN32,
            &a0,
            &LEN32,
            &a1,
            &LEN32,
            &a2,
            &LEN32,
            &a3,
            b"Challenge",
        ],
        &mode.hash_to_scalar_dst(),
    )
}

/// `GenerateProof(k, G, pkS, C, D)` with `ComputeCompositesFast`, `r` drawn from `rng`.
pub(crate) fn generate_proof<R: RngCore + CryptoRng + ?Sized>(
    k: &Scalar,
    st: &Statement<'_>,
    rng: &mut R,
) -> Proof {
    let d = composite_weights(st);
    let m = vartime_sum(&d, st.c_points);
    let z = k * m;
    let mut r = random_scalar(rng);
    let t2 = RistrettoPoint::mul_base(&r);
    let t3 = r * m;
    let c = challenge(st.mode, st.pk, &m, &z, &t2, &t3);
    let s = r - c * k;
    zeroize::Zeroize::zeroize(&mut r);
    Proof { c, s }
}

/// `VerifyProof(G, pkS, C, D, proof)`. `st.d_points` must be present.
pub(crate) fn verify_proof(
    pk: &RistrettoPoint,
    st: &Statement<'_>,
    proof: &Proof,
) -> Result<(), OprfError> {
    let d_points = st.d_points.ok_or(OprfError::ProofInvalid)?;
    let d = composite_weights(st);
    let (m, z) = rayon::join(
        || vartime_sum(&d, st.c_points),
        || vartime_sum(&d, d_points),
    );
    // t2 = s·G + c·pkS, t3 = s·M + c·Z; all public, so variable-time is fine.
    let t2 = RistrettoPoint::vartime_double_scalar_mul_basepoint(&proof.c, pk, &proof.s);
    let t3 = RistrettoPoint::vartime_multiscalar_mul([proof.s, proof.c], [m, z]);
    let expected = challenge(st.mode, st.pk, &m, &z, &t2, &t3);
    // c is public (it is on the wire); comparing it in variable time leaks nothing.
    if expected == proof.c {
        Ok(())
    } else {
        Err(OprfError::ProofInvalid)
    }
}

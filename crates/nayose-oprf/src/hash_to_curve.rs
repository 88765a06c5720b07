//! `expand_message_xmd` with SHA-512 (RFC 9380 §5.3.1), `hash_to_ristretto255` (RFC 9380
//! Appendix B) and the ciphersuite's `HashToScalar` (RFC 9497 §4.1).
//!
//! Invariant: these functions are deterministic and take only public data; they are not
//! constant-time in the message length, which is public.

use curve25519_dalek::{ristretto::RistrettoPoint, scalar::Scalar};
use sha2::{Digest, Sha512};

/// SHA-512's input block size in bytes (`s_in_bytes`).
const BLOCK: usize = 128;
/// SHA-512's output size in bytes (`b_in_bytes`).
const OUT: usize = 64;

/// Why `expand_message_xmd` refused its arguments (RFC 9380 §5.3.1 `ABORT` conditions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpandError {
    /// `len_in_bytes` is more than 255 SHA-512 blocks or 65535.
    LengthTooLarge,
    /// The DST is longer than 255 bytes.
    DstTooLong,
}

/// A SHA-512 state that has already absorbed `Z_pad` (one zero block). Every `b_0` starts with
/// it, so cloning this saves one compression per hash; it is built once per call site.
#[derive(Clone)]
pub struct XmdPrefix(Sha512);

impl Default for XmdPrefix {
    fn default() -> Self {
        let mut h = Sha512::new();
        h.update([0u8; BLOCK]);
        XmdPrefix(h)
    }
}

/// `expand_message_xmd(msg, DST, len_in_bytes)` with SHA-512, the message given as parts that
/// are concatenated (so transcripts need no intermediate buffer).
pub fn expand_message_xmd_sha512(
    msg: &[&[u8]],
    dst: &[u8],
    len_in_bytes: usize,
) -> Result<Vec<u8>, ExpandError> {
    let mut out = vec![0u8; len_in_bytes];
    expand_into(&XmdPrefix::default(), msg, dst, &mut out)?;
    Ok(out)
}

/// `expand_message_xmd` writing into `out` (its length is `len_in_bytes`).
fn expand_into(
    prefix: &XmdPrefix,
    msg: &[&[u8]],
    dst: &[u8],
    out: &mut [u8],
) -> Result<(), ExpandError> {
    let len = out.len();
    let ell = len.div_ceil(OUT);
    if ell > 255 || len > 65535 {
        return Err(ExpandError::LengthTooLarge);
    }
    let dst_len = u8::try_from(dst.len()).map_err(|_| ExpandError::DstTooLong)?;
    let mut h0 = prefix.0.clone();
    for part in msg {
        h0.update(part);
    }
    h0.update((len as u16).to_be_bytes());
    h0.update([0u8]);
    h0.update(dst);
    h0.update([dst_len]);
    let b0: [u8; OUT] = h0.finalize().into();

    let mut prev = [0u8; OUT];
    for i in 1..=ell {
        let mut h = Sha512::new();
        let mut chain = [0u8; OUT];
        for (c, (a, b)) in chain.iter_mut().zip(b0.iter().zip(prev.iter())) {
            *c = if i == 1 { *a } else { a ^ b };
        }
        h.update(chain);
        h.update([i as u8]);
        h.update(dst);
        h.update([dst_len]);
        prev = h.finalize().into();
        let start = (i - 1) * OUT;
        let end = (start + OUT).min(len);
        out[start..end].copy_from_slice(&prev[..end - start]);
    }
    Ok(())
}

/// 64 uniform bytes from `msg` under `dst`; `dst` must be at most 255 bytes (all of ours are).
fn uniform64(prefix: &XmdPrefix, msg: &[&[u8]], dst: &[u8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    // Our DSTs are fixed and short and 64 is a fixed length, so the ABORT cases are unreachable;
    // a DST over 255 bytes would be a programming error caught by the test suite.
    let r = expand_into(prefix, msg, dst, &mut out);
    debug_assert!(r.is_ok(), "DST longer than 255 bytes");
    out
}

/// `hash_to_ristretto255(msg, DST)` of RFC 9380 Appendix B: the element derived from 64 bytes
/// of `expand_message_xmd` (RFC 9496 §4.3.4).
pub fn hash_to_ristretto255(msg: &[&[u8]], dst: &[u8]) -> RistrettoPoint {
    hash_to_ristretto255_with(&XmdPrefix::default(), msg, dst)
}

/// [`hash_to_ristretto255`] reusing a precomputed `Z_pad` state.
pub fn hash_to_ristretto255_with(prefix: &XmdPrefix, msg: &[&[u8]], dst: &[u8]) -> RistrettoPoint {
    RistrettoPoint::from_uniform_bytes(&uniform64(prefix, msg, dst))
}

/// `HashToScalar(msg, DST)` of the ristretto255-SHA512 suite: 64 bytes of
/// `expand_message_xmd` reduced modulo the group order.
pub fn hash_to_scalar(msg: &[&[u8]], dst: &[u8]) -> Scalar {
    hash_to_scalar_with(&XmdPrefix::default(), msg, dst)
}

/// [`hash_to_scalar`] reusing a precomputed `Z_pad` state.
pub fn hash_to_scalar_with(prefix: &XmdPrefix, msg: &[&[u8]], dst: &[u8]) -> Scalar {
    Scalar::from_bytes_mod_order_wide(&uniform64(prefix, msg, dst))
}

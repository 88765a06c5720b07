//! The label permutation: a per-client keyed permutation of 32-bit person serials
//! (table.md §3.2).
//!
//! ```text
//! K_c   = SHA-512(I2OSP(14,2) || "nayose/2 label" || K_L || I2OSP(len(client),2) || client)[0..16]
//! Label(serial): L = serial >> 16, R = serial & 0xffff          (16-bit halves)
//!   for i in 0..10:  F = AES-128(K_c, I2OSP(i,1) || I2OSP(R,2) || 0^13)[0..2] (big-endian u16)
//!                    (L, R) = (R, L XOR F)
//!   label = I2OSP(L,2) || I2OSP(R,2)
//! ```
//!
//! A balanced Feistel network is a permutation for any round function, so two persons never
//! share a label (collision-free by construction, unlike a truncated PRF); with AES-128 as the
//! round function and ten rounds (the round count of NIST SP 800-38G FF1) it is a keyed
//! pseudorandom permutation, so labels of one person for two clients are unlinkable without
//! K_L. Invariants: `K_c` and the AES key schedule are secret and zeroized on drop (the `aes`
//! crate's `zeroize` feature); AES runs on AES-NI or a constant-time bitsliced fallback (no
//! table lookups on secret data); `Debug` prints nothing secret.

use std::fmt;

use aes::Aes128;
use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};
use sha2::{Digest, Sha512};
use zeroize::Zeroizing;

use crate::consts::{DST_LABEL, LABEL_LEN, LABEL_PERMUTATION_ROUNDS};
use crate::ids::ClientId;
use crate::label::Label;
use crate::secrets::LabelMasterKey;

/// One client's label permutation under one label master key.
pub struct LabelPermutation {
    aes: Aes128,
}

impl fmt::Debug for LabelPermutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LabelPermutation(..)")
    }
}

/// `K_c`, the AES-128 key of `client`'s label permutation (secret; exposed for test vectors).
pub fn label_permutation_key(master: &LabelMasterKey, client: &ClientId) -> Zeroizing<[u8; 16]> {
    let mut h = Sha512::new();
    h.update((DST_LABEL.len() as u16).to_be_bytes());
    h.update(DST_LABEL);
    h.update(master.as_bytes());
    h.update((client.as_bytes().len() as u16).to_be_bytes());
    h.update(client.as_bytes());
    let d: Zeroizing<[u8; 64]> = Zeroizing::new(h.finalize().into());
    let mut key = Zeroizing::new([0u8; 16]);
    key.copy_from_slice(&d[..16]);
    key
}

impl LabelPermutation {
    /// The permutation of `client` under `master`.
    pub fn new(master: &LabelMasterKey, client: &ClientId) -> Self {
        let key = label_permutation_key(master, client);
        let aes = Aes128::new(&Array::from(*key));
        LabelPermutation { aes }
    }

    /// The label of the person with `serial`.
    pub fn label(&self, serial: u32) -> Label {
        let mut out = [0u32; 1];
        self.labels(&[serial], &mut out);
        Label(out[0].to_be_bytes())
    }

    /// The labels of `serials` into `out` (same length), as big-endian u32s: the Feistel rounds
    /// run on all of them at once so that AES can pipeline.
    pub fn labels(&self, serials: &[u32], out: &mut [u32]) {
        const LANES: usize = 16;
        for (s, o) in serials.chunks(LANES).zip(out.chunks_mut(LANES)) {
            let n = s.len();
            let mut l = [0u16; LANES];
            let mut r = [0u16; LANES];
            for j in 0..n {
                l[j] = (s[j] >> 16) as u16;
                r[j] = s[j] as u16;
            }
            let mut blocks = [Array::from([0u8; 16]); LANES];
            for round in 0..LABEL_PERMUTATION_ROUNDS {
                for j in 0..n {
                    let mut b = [0u8; 16];
                    b[0] = round;
                    b[1..3].copy_from_slice(&r[j].to_be_bytes());
                    blocks[j] = Array::from(b);
                }
                self.aes.encrypt_blocks(&mut blocks[..n]);
                for j in 0..n {
                    let f = u16::from_be_bytes([blocks[j][0], blocks[j][1]]);
                    let new_r = l[j] ^ f;
                    l[j] = r[j];
                    r[j] = new_r;
                }
            }
            for b in blocks.iter_mut() {
                *b = Array::from([0u8; 16]);
            }
            for j in 0..n {
                o[j] = (u32::from(l[j]) << 16) | u32::from(r[j]);
            }
        }
        const { assert!(LABEL_LEN == 4) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_permutation_per_client() {
        let master = LabelMasterKey::from_bytes(&[7; 32]).unwrap();
        let a = LabelPermutation::new(&master, &ClientId::new("client-a").unwrap());
        let b = LabelPermutation::new(&master, &ClientId::new("client-b").unwrap());
        // Injective on a sample (a permutation of all 2^32 values), and batched = one by one.
        let serials: Vec<u32> = (0..5000u32).chain([u32::MAX, 1 << 31]).collect();
        let mut out = vec![0u32; serials.len()];
        a.labels(&serials, &mut out);
        let mut seen = std::collections::HashSet::new();
        for (s, o) in serials.iter().zip(&out) {
            assert!(seen.insert(*o));
            assert_eq!(a.label(*s), Label(o.to_be_bytes()));
        }
        // Another client's labels are unrelated.
        let same = serials
            .iter()
            .filter(|s| a.label(**s) == b.label(**s))
            .count();
        assert!(same < 3);
    }
}

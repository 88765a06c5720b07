//! The `Finalize` output and its hash (RFC 9497 §3.3.1).
//!
//! Invariant: an [`Output`] is key material for the table (tags and label keys derive from it):
//! it is zeroized on drop, prints nothing through `Debug`, and compares in constant time.

use core::fmt;

use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{ELEMENT_LEN, OUTPUT_LEN};

/// `Finalize(input, ...)`: 64 bytes, the pseudorandom function's value on the input.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Output([u8; OUTPUT_LEN]);

impl Output {
    /// Wraps 64 bytes computed elsewhere (for instance read back from a cache).
    pub fn from_bytes(bytes: [u8; OUTPUT_LEN]) -> Self {
        Output(bytes)
    }

    /// The 64 output bytes.
    pub fn as_bytes(&self) -> &[u8; OUTPUT_LEN] {
        &self.0
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Output(<secret>)")
    }
}

impl ConstantTimeEq for Output {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

/// `Hash(I2OSP(len(input), 2) || input || I2OSP(Ne, 2) || element || "Finalize")`.
/// The caller has checked that `input` is at most 65535 bytes.
pub(crate) fn finalize_hash(input: &[u8], element: &[u8; ELEMENT_LEN]) -> Output {
    let mut h = Sha512::new();
    h.update((input.len() as u16).to_be_bytes());
    h.update(input);
    h.update((ELEMENT_LEN as u16).to_be_bytes());
    h.update(element);
    h.update(b"Finalize");
    Output(h.finalize().into())
}

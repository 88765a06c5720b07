//! Secret keys: the per-entry label key and the server's label master key.
//!
//! Invariants: both types zeroize their bytes on drop, print nothing secret in `Debug`, and
//! implement no `PartialEq` on their bytes (comparisons, if ever needed, go through `subtle`).

use std::fmt;

use rand_core::CryptoRng;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::consts::{
    DST_LABEL_MASTER_KEY_ID, LABEL_KEY_LEN, LABEL_MASTER_KEY_ID_LEN, LABEL_MASTER_KEY_LEN,
};
use crate::error::TableError;

/// The secret key of one table entry, derived from the entry's OPRF output `o_y`.
///
/// Whoever holds the number y can derive it; nobody else can.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct LabelKey([u8; LABEL_KEY_LEN]);

impl LabelKey {
    /// Wraps 32 key bytes (e.g. read from a server-local record).
    pub fn from_bytes(bytes: &[u8; LABEL_KEY_LEN]) -> Self {
        LabelKey(*bytes)
    }

    /// The key bytes; the caller must not log them and should keep copies in `Zeroizing`.
    pub fn as_bytes(&self) -> &[u8; LABEL_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for LabelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LabelKey(<secret>)")
    }
}

/// The server's label master key K_L (32 bytes): keys the label PRF for every client.
///
/// Long-lived: it persists across epochs and key periods so that each client's labels stay
/// stable; replacing it is an explicit operation that takes effect with the next key period and
/// breaks longitudinal linkage (table.md §3.2, security.md).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct LabelMasterKey([u8; LABEL_MASTER_KEY_LEN]);

impl LabelMasterKey {
    /// Generates a fresh key from the caller's cryptographic RNG.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut k = LabelMasterKey([0u8; LABEL_MASTER_KEY_LEN]);
        loop {
            rng.fill_bytes(&mut k.0);
            // A zero key is only possible from a broken RNG; never accept one.
            if !bool::from(k.0.ct_eq(&[0u8; LABEL_MASTER_KEY_LEN])) {
                return k;
            }
        }
    }

    /// Loads a key; rejects 32 zero bytes (an uninitialised key file).
    pub fn from_bytes(bytes: &[u8; LABEL_MASTER_KEY_LEN]) -> Result<Self, TableError> {
        if bool::from(bytes.ct_eq(&[0u8; LABEL_MASTER_KEY_LEN])) {
            return Err(TableError::ZeroLabelMasterKey);
        }
        Ok(LabelMasterKey(*bytes))
    }

    /// The key bytes, for storing the key (zeroized when the returned value is dropped).
    pub fn to_bytes(&self) -> Zeroizing<[u8; LABEL_MASTER_KEY_LEN]> {
        Zeroizing::new(self.0)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; LABEL_MASTER_KEY_LEN] {
        &self.0
    }

    /// The key's public identifier:
    /// `SHA-512(I2OSP(28,2) || "nayose/2 label master key id" || K_L)[0..8]`.
    ///
    /// Lets clients and auditors see that the key changed (labels from before and after are not
    /// comparable) without revealing anything about the key.
    pub fn key_id(&self) -> LabelMasterKeyId {
        let mut h = Sha512::new();
        h.update((DST_LABEL_MASTER_KEY_ID.len() as u16).to_be_bytes());
        h.update(DST_LABEL_MASTER_KEY_ID);
        h.update(self.0);
        let d = Zeroizing::new(<[u8; 64]>::from(h.finalize()));
        let mut id = [0u8; LABEL_MASTER_KEY_ID_LEN];
        id.copy_from_slice(&d[..LABEL_MASTER_KEY_ID_LEN]);
        LabelMasterKeyId(id)
    }
}

impl fmt::Debug for LabelMasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LabelMasterKey(id {})", self.key_id())
    }
}

/// Public identifier of a [`LabelMasterKey`] (8 bytes; displayed as 16 lowercase hex digits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LabelMasterKeyId(pub [u8; LABEL_MASTER_KEY_ID_LEN]);

impl fmt::Display for LabelMasterKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let k = LabelKey::from_bytes(&[0xab; 32]);
        assert!(!format!("{k:?}").contains("abab"));
        let m = LabelMasterKey::from_bytes(&[0xcd; 32]).unwrap();
        let s = format!("{m:?}");
        assert!(!s.contains("cdcd"), "{s}");
        assert!(s.contains(&m.key_id().to_string()));
    }

    #[test]
    fn master_key_rules() {
        assert_eq!(
            LabelMasterKey::from_bytes(&[0; 32]).unwrap_err(),
            TableError::ZeroLabelMasterKey
        );
        let mut rng = rand::rng();
        let a = LabelMasterKey::generate(&mut rng);
        let b = LabelMasterKey::generate(&mut rng);
        assert_ne!(*a.to_bytes(), *b.to_bytes());
        assert_ne!(a.key_id(), b.key_id());
        let a2 = LabelMasterKey::from_bytes(&a.to_bytes()).unwrap();
        assert_eq!(a.key_id(), a2.key_id());
    }
}

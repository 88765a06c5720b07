//! The server's key pair (RFC 9497 §3.2): generation, `DeriveKeyPair`, (de)serialization.
//!
//! Invariants: a [`ServerKey`] holds a non-zero scalar; it is zeroized on drop, its `Debug`
//! prints only the public key, and it offers no `==`. Its serialization is returned in a
//! [`Zeroizing`] buffer.

use core::fmt;

use curve25519_dalek::{ristretto::RistrettoPoint, scalar::Scalar};
use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{
    ELEMENT_LEN, Mode, OprfError, SCALAR_LEN,
    group::{decode_element, decode_scalar, random_scalar},
    hash_to_curve::hash_to_scalar,
};

/// The server's private key `skS`, with its public key and the precomputed `skS / 2` used by the
/// batch fast path.
pub struct ServerKey {
    sk: Scalar,
    half: Scalar,
    pk: PublicKey,
}

impl Zeroize for ServerKey {
    fn zeroize(&mut self) {
        self.sk.zeroize();
        self.half.zeroize();
    }
}

impl Drop for ServerKey {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for ServerKey {}

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerKey")
            .field("sk", &"<secret>")
            .field("pk", &self.pk)
            .finish()
    }
}

impl ServerKey {
    fn from_scalar(sk: Scalar) -> Result<Self, OprfError> {
        if sk == Scalar::ZERO {
            return Err(OprfError::ZeroKey);
        }
        let point = RistrettoPoint::mul_base(&sk);
        Ok(ServerKey {
            half: sk.div_by_2(),
            pk: PublicKey {
                bytes: point.compress().to_bytes(),
                point,
            },
            sk,
        })
    }

    /// A fresh key from the caller's cryptographically secure RNG (`RandomScalar`).
    pub fn generate<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let sk = random_scalar(rng);
        // random_scalar never returns zero.
        match Self::from_scalar(sk) {
            Ok(k) => k,
            Err(_) => unreachable!("random_scalar returned zero"),
        }
    }

    /// `DeriveKeyPair(seed, info)` of RFC 9497 §3.2.1 for the given mode.
    pub fn derive(mode: Mode, seed: &[u8; 32], info: &[u8]) -> Result<Self, OprfError> {
        let info_len =
            u16::try_from(info.len()).map_err(|_| OprfError::InfoTooLong { len: info.len() })?;
        let dst = mode.derive_key_pair_dst();
        for counter in 0u8..=255 {
            let sk = hash_to_scalar(&[seed, &info_len.to_be_bytes(), info, &[counter]], &dst);
            if sk != Scalar::ZERO {
                return Self::from_scalar(sk);
            }
        }
        Err(OprfError::DeriveKeyPair)
    }

    /// `DeserializeScalar(skSm)`: a key from its 32-byte little-endian encoding.
    pub fn from_bytes(bytes: &[u8; SCALAR_LEN]) -> Result<Self, OprfError> {
        Self::from_scalar(decode_scalar(bytes, "private key")?)
    }

    /// `SerializeScalar(skS)`, in a buffer that is wiped when dropped.
    pub fn to_bytes(&self) -> Zeroizing<[u8; SCALAR_LEN]> {
        Zeroizing::new(self.sk.to_bytes())
    }

    /// The public key `pkS = skS · G`.
    pub fn public_key(&self) -> &PublicKey {
        &self.pk
    }

    pub(crate) fn scalar(&self) -> &Scalar {
        &self.sk
    }

    pub(crate) fn half(&self) -> &Scalar {
        &self.half
    }
}

/// The server's public key `pkS`, checked to be a valid non-identity element.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    point: RistrettoPoint,
    bytes: [u8; ELEMENT_LEN],
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(")?;
        for b in self.bytes {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl PublicKey {
    /// `DeserializeElement(pkSm)`.
    pub fn from_bytes(bytes: &[u8; ELEMENT_LEN]) -> Result<Self, OprfError> {
        Ok(PublicKey {
            point: decode_element(bytes, 0)?,
            bytes: *bytes,
        })
    }

    /// `SerializeElement(pkS)`.
    pub fn to_bytes(&self) -> [u8; ELEMENT_LEN] {
        self.bytes
    }

    pub(crate) fn point(&self) -> &RistrettoPoint {
        &self.point
    }
}

//! Client ids and epoch ids.
//!
//! Invariant: a [`ClientId`] always holds 1..=64 bytes from `[A-Za-z0-9._-]` (so it is ASCII,
//! needs no normalisation and its bytes are its string). An [`EpochId`] is 16 bytes: the
//! epoch's sequence number and a check value binding it to the epoch's VOPRF public key.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha512};

use crate::consts::{CLIENT_ID_MAX_LEN, DST_EPOCH_ID, EPOCH_ID_LEN};
use crate::error::{TableError, excerpt};

/// The identity of an accredited client, as carried in its certificate (see wire.md).
///
/// Enters label derivation and label encryption, so two clients' labels are unlinkable and each
/// encrypted label is bound to the client it was made for. Compared byte for byte, case
/// sensitive.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(String);

impl ClientId {
    /// Parses a client id: 1 to 64 bytes, each from `A-Z a-z 0-9 . _ -`.
    pub fn new(id: &str) -> Result<Self, TableError> {
        let reason = if id.is_empty() {
            Some("it is empty")
        } else if id.len() > CLIENT_ID_MAX_LEN {
            Some("it is longer than 64 bytes")
        } else if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            Some("it contains a character that is not allowed")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(TableError::InvalidClientId {
                id: excerpt(id),
                reason,
            }),
            None => Ok(ClientId(id.to_owned())),
        }
    }

    /// Parses a client id from bytes (e.g. taken from a certificate field).
    pub fn from_bytes(id: &[u8]) -> Result<Self, TableError> {
        match std::str::from_utf8(id) {
            Ok(s) => Self::new(s),
            Err(_) => Err(TableError::InvalidClientId {
                id: excerpt(&String::from_utf8_lossy(id)),
                reason: "it is not ASCII",
            }),
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id's bytes (ASCII), as they enter the hash inputs.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientId({:?})", self.0)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ClientId {
    type Err = TableError;
    fn from_str(s: &str) -> Result<Self, TableError> {
        Self::new(s)
    }
}

impl TryFrom<&str> for ClientId {
    type Error = TableError;
    fn try_from(s: &str) -> Result<Self, TableError> {
        Self::new(s)
    }
}

/// The id of one epoch (16 bytes): `I2OSP(number, 8) || check`, where `number` is the epoch's
/// sequence number (strictly increasing) and
/// `check = SHA-512(I2OSP(17,2) || "nayose/1 epoch id" || pkS)[0..8]` binds the id to the
/// epoch's VOPRF public key pkS. Bytewise order is sequence-number order.
///
/// Carried opaquely on the wire; a client checks it against the pkS it received
/// ([`EpochId::matches_public_key`]) and keys its table cache by it, so a key change can never
/// hide behind an unchanged epoch id. Enters the label pad as its 16 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EpochId([u8; EPOCH_ID_LEN]);

impl EpochId {
    /// The id of epoch `number` whose VOPRF public key (serialized element) is `public_key`.
    pub fn new(number: u64, public_key: &[u8; 32]) -> Self {
        let mut id = [0u8; EPOCH_ID_LEN];
        id[..8].copy_from_slice(&number.to_be_bytes());
        id[8..].copy_from_slice(&key_check(public_key));
        EpochId(id)
    }

    /// Wraps 16 bytes received from the wire (any 16 bytes are a well-formed id; use
    /// [`EpochId::matches_public_key`] to check one against pkS).
    pub fn from_bytes(bytes: [u8; EPOCH_ID_LEN]) -> Self {
        EpochId(bytes)
    }

    /// The 16 bytes, as they go on the wire and into the label pad.
    pub fn to_bytes(self) -> [u8; EPOCH_ID_LEN] {
        self.0
    }

    /// The 16 bytes by reference.
    pub fn as_bytes(&self) -> &[u8; EPOCH_ID_LEN] {
        &self.0
    }

    /// The epoch's sequence number (the first 8 bytes, big-endian).
    pub fn number(self) -> u64 {
        let mut n = [0u8; 8];
        n.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(n)
    }

    /// Whether this id was made for `public_key` (its last 8 bytes are the key check).
    pub fn matches_public_key(&self, public_key: &[u8; 32]) -> bool {
        self.0[8..] == key_check(public_key)
    }
}

fn key_check(public_key: &[u8; 32]) -> [u8; 8] {
    let mut h = Sha512::new();
    h.update((DST_EPOCH_ID.len() as u16).to_be_bytes());
    h.update(DST_EPOCH_ID);
    h.update(public_key);
    let d: [u8; 64] = h.finalize().into();
    let mut c = [0u8; 8];
    c.copy_from_slice(&d[..8]);
    c
}

impl fmt::Display for EpochId {
    /// `<number>-<16 hex digits of the key check>`, e.g. `42-1f2e3d4c5b6a7988`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-", self.number())?;
        for b in &self.0[8..] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_rules() {
        assert!(ClientId::new("hospital-a.example_01").is_ok());
        assert!(ClientId::new(&"a".repeat(64)).is_ok());
        assert!(ClientId::new("").is_err());
        assert!(ClientId::new(&"a".repeat(65)).is_err());
        assert!(ClientId::new("a b").is_err());
        assert!(ClientId::new("a/b").is_err());
        assert!(ClientId::new("病院").is_err());
        assert!(ClientId::from_bytes(&[0xff]).is_err());
        let e = ClientId::new("x y").unwrap_err().to_string();
        assert!(e.contains("x y") && e.contains("not allowed"), "{e}");
    }

    #[test]
    fn epoch_id_layout() {
        let pk = [9u8; 32];
        let e = EpochId::new(0x0102_0304_0506_0708, &pk);
        assert_eq!(&e.to_bytes()[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(e.number(), 0x0102_0304_0506_0708);
        assert!(e.matches_public_key(&pk));
        assert!(!e.matches_public_key(&[8u8; 32]));
        assert_eq!(EpochId::from_bytes(e.to_bytes()), e);
        assert!(EpochId::new(1, &pk) < EpochId::new(2, &[0u8; 32]));
        assert!(e.to_string().starts_with("72623859790382856-"));
    }
}

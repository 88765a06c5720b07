//! Client ids and epoch ids.
//!
//! Invariant: a [`ClientId`] always holds 1..=64 bytes from `[A-Za-z0-9._-]` (so it is ASCII,
//! needs no normalisation and its bytes are its string). An [`EpochId`] is an unsigned 64-bit
//! number that the server increases with every published epoch.

use std::fmt;
use std::str::FromStr;

use crate::consts::CLIENT_ID_MAX_LEN;
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

/// The id of one epoch: an unsigned 64-bit counter, encoded as `I2OSP(epoch, 8)` (big-endian)
/// in hash inputs. The server publishes strictly increasing epoch ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EpochId(pub u64);

impl EpochId {
    /// The id's number.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The 8-byte big-endian encoding used in hash inputs.
    pub fn to_be_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }
}

impl fmt::Display for EpochId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u64> for EpochId {
    fn from(v: u64) -> Self {
        EpochId(v)
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
}

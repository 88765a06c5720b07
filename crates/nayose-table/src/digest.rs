//! The table digest: a client-independent commitment to one epoch's table state.
//!
//! ```text
//! TableDigest(kp, epoch, entries) = SHA-512(I2OSP(21,2) || "nayose/2 table digest"
//!     || key_period_id (16) || I2OSP(epoch, 4) || I2OSP(N, 8)
//!     || for each entry in ascending tag order: tag (16) || I2OSP(version, 4))[0..32]
//! ```
//!
//! The server states it per epoch; a client recomputes it over the state it reconstructed
//! (a base, or a base plus deltas) and discards that state if it differs. Tags and versions do
//! not depend on the client, so one digest serves every client. Invariant: a [`DigestBuilder`]
//! accepts exactly the announced number of entries in strictly ascending tag order, so two
//! different states (as sorted sets) can only share a digest through a SHA-512 collision.

use std::fmt;

use sha2::{Digest, Sha512};

use crate::consts::{DST_TABLE_DIGEST, TABLE_DIGEST_LEN};
use crate::error::TableError;
use crate::ids::KeyPeriodId;
use crate::tag::Tag;

/// A 32-byte table digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TableDigest(pub [u8; TABLE_DIGEST_LEN]);

impl fmt::Display for TableDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TableDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TableDigest({self})")
    }
}

/// Computes a [`TableDigest`] over entries fed in ascending tag order.
pub struct DigestBuilder {
    hash: Sha512,
    expected: u64,
    seen: u64,
    last: Option<Tag>,
}

impl fmt::Debug for DigestBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestBuilder")
            .field("expected", &self.expected)
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl DigestBuilder {
    /// Starts the digest of a table of `entries` entries of `epoch` in `key_period`.
    pub fn new(key_period: KeyPeriodId, epoch: u32, entries: u64) -> Self {
        let mut hash = Sha512::new();
        hash.update((DST_TABLE_DIGEST.len() as u16).to_be_bytes());
        hash.update(DST_TABLE_DIGEST);
        hash.update(key_period.as_bytes());
        hash.update(epoch.to_be_bytes());
        hash.update(entries.to_be_bytes());
        DigestBuilder {
            hash,
            expected: entries,
            seen: 0,
            last: None,
        }
    }

    /// Adds the next entry. Fails if its tag is not above the previous one or if more entries
    /// arrive than announced.
    pub fn push(&mut self, tag: &Tag, version: u32) -> Result<(), TableError> {
        if self.last.is_some_and(|l| l >= *tag) {
            return Err(TableError::NotAscending {
                index: self.seen,
                tag: tag.to_string(),
            });
        }
        if self.seen == self.expected {
            return Err(TableError::DigestCount {
                expected: self.expected,
                got: self.seen + 1,
            });
        }
        self.hash.update(tag.as_bytes());
        self.hash.update(version.to_be_bytes());
        self.seen += 1;
        self.last = Some(*tag);
        Ok(())
    }

    /// The digest; fails if fewer entries arrived than announced.
    pub fn finish(self) -> Result<TableDigest, TableError> {
        if self.seen != self.expected {
            return Err(TableError::DigestCount {
                expected: self.expected,
                got: self.seen,
            });
        }
        let d: [u8; 64] = self.hash.finalize().into();
        let mut out = [0u8; TABLE_DIGEST_LEN];
        out.copy_from_slice(&d[..TABLE_DIGEST_LEN]);
        Ok(TableDigest(out))
    }
}

/// The digest of a whole sorted sequence of (tag, version).
pub fn table_digest<'a>(
    key_period: KeyPeriodId,
    epoch: u32,
    entries: impl ExactSizeIterator<Item = (&'a Tag, u32)>,
) -> Result<TableDigest, TableError> {
    let mut b = DigestBuilder::new(key_period, epoch, entries.len() as u64);
    for (tag, version) in entries {
        b.push(tag, version)?;
    }
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(b: u8) -> Tag {
        Tag([b; 16])
    }

    #[test]
    fn digest_binds_every_field() {
        let kp = KeyPeriodId::new(1, &[3; 32]);
        let base = [(t(1), 5u32), (t(2), 5)];
        let d = |kp, e, v: &[(Tag, u32)]| table_digest(kp, e, v.iter().map(|(t, v)| (t, *v)));
        let d0 = d(kp, 5, &base).unwrap();
        assert_ne!(d0, d(kp, 6, &base).unwrap());
        assert_ne!(d0, d(KeyPeriodId::new(2, &[3; 32]), 5, &base).unwrap());
        assert_ne!(d0, d(kp, 5, &[(t(1), 5), (t(2), 6)]).unwrap());
        assert_ne!(d0, d(kp, 5, &[(t(1), 5), (t(3), 5)]).unwrap());
        assert_ne!(d0, d(kp, 5, &[(t(1), 5)]).unwrap());
        assert!(d(kp, 5, &[(t(2), 5), (t(1), 5)]).is_err());
        assert!(d(kp, 5, &[(t(2), 5), (t(2), 5)]).is_err());
    }

    #[test]
    fn counts_are_enforced() {
        let kp = KeyPeriodId::new(1, &[3; 32]);
        let mut b = DigestBuilder::new(kp, 1, 1);
        b.push(&t(1), 1).unwrap();
        assert!(b.push(&t(2), 1).is_err());
        assert!(DigestBuilder::new(kp, 1, 2).finish().is_err());
    }
}

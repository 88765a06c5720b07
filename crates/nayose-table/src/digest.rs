//! The table digest and the upsert chain: client-independent commitments to one epoch's state.
//!
//! ```text
//! UpsertChain(first epoch f)  = SHA-512(I2OSP(21,2) || "nayose/2 upsert chain"
//!     || key_period_id (16) || 0^32 || I2OSP(f, 4) || I2OSP(0, 8))[0..32]
//! UpsertChain(e, previous p)  = SHA-512(I2OSP(21,2) || "nayose/2 upsert chain"
//!     || key_period_id (16) || chain_p (32) || I2OSP(e, 4) || I2OSP(n, 8)
//!     || the n upserted tags of epoch e, ascending)[0..32]
//! TableDigest(kp, e, chain_e, tags) = SHA-512(I2OSP(21,2) || "nayose/2 table digest"
//!     || key_period_id (16) || I2OSP(e, 4) || chain_e (32) || I2OSP(N, 8)
//!     || the N tags, ascending)[0..32]
//! ```
//!
//! The digest binds the set of tags of the state and, through the chain, every upsert of every
//! epoch of the key period: a client that applied deltas recomputes the chain and so notices an
//! upsert (a relabel) it missed, although it never learns entry versions. The server states
//! both per epoch; a client recomputes them over the state it reconstructed (a base, or a base
//! plus deltas) and discards that state if they differ. Tags do not depend on the client, so
//! one digest serves every client. Invariant: a [`DigestBuilder`] and a [`ChainBuilder`] accept
//! exactly the announced number of tags in strictly ascending order, so two different states
//! can only share a digest through a SHA-512 collision.

use std::fmt;

use sha2::{Digest, Sha512};

use crate::consts::{DST_TABLE_DIGEST, DST_UPSERT_CHAIN, TABLE_DIGEST_LEN, UPSERT_CHAIN_LEN};
use crate::error::TableError;
use crate::ids::KeyPeriodId;
use crate::tag::Tag;

/// A 32-byte table digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TableDigest(pub [u8; TABLE_DIGEST_LEN]);

/// A 32-byte upsert-chain value.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct UpsertChain(pub [u8; UPSERT_CHAIN_LEN]);

fn hex(b: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for x in b {
        write!(f, "{x:02x}")?;
    }
    Ok(())
}

impl fmt::Display for TableDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hex(&self.0, f)
    }
}

impl fmt::Debug for TableDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TableDigest({self})")
    }
}

impl fmt::Display for UpsertChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hex(&self.0, f)
    }
}

impl fmt::Debug for UpsertChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UpsertChain({self})")
    }
}

fn primed(dst: &[u8], key_period: KeyPeriodId) -> Sha512 {
    let mut hash = Sha512::new();
    hash.update((dst.len() as u16).to_be_bytes());
    hash.update(dst);
    hash.update(key_period.as_bytes());
    hash
}

/// Hashes exactly `expected` strictly ascending tags.
struct TagFeed {
    hash: Sha512,
    expected: u64,
    seen: u64,
    last: Option<Tag>,
}

impl TagFeed {
    fn push(&mut self, tag: &Tag) -> Result<(), TableError> {
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
        self.seen += 1;
        self.last = Some(*tag);
        Ok(())
    }

    fn finish(self) -> Result<[u8; 32], TableError> {
        if self.seen != self.expected {
            return Err(TableError::DigestCount {
                expected: self.expected,
                got: self.seen,
            });
        }
        let d: [u8; 64] = self.hash.finalize().into();
        let mut out = [0u8; 32];
        out.copy_from_slice(&d[..32]);
        Ok(out)
    }
}

/// Computes a [`TableDigest`] over tags fed in ascending order.
pub struct DigestBuilder(TagFeed);

impl fmt::Debug for DigestBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestBuilder")
            .field("expected", &self.0.expected)
            .field("seen", &self.0.seen)
            .finish_non_exhaustive()
    }
}

impl DigestBuilder {
    /// Starts the digest of a state of `entries` entries of `epoch` in `key_period`, whose
    /// upsert chain is `chain`.
    pub fn new(key_period: KeyPeriodId, epoch: u32, chain: &UpsertChain, entries: u64) -> Self {
        let mut hash = primed(DST_TABLE_DIGEST, key_period);
        hash.update(epoch.to_be_bytes());
        hash.update(chain.0);
        hash.update(entries.to_be_bytes());
        DigestBuilder(TagFeed {
            hash,
            expected: entries,
            seen: 0,
            last: None,
        })
    }

    /// Adds the next tag. Fails if it is not above the previous one or if more tags arrive
    /// than announced.
    pub fn push(&mut self, tag: &Tag) -> Result<(), TableError> {
        self.0.push(tag)
    }

    /// The digest; fails if fewer tags arrived than announced.
    pub fn finish(self) -> Result<TableDigest, TableError> {
        self.0.finish().map(TableDigest)
    }
}

/// Computes the [`UpsertChain`] of an epoch from the previous epoch's value and the epoch's
/// upserted tags, fed in ascending order.
pub struct ChainBuilder(TagFeed);

impl fmt::Debug for ChainBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainBuilder")
            .field("expected", &self.0.expected)
            .field("seen", &self.0.seen)
            .finish_non_exhaustive()
    }
}

impl ChainBuilder {
    /// Starts the chain value of `epoch` after `previous`, over `upserts` upserted tags.
    pub fn new(key_period: KeyPeriodId, previous: &UpsertChain, epoch: u32, upserts: u64) -> Self {
        let mut hash = primed(DST_UPSERT_CHAIN, key_period);
        hash.update(previous.0);
        hash.update(epoch.to_be_bytes());
        hash.update(upserts.to_be_bytes());
        ChainBuilder(TagFeed {
            hash,
            expected: upserts,
            seen: 0,
            last: None,
        })
    }

    /// Adds the next upserted tag.
    pub fn push(&mut self, tag: &Tag) -> Result<(), TableError> {
        self.0.push(tag)
    }

    /// The chain value; fails if fewer tags arrived than announced.
    pub fn finish(self) -> Result<UpsertChain, TableError> {
        self.0.finish().map(UpsertChain)
    }
}

impl UpsertChain {
    /// The chain value of the first epoch `first` of a key period.
    pub fn first(key_period: KeyPeriodId, first: u32) -> UpsertChain {
        ChainBuilder::new(key_period, &UpsertChain([0; UPSERT_CHAIN_LEN]), first, 0)
            .finish()
            .unwrap_or_else(|_| unreachable!("zero tags announced, zero fed"))
    }

    /// The chain value of `epoch` after `self`, over its upserted tags (ascending).
    pub fn next<'a>(
        &self,
        key_period: KeyPeriodId,
        epoch: u32,
        upserted: impl ExactSizeIterator<Item = &'a Tag>,
    ) -> Result<UpsertChain, TableError> {
        let mut b = ChainBuilder::new(key_period, self, epoch, upserted.len() as u64);
        for t in upserted {
            b.push(t)?;
        }
        b.finish()
    }
}

/// The digest of a whole sorted sequence of tags.
pub fn table_digest<'a>(
    key_period: KeyPeriodId,
    epoch: u32,
    chain: &UpsertChain,
    tags: impl ExactSizeIterator<Item = &'a Tag>,
) -> Result<TableDigest, TableError> {
    let mut b = DigestBuilder::new(key_period, epoch, chain, tags.len() as u64);
    for tag in tags {
        b.push(tag)?;
    }
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(b: u8) -> Tag {
        Tag([b; 9])
    }

    #[test]
    fn digest_binds_every_field() {
        let kp = KeyPeriodId::new(1, &[3; 32]);
        let c = UpsertChain::first(kp, 5);
        let base = [t(1), t(2)];
        let d = |kp, e, c: &UpsertChain, v: &[Tag]| table_digest(kp, e, c, v.iter());
        let d0 = d(kp, 5, &c, &base).unwrap();
        assert_ne!(d0, d(kp, 6, &c, &base).unwrap());
        assert_ne!(d0, d(KeyPeriodId::new(2, &[3; 32]), 5, &c, &base).unwrap());
        assert_ne!(d0, d(kp, 5, &UpsertChain::first(kp, 4), &base).unwrap());
        assert_ne!(d0, d(kp, 5, &c, &[t(1), t(3)]).unwrap());
        assert_ne!(d0, d(kp, 5, &c, &[t(1)]).unwrap());
        assert!(d(kp, 5, &c, &[t(2), t(1)]).is_err());
        assert!(d(kp, 5, &c, &[t(2), t(2)]).is_err());
    }

    #[test]
    fn chain_binds_epoch_and_upserts() {
        let kp = KeyPeriodId::new(1, &[3; 32]);
        let c = UpsertChain::first(kp, 5);
        let a = c.next(kp, 6, [t(1), t(2)].iter()).unwrap();
        assert_ne!(a, c.next(kp, 7, [t(1), t(2)].iter()).unwrap());
        assert_ne!(a, c.next(kp, 6, [t(1)].iter()).unwrap());
        assert_ne!(a, c.next(kp, 6, [t(1), t(3)].iter()).unwrap());
        assert_ne!(
            a,
            UpsertChain::first(kp, 4)
                .next(kp, 6, [t(1), t(2)].iter())
                .unwrap()
        );
        assert_ne!(c.next(kp, 6, [].iter()).unwrap(), c);
        assert!(c.next(kp, 6, [t(2), t(1)].iter()).is_err());
    }

    #[test]
    fn counts_are_enforced() {
        let kp = KeyPeriodId::new(1, &[3; 32]);
        let c = UpsertChain::first(kp, 1);
        let mut b = DigestBuilder::new(kp, 1, &c, 1);
        b.push(&t(1)).unwrap();
        assert!(b.push(&t(2)).is_err());
        assert!(DigestBuilder::new(kp, 1, &c, 2).finish().is_err());
    }
}

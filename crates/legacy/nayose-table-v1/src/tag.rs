//! Tags and tag prefixes.
//!
//! Invariants: a [`Tag`] is any 16 bytes, ordered bytewise (this is the table's sort order). A
//! [`TagPrefix`] is canonical: `bits` ≤ 128, exactly `ceil(bits / 8)` significant bytes, and the
//! unused low-order bits of the last byte are zero, so one prefix has exactly one encoding.

use std::fmt;
use std::str::FromStr;

use crate::consts::TAG_LEN;
use crate::error::{TableError, excerpt};

/// The public tag of a table entry: the first 16 bytes of a domain-separated SHA-512 of `o_y`.
///
/// Ordered bytewise (lexicographically), which is the order of the table.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(pub [u8; TAG_LEN]);

impl Tag {
    /// The tag's bytes.
    pub fn as_bytes(&self) -> &[u8; TAG_LEN] {
        &self.0
    }

    /// The first 64 bits as a big-endian integer (the bucket arithmetic of prefixes ≤ 64 bits).
    pub(crate) fn high_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(b)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({self})")
    }
}

impl FromStr for Tag {
    type Err = TableError;
    /// Parses 32 lowercase hex digits.
    fn from_str(s: &str) -> Result<Self, TableError> {
        match parse_lower_hex::<TAG_LEN>(s) {
            Some(b) => Ok(Tag(b)),
            None => Err(TableError::InvalidTagText { text: excerpt(s) }),
        }
    }
}

/// Parses exactly `2 * N` lowercase hex digits.
pub(crate) fn parse_lower_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != 2 * N {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nib(s[2 * i])? << 4) | nib(s[2 * i + 1])?;
    }
    Some(out)
}

/// A bit-granular prefix of a tag: the first `bits` bits (0..=128).
///
/// Because the table is sorted by tag, the entries whose tags start with a prefix form one
/// contiguous range. The prefix of length 0 matches every tag.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TagPrefix {
    bits: u8,
    /// The prefix bits, followed by zero bits up to 128.
    padded: [u8; TAG_LEN],
}

impl TagPrefix {
    /// Parses a prefix of `bits` bits given as exactly `ceil(bits/8)` bytes whose unused
    /// low-order bits (in the last byte) are zero.
    pub fn new(bits: u16, bytes: &[u8]) -> Result<Self, TableError> {
        let err = |reason| TableError::InvalidPrefix {
            bits,
            len: bytes.len(),
            reason,
        };
        if bits as usize > 8 * TAG_LEN {
            return Err(err("a prefix has at most 128 bits"));
        }
        let need = (bits as usize).div_ceil(8);
        if bytes.len() != need {
            return Err(err("the prefix must be exactly ceil(bits/8) bytes"));
        }
        let mut padded = [0u8; TAG_LEN];
        padded[..need].copy_from_slice(bytes);
        let p = TagPrefix {
            bits: bits as u8,
            padded,
        };
        if p.mask(&padded) != padded {
            return Err(err("bits after the prefix length must be zero"));
        }
        Ok(p)
    }

    /// The prefix of the first `bits` bits of `tag`.
    pub fn of_tag(tag: &Tag, bits: u8) -> Result<Self, TableError> {
        if bits as usize > 8 * TAG_LEN {
            return Err(TableError::InvalidPrefix {
                bits: bits.into(),
                len: TAG_LEN,
                reason: "a prefix has at most 128 bits",
            });
        }
        let mut p = TagPrefix {
            bits,
            padded: [0u8; TAG_LEN],
        };
        p.padded = p.mask(&tag.0);
        Ok(p)
    }

    /// Length of the prefix in bits.
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// The `ceil(bits/8)` prefix bytes (unused low-order bits of the last byte are zero).
    pub fn as_bytes(&self) -> &[u8] {
        &self.padded[..(self.bits as usize).div_ceil(8)]
    }

    /// The smallest tag with this prefix (the prefix followed by zero bits).
    pub fn first_tag(&self) -> Tag {
        Tag(self.padded)
    }

    /// Whether `tag` starts with this prefix.
    pub fn contains(&self, tag: &Tag) -> bool {
        self.mask(&tag.0) == self.padded
    }

    /// `bytes` with every bit after the first `self.bits` cleared.
    fn mask(&self, bytes: &[u8; TAG_LEN]) -> [u8; TAG_LEN] {
        let mut out = [0u8; TAG_LEN];
        let full = self.bits as usize / 8;
        out[..full].copy_from_slice(&bytes[..full]);
        let rem = self.bits % 8;
        if rem != 0 {
            out[full] = bytes[full] & (0xffu8 << (8 - rem));
        }
        out
    }

    /// Compares `tag` masked to this prefix's length with the prefix (monotone in `tag`).
    pub(crate) fn cmp_tag(&self, tag: &Tag) -> std::cmp::Ordering {
        self.mask(&tag.0).cmp(&self.padded)
    }
}

impl fmt::Display for TagPrefix {
    /// `<bits>/<hex of the prefix bytes>`, e.g. `12/a5f0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/", self.bits)?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TagPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TagPrefix({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_canonical_form() {
        assert!(TagPrefix::new(0, &[]).is_ok());
        assert!(TagPrefix::new(12, &[0xa5, 0xf0]).is_ok());
        assert!(TagPrefix::new(12, &[0xa5, 0xf8]).is_err()); // nonzero bit after the prefix
        assert!(TagPrefix::new(12, &[0xa5]).is_err());
        assert!(TagPrefix::new(12, &[0xa5, 0xf0, 0]).is_err());
        assert!(TagPrefix::new(129, &[0; 17]).is_err());
        assert!(TagPrefix::new(128, &[0xff; 16]).is_ok());
        let t = Tag([0xa5, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
        let p = TagPrefix::of_tag(&t, 12).unwrap();
        assert_eq!(p.as_bytes(), &[0xa5, 0xf0]);
        assert_eq!(p.to_string(), "12/a5f0");
        assert!(p.contains(&t));
        assert!(!p.contains(&Tag([0xa5, 0xef, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])));
        assert!(TagPrefix::of_tag(&t, 0).unwrap().contains(&Tag([0; 16])));
        assert!(TagPrefix::of_tag(&t, 128).unwrap().contains(&t));
    }

    #[test]
    fn tag_text_roundtrip() {
        let t = Tag([0x0f; 16]);
        assert_eq!(t.to_string(), "0f".repeat(16));
        assert_eq!(t.to_string().parse::<Tag>().unwrap(), t);
        assert!("0F".repeat(16).parse::<Tag>().is_err());
        assert!("0f".repeat(15).parse::<Tag>().is_err());
    }
}

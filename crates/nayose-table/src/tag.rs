//! Tags.
//!
//! Invariant: a [`Tag`] is any 9 bytes, ordered bytewise (this is the table's sort order), which
//! is the order of the 72-bit big-endian numbers [`Tag::to_u128`] gives.

use std::fmt;
use std::str::FromStr;

use crate::consts::TAG_LEN;
use crate::error::{TableError, excerpt};

/// The public tag of a table entry: the first 9 bytes of a domain-separated SHA-512 of `o_y`.
///
/// Ordered bytewise (lexicographically), which is the order of the table.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(pub [u8; TAG_LEN]);

impl Tag {
    /// The tag's bytes.
    pub fn as_bytes(&self) -> &[u8; TAG_LEN] {
        &self.0
    }

    /// The tag as a 72-bit big-endian number (the entry blocks code tags as numbers).
    pub fn to_u128(&self) -> u128 {
        self.0.iter().fold(0u128, |a, b| (a << 8) | u128::from(*b))
    }

    /// The tag whose 72-bit big-endian number is `v`; `None` if `v` ≥ 2^72.
    pub fn from_u128(v: u128) -> Option<Tag> {
        if v >> (8 * TAG_LEN) != 0 {
            return None;
        }
        let b = v.to_be_bytes();
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(&b[16 - TAG_LEN..]);
        Some(Tag(t))
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
    /// Parses 18 lowercase hex digits.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_text_roundtrip() {
        let t = Tag([0x0f; 9]);
        assert_eq!(t.to_string(), "0f".repeat(9));
        assert_eq!(t.to_string().parse::<Tag>().unwrap(), t);
        assert!("0F".repeat(9).parse::<Tag>().is_err());
        assert!("0f".repeat(8).parse::<Tag>().is_err());
    }

    #[test]
    fn tag_numbers_keep_the_order() {
        let a = Tag([0, 0, 0, 0, 0, 0, 0, 1, 0xff]);
        let b = Tag([0, 0, 0, 0, 0, 0, 0, 2, 0]);
        assert!(a < b && a.to_u128() < b.to_u128());
        assert_eq!(Tag::from_u128(a.to_u128()), Some(a));
        assert_eq!(Tag::from_u128((1u128 << 72) - 1), Some(Tag([0xff; 9])));
        assert_eq!(Tag::from_u128(1u128 << 72), None);
    }
}

//! Tags.
//!
//! Invariant: a [`Tag`] is any 16 bytes, ordered bytewise (this is the table's sort order).

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_text_roundtrip() {
        let t = Tag([0x0f; 16]);
        assert_eq!(t.to_string(), "0f".repeat(16));
        assert_eq!(t.to_string().parse::<Tag>().unwrap(), t);
        assert!("0F".repeat(16).parse::<Tag>().is_err());
        assert!("0f".repeat(15).parse::<Tag>().is_err());
    }
}

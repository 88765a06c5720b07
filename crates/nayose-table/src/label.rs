//! Labels (pseudonymous per-client person ids) and encrypted labels.
//!
//! Invariant: a label's text form is `"g"` followed by 8 lowercase hex digits (9 ASCII
//! characters); the leading letter keeps spreadsheets from reading a label as a number.

use std::fmt;
use std::str::FromStr;

use crate::consts::{LABEL_LEN, LABEL_TEXT_PREFIX};
use crate::error::{TableError, excerpt};
use crate::tag::parse_lower_hex;

/// A client's pseudonymous label for one person: equal labels (for one client, under one label
/// master key) mean the same person.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label(pub [u8; LABEL_LEN]);

impl Label {
    /// The label's bytes.
    pub fn as_bytes(&self) -> &[u8; LABEL_LEN] {
        &self.0
    }
}

impl fmt::Display for Label {
    /// `g` + 8 lowercase hex digits, e.g. `g0011aabb`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{LABEL_TEXT_PREFIX}")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Label({self})")
    }
}

impl FromStr for Label {
    type Err = TableError;
    /// Parses the text form exactly (`g` + 8 lowercase hex digits; nothing else accepted).
    fn from_str(s: &str) -> Result<Self, TableError> {
        s.strip_prefix(LABEL_TEXT_PREFIX)
            .and_then(parse_lower_hex::<LABEL_LEN>)
            .map(Label)
            .ok_or_else(|| TableError::InvalidLabelText { text: excerpt(s) })
    }
}

/// A label encrypted for one (entry, client, key period, pad epoch): `label XOR pad`
/// (table.md §3.3).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EncryptedLabel(pub [u8; LABEL_LEN]);

impl EncryptedLabel {
    /// The ciphertext bytes as sent on the wire.
    pub fn as_bytes(&self) -> &[u8; LABEL_LEN] {
        &self.0
    }
}

impl fmt::Debug for EncryptedLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptedLabel(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_text() {
        let l = Label([0, 0x11, 0xaa, 0xff]);
        assert_eq!(l.to_string(), "g0011aaff");
        assert_eq!(l.to_string().parse::<Label>().unwrap(), l);
        for bad in [
            "0011aaff",
            "G0011aaff",
            "g0011AAFF",
            "g0011aaf",
            "g0011aaff0",
            "",
        ] {
            assert!(bad.parse::<Label>().is_err(), "{bad}");
        }
    }
}

//! The canonical encoding of an [`InsuredNumber`]: the OPRF input (`protocol-spec/numbers.md` §6).
//!
//! Layout, version 1:
//!
//! ```text
//! 0x01                      version
//! 0x15 "nayose-insured-number"  domain: length byte 21, then 21 ASCII bytes
//! 8 bytes                   保険者番号, ASCII digits (6-digit 国保 numbers padded with "00")
//! 0x00 | 0x01 L s[L]        記号: absent, or present with its length L (1..=76) and UTF-8 bytes
//! L n[L]                    番号: length L (1..=38) and ASCII bytes
//! 0x00 | 0x01 b[2]          枝番: absent, or present with 2 ASCII digits
//! ```
//!
//! Invariants: the encoding is a pure function of the (normalized) fields; it is injective,
//! which [`InsuredNumber::from_canonical_bytes`] proves by decoding every encoding back to the
//! one number it came from (and rejecting any byte string that is not such an encoding).

use crate::error::NumberError;
use crate::fields::{Branch, Number, Symbol};
use crate::insurer::InsurerNumber;
use crate::normalize::normalize;
use crate::number::InsuredNumber;

/// The version byte of the canonical encoding.
pub const ENCODING_VERSION: u8 = 0x01;

/// The domain string that follows the version byte.
pub const ENCODING_DOMAIN: &[u8] = b"nayose-insured-number";

const ABSENT: u8 = 0x00;
const PRESENT: u8 = 0x01;

fn err(reason: &'static str) -> NumberError {
    NumberError::Encoding { reason }
}

fn push_field(out: &mut Vec<u8>, value: &str) {
    // Validation bounds every field: 38 receipt bytes are at most 19 non-ASCII characters of at
    // most 4 UTF-8 bytes each, so 76 bytes, which fits the length byte.
    let len = u8::try_from(value.len()).unwrap_or(u8::MAX);
    out.push(len);
    out.extend_from_slice(value.as_bytes());
}

impl InsuredNumber {
    /// The canonical encoding (version 1): the OPRF input for this number.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + ENCODING_DOMAIN.len() + 8 + 2 + 16 + 1 + 16 + 3);
        out.push(ENCODING_VERSION);
        out.push(ENCODING_DOMAIN.len() as u8);
        out.extend_from_slice(ENCODING_DOMAIN);
        out.extend_from_slice(self.insurer().as_bytes());
        match self.symbol() {
            None => out.push(ABSENT),
            Some(s) => {
                out.push(PRESENT);
                push_field(&mut out, s.as_str());
            }
        }
        push_field(&mut out, self.number().as_str());
        match self.branch() {
            None => out.push(ABSENT),
            Some(b) => {
                out.push(PRESENT);
                out.extend_from_slice(b.as_str().as_bytes());
            }
        }
        out
    }

    /// Decodes a canonical encoding, accepting exactly the byte strings that
    /// [`InsuredNumber::canonical_bytes`] produces (normalized, valid fields; no trailing bytes).
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, NumberError> {
        let mut r = Reader(bytes);
        if r.byte()? != ENCODING_VERSION {
            return Err(err("unknown version byte (expected 0x01)"));
        }
        let dlen = r.byte()?;
        if r.take(usize::from(dlen))? != ENCODING_DOMAIN {
            return Err(err("wrong domain string"));
        }
        let mut digits = [0u8; 8];
        digits.copy_from_slice(r.take(8)?);
        let insurer = InsurerNumber::from_digits(digits)?;
        let symbol = match r.byte()? {
            ABSENT => None,
            PRESENT => {
                let s = r.field()?;
                if s.is_empty() {
                    return Err(err("a present 記号 has length 0"));
                }
                Symbol::parse(s)?
                    .filter(|sym| sym.as_str() == s)
                    .map(Some)
                    .ok_or(err("記号 is not normalized"))?
            }
            _ => return Err(err("invalid presence flag for 記号")),
        };
        let n = r.field()?;
        let number = Number::parse(n)?;
        if number.as_str() != n || normalize(n) != n {
            return Err(err("番号 is not normalized"));
        }
        let branch = match r.byte()? {
            ABSENT => None,
            PRESENT => {
                let mut d = [0u8; 2];
                d.copy_from_slice(r.take(2)?);
                Some(Branch::from_digits(d).ok_or(err("枝番 is not 2 ASCII digits"))?)
            }
            _ => return Err(err("invalid presence flag for 枝番")),
        };
        if !r.0.is_empty() {
            return Err(err("trailing bytes after the 枝番"));
        }
        InsuredNumber::new(insurer, symbol, number, branch)
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], NumberError> {
        if self.0.len() < n {
            return Err(err("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, NumberError> {
        Ok(self.take(1)?[0])
    }

    fn field(&mut self) -> Result<&'a str, NumberError> {
        let len = self.byte()?;
        std::str::from_utf8(self.take(usize::from(len))?).map_err(|_| err("field is not UTF-8"))
    }
}

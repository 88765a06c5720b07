//! 保険者番号 (insurer number): 8 ASCII digits, check digit verified.
//!
//! Invariants of [`InsurerNumber`]:
//! * it always holds exactly 8 ASCII digits: 法別番号 (2) + 都道府県番号 (2) + 保険者別番号 (3) +
//!   検証番号 (1). A 6-digit 国民健康保険 number is stored left-padded with `00` (JP Core
//!   convention; no 法別番号 is `00`, so the padded form is unambiguous);
//! * its last digit is the check digit of the seven before it ([`check_digit`]);
//! * the 法別番号 and 都道府県番号 are *not* checked against tables: the check digit is the
//!   typing-error guard, and a table that lags behind a new insurer must never make a real number
//!   unusable.

use std::fmt;

use crate::error::{Field, NumberError};
use crate::normalize::normalize;
use crate::repair::{Repair, RepairKind};

/// 法別番号 of 後期高齢者医療 (late-stage elderly medical care): numbers without 記号 or 枝番.
pub const LAW_CODE_LATE_ELDERLY: u8 = 39;

/// A validated 8-digit insurer number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InsurerNumber([u8; 8]);

/// The check digit (検証番号) of the digits `body` (the digits before the check digit).
///
/// Weights 2, 1, 2, 1, … are applied from the rightmost digit of `body` leftwards; the decimal
/// digits of each product are summed; the check digit is `(10 − sum mod 10) mod 10`. Leading
/// zeros do not change it (a zero contributes nothing). Returns `None` if `body` holds a byte
/// that is not an ASCII digit.
pub fn check_digit(body: &[u8]) -> Option<u8> {
    let mut sum: u32 = 0;
    for (i, b) in body.iter().rev().enumerate() {
        if !b.is_ascii_digit() {
            return None;
        }
        let d = u32::from(b - b'0');
        let p = if i % 2 == 0 { d * 2 } else { d };
        sum += p / 10 + p % 10;
    }
    // `sum % 10` < 10, so the result is a single digit.
    Some(((10 - sum % 10) % 10) as u8)
}

impl InsurerNumber {
    /// Parses an insurer number field: normalizes it, accepts 8 digits or 6 (国民健康保険, padded
    /// to 8), and verifies the check digit. 7 and 5 digits are an error (see
    /// [`InsurerNumber::parse_with_repair`]).
    pub fn parse(raw: &str) -> Result<Self, NumberError> {
        Self::parse_inner(raw, None)
    }

    /// Like [`InsurerNumber::parse`], but a 7-digit value (an 8-digit number that lost its
    /// leading zero in a spreadsheet) or a 5-digit value (a 6-digit 国民健康保険 number that
    /// lost its leading zero) is restored by left-padding with zeros, provided the padded
    /// number passes the check digit. Each repair is pushed to `repairs`.
    pub fn parse_with_repair(raw: &str, repairs: &mut Vec<Repair>) -> Result<Self, NumberError> {
        Self::parse_inner(raw, Some(repairs))
    }

    fn parse_inner(raw: &str, repairs: Option<&mut Vec<Repair>>) -> Result<Self, NumberError> {
        let value = normalize(raw);
        if value.is_empty() {
            return Err(NumberError::Empty {
                field: Field::Insurer,
            });
        }
        for (i, ch) in value.chars().enumerate() {
            if !ch.is_ascii_digit() {
                return Err(if ch == ' ' {
                    NumberError::InnerSpace {
                        field: Field::Insurer,
                        value,
                    }
                } else {
                    NumberError::InvalidChar {
                        field: Field::Insurer,
                        ch,
                        position: i + 1,
                        value,
                        allowed: "an insurer number holds digits only",
                    }
                });
            }
        }
        let bytes = value.as_bytes();
        let mut out = [b'0'; 8];
        match (bytes.len(), repairs) {
            (8 | 6, _) => out[8 - bytes.len()..].copy_from_slice(bytes),
            (7 | 5, Some(repairs)) => {
                out[8 - bytes.len()..].copy_from_slice(bytes);
                let padded = if bytes.len() == 7 {
                    &out[..]
                } else {
                    &out[2..]
                };
                let to = String::from_utf8_lossy(padded).into_owned();
                // Verified below before the repair is reported as made.
                Self::verify(out)?;
                repairs.push(Repair {
                    field: Field::Insurer,
                    kind: RepairKind::LeadingZero,
                    from: value,
                    to,
                });
            }
            (digits, _) => return Err(NumberError::InsurerLength { value, digits }),
        }
        Self::verify(out)
    }

    fn verify(digits: [u8; 8]) -> Result<Self, NumberError> {
        let expected = check_digit(&digits[..7]).unwrap_or(10);
        let found = digits[7] - b'0';
        if expected != found {
            return Err(NumberError::CheckDigit {
                value: String::from_utf8_lossy(&digits).into_owned(),
                found,
                expected,
            });
        }
        Ok(InsurerNumber(digits))
    }

    /// Builds an insurer number from its 8 ASCII digits, verifying the check digit.
    pub fn from_digits(digits: [u8; 8]) -> Result<Self, NumberError> {
        if let Some(pos) = digits.iter().position(|b| !b.is_ascii_digit()) {
            let value = String::from_utf8_lossy(&digits).into_owned();
            return Err(NumberError::InvalidChar {
                field: Field::Insurer,
                ch: value.chars().nth(pos).unwrap_or('\u{FFFD}'),
                position: pos + 1,
                value,
                allowed: "an insurer number holds digits only",
            });
        }
        Self::verify(digits)
    }

    /// The 8 ASCII digits.
    pub fn as_str(&self) -> &str {
        // Invariant: 8 ASCII digits, always valid UTF-8.
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    /// The 8 ASCII digits as bytes.
    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }

    /// 法別番号 (law code), the first two digits; `0` for 国民健康保険.
    pub fn law_code(&self) -> u8 {
        (self.0[0] - b'0') * 10 + (self.0[1] - b'0')
    }

    /// 都道府県番号 (prefecture code), digits 3–4 (not validated against the 01–47 table).
    pub fn prefecture(&self) -> u8 {
        (self.0[2] - b'0') * 10 + (self.0[3] - b'0')
    }

    /// True for a 国民健康保険 insurer (6-digit number, stored padded with `00`).
    pub fn is_national_health_insurance(&self) -> bool {
        self.law_code() == 0
    }

    /// True for 後期高齢者医療 (法別番号 39).
    pub fn is_late_elderly(&self) -> bool {
        self.law_code() == LAW_CODE_LATE_ELDERLY
    }

    /// Whether this insurer's per-person numbers carry a 2-digit 枝番: every insurer except
    /// 後期高齢者医療 (法別番号 39), whose numbers were always per person.
    pub fn requires_branch(&self) -> bool {
        !self.is_late_elderly()
    }

    /// Whether this insurer's numbers may carry a 記号: every insurer except 法別番号 39.
    pub fn allows_symbol(&self) -> bool {
        !self.is_late_elderly()
    }
}

impl fmt::Display for InsurerNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for InsurerNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InsurerNumber({})", self.as_str())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn known_valid_insurers() {
        for s in ["01130012", "01040013", "33120015"] {
            let n = InsurerNumber::parse(s).unwrap();
            assert_eq!(n.as_str(), s);
        }
        assert_eq!(check_digit(b"0113001"), Some(2));
        assert_eq!(check_digit(b"0104001"), Some(3));
        assert_eq!(check_digit(b"3312001"), Some(5));
    }

    #[test]
    fn check_digit_products_are_digit_summed() {
        // 9*2 = 18 -> 1 + 8 = 9, not 18: sum = 9 -> check 1.
        assert_eq!(check_digit(b"9"), Some(1));
        // 5*2=10 -> 1; 7*1=7; total 8 -> 2.
        assert_eq!(check_digit(b"75"), Some(2));
    }

    #[test]
    fn check_digit_failure_names_expected_digit() {
        let e = InsurerNumber::parse("01130013").unwrap_err();
        assert_eq!(
            e,
            NumberError::CheckDigit {
                value: "01130013".into(),
                found: 3,
                expected: 2
            }
        );
        assert!(e.to_string().contains("require 2"), "{e}");
        // Transposed digits.
        assert!(matches!(
            InsurerNumber::parse("10130012"),
            Err(NumberError::CheckDigit { .. })
        ));
    }

    #[test]
    fn six_digit_kokuho_is_padded() {
        // 138222: check digit of 13822 is 2.
        assert_eq!(check_digit(b"13822"), Some(2));
        let n = InsurerNumber::parse("１３８２２２").unwrap();
        assert_eq!(n.as_str(), "00138222");
        assert!(n.is_national_health_insurance());
        assert_eq!(n.prefecture(), 13);
        assert_eq!(InsurerNumber::parse("00138222").unwrap(), n);
    }

    #[test]
    fn lengths() {
        for (s, d) in [("1130012", 7), ("12345", 5), ("123", 3), ("011300120", 9)] {
            assert_eq!(
                InsurerNumber::parse(s),
                Err(NumberError::InsurerLength {
                    value: s.into(),
                    digits: d
                })
            );
        }
        let e = InsurerNumber::parse("1130012").unwrap_err().to_string();
        assert!(e.contains("leading zero"), "{e}");
        assert!(matches!(
            InsurerNumber::parse(" "),
            Err(NumberError::Empty {
                field: Field::Insurer
            })
        ));
        assert!(matches!(
            InsurerNumber::parse("0113OO12"),
            Err(NumberError::InvalidChar {
                ch: 'O',
                position: 5,
                ..
            })
        ));
    }

    #[test]
    fn repair_restores_leading_zero_only_when_check_digit_passes() {
        let mut r = Vec::new();
        let n = InsurerNumber::parse_with_repair("1130012", &mut r).unwrap();
        assert_eq!(n.as_str(), "01130012");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].from, "1130012");
        assert_eq!(r[0].to, "01130012");
        // 6-digit 国保 013013? check digit of 01301: compute and build a 5-digit damaged one.
        let c = check_digit(b"01301").unwrap();
        let five = format!("1301{c}");
        let mut r = Vec::new();
        let n = InsurerNumber::parse_with_repair(&five, &mut r).unwrap();
        assert_eq!(n.as_str(), format!("0001301{c}"));
        assert_eq!(r[0].to, format!("01301{c}"));
        // A 7-digit value failing the check digit is not repaired.
        let mut r = Vec::new();
        assert!(matches!(
            InsurerNumber::parse_with_repair("1130013", &mut r),
            Err(NumberError::CheckDigit { .. })
        ));
        assert!(r.is_empty());
        // Other lengths are never repaired.
        // Six digits are a 国保 number (padding, not a repair).
        let mut r = Vec::new();
        assert_eq!(
            InsurerNumber::parse_with_repair("113001", &mut r)
                .unwrap()
                .as_str(),
            "00113001"
        );
        assert!(r.is_empty());
        assert!(matches!(
            InsurerNumber::parse_with_repair("1234", &mut Vec::new()),
            Err(NumberError::InsurerLength { digits: 4, .. })
        ));
    }

    #[test]
    fn law_codes() {
        let n = InsurerNumber::parse("39131016").unwrap();
        assert!(n.is_late_elderly());
        assert!(!n.requires_branch());
        assert!(InsurerNumber::parse("01130012").unwrap().requires_branch());
    }
}

//! 記号 (symbol), 番号 (number) and 枝番 (branch): validated, normalized field values.
//!
//! Invariants (see `protocol-spec/numbers.md` §4):
//! * values are normalized ([`crate::normalize()`]) and non-empty; an empty 記号 or 枝番 field
//!   means the field is *absent* (`Option::None` in [`crate::InsuredNumber`]);
//! * [`Symbol`]: ASCII letters and digits, hiragana, katakana (with ー only directly after kana),
//!   the iteration marks ゝゞヽヾ, 々〆〇 and CJK unified ideographs; at most
//!   [`MAX_FIELD_BYTES`] receipt bytes;
//! * [`Number`]: ASCII letters and digits; at most [`MAX_FIELD_BYTES`] bytes;
//! * [`Branch`]: exactly two ASCII digits;
//! * case and leading zeros are significant and never changed.

use std::fmt;

use crate::error::{Field, NumberError};
use crate::normalize::{is_kana, normalize};
use crate::repair::{Repair, RepairKind};

/// The maximum length of 記号 and of 番号, in receipt bytes ([`receipt_bytes`]).
pub const MAX_FIELD_BYTES: usize = 38;

const SYMBOL_ALLOWED: &str = "a 記号 holds ASCII letters and digits, kana, kanji and 々〆〇 \
                              (ー only directly after kana; no dashes or punctuation)";
const NUMBER_ALLOWED: &str = "a 番号 holds ASCII letters and digits only";

/// The length of a normalized value as the receipt specification counts it in Shift_JIS: one
/// byte per ASCII character, two per other character (after NFKC every allowed non-ASCII
/// character is a full-width one).
pub fn receipt_bytes(value: &str) -> usize {
    value
        .chars()
        .map(|c| if c.is_ascii() { 1 } else { 2 })
        .sum()
}

fn is_kanji(c: char) -> bool {
    matches!(c,
        '\u{3400}'..='\u{4DBF}'
        | '\u{4E00}'..='\u{9FFF}'
        // The twelve CJK *unified* ideographs in the compatibility block (NFKC keeps them),
        // e.g. 﨑 U+FA11, present in CP932's IBM extensions.
        | '\u{FA0E}' | '\u{FA0F}' | '\u{FA11}' | '\u{FA13}' | '\u{FA14}' | '\u{FA1F}'
        | '\u{FA21}' | '\u{FA23}' | '\u{FA24}' | '\u{FA27}'..='\u{FA29}'
        | '\u{20000}'..='\u{323AF}')
}

fn symbol_char_ok(prev: Option<char>, c: char) -> bool {
    match c {
        '\u{30FC}' => prev.is_some_and(is_kana),
        c => {
            c.is_ascii_alphanumeric()
                || is_kana(c)
                || matches!(c, '\u{3005}'..='\u{3007}')
                || is_kanji(c)
        }
    }
}

fn check_chars(
    field: Field,
    value: &str,
    ok: impl Fn(Option<char>, char) -> bool,
    allowed: &'static str,
) -> Result<(), NumberError> {
    let mut prev = None;
    for (i, ch) in value.chars().enumerate() {
        if ch == ' ' {
            return Err(NumberError::InnerSpace {
                field,
                value: value.to_owned(),
            });
        }
        if !ok(prev, ch) {
            return Err(NumberError::InvalidChar {
                field,
                ch,
                position: i + 1,
                value: value.to_owned(),
                allowed,
            });
        }
        prev = Some(ch);
    }
    let bytes = receipt_bytes(value);
    if bytes > MAX_FIELD_BYTES {
        return Err(NumberError::TooLong {
            field,
            value: value.to_owned(),
            bytes,
            max: MAX_FIELD_BYTES,
        });
    }
    Ok(())
}

/// A validated, normalized, non-empty 記号.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol(String);

impl Symbol {
    /// Normalizes and validates a 記号 field; an empty field (after trimming) is `Ok(None)`.
    pub fn parse(raw: &str) -> Result<Option<Self>, NumberError> {
        Self::from_normalized(normalize(raw))
    }

    pub(crate) fn from_normalized(value: String) -> Result<Option<Self>, NumberError> {
        if value.is_empty() {
            return Ok(None);
        }
        check_chars(Field::Symbol, &value, symbol_char_ok, SYMBOL_ALLOWED)?;
        Ok(Some(Symbol(value)))
    }

    /// The normalized value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated, normalized, non-empty 番号.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Number(String);

impl Number {
    /// Normalizes and validates a 番号 field; it is required.
    pub fn parse(raw: &str) -> Result<Self, NumberError> {
        Self::from_normalized(normalize(raw))
    }

    pub(crate) fn from_normalized(value: String) -> Result<Self, NumberError> {
        if value.is_empty() {
            return Err(NumberError::Empty {
                field: Field::Number,
            });
        }
        check_chars(
            Field::Number,
            &value,
            |_, c| c.is_ascii_alphanumeric(),
            NUMBER_ALLOWED,
        )?;
        Ok(Number(value))
    }

    /// The normalized value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A 2-digit 枝番.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Branch([u8; 2]);

impl Branch {
    /// Normalizes and validates a 枝番 field; an empty field is `Ok(None)`.
    pub fn parse(raw: &str) -> Result<Option<Self>, NumberError> {
        Self::parse_inner(raw, None)
    }

    /// Like [`Branch::parse`], restoring a 1-digit value to 2 digits (reported in `repairs`).
    pub fn parse_with_repair(
        raw: &str,
        repairs: &mut Vec<Repair>,
    ) -> Result<Option<Self>, NumberError> {
        Self::parse_inner(raw, Some(repairs))
    }

    fn parse_inner(
        raw: &str,
        repairs: Option<&mut Vec<Repair>>,
    ) -> Result<Option<Self>, NumberError> {
        let value = normalize(raw);
        let b = value.as_bytes();
        match (b, repairs) {
            ([], _) => Ok(None),
            ([x, y], _) if x.is_ascii_digit() && y.is_ascii_digit() => Ok(Some(Branch([*x, *y]))),
            ([x], Some(repairs)) if x.is_ascii_digit() => {
                let out = Branch([b'0', *x]);
                repairs.push(Repair {
                    field: Field::Branch,
                    kind: RepairKind::LeadingZero,
                    from: value,
                    to: out.as_str().to_owned(),
                });
                Ok(Some(out))
            }
            _ => Err(NumberError::BranchFormat { value }),
        }
    }

    /// Builds a 枝番 from two ASCII digits.
    pub fn from_digits(digits: [u8; 2]) -> Option<Self> {
        digits
            .iter()
            .all(u8::is_ascii_digit)
            .then_some(Branch(digits))
    }

    /// The two digits.
    pub fn as_str(&self) -> &str {
        // Invariant: two ASCII digits.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

macro_rules! show {
    ($t:ident) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($t), self.as_str())
            }
        }
    };
}
show!(Symbol);
show!(Number);
show!(Branch);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sym(s: &str) -> String {
        Symbol::parse(s).unwrap().unwrap().as_str().to_owned()
    }

    #[test]
    fn symbols_meet_across_widths() {
        assert_eq!(sym("札幌東１２"), "札幌東12");
        assert_eq!(sym("札幌東12"), "札幌東12");
        assert_eq!(sym("ｱｲｳ"), "アイウ");
        assert_eq!(sym("\u{3000}あいう "), "あいう");
        assert_eq!(sym("ＡＢ０６４７"), "AB0647");
        assert_eq!(sym("サービス"), "サービス");
        assert_eq!(sym("佐々木"), "佐々木");
        assert_eq!(sym("𠮷田"), "𠮷田");
        assert_eq!(sym("髙﨑1"), "髙﨑1");
        assert_eq!(Symbol::parse("").unwrap(), None);
        assert_eq!(Symbol::parse("\u{3000}").unwrap(), None);
    }

    #[test]
    fn leading_zeros_and_case_are_significant() {
        assert_ne!(sym("0647"), sym("647"));
        assert_ne!(sym("ab"), sym("AB"));
        assert_ne!(
            Number::parse("0950759").unwrap(),
            Number::parse("950759").unwrap()
        );
    }

    #[test]
    fn symbol_rejections_name_the_character() {
        let e = Symbol::parse("12-34").unwrap_err();
        assert!(matches!(
            e,
            NumberError::InvalidChar {
                ch: '-',
                position: 3,
                field: Field::Symbol,
                ..
            }
        ));
        assert!(e.to_string().contains("U+002D"), "{e}");
        assert!(matches!(
            Symbol::parse("12ー"),
            Err(NumberError::InvalidChar { ch: 'ー', .. })
        ));
        assert!(matches!(
            Symbol::parse("ー1"),
            Err(NumberError::InvalidChar { ch: 'ー', .. })
        ));
        assert!(matches!(
            Symbol::parse("a\u{0}b"),
            Err(NumberError::InvalidChar { ch: '\0', .. })
        ));
        assert!(matches!(
            Symbol::parse("札幌\u{200B}東"),
            Err(NumberError::InvalidChar { ch: '\u{200B}', .. })
        ));
        assert!(matches!(
            Symbol::parse("札幌 東12"),
            Err(NumberError::InnerSpace { .. })
        ));
        assert!(matches!(
            Symbol::parse("札幌\u{3000}東12"),
            Err(NumberError::InnerSpace { .. })
        ));
        assert!(matches!(
            Symbol::parse("a:b"),
            Err(NumberError::InvalidChar { ch: ':', .. })
        ));
    }

    #[test]
    fn lengths_count_receipt_bytes() {
        assert!(Symbol::parse(&"1".repeat(38)).is_ok());
        assert!(matches!(
            Symbol::parse(&"1".repeat(39)),
            Err(NumberError::TooLong {
                bytes: 39,
                max: 38,
                ..
            })
        ));
        // 19 kanji = 38 bytes in Shift_JIS (57 in UTF-8): accepted.
        assert!(Symbol::parse(&"東".repeat(19)).is_ok());
        assert!(matches!(
            Symbol::parse(&"東".repeat(20)),
            Err(NumberError::TooLong { bytes: 40, .. })
        ));
        assert!(Number::parse(&"9".repeat(38)).is_ok());
        assert!(Number::parse(&"9".repeat(39)).is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(Number::parse("１８７").unwrap().as_str(), "187");
        assert!(matches!(
            Number::parse(""),
            Err(NumberError::Empty {
                field: Field::Number
            })
        ));
        assert!(matches!(
            Number::parse("12あ"),
            Err(NumberError::InvalidChar {
                ch: 'あ',
                position: 3,
                ..
            })
        ));
        assert!(matches!(
            Number::parse("12 3"),
            Err(NumberError::InnerSpace { .. })
        ));
        assert!(matches!(
            Number::parse("1.13E+07"),
            Err(NumberError::InvalidChar { ch: '.', .. })
        ));
    }

    #[test]
    fn branches() {
        assert_eq!(Branch::parse("０３").unwrap().unwrap().as_str(), "03");
        assert_eq!(Branch::parse(" ").unwrap(), None);
        for bad in ["3", "003", "ab", "0 3", "-1"] {
            assert!(
                matches!(Branch::parse(bad), Err(NumberError::BranchFormat { .. })),
                "{bad}"
            );
        }
        assert!(
            Branch::parse("3")
                .unwrap_err()
                .to_string()
                .contains("repair")
        );
        let mut r = Vec::new();
        assert_eq!(
            Branch::parse_with_repair("３", &mut r)
                .unwrap()
                .unwrap()
                .as_str(),
            "03"
        );
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].from.as_str(), r[0].to.as_str()), ("3", "03"));
    }
}

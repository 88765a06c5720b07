//! Parsing an [`InsuredNumber`] from separate fields and from one combined string.
//!
//! Accepted combined forms (`protocol-spec/numbers.md` §5), after normalization:
//! * **colon form** (JP Core): the string contains `:` (U+FF1A folds to it) and splits into 4
//!   parts `insurer:symbol:number:branch`, or 3 parts `insurer:symbol:number` (枝番 absent);
//!   an empty 記号 or 枝番 part means absent;
//! * **dashed form** (policy papers): otherwise, the string splits at dash separators
//!   ([`crate::normalize::is_dash_at`]) into
//!   - 2 parts `insurer－tail`: no 記号;
//!   - 3 parts `insurer－symbol－tail`;
//!   - 4 parts `insurer－symbol－number－branch` (枝番 explicitly separated).
//!
//!   With 2 or 3 parts, under 法別番号 39 the tail is the 番号; under any other insurer the last
//!   two characters of the tail are the 枝番 and the rest is the 番号. No part may be empty.
//!
//! Anything else is rejected: no separator, more than 4 parts, an empty part, a tail too short
//! to hold a 番号 and a 枝番.

use crate::error::{Field, NumberError};
use crate::fields::{Branch, Number, Symbol};
use crate::insurer::InsurerNumber;
use crate::normalize::{normalize, split_at_dashes};
use crate::number::InsuredNumber;
use crate::repair::Repair;

/// Options for parsing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// Opt-in repair of spreadsheet damage (lost leading zeros of the insurer number, checked by
    /// the check digit, and of a 1-digit 枝番). Every repair is reported in [`Parsed::repairs`].
    pub repair: bool,
}

/// The four fields of a number as they appear in separate columns (raw, un-normalized).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fields<'a> {
    /// 保険者番号.
    pub insurer: &'a str,
    /// 記号 (empty when absent).
    pub symbol: &'a str,
    /// 番号.
    pub number: &'a str,
    /// 枝番 (empty when absent).
    pub branch: &'a str,
}

/// A parsed number with the repairs made to reach it (empty unless repair was enabled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The number.
    pub number: InsuredNumber,
    /// Repairs made, in field order.
    pub repairs: Vec<Repair>,
}

fn insurer(
    raw: &str,
    opts: ParseOptions,
    repairs: &mut Vec<Repair>,
) -> Result<InsurerNumber, NumberError> {
    if opts.repair {
        InsurerNumber::parse_with_repair(raw, repairs)
    } else {
        InsurerNumber::parse(raw)
    }
}

fn branch(
    raw: &str,
    opts: ParseOptions,
    repairs: &mut Vec<Repair>,
) -> Result<Option<Branch>, NumberError> {
    if opts.repair {
        Branch::parse_with_repair(raw, repairs)
    } else {
        Branch::parse(raw)
    }
}

const NO_SEPARATOR: &str = "no separator found; write insurer－symbol－number followed by the \
                            2-digit branch (dashed form) or insurer:symbol:number:branch (colon form)";

impl InsuredNumber {
    /// Parses separate fields without repair. Empty 記号 / 枝番 mean absent.
    pub fn from_fields(
        insurer: &str,
        symbol: &str,
        number: &str,
        branch: &str,
    ) -> Result<Self, NumberError> {
        Self::from_fields_with(
            Fields {
                insurer,
                symbol,
                number,
                branch,
            },
            ParseOptions::default(),
        )
        .map(|p| p.number)
    }

    /// Parses separate fields with options, returning the repairs made.
    pub fn from_fields_with(fields: Fields<'_>, opts: ParseOptions) -> Result<Parsed, NumberError> {
        let mut repairs = Vec::new();
        let ins = insurer(fields.insurer, opts, &mut repairs)?;
        let sym = Symbol::parse(fields.symbol)?;
        let num = Number::parse(fields.number)?;
        let br = branch(fields.branch, opts, &mut repairs)?;
        Ok(Parsed {
            number: InsuredNumber::new(ins, sym, num, br)?,
            repairs,
        })
    }

    /// Parses a combined string (dashed or colon form) without repair.
    pub fn parse(s: &str) -> Result<Self, NumberError> {
        Self::parse_with(s, ParseOptions::default()).map(|p| p.number)
    }

    /// Parses a combined string (dashed or colon form) with options.
    pub fn parse_with(s: &str, opts: ParseOptions) -> Result<Parsed, NumberError> {
        let value = normalize(s);
        if value.is_empty() {
            return Err(NumberError::Empty {
                field: Field::Combined,
            });
        }
        if value.contains(':') {
            parse_colon(&value, opts)
        } else {
            parse_dashed(&value, opts)
        }
    }
}

impl std::str::FromStr for InsuredNumber {
    type Err = NumberError;

    /// [`InsuredNumber::parse`].
    fn from_str(s: &str) -> Result<Self, NumberError> {
        InsuredNumber::parse(s)
    }
}

fn shape(value: &str, reason: &'static str) -> NumberError {
    NumberError::CombinedForm {
        value: value.to_owned(),
        reason,
    }
}

fn parse_colon(value: &str, opts: ParseOptions) -> Result<Parsed, NumberError> {
    let parts: Vec<&str> = value.split(':').collect();
    let (i, s, n, b) = match parts[..] {
        [i, s, n, b] => (i, s, n, b),
        [i, s, n] => (i, s, n, ""),
        _ => {
            return Err(shape(
                value,
                "the colon form has 4 parts, insurer:symbol:number:branch (or 3 without the branch)",
            ));
        }
    };
    InsuredNumber::from_fields_with(
        Fields {
            insurer: i,
            symbol: s,
            number: n,
            branch: b,
        },
        opts,
    )
}

fn parse_dashed(value: &str, opts: ParseOptions) -> Result<Parsed, NumberError> {
    let parts = split_at_dashes(value);
    if parts.len() == 1 {
        return Err(shape(value, NO_SEPARATOR));
    }
    if parts.len() > 4 {
        return Err(shape(value, "more than 4 parts separated by dashes"));
    }
    if parts.iter().any(|p| normalize(p).is_empty()) {
        return Err(shape(
            value,
            "an empty part between dashes (a 記号 that is absent is left out, with its dash)",
        ));
    }
    let mut repairs = Vec::new();
    let ins = insurer(parts[0], opts, &mut repairs)?;
    let (sym, tail, explicit_branch) = match parts[..] {
        [_, tail] => (None, tail, None),
        [_, s, tail] => (Some(s), tail, None),
        [_, s, n, b] => (Some(s), n, Some(b)),
        _ => return Err(shape(value, NO_SEPARATOR)),
    };
    let sym = match sym {
        Some(s) => Symbol::parse(s)?,
        None => None,
    };
    let (num, br) = match explicit_branch {
        Some(b) => {
            let br = Branch::parse(b)?;
            (Number::parse(tail)?, br)
        }
        None if !ins.requires_branch() => (Number::parse(tail)?, None),
        None => {
            let tail = normalize(tail);
            let split = tail.char_indices().rev().nth(1).map(|(i, _)| i);
            match split {
                Some(i) if i > 0 => {
                    let (n, b) = tail.split_at(i);
                    if !b.bytes().all(|x| x.is_ascii_digit()) {
                        return Err(shape(
                            value,
                            "the final part must end with the 2-digit 枝番 (branch number)",
                        ));
                    }
                    (Number::parse(n)?, Branch::parse(b)?)
                }
                _ => {
                    return Err(shape(
                        value,
                        "the final part must hold the 番号 followed by its 2-digit 枝番",
                    ));
                }
            }
        }
    };
    Ok(Parsed {
        number: InsuredNumber::new(ins, sym, num, br)?,
        repairs,
    })
}

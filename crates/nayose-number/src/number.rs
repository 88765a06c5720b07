//! [`InsuredNumber`]: one individual insured number (保険者番号, 記号, 番号, 枝番).
//!
//! Invariants: every field is normalized and valid on its own (see [`crate::fields`] and
//! [`crate::insurer`]), and together they obey the per-insurer rules of
//! `protocol-spec/numbers.md` §4.5:
//! * under 法別番号 39 (後期高齢者医療) there is no 記号 and no 枝番;
//! * under every other insurer the 枝番 is present (a number without it is the household-level
//!   form and is rejected with [`NumberError::HouseholdLevel`], never guessed);
//! * two values are equal iff their canonical encodings are equal.

use std::fmt;

use crate::error::NumberError;
use crate::fields::{Branch, Number, Symbol};
use crate::insurer::InsurerNumber;

/// One individual insured number. Construct it with [`InsuredNumber::new`],
/// [`InsuredNumber::from_fields`] or [`InsuredNumber::parse`] (see `parse.rs`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InsuredNumber {
    insurer: InsurerNumber,
    symbol: Option<Symbol>,
    number: Number,
    branch: Option<Branch>,
}

impl InsuredNumber {
    /// Assembles a number from validated fields, enforcing the per-insurer rules: no 記号 and no
    /// 枝番 under 法別番号 39; a 枝番 under every other insurer.
    pub fn new(
        insurer: InsurerNumber,
        symbol: Option<Symbol>,
        number: Number,
        branch: Option<Branch>,
    ) -> Result<Self, NumberError> {
        if !insurer.allows_symbol()
            && let Some(s) = &symbol
        {
            return Err(NumberError::UnexpectedSymbol {
                insurer: insurer.to_string(),
                value: s.as_str().to_owned(),
            });
        }
        match (insurer.requires_branch(), &branch) {
            (true, None) => {
                return Err(NumberError::HouseholdLevel {
                    insurer: insurer.to_string(),
                });
            }
            (false, Some(b)) => {
                return Err(NumberError::UnexpectedBranch {
                    insurer: insurer.to_string(),
                    value: b.as_str().to_owned(),
                });
            }
            _ => {}
        }
        Ok(InsuredNumber {
            insurer,
            symbol,
            number,
            branch,
        })
    }

    /// 保険者番号.
    pub fn insurer(&self) -> &InsurerNumber {
        &self.insurer
    }

    /// 記号, absent when the card carries only a 番号.
    pub fn symbol(&self) -> Option<&Symbol> {
        self.symbol.as_ref()
    }

    /// 番号.
    pub fn number(&self) -> &Number {
        &self.number
    }

    /// 枝番, absent only under 法別番号 39.
    pub fn branch(&self) -> Option<&Branch> {
        self.branch.as_ref()
    }

    /// The dashed form as printed on policy papers, with ASCII hyphens:
    /// `insurer-symbol-number‖branch`, `insurer-number‖branch` without 記号, and
    /// `insurer-number` under 法別番号 39. It parses back to the same number.
    pub fn dashed(&self) -> String {
        let mut s = String::with_capacity(64);
        s.push_str(self.insurer.as_str());
        s.push('-');
        if let Some(sym) = &self.symbol {
            s.push_str(sym.as_str());
            s.push('-');
        }
        s.push_str(self.number.as_str());
        if let Some(b) = &self.branch {
            s.push_str(b.as_str());
        }
        s
    }
}

/// The canonical human form: the colon form `insurer:symbol:number:branch` with an 8-digit
/// insurer number and empty 記号 / 枝番 when absent, e.g. `01130012:0647:0950759:03` or
/// `39131016::12345678:`. It parses back to the same number.
impl fmt::Display for InsuredNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.insurer,
            self.symbol.as_ref().map_or("", Symbol::as_str),
            self.number,
            self.branch.as_ref().map_or("", Branch::as_str)
        )
    }
}

impl fmt::Debug for InsuredNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InsuredNumber({self})")
    }
}

//! The one error type of this crate.
//!
//! Invariant: every variant names the field it concerns ([`NumberError::field`]) and says, in
//! words a clerk can act on, what is wrong with it. Values quoted in messages are the
//! *normalized* field values (never more than the field itself), so an error never echoes a whole
//! input row.

use std::fmt;

/// Which part of an insured number an error or repair concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// 保険者番号, the insurer number.
    Insurer,
    /// 記号, the symbol.
    Symbol,
    /// 番号, the number.
    Number,
    /// 枝番, the 2-digit branch number.
    Branch,
    /// A combined string (dashed or colon form) as a whole, before it is split into fields.
    Combined,
    /// The canonical byte encoding (only when decoding bytes).
    Encoding,
}

impl Field {
    /// A short English name for the field, used in column mapping and messages.
    pub fn name(self) -> &'static str {
        match self {
            Field::Insurer => "insurer number",
            Field::Symbol => "symbol",
            Field::Number => "number",
            Field::Branch => "branch",
            Field::Combined => "combined number",
            Field::Encoding => "canonical encoding",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let jp = match self {
            Field::Insurer => "保険者番号 ",
            Field::Symbol => "記号 ",
            Field::Number => "番号 ",
            Field::Branch => "枝番 ",
            Field::Combined | Field::Encoding => "",
        };
        write!(f, "{jp}({})", self.name())
    }
}

/// An insured number (or one of its fields) that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NumberError {
    /// A required field is empty (after trimming spaces).
    #[error("{field}: empty, but a value is required")]
    Empty {
        /// The empty field.
        field: Field,
    },
    /// A character that the field may not contain.
    #[error(
        "{field}: character {ch:?} (U+{code:04X}) at position {position} of {value:?} is not allowed; {allowed}",
        code = u32::from(*ch)
    )]
    InvalidChar {
        /// The field holding the character.
        field: Field,
        /// The offending character (after NFKC normalization).
        ch: char,
        /// 1-based character position in the normalized value.
        position: usize,
        /// The normalized value.
        value: String,
        /// What the field may contain.
        allowed: &'static str,
    },
    /// A space inside a value (leading and trailing spaces are trimmed, inner ones are not).
    #[error(
        "{field}: {value:?} contains a space inside the value; spaces are trimmed only at the ends \
         (is this two fields run together?)"
    )]
    InnerSpace {
        /// The field.
        field: Field,
        /// The normalized value.
        value: String,
    },
    /// A value longer than the receipt specification allows.
    #[error(
        "{field}: {value:?} is {bytes} bytes long counted as in the receipt specification \
         (1 per ASCII character, 2 per other); at most {max} are allowed"
    )]
    TooLong {
        /// The field.
        field: Field,
        /// The normalized value.
        value: String,
        /// Its length in receipt bytes.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// An insurer number with a digit count other than 8 (or 6 for 国民健康保険).
    #[error(
        "保険者番号 (insurer number): {value:?} has {digits} digits; expected 8, or 6 for \
         国民健康保険{hint}",
        hint = if matches!(*digits, 5 | 7) {
            " (a spreadsheet may have dropped a leading zero: enable the leading-zero repair \
             to restore it when the check digit allows)"
        } else {
            ""
        }
    )]
    InsurerLength {
        /// The normalized value.
        value: String,
        /// Its number of digits.
        digits: usize,
    },
    /// An insurer number whose last digit is not its check digit.
    #[error(
        "保険者番号 (insurer number): {value} fails its check digit (検証番号): the last digit is \
         {found} but the digits before it require {expected}; the number is mistyped"
    )]
    CheckDigit {
        /// The (8-digit) insurer number.
        value: String,
        /// The last digit as given.
        found: u8,
        /// The check digit the other digits require.
        expected: u8,
    },
    /// A 枝番 that is not exactly two ASCII digits.
    #[error("枝番 (branch): {value:?} is not exactly 2 digits{hint}",
        hint = if value.len() == 1 && value.bytes().all(|b| b.is_ascii_digit()) {
            " (a spreadsheet may have dropped its leading zero: enable the leading-zero repair)"
        } else {
            ""
        }
    )]
    BranchFormat {
        /// The normalized value.
        value: String,
    },
    /// A number without 枝番 under an insurer whose numbers carry one.
    #[error(
        "枝番 (branch): missing under insurer {insurer}; a number without 枝番 is the \
         household-level form from before numbers became per person — it names a household, \
         not a person, and is not guessed"
    )]
    HouseholdLevel {
        /// The insurer number.
        insurer: String,
    },
    /// A 枝番 under 法別番号 39 (後期高齢者医療), whose numbers were always per person.
    #[error(
        "枝番 (branch): {value:?} given under insurer {insurer}, but 法別番号 39 \
         (後期高齢者医療) numbers are per person and carry no 枝番"
    )]
    UnexpectedBranch {
        /// The insurer number.
        insurer: String,
        /// The 枝番 as given (normalized).
        value: String,
    },
    /// A 記号 under 法別番号 39 (後期高齢者医療), whose cards carry only a 番号.
    #[error(
        "記号 (symbol): {value:?} given under insurer {insurer}, but 法別番号 39 \
         (後期高齢者医療) cards carry only a 番号"
    )]
    UnexpectedSymbol {
        /// The insurer number.
        insurer: String,
        /// The 記号 as given (normalized).
        value: String,
    },
    /// A combined string that is neither a valid dashed form nor a valid colon form.
    #[error("combined number {value:?}: {reason}")]
    CombinedForm {
        /// The normalized string.
        value: String,
        /// What is wrong with its shape.
        reason: &'static str,
    },
    /// Bytes that are not a canonical encoding produced by this crate.
    #[error("canonical encoding: {reason}")]
    Encoding {
        /// What is wrong with the bytes.
        reason: &'static str,
    },
}

impl NumberError {
    /// The field this error concerns.
    pub fn field(&self) -> Field {
        match self {
            NumberError::Empty { field }
            | NumberError::InvalidChar { field, .. }
            | NumberError::InnerSpace { field, .. }
            | NumberError::TooLong { field, .. } => *field,
            NumberError::InsurerLength { .. } | NumberError::CheckDigit { .. } => Field::Insurer,
            NumberError::BranchFormat { .. }
            | NumberError::HouseholdLevel { .. }
            | NumberError::UnexpectedBranch { .. } => Field::Branch,
            NumberError::UnexpectedSymbol { .. } => Field::Symbol,
            NumberError::CombinedForm { .. } => Field::Combined,
            NumberError::Encoding { .. } => Field::Encoding,
        }
    }

    /// True for the household-level form (a number lacking its required 枝番).
    pub fn is_household_level(&self) -> bool {
        matches!(self, NumberError::HouseholdLevel { .. })
    }
}

//! What a pass over a file found besides valid rows: the row-level report.
//!
//! Invariants:
//! * every data row that is invalid, repaired, blank (skipped) or otherwise changed on its way to
//!   a number (full-width or padded values folded, a 枝番 taken from the 番号) yields at least one
//!   [`ReportLine`], handed to the caller's [`ReportSink`] as the row is read — nothing is capped
//!   and nothing is kept, so memory does not grow with the file;
//! * a row unchanged and valid yields no line;
//! * [`ReportReason::code`] strings are stable (snake_case) and may be matched by scripts;
//! * [`ReportCounts`] counts report lines by reason (a row with two folded fields counts twice).

use std::collections::BTreeMap;
use std::fmt;

use nayose_number::{NumberError, Repair};

use crate::error::{CsvError, RowError, RowReason};

/// One repair, with where it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowRepair {
    /// 1-based file line.
    pub line: u64,
    /// Header name of the repaired column.
    pub column: String,
    /// The repair.
    pub repair: Repair,
}

impl fmt::Display for RowRepair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {:?}: {}",
            self.line, self.column, self.repair
        )
    }
}

/// Counts, invalid rows and repairs of one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadReport {
    /// Data rows read (valid and invalid; blank rows are not data rows).
    pub rows: u64,
    /// Valid rows.
    pub valid: u64,
    /// Invalid rows (skipped), in file order.
    pub invalid: Vec<RowError>,
    /// Repairs made, in file order.
    pub repairs: Vec<RowRepair>,
    /// Blank rows skipped (empty, or only delimiters and spaces).
    pub blank_rows: u64,
    /// Report lines by reason.
    pub counts: ReportCounts,
}

/// Why a row appears in the report. [`ReportReason::code`] is its stable name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ReportReason {
    /// The row holds no value (empty, or only delimiters and spaces): skipped.
    BlankRow,
    /// A value was folded before use (full-width to half-width, surrounding spaces trimmed).
    Normalized,
    /// A leading zero lost in a spreadsheet was restored (`--repair`).
    Repaired,
    /// The file has no 枝番 column: the 枝番 was taken from the end of the 番号.
    BranchFromNumber,
    /// A required value is empty.
    EmptyValue,
    /// A space inside a value.
    SpaceInsideValue,
    /// A character the field may not hold.
    InvalidCharacter,
    /// A value longer than the field allows.
    TooLong,
    /// A 保険者番号 of the wrong length (5 or 7 digits: usually lost leading zeros).
    InsurerLength,
    /// A 保険者番号 whose check digit does not match.
    CheckDigit,
    /// A 枝番 that is not 2 digits.
    BranchFormat,
    /// No 枝番 where the insurer requires one (the household-level form).
    MissingBranch,
    /// A 記号 or 枝番 where the insurer (法別番号 39) has none.
    UnexpectedField,
    /// A combined number that is not in the dashed or colon form.
    CombinedForm,
    /// Any other invalid number.
    InvalidNumber,
    /// The row has a different number of fields than the header.
    FieldCount,
    /// The person id of a registry row is empty.
    EmptyPersonId,
    /// A registry row repeats a number already given under the same person (kept once).
    DuplicateRow,
    /// A registry number given under two or more persons (left out of the table).
    NumberConflict,
}

impl ReportReason {
    /// Every reason, in report order.
    pub const ALL: [ReportReason; 19] = [
        ReportReason::BlankRow,
        ReportReason::Normalized,
        ReportReason::Repaired,
        ReportReason::BranchFromNumber,
        ReportReason::EmptyValue,
        ReportReason::SpaceInsideValue,
        ReportReason::InvalidCharacter,
        ReportReason::TooLong,
        ReportReason::InsurerLength,
        ReportReason::CheckDigit,
        ReportReason::BranchFormat,
        ReportReason::MissingBranch,
        ReportReason::UnexpectedField,
        ReportReason::CombinedForm,
        ReportReason::InvalidNumber,
        ReportReason::FieldCount,
        ReportReason::EmptyPersonId,
        ReportReason::DuplicateRow,
        ReportReason::NumberConflict,
    ];

    /// The stable snake_case code written in the report's `reason` column.
    pub fn code(self) -> &'static str {
        match self {
            ReportReason::BlankRow => "blank_row",
            ReportReason::Normalized => "normalized",
            ReportReason::Repaired => "repaired",
            ReportReason::BranchFromNumber => "branch_from_number",
            ReportReason::EmptyValue => "empty_value",
            ReportReason::SpaceInsideValue => "space_inside_value",
            ReportReason::InvalidCharacter => "invalid_character",
            ReportReason::TooLong => "too_long",
            ReportReason::InsurerLength => "insurer_length",
            ReportReason::CheckDigit => "check_digit",
            ReportReason::BranchFormat => "branch_format",
            ReportReason::MissingBranch => "missing_branch",
            ReportReason::UnexpectedField => "unexpected_field",
            ReportReason::CombinedForm => "combined_form",
            ReportReason::InvalidNumber => "invalid_number",
            ReportReason::FieldCount => "field_count",
            ReportReason::EmptyPersonId => "empty_person_id",
            ReportReason::DuplicateRow => "duplicate_row",
            ReportReason::NumberConflict => "number_conflict",
        }
    }

    /// True for reasons that make a row invalid (the others are informational: the row was
    /// skipped as blank, used after a change, or, in a registry, repeated or in conflict with
    /// another row, which `server build` resolves and reports without `--skip-invalid`).
    pub fn is_invalid(self) -> bool {
        !matches!(
            self,
            ReportReason::BlankRow
                | ReportReason::Normalized
                | ReportReason::Repaired
                | ReportReason::BranchFromNumber
                | ReportReason::DuplicateRow
                | ReportReason::NumberConflict
        )
    }

    /// What fixes rows with this reason (or why nothing needs fixing), naming the option to
    /// pass where one helps.
    pub fn hint(self) -> &'static str {
        match self {
            ReportReason::BlankRow => {
                "nothing to fix: rows with no value (empty, or only commas or tabs) are left out"
            }
            ReportReason::Normalized => {
                "nothing to fix: full-width characters and surrounding spaces are folded before \
                 matching"
            }
            ReportReason::Repaired => {
                "check the restored values; to keep leading zeros, format the number columns as \
                 text in Excel before saving"
            }
            ReportReason::BranchFromNumber => {
                "the file has no 枝番 column, so the last 2 digits of the 番号 were read as the \
                 枝番; if the 番号 holds no 枝番, add a 枝番 column and name it with \
                 --branch-column"
            }
            ReportReason::EmptyValue | ReportReason::SpaceInsideValue => {
                "correct the value, or pass --skip-invalid to leave invalid rows out"
            }
            ReportReason::InvalidCharacter | ReportReason::TooLong => {
                "correct the value; if a whole column is wrong, check the column mapping with \
                 --insurer-column, --symbol-column, --number-column, --branch-column"
            }
            ReportReason::InsurerLength => {
                "pass --repair to restore lost leading zeros (checked by the check digit), or \
                 correct the 保険者番号"
            }
            ReportReason::CheckDigit => {
                "correct the 保険者番号 (its check digit does not match), or pass --skip-invalid \
                 to leave invalid rows out"
            }
            ReportReason::BranchFormat => {
                "pass --repair to restore the lost leading zero of a 1-digit 枝番, or correct \
                 the 枝番"
            }
            ReportReason::MissingBranch => {
                "add the 2-digit 枝番 (a number without it is the household-level form), or \
                 pass --skip-invalid to leave invalid rows out"
            }
            ReportReason::UnexpectedField => {
                "法別番号 39 numbers have no 記号 and no 枝番: clear those cells, or check the \
                 column mapping"
            }
            ReportReason::CombinedForm => {
                "write the number as insurer-symbol-number followed by the 2-digit 枝番, or \
                 insurer:symbol:number:branch; or name the separate columns with \
                 --insurer-column, --symbol-column, --number-column"
            }
            ReportReason::InvalidNumber => {
                "correct the value, or pass --skip-invalid to leave invalid rows out"
            }
            ReportReason::FieldCount => {
                "check the row's quoting, and that the delimiter is right (--delimiter comma or \
                 --delimiter tab)"
            }
            ReportReason::EmptyPersonId => {
                "fill in the person id, or pass --skip-invalid to leave invalid rows out"
            }
            ReportReason::DuplicateRow => {
                "nothing to fix: a number repeated under the same person is published once"
            }
            ReportReason::NumberConflict => {
                "correct the registry: one number belongs to one person; until then the number \
                 is left out of the table (no client can link it)"
            }
        }
    }

    /// The reason of a rejected row.
    pub fn of_row_reason(reason: &RowReason) -> Self {
        match reason {
            RowReason::Number(e) => Self::of_number_error(e),
            RowReason::EmptyPersonId => ReportReason::EmptyPersonId,
            RowReason::FieldCount { .. } => ReportReason::FieldCount,
        }
    }

    /// The reason of an invalid number.
    pub fn of_number_error(e: &NumberError) -> Self {
        match e {
            NumberError::Empty { .. } => ReportReason::EmptyValue,
            NumberError::InnerSpace { .. } => ReportReason::SpaceInsideValue,
            NumberError::InvalidChar { .. } => ReportReason::InvalidCharacter,
            NumberError::TooLong { .. } => ReportReason::TooLong,
            NumberError::InsurerLength { .. } => ReportReason::InsurerLength,
            NumberError::CheckDigit { .. } => ReportReason::CheckDigit,
            NumberError::BranchFormat { .. } => ReportReason::BranchFormat,
            NumberError::HouseholdLevel { .. } => ReportReason::MissingBranch,
            NumberError::UnexpectedBranch { .. } | NumberError::UnexpectedSymbol { .. } => {
                ReportReason::UnexpectedField
            }
            NumberError::CombinedForm { .. } => ReportReason::CombinedForm,
            _ => ReportReason::InvalidNumber,
        }
    }
}

impl fmt::Display for ReportReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// One line of the row report: a row (or one of its values) that was invalid, repaired,
/// skipped as blank or changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportLine {
    /// 1-based file line where the row starts (the header is line 1).
    pub line: u64,
    /// Header name of the column concerned; empty when the row as a whole is concerned.
    pub column: String,
    /// The value as written in the file (empty for a row-level line).
    pub written: String,
    /// The value used for matching, if the value was used (`None` for invalid and blank rows).
    pub used: Option<String>,
    /// Why the row is reported.
    pub reason: ReportReason,
    /// A sentence saying what happened, in words a clerk can act on.
    pub message: String,
}

impl ReportLine {
    /// The line for a rejected row; `written` is the cell of the offending column.
    pub fn invalid(error: &RowError, written: &str) -> Self {
        ReportLine {
            line: error.line,
            column: error.column.clone().unwrap_or_default(),
            written: written.to_owned(),
            used: None,
            reason: ReportReason::of_row_reason(&error.reason),
            message: error.reason.to_string(),
        }
    }

    /// The line for a blank row.
    pub(crate) fn blank(line: u64) -> Self {
        ReportLine {
            line,
            column: String::new(),
            written: String::new(),
            used: None,
            reason: ReportReason::BlankRow,
            message: "blank row (no value in any column): skipped".to_owned(),
        }
    }
}

impl fmt::Display for ReportLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if !self.column.is_empty() {
            write!(f, ", column {:?}", self.column)?;
        }
        write!(f, ": {} ({})", self.message, self.reason.code())
    }
}

/// Where report lines go as rows are read: a [`crate::ReportWriter`], or any
/// `FnMut(ReportLine) -> Result<(), CsvError>` closure. An error from the sink ends the read.
pub trait ReportSink {
    /// Takes one report line.
    fn report(&mut self, line: ReportLine) -> Result<(), CsvError>;
}

impl<F: FnMut(ReportLine) -> Result<(), CsvError>> ReportSink for F {
    fn report(&mut self, line: ReportLine) -> Result<(), CsvError> {
        self(line)
    }
}

/// A sink that drops every line (counts are still kept by the readers).
#[derive(Debug, Clone, Copy, Default)]
pub struct DiscardReport;

impl ReportSink for DiscardReport {
    fn report(&mut self, _line: ReportLine) -> Result<(), CsvError> {
        Ok(())
    }
}

/// Report lines counted by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportCounts {
    counts: BTreeMap<ReportReason, u64>,
}

impl ReportCounts {
    /// Counts one line.
    pub fn add(&mut self, reason: ReportReason) {
        *self.counts.entry(reason).or_insert(0) += 1;
    }

    /// The count of `reason`.
    pub fn get(&self, reason: ReportReason) -> u64 {
        self.counts.get(&reason).copied().unwrap_or(0)
    }

    /// All lines counted.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// True when nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The reasons seen, in [`ReportReason::ALL`] order, with their counts (each reason's
    /// [`ReportReason::hint`] says what fixes it).
    pub fn iter(&self) -> impl Iterator<Item = (ReportReason, u64)> + '_ {
        self.counts.iter().map(|(&r, &n)| (r, n))
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &ReportCounts) {
        for (r, n) in other.iter() {
            *self.counts.entry(r).or_insert(0) += n;
        }
    }
}

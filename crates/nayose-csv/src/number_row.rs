//! Reading one row's insured number through a [`ColumnMapping`], with the report lines it
//! yields.
//!
//! Invariants:
//! * parsing and validation are nayose-number's ([`InsuredNumber::from_fields_with`],
//!   [`InsuredNumber::parse_with`]); this module only picks the cells;
//! * without a 枝番 column the 番号 cell carries the 枝番: `番号-枝番` (any dash of
//!   [`nayose_number::normalize::is_dash_at`]) splits at the dash; otherwise, under an insurer that requires a 枝番, the
//!   last two characters (which must be digits) are the 枝番 — the rule of the dashed combined
//!   form (`protocol-spec/numbers.md` §5) — and every such split is reported
//!   ([`ReportReason::BranchFromNumber`]); under 法別番号 39 the cell is the 番号 alone;
//! * a valid row yields one report line per repaired field ([`ReportReason::Repaired`]) and per
//!   field whose cell differs from its normalized value ([`ReportReason::Normalized`]); an
//!   invalid row yields exactly one line, naming the column at fault.

use csv::StringRecord;
use nayose_number::normalize::{is_trimmed_space, split_at_dashes};
use nayose_number::{
    Field, Fields, InsuredNumber, InsurerNumber, NumberError, ParseOptions, Parsed, normalize,
};

use crate::columns::field;
use crate::error::{RowError, RowReason};
use crate::mapping::{ColumnMapping, ColumnRole};
use crate::report::{ReportLine, ReportReason, RowRepair};

#[derive(Debug, Clone, Copy)]
enum Layout {
    Fields {
        insurer: usize,
        symbol: usize,
        number: usize,
        branch: Option<usize>,
    },
    Combined {
        column: usize,
    },
}

/// One row's number, its repairs, and its report lines.
pub(crate) struct Outcome {
    pub(crate) number: Result<InsuredNumber, RowError>,
    pub(crate) repairs: Vec<RowRepair>,
    pub(crate) lines: Vec<ReportLine>,
}

/// Reads numbers from records through a mapping.
#[derive(Debug, Clone)]
pub(crate) struct NumberColumns {
    layout: Layout,
    headers: StringRecord,
    parse: ParseOptions,
}

impl NumberColumns {
    /// The number columns of `mapping` (which [`crate::mapping::resolve`] made complete).
    pub(crate) fn new(mapping: &ColumnMapping, headers: &StringRecord, repair: bool) -> Self {
        let at = |r| mapping.index(r).unwrap_or(0);
        let layout = match mapping.index(ColumnRole::Combined) {
            Some(column) => Layout::Combined { column },
            None => Layout::Fields {
                insurer: at(ColumnRole::Insurer),
                symbol: at(ColumnRole::Symbol),
                number: at(ColumnRole::Number),
                branch: mapping.index(ColumnRole::Branch),
            },
        };
        NumberColumns {
            layout,
            headers: headers.clone(),
            parse: ParseOptions { repair },
        }
    }

    fn name(&self, i: usize) -> String {
        self.headers.get(i).unwrap_or("").to_owned()
    }

    /// The column holding `field`.
    fn column_of(&self, f: Field) -> usize {
        match self.layout {
            Layout::Combined { column } => column,
            Layout::Fields {
                insurer,
                symbol,
                number,
                branch,
            } => match f {
                Field::Symbol => symbol,
                Field::Number | Field::Combined => number,
                Field::Branch => branch.unwrap_or(number),
                _ => insurer,
            },
        }
    }

    /// Parses the number of `record` (from file line `line`).
    pub(crate) fn parse(&self, line: u64, record: &StringRecord) -> Outcome {
        let mut lines = Vec::new();
        let parsed = match self.layout {
            Layout::Combined { column } => {
                InsuredNumber::parse_with(field(record, column), self.parse)
            }
            Layout::Fields {
                insurer,
                symbol,
                number,
                branch: Some(branch),
            } => InsuredNumber::from_fields_with(
                Fields {
                    insurer: field(record, insurer),
                    symbol: field(record, symbol),
                    number: field(record, number),
                    branch: field(record, branch),
                },
                self.parse,
            ),
            Layout::Fields {
                insurer,
                symbol,
                number,
                branch: None,
            } => self.parse_without_branch(line, record, [insurer, symbol, number], &mut lines),
        };
        match parsed {
            Ok(p) => self.valid(line, record, p, lines),
            Err(e) => {
                let column = self.column_of(e.field());
                let error = RowError {
                    line,
                    column: Some(self.name(column)),
                    reason: RowReason::Number(e),
                };
                let report = ReportLine::invalid(&error, field(record, column));
                Outcome {
                    number: Err(error),
                    repairs: Vec::new(),
                    lines: vec![report],
                }
            }
        }
    }

    fn valid(
        &self,
        line: u64,
        record: &StringRecord,
        p: Parsed,
        mut lines: Vec<ReportLine>,
    ) -> Outcome {
        let mut repairs = Vec::with_capacity(p.repairs.len());
        let mut repaired_columns = Vec::new();
        for repair in p.repairs {
            let column = self.column_of(repair.field);
            repaired_columns.push(column);
            lines.push(ReportLine {
                line,
                column: self.name(column),
                written: field(record, column).to_owned(),
                used: Some(repair.to.clone()),
                reason: ReportReason::Repaired,
                message: repair.to_string(),
            });
            repairs.push(RowRepair {
                line,
                column: self.name(column),
                repair,
            });
        }
        let cells: Vec<usize> = match self.layout {
            Layout::Combined { column } => vec![column],
            Layout::Fields {
                insurer,
                symbol,
                number,
                branch,
            } => {
                let split = lines
                    .iter()
                    .any(|l| l.reason == ReportReason::BranchFromNumber);
                let mut v = vec![insurer, symbol];
                if !split {
                    v.push(number);
                }
                v.extend(branch);
                v
            }
        };
        for column in cells {
            if repaired_columns.contains(&column) {
                continue;
            }
            let written = field(record, column);
            if written.is_ascii()
                && !written.starts_with(is_trimmed_space)
                && !written.ends_with(is_trimmed_space)
            {
                // Normalization is the identity on trimmed ASCII (the common case).
                continue;
            }
            let used = normalize(written);
            if !used.is_empty() && used != written {
                lines.push(ReportLine {
                    line,
                    column: self.name(column),
                    written: written.to_owned(),
                    message: format!("{written:?} was read as {used:?}"),
                    used: Some(used),
                    reason: ReportReason::Normalized,
                });
            }
        }
        Outcome {
            number: Ok(p.number),
            repairs,
            lines,
        }
    }

    /// Separate columns without a 枝番 column (see the module invariants).
    fn parse_without_branch(
        &self,
        line: u64,
        record: &StringRecord,
        [insurer, symbol, number]: [usize; 3],
        lines: &mut Vec<ReportLine>,
    ) -> Result<Parsed, NumberError> {
        let fields = |number, branch| Fields {
            insurer: field(record, insurer),
            symbol: field(record, symbol),
            number,
            branch,
        };
        let mut scratch = Vec::new();
        let ins = if self.parse.repair {
            InsurerNumber::parse_with_repair(field(record, insurer), &mut scratch)
        } else {
            InsurerNumber::parse(field(record, insurer))
        };
        let written = field(record, number);
        let value = normalize(written);
        let Ok(ins) = ins else {
            // The insurer error comes first, as it would with a 枝番 column.
            return InsuredNumber::from_fields_with(fields(&value, ""), self.parse);
        };
        let parts = split_at_dashes(&value);
        let (num, br, how) = match parts[..] {
            [n, b] => (n, b, "the 枝番 was read from after the dash in the 番号"),
            [_] if !ins.requires_branch() => {
                return InsuredNumber::from_fields_with(fields(&value, ""), self.parse);
            }
            [whole] => {
                let split = whole.char_indices().rev().nth(1).map(|(i, _)| i);
                match split {
                    Some(i) if i > 0 && whole[i..].bytes().all(|b| b.is_ascii_digit()) => (
                        &whole[..i],
                        &whole[i..],
                        "the file has no 枝番 column: the last 2 digits of the 番号 were read \
                         as the 枝番",
                    ),
                    _ => {
                        return Err(NumberError::CombinedForm {
                            value: value.clone(),
                            reason: "the file has no 枝番 column, so the 番号 must end with its \
                                     2-digit 枝番",
                        });
                    }
                }
            }
            _ => {
                return Err(NumberError::CombinedForm {
                    value: value.clone(),
                    reason: "a 番号 holding its 枝番 has at most one dash, 番号-枝番",
                });
            }
        };
        let parsed = InsuredNumber::from_fields_with(fields(num, br), self.parse)?;
        lines.push(ReportLine {
            line,
            column: self.name(number),
            written: written.to_owned(),
            used: Some(format!("{num} {br}")),
            reason: ReportReason::BranchFromNumber,
            message: format!("{how}: 番号 {num:?}, 枝番 {br:?}"),
        });
        Ok(parsed)
    }
}

/// The error of a row whose field count differs from the header's.
pub(crate) fn check_width(
    line: u64,
    record: &StringRecord,
    expected: usize,
) -> Result<(), RowError> {
    if record.len() == expected {
        return Ok(());
    }
    Err(RowError {
        line,
        column: None,
        reason: RowReason::FieldCount {
            expected,
            found: record.len(),
        },
    })
}

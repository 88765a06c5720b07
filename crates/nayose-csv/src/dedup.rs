//! [`HeldSet`]: the client's distinct numbers and the map from each input row to its number.
//!
//! Invariants: memory is the set of distinct numbers plus 4 bytes per input row — never the rows
//! themselves; number indices are dense (`0..len()`), assigned in order of first appearance, so
//! the OPRF batch is [`HeldSet::canonical_inputs`] and result `i` belongs to number `i`; every
//! row maps to exactly one number index or to none (invalid, skipped).

use std::collections::HashMap;
use std::io::Read;

use nayose_number::InsuredNumber;

use crate::error::{CsvError, RowError};
use crate::held::{HeldReader, HeldRow};
use crate::options::InvalidRows;
use crate::report::{DiscardReport, ReportCounts, ReportSink, RowRepair};

const NONE: u32 = u32::MAX;

/// Distinct held numbers and the row → number map.
#[derive(Debug, Default, Clone)]
pub struct HeldSet {
    index: HashMap<InsuredNumber, u32>,
    rows: Vec<u32>,
    invalid: Vec<RowError>,
    repairs: Vec<RowRepair>,
    counts: ReportCounts,
    blank_rows: u64,
}

impl HeldSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads every row of `reader` (first pass). With [`InvalidRows::Report`], any invalid row
    /// makes the result [`CsvError::InvalidRows`] listing all of them.
    pub fn build<R: Read>(reader: HeldReader<R>, policy: InvalidRows) -> Result<Self, CsvError> {
        Self::build_with_report(reader, policy, &mut DiscardReport)
    }

    /// [`HeldSet::build`], handing every report line to `report` as the rows are read; the
    /// counts by reason are kept ([`HeldSet::report_counts`]).
    pub fn build_with_report<R: Read>(
        mut reader: HeldReader<R>,
        policy: InvalidRows,
        report: &mut (impl ReportSink + ?Sized),
    ) -> Result<Self, CsvError> {
        let mut set = HeldSet::new();
        while let Some(row) = reader.next_row(report)? {
            set.push(row)?;
        }
        set.counts = reader.report_counts().clone();
        set.blank_rows = reader.blank_rows();
        if policy == InvalidRows::Report && !set.invalid.is_empty() {
            return Err(CsvError::InvalidRows {
                errors: set.invalid,
            });
        }
        Ok(set)
    }

    /// Records one row (rows must be pushed in file order, each once); returns its number index.
    pub fn push(&mut self, row: HeldRow) -> Result<Option<u32>, CsvError> {
        if self.rows.len() as u64 != row.index {
            return Err(CsvError::ChangedBetweenPasses { line: row.line });
        }
        if self.rows.len() >= (NONE - 1) as usize {
            return Err(CsvError::TooManyRows {
                max: u64::from(NONE - 1),
            });
        }
        self.repairs.extend(row.repairs);
        let slot = match row.number {
            Ok(n) => {
                let next = self.index.len() as u32;
                *self.index.entry(n).or_insert(next)
            }
            Err(e) => {
                self.invalid.push(e);
                NONE
            }
        };
        self.rows.push(slot);
        Ok((slot != NONE).then_some(slot))
    }

    /// The number of distinct valid numbers.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when no valid number was read.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The number of data rows read (valid and invalid).
    pub fn row_count(&self) -> usize {
        self.rows.len()
    }

    /// The number index of data row `row_index` (0-based), or `None` for an invalid row or an
    /// index beyond the rows read.
    pub fn number_of_row(&self, row_index: u64) -> Option<u32> {
        let i = usize::try_from(row_index).ok()?;
        self.rows.get(i).copied().filter(|&s| s != NONE)
    }

    /// The index of `number`, if held.
    pub fn index_of(&self, number: &InsuredNumber) -> Option<u32> {
        self.index.get(number).copied()
    }

    /// The distinct numbers, in index order.
    pub fn distinct(&self) -> Vec<&InsuredNumber> {
        let mut out: Vec<Option<&InsuredNumber>> = vec![None; self.index.len()];
        for (n, &i) in &self.index {
            out[i as usize] = Some(n);
        }
        out.into_iter().flatten().collect()
    }

    /// The canonical encodings (OPRF inputs) of the distinct numbers, in index order.
    pub fn canonical_inputs(&self) -> Vec<Vec<u8>> {
        self.distinct()
            .into_iter()
            .map(InsuredNumber::canonical_bytes)
            .collect()
    }

    /// Invalid rows seen (skipped when the policy was [`InvalidRows::Skip`]), in file order.
    pub fn invalid_rows(&self) -> &[RowError] {
        &self.invalid
    }

    /// Repairs made, in file order.
    pub fn repairs(&self) -> &[RowRepair] {
        &self.repairs
    }

    /// Report lines of the first pass by reason (filled by [`HeldSet::build`] and
    /// [`HeldSet::build_with_report`]).
    pub fn report_counts(&self) -> &ReportCounts {
        &self.counts
    }

    /// Blank rows skipped in the first pass (filled by [`HeldSet::build`]).
    pub fn blank_rows(&self) -> u64 {
        self.blank_rows
    }

    /// Second pass: checks that `row` is what the first pass read at its index (same validity,
    /// same number) and returns its number index. An unchanged file always passes.
    pub fn check_row(&self, row: &HeldRow) -> Result<Option<u32>, CsvError> {
        let changed = || CsvError::ChangedBetweenPasses { line: row.line };
        let i = usize::try_from(row.index).map_err(|_| changed())?;
        let slot = *self.rows.get(i).ok_or_else(changed)?;
        match (&row.number, slot) {
            (Err(_), NONE) => Ok(None),
            (Ok(n), s) if s != NONE && self.index.get(n) == Some(&s) => Ok(Some(s)),
            _ => Err(changed()),
        }
    }
}

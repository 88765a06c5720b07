//! What a whole pass over a file found besides valid rows.

use nayose_number::Repair;

use crate::error::RowError;

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

impl std::fmt::Display for RowRepair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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
    /// Data rows read (valid and invalid).
    pub rows: u64,
    /// Valid rows.
    pub valid: u64,
    /// Invalid rows (skipped), in file order.
    pub invalid: Vec<RowError>,
    /// Repairs made, in file order.
    pub repairs: Vec<RowRepair>,
}

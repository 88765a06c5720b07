//! Opt-in repairs of spreadsheet damage, each one reported.
//!
//! Invariants: a repair is only ever made when [`crate::ParseOptions::repair`] is set, and every
//! repair made is returned as a [`Repair`] so the caller can report it. Exactly two repairs exist:
//! * an insurer number of 7 digits (an 8-digit number whose leading `0` was dropped) or 5 digits
//!   (a 6-digit 国民健康保険 number whose leading `0` was dropped) is left-padded with zeros, and
//!   accepted only if the padded number passes the check digit;
//! * a 1-digit 枝番 is left-padded to 2 digits (a 枝番 is a 2-digit code, so `3` can only be
//!   `03`).
//!
//! Leading zeros lost from 記号 or 番号 cannot be restored (they carry no check digit and their
//! lengths vary); such numbers simply do not match.

use std::fmt;

use crate::error::Field;

/// The kind of a repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RepairKind {
    /// A leading zero dropped by a spreadsheet was restored.
    LeadingZero,
}

/// One repair made while parsing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repair {
    /// The field repaired.
    pub field: Field,
    /// What was repaired.
    pub kind: RepairKind,
    /// The normalized value before the repair.
    pub from: String,
    /// The value after the repair (as it would have been written, e.g. 6 digits for 国保).
    pub to: String,
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            RepairKind::LeadingZero => {
                write!(
                    f,
                    "{}: restored lost leading zero, {:?} -> {:?}",
                    self.field, self.from, self.to
                )?;
                if self.field == Field::Insurer {
                    f.write_str(" (check digit passes)")?;
                }
                Ok(())
            }
        }
    }
}

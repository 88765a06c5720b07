//! What a build reports: the [`BuildReport`] and its summary as printed, the phases' times and
//! the conflicts found.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use nayose_csv::{ReportCounts, RowError};

use super::SHOWN;

/// One number found under two or more persons: left out of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Registry lines (1-based, header = 1) holding the number, ascending.
    pub lines: Vec<u64>,
    /// How many different persons those lines name.
    pub persons: usize,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.lines.iter().map(u64::to_string).collect();
        write!(
            f,
            "lines {}: the same number under {} different persons (left out of the table)",
            lines.join(", "),
            self.persons
        )
    }
}

/// Durations of the build's phases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhaseTimes {
    /// Reading and checking the previous epoch (table, persons, number index).
    pub load: Duration,
    /// Reading and parsing the registry.
    pub read: Duration,
    /// Sorting by number, resolving duplicates and conflicts, and the diff against the
    /// previous epoch.
    pub sort: Duration,
    /// OPRF evaluation of the added numbers and tag / label-key derivation.
    pub evaluate: Duration,
    /// Sorting by tag, digest, delta, writing and syncing the files.
    pub write: Duration,
    /// Renaming into place and switching `current`.
    pub publish: Duration,
}

/// What [`build_epoch`] did.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The registry file.
    pub registry: PathBuf,
    /// The registry's encoding as detected or chosen.
    pub encoding: &'static str,
    /// The new epoch's number.
    pub epoch_number: u32,
    /// The previous epoch of the same key period (`None` for the first epoch of a key period).
    pub previous_epoch: Option<u32>,
    /// The key period id as displayed, `<number>-<16 hex digits>`.
    pub key_period: String,
    /// The key period's number.
    pub key_period_number: u64,
    /// Whether this build started the key period.
    pub new_key_period: bool,
    /// The key period's VOPRF public key, hex.
    pub public_key: String,
    /// Public id of the key period's label master key.
    pub label_master_key_id: String,
    /// Whether this build created the label master key (first build of the data directory).
    pub label_master_key_created: bool,
    /// Data rows read (valid and rejected).
    pub rows: u64,
    /// Table entries: distinct numbers published.
    pub numbers: u64,
    /// Persons with at least one published number.
    pub persons: u64,
    /// Entries added against the previous epoch (every entry in a new key period).
    pub added: u64,
    /// Entries of the previous epoch whose number is gone.
    pub removed: u64,
    /// Entries whose number moved to another person.
    pub relabelled: u64,
    /// Numbers evaluated under the key period's key (the added ones).
    pub evaluated: u64,
    /// The table digest of the new epoch, hex.
    pub digest: String,
    /// Rows repeating a number already seen under the same person (kept once).
    pub duplicate_rows: u64,
    /// Rows rejected as invalid (only with `skip_invalid`; otherwise the build fails).
    pub rejected: Vec<RowError>,
    /// Repairs made (only with `repair`).
    pub repairs: u64,
    /// Numbers under two or more persons, left out.
    pub conflicts: Vec<Conflict>,
    /// How the registry's columns were found, one line per field.
    pub mapping: String,
    /// Report lines by reason (rejected, repaired, changed, duplicate and conflicting rows).
    pub report_counts: ReportCounts,
    /// The row report written, if one was asked for.
    pub report: Option<PathBuf>,
    /// Phase durations.
    pub phases: PhaseTimes,
    /// Whole build.
    pub total: Duration,
    /// Peak resident memory of this process so far, in bytes (`VmHWM` of /proc/self/status;
    /// `None` where the system does not tell). For `nayose server build`, the build's peak.
    pub peak_resident: Option<u64>,
    /// Epoch directories deleted after publication.
    pub pruned: Vec<u32>,
    /// Delta files deleted after publication.
    pub pruned_deltas: Vec<u32>,
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

impl fmt::Display for BuildReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "published epoch {} (key period {}{}) in {}",
            self.epoch_number,
            self.key_period,
            if self.new_key_period {
                ", new key period"
            } else {
                ""
            },
            self.data_dir.display()
        )?;
        match self.previous_epoch {
            Some(p) => writeln!(f, "  previous epoch   {p}")?,
            None => writeln!(
                f,
                "  previous epoch   none (first epoch of the key period: clients download a base)"
            )?,
        }
        writeln!(f, "  public key       {}", self.public_key)?;
        writeln!(
            f,
            "  label master key {}{}",
            self.label_master_key_id,
            if self.label_master_key_created {
                " (created)"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "  registry         {} ({})",
            self.registry.display(),
            self.encoding
        )?;
        writeln!(f, "  rows             {}", self.rows)?;
        writeln!(f, "  numbers          {}", self.numbers)?;
        writeln!(f, "  persons          {}", self.persons)?;
        writeln!(f, "  added            {}", self.added)?;
        writeln!(f, "  removed          {}", self.removed)?;
        writeln!(f, "  relabelled       {}", self.relabelled)?;
        writeln!(f, "  evaluated        {}", self.evaluated)?;
        writeln!(f, "  digest           {}", self.digest)?;
        writeln!(f, "  duplicate rows   {}", self.duplicate_rows)?;
        writeln!(f, "  rejected rows    {}", self.rejected.len())?;
        writeln!(f, "  repairs          {}", self.repairs)?;
        writeln!(f, "  conflicts        {}", self.conflicts.len())?;
        let p = &self.phases;
        writeln!(
            f,
            "  time             load {}, read {}, sort {}, evaluate {}, write {}, publish {}, total {}",
            secs(p.load),
            secs(p.read),
            secs(p.sort),
            secs(p.evaluate),
            secs(p.write),
            secs(p.publish),
            secs(self.total)
        )?;
        if let Some(peak) = self.peak_resident {
            writeln!(
                f,
                "  peak memory      {peak} bytes resident ({:.1} MB, {:.0} bytes per number)",
                peak as f64 / 1e6,
                peak as f64 / self.numbers.max(1) as f64
            )?;
        }
        if !self.mapping.is_empty() {
            writeln!(f, "  columns")?;
            for l in self.mapping.lines() {
                writeln!(f, "    {l}")?;
            }
        }
        if !self.report_counts.is_empty() {
            writeln!(f, "  rows reported, by reason")?;
            for (reason, n) in self.report_counts.iter() {
                writeln!(f, "    {:<18} {n:>9}  {}", reason.code(), reason.hint())?;
            }
            match &self.report {
                Some(r) => writeln!(f, "  report           {} (every such row)", r.display())?,
                None => writeln!(
                    f,
                    "  report           pass --report FILE to list every such row"
                )?,
            }
        }
        for r in self.rejected.iter().take(SHOWN) {
            writeln!(f, "  rejected: {r}")?;
        }
        if self.rejected.len() > SHOWN {
            writeln!(
                f,
                "  ... and {} more rejected rows",
                self.rejected.len() - SHOWN
            )?;
        }
        for c in self.conflicts.iter().take(SHOWN) {
            writeln!(f, "  conflict: {c}")?;
        }
        if self.conflicts.len() > SHOWN {
            writeln!(
                f,
                "  ... and {} more conflicts",
                self.conflicts.len() - SHOWN
            )?;
        }
        if !self.pruned.is_empty() {
            let p: Vec<String> = self.pruned.iter().map(u32::to_string).collect();
            writeln!(f, "  removed old epochs {}", p.join(", "))?;
        }
        if !self.pruned_deltas.is_empty() {
            writeln!(
                f,
                "  removed {} old delta file(s)",
                self.pruned_deltas.len()
            )?;
        }
        Ok(())
    }
}

//! The summary of a finished run: JSON for scripts (`--json`), text for people (stderr).
//!
//! Invariants: counts only, never a number or a label; `linked + not_found + invalid` row
//! counts add up to `rows`, and the histogram's `size * groups` adds up to `linked_numbers`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use nayose_csv::ReportReason;
use serde::Serialize;

use crate::progress::Phase;

/// How the run brought its table up to date (`sync` in the JSON summary).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncSummary {
    /// `current` (the cached table was already at the server's epoch), `delta` (deltas from
    /// `from` to `to`) or `base` (a base download of `to`, resumed at `resumed_from` entries).
    pub kind: String,
    /// The cached table's epoch (delta only).
    pub from: Option<u32>,
    /// The epoch reached.
    pub to: u32,
    /// Entries already held when a base download resumed (base only).
    pub resumed_from: Option<u64>,
    /// Entries the deltas added.
    pub added: u64,
    /// Entries the deltas removed.
    pub removed: u64,
    /// Entries the deltas relabelled.
    pub relabelled: u64,
}

/// What a link run did. `Serialize` gives the `--json` form; `Display` the human summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LinkSummary {
    /// Data rows read.
    pub rows: u64,
    /// Distinct valid numbers.
    pub distinct_numbers: u64,
    /// Rows whose number was found.
    pub linked_rows: u64,
    /// Rows whose number the server does not know.
    pub not_found_rows: u64,
    /// Rows without a valid number.
    pub invalid_rows: u64,
    /// Distinct numbers found.
    pub linked_numbers: u64,
    /// Distinct numbers not found.
    pub not_found_numbers: u64,
    /// Groups (persons) among the found numbers.
    pub groups: u64,
    /// group size → number of groups.
    pub group_size_histogram: BTreeMap<u64, u64>,
    /// Repairs made (with `--repair`).
    pub repaired: u64,
    /// The first invalid rows, as messages.
    pub invalid_examples: Vec<String>,
    /// The same rows as (line, column, reason code), for messages in other languages (not in
    /// the JSON).
    #[serde(skip)]
    pub invalid_example_rows: Vec<(u64, Option<String>, String)>,
    /// Report lines by reason code (`repaired`, `check_digit`, `blank_row`, …; see
    /// `nayose_csv::ReportReason`): every invalid, repaired, blank-skipped or changed row.
    pub report_counts: BTreeMap<String, u64>,
    /// The row report written (`--report`), if any.
    pub report: Option<String>,
    /// Which input column served which field: field (`insurer_number`, `symbol`, `number`,
    /// `branch` or `insured_number`) → header name.
    pub columns: BTreeMap<String, String>,
    /// True when the input has separate columns but no 枝番 column: the 枝番 is read from the
    /// end of the 番号.
    pub branch_in_number: bool,
    /// The input's encoding as detected or given (`UTF-8`, `CP932`, `UTF-16LE`, …).
    pub input_encoding: String,
    /// The output's and the report's encoding (`utf-8-bom`, `utf-8` or `cp932`).
    pub output_encoding: String,
    /// Application bytes sent (frames, all connections).
    pub bytes_sent: u64,
    /// Application bytes received (frames, all connections).
    pub bytes_received: u64,
    /// Numbers the server evaluated in this run (charged to the quotas).
    pub evaluated_numbers: u64,
    /// Numbers whose OPRF output came from the cache of this key period.
    pub numbers_from_cache: u64,
    /// Evaluate requests sent.
    pub evaluate_requests: u64,
    /// Table entries received (base downloads).
    pub entries_received: u64,
    /// Entries in the table of the epoch.
    pub table_entries: u64,
    /// Connections opened.
    pub connections: u64,
    /// The epoch of the results.
    pub epoch: u32,
    /// The key period of the results (`<number>-<16 hex digits>`).
    pub key_period: String,
    /// How the table was brought up to date.
    pub sync: SyncSummary,
    /// The certificate's name (its CommonName, or its subject when that is not an id).
    pub client_id: String,
    /// The entity the server derived from the certificate (Info `entity`): the labels' domain.
    pub entity: String,
    /// Milliseconds per phase.
    pub phase_ms: BTreeMap<Phase, u64>,
    /// Milliseconds in all.
    pub total_ms: u64,
}

impl LinkSummary {
    pub(crate) fn add_phase(&mut self, phase: Phase, d: Duration) {
        *self.phase_ms.entry(phase).or_insert(0) += d.as_millis() as u64;
    }
}

/// A byte count as a person reads it: `812 B`, `2.0 KiB`, `3.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Most lines of the summary that quote invalid rows.
pub const SHOWN_INVALID: usize = 20;

impl LinkSummary {
    fn fmt_input(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.columns.is_empty() {
            let order = [
                "insured_number",
                "insurer_number",
                "symbol",
                "number",
                "branch",
            ];
            let cols: Vec<String> = order
                .iter()
                .filter_map(|field| {
                    self.columns
                        .get(*field)
                        .map(|header| format!("{header} → {field}"))
                })
                .collect();
            writeln!(
                f,
                "columns: {}{}",
                cols.join(", "),
                if self.branch_in_number {
                    " (no 枝番 column: the 枝番 is read from the end of the 番号)"
                } else {
                    ""
                }
            )?;
        }
        if !self.input_encoding.is_empty() {
            writeln!(
                f,
                "encoding: input {}, output {}",
                self.input_encoding, self.output_encoding
            )?;
        }
        if !self.invalid_examples.is_empty() {
            let shown = self.invalid_examples.len().min(SHOWN_INVALID);
            writeln!(f, "invalid rows (left out):")?;
            for e in &self.invalid_examples[..shown] {
                writeln!(f, "  {e}")?;
            }
            let rest = self.invalid_rows.saturating_sub(shown as u64);
            if rest > 0 {
                match &self.report {
                    Some(r) => {
                        writeln!(f, "  ... and {rest} more: the report {r} lists every one")?
                    }
                    None => writeln!(
                        f,
                        "  ... and {rest} more: pass --report FILE to list every one"
                    )?,
                }
            }
        }
        if !self.report_counts.is_empty() {
            writeln!(f, "report lines by reason (what fixes them):")?;
            for reason in ReportReason::ALL {
                if let Some(n) = self.report_counts.get(reason.code()) {
                    writeln!(f, "  {} {n}: {}", reason.code(), reason.hint())?;
                }
            }
            if let Some(r) = &self.report {
                writeln!(f, "  every line is in the report {r}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for LinkSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_input(f)?;
        writeln!(
            f,
            "rows {}: linked {}, not found {}, invalid {}",
            self.rows, self.linked_rows, self.not_found_rows, self.invalid_rows
        )?;
        writeln!(
            f,
            "distinct numbers {}: found {}, not found {}{}",
            self.distinct_numbers,
            self.linked_numbers,
            self.not_found_numbers,
            if self.repaired > 0 {
                format!(" ({} repaired)", self.repaired)
            } else {
                String::new()
            }
        )?;
        let hist: Vec<String> = self
            .group_size_histogram
            .iter()
            .map(|(size, n)| format!("{size}:{n}"))
            .collect();
        writeln!(
            f,
            "groups {} (size:count {})",
            self.groups,
            if hist.is_empty() {
                "-".to_owned()
            } else {
                hist.join(" ")
            }
        )?;
        let sync = match self.sync.kind.as_str() {
            "current" => "the cached table was current".to_owned(),
            "delta" => format!(
                "deltas from epoch {} ({} added, {} removed, {} relabelled)",
                self.sync.from.unwrap_or(0),
                self.sync.added,
                self.sync.removed,
                self.sync.relabelled
            ),
            "base" => match self.sync.resumed_from {
                Some(n) if n > 0 => format!("base download, resumed at entry {n}"),
                _ => "base download".to_owned(),
            },
            _ => "no table needed".to_owned(),
        };
        writeln!(
            f,
            "epoch {} of key period {} ({} entries) as entity {} (certificate {}); {sync}",
            self.epoch, self.key_period, self.table_entries, self.entity, self.client_id
        )?;
        writeln!(
            f,
            "evaluated {} number(s) on the server, {} from the cache of this key period",
            self.evaluated_numbers, self.numbers_from_cache
        )?;
        writeln!(
            f,
            "network: sent {}, received {}, {} Evaluate request(s), {} connection(s)",
            bytes(self.bytes_sent),
            bytes(self.bytes_received),
            self.evaluate_requests,
            self.connections,
        )?;
        let phases: Vec<String> = Phase::ALL
            .iter()
            .map(|p| {
                format!(
                    "{} {:.2}s",
                    p,
                    *self.phase_ms.get(p).unwrap_or(&0) as f64 / 1000.0
                )
            })
            .collect();
        write!(
            f,
            "time: {} (total {:.2}s)",
            phases.join(", "),
            self.total_ms as f64 / 1000.0
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn display_and_json() {
        let mut s = LinkSummary {
            rows: 10,
            distinct_numbers: 7,
            linked_rows: 8,
            not_found_rows: 1,
            invalid_rows: 1,
            linked_numbers: 6,
            not_found_numbers: 1,
            groups: 4,
            bytes_sent: 2048,
            bytes_received: 3 * 1024 * 1024,
            epoch: 3,
            key_period: "1-0011223344556677".into(),
            evaluated_numbers: 2,
            sync: SyncSummary {
                kind: "delta".into(),
                from: Some(1),
                to: 3,
                added: 5,
                ..Default::default()
            },
            ..Default::default()
        };
        s.group_size_histogram.insert(1, 3);
        s.group_size_histogram.insert(3, 1);
        s.add_phase(Phase::Evaluate, Duration::from_millis(1500));
        let text = s.to_string();
        assert!(
            text.contains("rows 10: linked 8, not found 1, invalid 1"),
            "{text}"
        );
        assert!(text.contains("groups 4 (size:count 1:3 3:1)"), "{text}");
        assert!(text.contains("received 3.0 MiB"), "{text}");
        assert!(text.contains("evaluate 1.50s"), "{text}");
        assert!(text.contains("deltas from epoch 1 (5 added"), "{text}");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["sync"]["kind"], "delta");
        assert_eq!(json["evaluated_numbers"], 2);
        assert_eq!(json["epoch"], 3);
        assert_eq!(json["group_size_histogram"]["3"], 1);
        assert_eq!(json["phase_ms"]["evaluate"], 1500);
    }
}

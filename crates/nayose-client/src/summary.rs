//! The summary of a finished run: JSON for scripts (`--json`), text for people (stderr).
//!
//! Invariants: counts only, never a number or a label; `linked + not_found + invalid` row
//! counts add up to `rows`, and the histogram's `size * groups` adds up to `linked_numbers`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::config::Privacy;
use crate::progress::Phase;

/// What a link run did. `Serialize` gives the `--json` form; `Display` the human summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LinkSummary {
    /// Data rows in the input (header excluded).
    pub rows: u64,
    /// Distinct valid numbers (each evaluated once).
    pub distinct_numbers: u64,
    /// Rows with status `linked` (their number was found; it has a group).
    pub linked_rows: u64,
    /// Rows with status `not_found` (valid number unknown to the server).
    pub not_found_rows: u64,
    /// Rows with status `invalid` (skipped with `skip_invalid`).
    pub invalid_rows: u64,
    /// Distinct numbers found in the table.
    pub linked_numbers: u64,
    /// Distinct numbers not found in the table.
    pub not_found_numbers: u64,
    /// Groups (persons) among the linked numbers.
    pub groups: u64,
    /// Group size (distinct numbers per group) → number of groups of that size.
    pub group_size_histogram: BTreeMap<u64, u64>,
    /// Numbers repaired (only with `repair`).
    pub repaired: u64,
    /// The first invalid rows (line, column, reason) when they were skipped.
    pub invalid_examples: Vec<String>,
    /// Application bytes sent to the server (frames, all connections).
    pub bytes_sent: u64,
    /// Application bytes received from the server (frames, all connections).
    pub bytes_received: u64,
    /// Evaluate requests that succeeded.
    pub evaluate_requests: u64,
    /// Table entries received from the server in this run (0 when the cache was used).
    pub entries_received: u64,
    /// Entries in the epoch's table.
    pub table_entries: u64,
    /// k-anon mode: the prefix length used, in bits.
    pub prefix_bits: Option<u8>,
    /// k-anon mode: the ranges fetched.
    pub ranges_fetched: u64,
    /// Connections opened (1 + reconnects).
    pub connections: u64,
    /// Times the run started over because the server changed epochs.
    pub epoch_restarts: u64,
    /// The epoch the results belong to, `<number>-<key check>`.
    pub epoch: String,
    /// The retrieval mode used.
    pub mode: Privacy,
    /// The retrieval mode asked for.
    pub requested_mode: Privacy,
    /// Why the mode used differs from the one asked for (k-anon falls back to full).
    pub mode_note: Option<String>,
    /// Whether the table came from the on-disk cache.
    pub cache_used: bool,
    /// The client id (certificate CommonName) the labels are for.
    pub client_id: String,
    /// Wall time per phase, in milliseconds.
    pub phase_ms: BTreeMap<Phase, u64>,
    /// Wall time of the whole run, in milliseconds.
    pub total_ms: u64,
}

impl LinkSummary {
    pub(crate) fn add_phase(&mut self, phase: Phase, d: Duration) {
        *self.phase_ms.entry(phase).or_insert(0) += d.as_millis() as u64;
    }
}

fn bytes(n: u64) -> String {
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

impl fmt::Display for LinkSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
        let retrieval = match (self.mode, self.cache_used) {
            (Privacy::Full, true) => format!(
                "full table of {} entries from the cache",
                self.table_entries
            ),
            (Privacy::Full, false) => format!(
                "full table of {} entries downloaded ({} received)",
                self.table_entries, self.entries_received
            ),
            (Privacy::KAnon, _) => format!(
                "k-anon: {} ranges of {} bits, {} entries received",
                self.ranges_fetched,
                self.prefix_bits.unwrap_or(0),
                self.entries_received
            ),
        };
        writeln!(
            f,
            "epoch {} as client {}; {retrieval}",
            self.epoch, self.client_id
        )?;
        if let Some(note) = &self.mode_note {
            writeln!(
                f,
                "{} mode was asked for, {} used: {note}",
                self.requested_mode, self.mode
            )?;
        }
        writeln!(
            f,
            "network: sent {}, received {}, {} Evaluate request(s), {} connection(s){}",
            bytes(self.bytes_sent),
            bytes(self.bytes_received),
            self.evaluate_requests,
            self.connections,
            if self.epoch_restarts > 0 {
                format!(", {} epoch restart(s)", self.epoch_restarts)
            } else {
                String::new()
            }
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
            epoch: "3-0011223344556677".into(),
            mode: Privacy::KAnon,
            prefix_bits: Some(12),
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
        assert!(text.contains("k-anon: 0 ranges of 12 bits"), "{text}");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["mode"], "k-anon");
        assert_eq!(json["group_size_histogram"]["3"], 1);
        assert_eq!(json["phase_ms"]["evaluate"], 1500);
    }
}

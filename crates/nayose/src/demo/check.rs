//! Checks the client's output file against the synthetic world's ground truth.
//!
//! The output is correct when: every row of a known number is `linked`; rows of one person
//! carry one group label and rows of different persons carry different labels; unknown numbers
//! are `not_found` with an empty group; unreadable rows are `invalid`; and every input row comes
//! back once, in order, with its other columns untouched.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};

use anyhow::{Context, Result, bail};

use super::synth::{Expect, HeldRow};

/// What the check found.
#[derive(Debug, Default)]
pub(crate) struct CheckReport {
    /// Rows checked.
    pub(crate) rows: usize,
    /// Distinct persons seen among linked rows.
    pub(crate) persons: usize,
    /// Distinct group labels in the output.
    pub(crate) groups: usize,
    /// Everything that did not match, one line each (empty when all matched).
    pub(crate) mismatches: Vec<String>,
    /// A few groups with more than one row, for display: label → the rows' spellings.
    pub(crate) examples: Vec<(String, Vec<String>)>,
}

pub(crate) fn check(output: &Path, held: &[HeldRow]) -> Result<CheckReport> {
    let mut rdr = csv::Reader::from_path(output)
        .with_context(|| format!("opening the client's output {}", output.display()))?;
    let headers = rdr.headers()?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("output has no column {name:?} (columns: {headers:?})"))
    };
    let (c_id, c_num, c_note, c_group, c_status) = (
        col("record_id")?,
        col("insured_number")?,
        col("note")?,
        col("nayose_group")?,
        col("nayose_status")?,
    );
    let mut report = CheckReport::default();
    let mut label_person: HashMap<String, String> = HashMap::new();
    let mut person_label: HashMap<String, String> = HashMap::new();
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut records = rdr.records();
    for (i, want) in held.iter().enumerate() {
        let Some(rec) = records.next() else {
            bail!("output has {i} rows, the input {}", held.len());
        };
        let rec = rec?;
        report.rows += 1;
        let line = i + 2;
        let get = |c: usize| rec.get(c).unwrap_or("");
        if get(c_id) != want.record_id
            || get(c_num) != want.insured_number
            || get(c_note) != want.note
        {
            report.mismatches.push(format!(
                "line {line}: input columns changed or rows reordered"
            ));
            continue;
        }
        let (group, status) = (get(c_group), get(c_status));
        match &want.expect {
            Expect::Person(p) => {
                if status != "linked" || group.is_empty() {
                    report.mismatches.push(format!(
                        "line {line} ({}): expected linked, got {status:?}",
                        want.record_id
                    ));
                    continue;
                }
                if let Some(other) = label_person.insert(group.to_string(), p.clone())
                    && &other != p
                {
                    report
                        .mismatches
                        .push(format!("line {line}: group {group} holds two persons"));
                }
                if let Some(other) = person_label.insert(p.clone(), group.to_string())
                    && other != group
                {
                    report.mismatches.push(format!(
                        "line {line}: one person split over groups {other} and {group}"
                    ));
                }
                groups
                    .entry(group.to_string())
                    .or_default()
                    .push(want.insured_number.clone());
            }
            Expect::Unknown => {
                if status != "not_found" || !group.is_empty() {
                    report.mismatches.push(format!(
                        "line {line} ({}): expected not_found, got {status:?} {group:?}",
                        want.record_id
                    ));
                }
            }
            Expect::Invalid => {
                if status != "invalid" || !group.is_empty() {
                    report.mismatches.push(format!(
                        "line {line} ({}): expected invalid, got {status:?} {group:?}",
                        want.record_id
                    ));
                }
            }
        }
    }
    if records.next().is_some() {
        report
            .mismatches
            .push("output has more rows than the input".into());
    }
    report.persons = person_label.len();
    report.groups = groups.len();
    report.examples = groups
        .into_iter()
        .filter(|(_, rows)| rows.len() >= 3)
        .take(3)
        .collect();
    Ok(report)
}

//! Which header column serves which field: names given by the user, else recognised Japanese
//! and English header names.
//!
//! Invariants:
//! * a column named by the user ([`ColumnSpec`]) always wins; it is matched exactly after
//!   trimming spaces, then (if no header matches exactly) by its [`header_key`], and it must
//!   match exactly one column;
//! * a field not named is recognised only through the fixed alias lists below, compared by
//!   [`header_key`]: NFKC (full-width letters and digits fold to ASCII), ASCII lowercase, with
//!   spaces, `_`, `-`, `.` and `・` removed, and one trailing parenthesised note such as
//!   `（8桁）` removed. Two columns matching the same field is an error, never a guess;
//! * layouts: separate columns (保険者番号, 記号, 番号 required; 枝番 optional — without it the
//!   番号 carries the 枝番, see `number_row.rs`) or one combined column. Separate columns win
//!   when both are present; `被保険者番号` and `被保険者証番号` are the 番号 when the header also
//!   has a 記号 column (and no column named 番号 or another 番号 name), and the combined column
//!   when there are no separate columns (and no column with a combined name).
//!
//! Recognised names (as header keys, i.e. after the folding above):
//!
//! | field       | names                                                                     |
//! |-------------|---------------------------------------------------------------------------|
//! | person id   | person_id, 個人ID, 共通ID, 患者ID, patient_id, 研究用ID, 対象者ID, subject_id |
//! | 保険者番号  | insurer_number, insurer_no, 保険者番号, 保険者No                            |
//! | 記号        | symbol, 記号, 被保険者記号, 被保険者証記号, 保険証記号                      |
//! | 番号        | number, 番号, 保険証番号 (and 被保険者番号, 被保険者証番号 next to a 記号)   |
//! | 枝番        | branch, branch_number, 枝番, 枝番号, 被保険者枝番                           |
//! | combined    | insured_number, 被保険者番号等, 被保険者等記号番号, 記号番号 (and 被保険者番号, 被保険者証番号 without a 記号 column) |

use std::fmt;

use csv::StringRecord;
use nayose_number::normalize;

use crate::error::CsvError;
use crate::held::HeldColumns;

/// A field a header column can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnRole {
    /// The registry's person id.
    PersonId,
    /// 保険者番号.
    Insurer,
    /// 記号.
    Symbol,
    /// 番号.
    Number,
    /// 枝番.
    Branch,
    /// The whole number in one column (dashed or colon form).
    Combined,
}

impl ColumnRole {
    /// The field's English name, as in the registry's documented header.
    pub fn name(self) -> &'static str {
        match self {
            ColumnRole::PersonId => "person_id",
            ColumnRole::Insurer => "insurer_number",
            ColumnRole::Symbol => "symbol",
            ColumnRole::Number => "number",
            ColumnRole::Branch => "branch",
            ColumnRole::Combined => "insured_number",
        }
    }

    /// The field's name for messages, Japanese first, e.g. `保険者番号 (insurer number)`.
    pub fn label(self) -> &'static str {
        match self {
            ColumnRole::PersonId => "person id",
            ColumnRole::Insurer => "保険者番号 (insurer number)",
            ColumnRole::Symbol => "記号 (symbol)",
            ColumnRole::Number => "番号 (number)",
            ColumnRole::Branch => "枝番 (branch)",
            ColumnRole::Combined => "combined number",
        }
    }

    /// The command-line option that names this field's column.
    pub fn option(self) -> &'static str {
        match self {
            ColumnRole::PersonId => "--person-id-column",
            ColumnRole::Insurer => "--insurer-column",
            ColumnRole::Symbol => "--symbol-column",
            ColumnRole::Number => "--number-column",
            ColumnRole::Branch => "--branch-column",
            ColumnRole::Combined => "--combined-column",
        }
    }

    fn aliases(self) -> &'static [&'static str] {
        match self {
            ColumnRole::PersonId => &[
                "personid",
                "個人id",
                "共通id",
                "患者id",
                "patientid",
                "研究用id",
                "対象者id",
                "subjectid",
            ],
            ColumnRole::Insurer => &["insurernumber", "insurerno", "保険者番号", "保険者no"],
            ColumnRole::Symbol => &[
                "symbol",
                "記号",
                "被保険者記号",
                "被保険者証記号",
                "保険証記号",
            ],
            ColumnRole::Number => &["number", "番号", "保険証番号"],
            ColumnRole::Branch => &["branch", "branchnumber", "枝番", "枝番号", "被保険者枝番"],
            ColumnRole::Combined => &[
                "insurednumber",
                "被保険者番号等",
                "被保険者等記号番号",
                "記号番号",
            ],
        }
    }
}

/// Header keys that are the 番号 beside a 記号 column and the combined column otherwise.
const NUMBER_OR_COMBINED: &[&str] = &["被保険者番号", "被保険者証番号"];

/// The comparison key of a header name (see the module invariants).
pub fn header_key(name: &str) -> String {
    let folded: String = normalize(name)
        .chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-' | '.' | '・' | '\u{FEFF}'))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if folded.ends_with(')')
        && let Some(open) = folded.rfind('(')
        && open > 0
    {
        return folded[..open].to_owned();
    }
    folded
}

/// Column names the user gave; `None` fields are recognised from the header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnSpec {
    /// The person id column (registry only).
    pub person_id: Option<String>,
    /// 保険者番号 column.
    pub insurer: Option<String>,
    /// 記号 column.
    pub symbol: Option<String>,
    /// 番号 column.
    pub number: Option<String>,
    /// 枝番 column.
    pub branch: Option<String>,
    /// The combined column (excludes the four above).
    pub combined: Option<String>,
}

impl From<&HeldColumns> for ColumnSpec {
    /// All columns named, as the layout says.
    fn from(c: &HeldColumns) -> Self {
        match c {
            HeldColumns::Fields {
                insurer,
                symbol,
                number,
                branch,
            } => ColumnSpec {
                insurer: Some(insurer.clone()),
                symbol: Some(symbol.clone()),
                number: Some(number.clone()),
                branch: Some(branch.clone()),
                ..ColumnSpec::default()
            },
            HeldColumns::Combined { column } => ColumnSpec {
                combined: Some(column.clone()),
                ..ColumnSpec::default()
            },
        }
    }
}

impl ColumnSpec {
    fn named(&self, role: ColumnRole) -> Option<&str> {
        match role {
            ColumnRole::PersonId => self.person_id.as_deref(),
            ColumnRole::Insurer => self.insurer.as_deref(),
            ColumnRole::Symbol => self.symbol.as_deref(),
            ColumnRole::Number => self.number.as_deref(),
            ColumnRole::Branch => self.branch.as_deref(),
            ColumnRole::Combined => self.combined.as_deref(),
        }
    }
}

/// How a column was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchedBy {
    /// The user named it.
    Named,
    /// Its header name was recognised.
    Recognised,
}

/// One header column serving one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedColumn {
    /// The field.
    pub role: ColumnRole,
    /// 0-based index of the column in the header.
    pub index: usize,
    /// The header name as decoded.
    pub header: String,
    /// Named by the user or recognised.
    pub matched_by: MatchedBy,
}

/// The resolved column mapping of one file, in [`ColumnRole`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMapping {
    /// The mapped columns.
    pub columns: Vec<MappedColumn>,
}

impl ColumnMapping {
    /// The column serving `role`, if any.
    pub fn get(&self, role: ColumnRole) -> Option<&MappedColumn> {
        self.columns.iter().find(|c| c.role == role)
    }

    /// True when one combined column holds the number.
    pub fn is_combined(&self) -> bool {
        self.get(ColumnRole::Combined).is_some()
    }

    /// True when the number is in separate columns without a 枝番 column (the 番号 carries it).
    pub fn branch_in_number(&self) -> bool {
        !self.is_combined() && self.get(ColumnRole::Branch).is_none()
    }

    /// The layout as [`HeldColumns`] (the old, all-named form) where it has one: `None` for
    /// separate columns without a 枝番 column.
    pub fn held_columns(&self) -> Option<HeldColumns> {
        let name = |r| self.get(r).map(|c| c.header.clone());
        if let Some(column) = name(ColumnRole::Combined) {
            return Some(HeldColumns::Combined { column });
        }
        Some(HeldColumns::Fields {
            insurer: name(ColumnRole::Insurer)?,
            symbol: name(ColumnRole::Symbol)?,
            number: name(ColumnRole::Number)?,
            branch: name(ColumnRole::Branch)?,
        })
    }

    pub(crate) fn index(&self, role: ColumnRole) -> Option<usize> {
        self.get(role).map(|c| c.index)
    }
}

impl fmt::Display for ColumnMapping {
    /// One line per field, e.g. `保険者番号 (insurer number) <- "保険者番号（8桁）" (column 2,
    /// recognised)`, then a note when the 番号 carries the 枝番.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.columns {
            let how = match c.matched_by {
                MatchedBy::Named => "named",
                MatchedBy::Recognised => "recognised",
            };
            writeln!(
                f,
                "{} <- {:?} (column {}, {how})",
                c.role.label(),
                c.header,
                c.index + 1
            )?;
        }
        if self.branch_in_number() {
            writeln!(
                f,
                "枝番 (branch) <- no column: the 枝番 is read from the end of the 番号"
            )?;
        }
        Ok(())
    }
}

/// What the file must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// A held-number file: the number columns only.
    Held,
    /// A registry: the person id and the number columns.
    Registry,
}

/// Finds the column the user named.
fn find_named(headers: &StringRecord, name: &str) -> Result<usize, CsvError> {
    let exact: Vec<usize> = (0..headers.len())
        .filter(|&i| headers[i].trim() == name.trim())
        .collect();
    let hits = if exact.is_empty() {
        let key = header_key(name);
        (0..headers.len())
            .filter(|&i| header_key(&headers[i]) == key)
            .collect()
    } else {
        exact
    };
    match hits[..] {
        [i] => Ok(i),
        [] => Err(CsvError::MissingColumn {
            column: name.to_owned(),
            found: headers.iter().map(str::to_owned).collect(),
            hint: String::new(),
        }),
        _ => Err(CsvError::DuplicateColumn {
            column: name.to_owned(),
        }),
    }
}

struct Resolver<'a> {
    headers: &'a StringRecord,
    spec: &'a ColumnSpec,
    keys: Vec<String>,
    out: Vec<MappedColumn>,
}

impl Resolver<'_> {
    fn push(&mut self, role: ColumnRole, index: usize, matched_by: MatchedBy) {
        self.out.push(MappedColumn {
            role,
            index,
            header: self.headers[index].to_owned(),
            matched_by,
        });
    }

    fn taken(&self, i: usize) -> bool {
        self.out.iter().any(|c| c.index == i)
    }

    /// The column for `role` among `aliases` (named columns first), or `None`.
    fn find(
        &mut self,
        role: ColumnRole,
        aliases: &[&str],
    ) -> Result<Option<(usize, MatchedBy)>, CsvError> {
        if let Some(name) = self.spec.named(role) {
            return Ok(Some((find_named(self.headers, name)?, MatchedBy::Named)));
        }
        let hits: Vec<usize> = (0..self.keys.len())
            .filter(|&i| !self.taken(i) && aliases.contains(&self.keys[i].as_str()))
            .collect();
        match hits[..] {
            [] => Ok(None),
            [i] => Ok(Some((i, MatchedBy::Recognised))),
            _ => Err(CsvError::AmbiguousColumn {
                field: role.label().to_owned(),
                columns: hits.iter().map(|&i| self.headers[i].to_owned()).collect(),
                option: role.option(),
            }),
        }
    }

    fn require(&mut self, role: ColumnRole, aliases: &[&str]) -> Result<(), CsvError> {
        match self.find(role, aliases)? {
            Some((i, how)) => {
                self.push(role, i, how);
                Ok(())
            }
            None => Err(self.missing(role)),
        }
    }

    fn missing(&self, role: ColumnRole) -> CsvError {
        CsvError::MissingColumn {
            column: role.name().to_owned(),
            found: self.headers.iter().map(str::to_owned).collect(),
            hint: format!(
                "; no column is recognised as the {}: name it with {}, or rename its header \
                 to {}",
                role.label(),
                role.option(),
                role.aliases().first().copied().unwrap_or(role.name())
            ),
        }
    }
}

/// Resolves the columns of `headers` for a file of `kind`.
pub(crate) fn resolve(
    headers: &StringRecord,
    spec: &ColumnSpec,
    kind: FileKind,
) -> Result<ColumnMapping, CsvError> {
    let mut r = Resolver {
        headers,
        spec,
        keys: headers.iter().map(header_key).collect(),
        out: Vec::new(),
    };
    if kind == FileKind::Registry {
        r.require(ColumnRole::PersonId, ColumnRole::PersonId.aliases())?;
    }
    let any_field_named = spec.insurer.is_some()
        || spec.symbol.is_some()
        || spec.number.is_some()
        || spec.branch.is_some();
    if let Some(combined) = &spec.combined {
        if any_field_named {
            return Err(CsvError::ConflictingColumns {
                combined: combined.clone(),
            });
        }
        r.require(ColumnRole::Combined, &[])?;
        return Ok(ColumnMapping { columns: r.out });
    }
    let insurer = r.find(ColumnRole::Insurer, ColumnRole::Insurer.aliases())?;
    let symbol = r.find(ColumnRole::Symbol, ColumnRole::Symbol.aliases())?;
    let separate = any_field_named || insurer.is_some() || symbol.is_some();
    if !separate {
        // No separate columns: a combined column, if one is recognised.
        let combined = match r.find(ColumnRole::Combined, ColumnRole::Combined.aliases())? {
            Some(hit) => Some(hit),
            None => r.find(ColumnRole::Combined, NUMBER_OR_COMBINED)?,
        };
        if let Some((i, how)) = combined {
            r.push(ColumnRole::Combined, i, how);
            return Ok(ColumnMapping { columns: r.out });
        }
    }
    match insurer {
        Some((i, how)) => r.push(ColumnRole::Insurer, i, how),
        None => return Err(r.missing(ColumnRole::Insurer)),
    }
    match symbol {
        Some((i, how)) => r.push(ColumnRole::Symbol, i, how),
        None => return Err(r.missing(ColumnRole::Symbol)),
    }
    let number = match r.find(ColumnRole::Number, ColumnRole::Number.aliases())? {
        Some(hit) => Some(hit),
        None => r.find(ColumnRole::Number, NUMBER_OR_COMBINED)?,
    };
    match number {
        Some((i, how)) => r.push(ColumnRole::Number, i, how),
        None => return Err(r.missing(ColumnRole::Number)),
    }
    if let Some((i, how)) = r.find(ColumnRole::Branch, ColumnRole::Branch.aliases())? {
        r.push(ColumnRole::Branch, i, how);
    }
    Ok(ColumnMapping { columns: r.out })
}

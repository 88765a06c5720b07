//! The field delimiter of an input file: comma (CSV) or tab (TSV, as Excel's "Unicode text"
//! and "Text (Tab delimited)" exports write).
//!
//! Invariant: detection ([`Delimiter::detect`]) looks at the header line only: a header that
//! holds a tab and no comma is tab-separated; every other header (including a one-column one)
//! is comma-separated. An explicit [`crate::ReadOptions::delimiter`] always wins.

use std::fmt;
use std::str::FromStr;

use crate::error::CsvError;

/// A field delimiter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Delimiter {
    /// `,` (the default).
    #[default]
    Comma,
    /// TAB (U+0009).
    Tab,
}

impl Delimiter {
    /// The delimiter byte.
    pub fn byte(self) -> u8 {
        match self {
            Delimiter::Comma => b',',
            Delimiter::Tab => b'\t',
        }
    }

    /// `comma` or `tab` (the names [`Delimiter::from_str`] accepts first).
    pub fn name(self) -> &'static str {
        match self {
            Delimiter::Comma => "comma",
            Delimiter::Tab => "tab",
        }
    }

    /// Detects the delimiter from the decoded start of a file: the text before the first line
    /// feed (or all of it) is the header line.
    pub fn detect(head: &[u8]) -> Self {
        let line = head.split(|&b| b == b'\n').next().unwrap_or(head);
        if line.contains(&b'\t') && !line.contains(&b',') {
            Delimiter::Tab
        } else {
            Delimiter::Comma
        }
    }
}

impl fmt::Display for Delimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Delimiter {
    type Err = CsvError;

    /// Accepts `comma`/`,`/`csv` and `tab`/`\t` (a real TAB or the two characters)/`tsv`
    /// (ASCII case-insensitive).
    fn from_str(s: &str) -> Result<Self, CsvError> {
        match s.to_ascii_lowercase().as_str() {
            "comma" | "," | "csv" => Ok(Delimiter::Comma),
            "tab" | "\t" | "\\t" | "tsv" => Ok(Delimiter::Tab),
            _ => Err(CsvError::UnknownDelimiter(s.to_owned())),
        }
    }
}

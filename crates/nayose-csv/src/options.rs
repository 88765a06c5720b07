//! Options shared by the readers.

use crate::delimiter::Delimiter;
use crate::encoding::EncodingChoice;

/// How to read an input file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// The input encoding (default: detect).
    pub encoding: EncodingChoice,
    /// Opt-in repair of spreadsheet damage (lost leading zeros), each repair reported.
    pub repair: bool,
    /// The field delimiter; `None` (the default) detects it from the header line (see
    /// [`Delimiter::detect`]).
    pub delimiter: Option<Delimiter>,
}

/// What to do with invalid rows in a whole pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InvalidRows {
    /// List every invalid row and fail (the default: the run stops before any network work).
    #[default]
    Report,
    /// Leave invalid rows out (`--skip-invalid`); they are still listed in the result.
    Skip,
}

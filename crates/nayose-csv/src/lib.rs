//! Streaming CSV readers and writers for the registry file (server), the held-number file
//! (client) and the client's output.
//!
//! Layout:
//! * [`encoding`] — detection (workbook, UTF-16 BOM → UTF-16, UTF-8 BOM → UTF-8, valid UTF-8 →
//!   UTF-8, else CP932), a streaming decoding `Read` adaptor, encoding without silent
//!   replacement ([`OutputEncoding`]);
//! * `workbook` — an .xlsx/.xls (even renamed to .csv) read through calamine: the first sheet,
//!   cells as text, lines as Excel's row numbers;
//! * [`Delimiter`] — comma or tab, given or detected from the header line;
//! * [`mapping`] — which header column serves which field: named ([`ColumnSpec`]) or recognised
//!   Japanese and English header names ([`ColumnMapping`]);
//! * [`RegistryReader`] — a person id and a number per row;
//! * [`HeldReader`] — separate number columns (枝番 optional) or one combined column, every
//!   column carried through;
//! * [`ReportLine`], [`ReportSink`], [`ReportWriter`] — the row report: every invalid, repaired,
//!   blank or changed row, streamed to the caller, with counts and hints by [`ReportReason`];
//! * [`HeldSet`] — the client's dedup set (each distinct number once) and the row → number map;
//! * [`OutputWriter`] — input rows plus `nayose_group`, `nayose_status` (and, when chosen,
//!   `nayose_note`, `nayose_number`), in a chosen encoding, owner-only, atomically renamed into
//!   place.
//!
//! Invariants: readers of text files hold one record at a time (memory does not grow with the
//! file; a workbook is the exception, held whole by calamine; the only
//! growing structures are the [`HeldSet`], which stores distinct numbers and 4 bytes per row, and
//! the lists of invalid rows and repairs that the whole-pass helpers return); every row-level
//! error and report line names the 1-based line (header = line 1), the column and the reason.

#![forbid(unsafe_code)]

pub mod encoding;
pub mod mapping;

mod atomic;
mod columns;
mod counting;
mod dedup;
mod delimiter;
mod error;
mod held;
mod number_row;
mod options;
mod output;
mod registry;
mod report;
mod report_writer;
mod workbook;

pub use atomic::{Abandoned, abandon_temp_files, remove_stale_temp_files};
pub use counting::CountingReader;
pub use csv::StringRecord;
pub use dedup::HeldSet;
pub use delimiter::Delimiter;
pub use encoding::{DecodingReader, EncodingChoice, OutputEncoding, TextEncoding, detect_encoding};
pub use error::{CsvError, RowError, RowReason};
pub use held::{HeldColumns, HeldReader, HeldRow};
pub use mapping::{ColumnMapping, ColumnRole, ColumnSpec, MappedColumn, MatchedBy};
pub use options::{InvalidRows, ReadOptions};
pub use output::{
    GROUP_COLUMN, NOTE_COLUMN, NUMBER_COLUMN, OutputColumns, OutputWriter, RowResult, STATUS_COLUMN,
};
pub use registry::{REGISTRY_COLUMNS, RawRow, RegistryEntry, RegistryReader, RowParser};
pub use report::{
    DiscardReport, ReadReport, ReportCounts, ReportLine, ReportReason, ReportSink, RowRepair,
};
pub use report_writer::{REPORT_COLUMNS, ReportWriter};

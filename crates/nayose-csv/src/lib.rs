//! Streaming CSV readers and writers for the registry file (server), the held-number file
//! (client) and the client's output.
//!
//! Layout:
//! * [`encoding`] — detection (BOM → UTF-8, valid UTF-8 → UTF-8, else CP932), a streaming
//!   decoding `Read` adaptor, encoding without silent replacement;
//! * [`RegistryReader`] — `person_id,insurer_number,symbol,number,branch`;
//! * [`HeldReader`] — four number columns (configurable names) or one combined column, every
//!   column carried through;
//! * [`HeldSet`] — the client's dedup set (each distinct number once) and the row → number map;
//! * [`OutputWriter`] — input rows plus `nayose_group`, `nayose_status`, in the input's encoding,
//!   atomically renamed into place.
//!
//! Invariants: readers hold one record at a time (memory does not grow with the file; the only
//! growing structure is the [`HeldSet`], which stores distinct numbers and 4 bytes per row);
//! every row-level error names the 1-based line (header = line 1), the column and the reason.

pub mod encoding;

mod columns;
mod dedup;
mod error;
mod held;
mod options;
mod output;
mod registry;
mod report;

pub use csv::StringRecord;
pub use dedup::HeldSet;
pub use encoding::{DecodingReader, EncodingChoice, TextEncoding, detect_encoding};
pub use error::{CsvError, RowError, RowReason};
pub use held::{HeldColumns, HeldReader, HeldRow};
pub use options::{InvalidRows, ReadOptions};
pub use output::{GROUP_COLUMN, OutputWriter, STATUS_COLUMN};
pub use registry::{REGISTRY_COLUMNS, RegistryEntry, RegistryReader};
pub use report::{ReadReport, RowRepair};

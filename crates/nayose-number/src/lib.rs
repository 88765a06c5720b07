//! Japanese insured-person numbers (被保険者番号): parsing, normalization, validation and the
//! canonical encoding that is the OPRF input. I/O-free: no files, no sockets, no clocks.
//!
//! The normative rules are in `protocol-spec/numbers.md`; this crate implements them:
//! * [`normalize()`]: NFKC and trimming of ASCII/ideographic spaces, per field;
//! * [`InsurerNumber`]: 8 digits (6-digit 国民健康保険 numbers padded with `00`), check digit;
//! * [`Symbol`], [`Number`], [`Branch`]: 記号, 番号, 枝番 with their characters and lengths;
//! * [`InsuredNumber`]: the four together, with the per-insurer rules (no 記号 or 枝番 under
//!   法別番号 39; a 枝番 required elsewhere — household-level numbers are an error);
//! * parsing from separate [`Fields`] or a combined string (dashed or colon form);
//! * opt-in [`Repair`] of spreadsheet damage ([`ParseOptions::repair`]);
//! * [`InsuredNumber::canonical_bytes`]: the versioned, injective encoding.
//!
//! Invariant across the crate: two [`InsuredNumber`] values are equal iff their canonical
//! encodings are equal, and every value prints ([`std::fmt::Display`]) to a string that parses
//! back to itself.

mod encode;
mod error;
pub mod fields;
pub mod insurer;
pub mod normalize;
mod number;
mod parse;
mod repair;

pub use encode::{ENCODING_DOMAIN, ENCODING_VERSION};
pub use error::{Field, NumberError};
pub use fields::{Branch, MAX_FIELD_BYTES, Number, Symbol, receipt_bytes};
pub use insurer::{InsurerNumber, LAW_CODE_LATE_ELDERLY, check_digit};
pub use normalize::normalize;
pub use number::InsuredNumber;
pub use parse::{Fields, ParseOptions, Parsed};
pub use repair::{Repair, RepairKind};

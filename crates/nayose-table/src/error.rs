//! The one error type of this crate.

use thiserror::Error;

/// Everything that can go wrong in table derivation, table building and matching.
///
/// Messages name what was wrong and where; none contains a secret (keys, OPRF outputs) and
/// none contains a person id. Tags appear in messages only where they are public table data.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TableError {
    /// A client id is empty, longer than 64 bytes, or contains a byte outside `[A-Za-z0-9._-]`.
    #[error(
        "invalid client id {id:?}: {reason} (allowed: 1 to 64 characters from A-Z a-z 0-9 . _ -)"
    )]
    InvalidClientId {
        /// The rejected id (lossy UTF-8, at most 80 characters).
        id: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// A label master key of 32 zero bytes was supplied (an uninitialised key file).
    #[error("the label master key is all zero bytes; generate a real key")]
    ZeroLabelMasterKey,
    /// A label's text form is not `g` followed by 8 lowercase hex digits.
    #[error("invalid label text {text:?}: expected \"g\" followed by 8 lowercase hex digits")]
    InvalidLabelText {
        /// The rejected text (at most 80 characters).
        text: String,
    },
    /// A tag's hex text form is not 18 lowercase hex digits.
    #[error("invalid tag text {text:?}: expected 18 lowercase hex digits")]
    InvalidTagText {
        /// The rejected text (at most 80 characters).
        text: String,
    },
    /// Two or more table entries share a tag: the same number was given twice, or (with
    /// probability about 2^-67 per key period, table.md §12) two numbers' tags collided.
    #[error(
        "{count} table entries repeat the tag of the entry before them; the same number was \
         probably given twice (remove duplicate numbers from the registry, or start a new key period)"
    )]
    DuplicateTags {
        /// How many entries equal their predecessor after sorting.
        count: usize,
    },
    /// An entry range lies outside the table.
    #[error("entry range {start}..{end} is outside the table of {len} entries")]
    RangeOutOfBounds {
        /// Range start.
        start: usize,
        /// Range end.
        end: usize,
        /// Number of entries in the table.
        len: usize,
    },
    /// A record buffer's length is not a multiple of the 56-byte record length.
    #[error("record buffer of {len} bytes is not a whole number of 56-byte records")]
    RecordsLength {
        /// The buffer length in bytes.
        len: usize,
    },
    /// Server-local records are not in strictly ascending tag order.
    #[error(
        "record {index} does not have a tag strictly greater than record {}; the record file is \
         corrupt or was not written by nayose",
        index - 1
    )]
    RecordsNotSorted {
        /// Index of the first record out of order.
        index: usize,
    },
    /// Entries (of a base, a delta list or a digest input) are not in strictly ascending tag
    /// order.
    #[error(
        "entry {index} (tag {tag}) is not above the entry before it; the server's response or \
         the cached table is malformed"
    )]
    NotAscending {
        /// Index of the first entry out of order.
        index: u64,
        /// Its tag, lowercase hex.
        tag: String,
    },
    /// A digest received more or fewer entries than announced.
    #[error("the table digest covers {expected} entries but {got} were given")]
    DigestCount {
        /// The announced count.
        expected: u64,
        /// The count given.
        got: u64,
    },
    /// An entry's version is above the epoch of its table.
    #[error("entry {index} has version {version}, after the table's epoch {epoch}")]
    VersionAfterEpoch {
        /// Entry index.
        index: usize,
        /// Its version.
        version: u32,
        /// The table's epoch.
        epoch: u32,
    },
    /// A delta is not for an epoch after the table's.
    #[error("a delta for epoch {delta} cannot be applied to the table of epoch {table}")]
    DeltaNotNewer {
        /// The table's epoch.
        table: u32,
        /// The delta's epoch.
        delta: u32,
    },
    /// A delta removes a tag the table does not have.
    #[error("the delta removes tag {tag}, which the table does not hold")]
    DeltaRemovesAbsent {
        /// The tag, lowercase hex.
        tag: String,
    },
    /// An entry block (a base chunk, or a block of a cached state) does not decode.
    #[error("the entry block starting at entry {offset} is malformed: {reason}")]
    InvalidBlock {
        /// Index in the table of the block's first entry.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A server-local record's reserved tag bytes are not zero.
    #[error("record {index} has non-zero bytes after its 9-byte tag (a damaged or foreign table)")]
    RecordTagReserved {
        /// Record index.
        index: usize,
    },
    /// A delta both removes and upserts one tag.
    #[error("the delta both removes and adds tag {tag}")]
    DeltaConflict {
        /// The tag, lowercase hex.
        tag: String,
    },
}

/// Truncates user-supplied text for an error message.
pub(crate) fn excerpt(s: &str) -> String {
    s.chars().take(80).collect()
}

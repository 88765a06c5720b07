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
    /// A label's text form is not `g` followed by 32 lowercase hex digits.
    #[error("invalid label text {text:?}: expected \"g\" followed by 32 lowercase hex digits")]
    InvalidLabelText {
        /// The rejected text (at most 80 characters).
        text: String,
    },
    /// A tag's hex text form is not 32 lowercase hex digits.
    #[error("invalid tag text {text:?}: expected 32 lowercase hex digits")]
    InvalidTagText {
        /// The rejected text (at most 80 characters).
        text: String,
    },
    /// A tag prefix is not canonical.
    #[error("invalid tag prefix ({bits} bits, {len} bytes): {reason}")]
    InvalidPrefix {
        /// The prefix length in bits that was given.
        bits: u16,
        /// The number of prefix bytes that were given.
        len: usize,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// The list of OPRF outputs and the list of person indices have different lengths.
    #[error("{outputs} OPRF outputs but {persons} person indices; they must pair up one to one")]
    LengthMismatch {
        /// Number of OPRF outputs given.
        outputs: usize,
        /// Number of person indices given.
        persons: usize,
    },
    /// A person index is not below the table's person count.
    #[error("person index {index} is out of range: the table has {person_count} persons")]
    PersonIndexOutOfRange {
        /// The offending index.
        index: u32,
        /// The declared number of persons.
        person_count: u32,
    },
    /// The person-id list handed to the table does not have the table's person count.
    #[error("{got} person ids supplied but the table was built for {expected} persons")]
    PersonIdsMismatch {
        /// The table's person count.
        expected: u32,
        /// The number of person ids supplied.
        got: usize,
    },
    /// Two or more table entries share a tag: the same number was given twice, or (with
    /// probability about 2^-72 per epoch) two numbers' tags collided.
    #[error(
        "{count} table entries repeat the tag of the entry before them; the same number was \
         probably given twice (remove duplicate numbers from the registry, or rotate the epoch key)"
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
    /// A record buffer's length is not a multiple of the 52-byte record length.
    #[error("record buffer of {len} bytes is not a whole number of 52-byte records")]
    RecordsLength {
        /// The buffer length in bytes.
        len: usize,
    },
    /// Server-local records are not in strictly ascending tag order.
    #[error(
        "record {index} does not have a tag strictly greater than record {}; the record file is \
         corrupt or was not written by an EpochTable",
        index - 1
    )]
    RecordsNotSorted {
        /// Index of the first record out of order.
        index: usize,
    },
    /// The minimum range size k of the k-anonymity helper must be at least 1.
    #[error("minimum range size k must be at least 1")]
    ZeroMinimumRange,
    /// Fetched entries are not in strictly ascending tag order (within a response, or the
    /// first entry of a response is below the last entry of the previous one: index 0).
    #[error(
        "fetched entry {index} has a tag below the entry before it (index 0: below the previous \
         response); the server's response is malformed or responses were processed out of order"
    )]
    FetchedNotSorted {
        /// Index (in the fetched slice) of the first entry out of order.
        index: usize,
    },
    /// A fetched entry repeats a tag: within one response or across two responses.
    #[error("fetched tag {tag} appears twice; the server's responses overlap or are malformed")]
    FetchedDuplicate {
        /// The repeated tag, lowercase hex.
        tag: String,
    },
    /// A fetched entry lies outside the prefix range it was fetched for.
    #[error("fetched entry {index} (tag {tag}) is outside the requested prefix {prefix}")]
    FetchedOutsidePrefix {
        /// Index of the entry in the fetched slice.
        index: usize,
        /// The entry's tag, lowercase hex.
        tag: String,
        /// The requested prefix.
        prefix: String,
    },
}

/// Truncates user-supplied text for an error message.
pub(crate) fn excerpt(s: &str) -> String {
    s.chars().take(80).collect()
}

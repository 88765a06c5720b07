//! Epoch table derivation, labels and matching for nayose/1 (I/O-free).
//!
//! This crate is the bytes-exact implementation of `protocol-spec/table.md`:
//!
//! * [`derive_entry_secrets`] turns one 64-byte OPRF output `o_y` into the entry's public
//!   [`Tag`] and secret [`LabelKey`];
//! * [`label_for`] computes a client's pseudonymous [`Label`] for a person under the server's
//!   [`LabelMasterKey`]; [`encrypt_label`] / [`decrypt_label`] bind that label to one entry, one
//!   client and one epoch;
//! * [`EpochTableBuilder`] / [`EpochTable`] (in memory) and [`RecordTable`] (over the
//!   server-local 52-byte record format, e.g. a memory-mapped file) are the server's sorted
//!   table with prefix ranges ([`TagPrefix`]) and the k-anonymity helper;
//! * [`Matcher`] is the client side: it matches fetched entries against the client's own tags,
//!   decrypts the labels and groups the client's numbers by person ([`Matches`]).
//!
//! Invariants: no I/O, no clocks, randomness only as a caller-supplied RNG; every secret
//! ([`LabelKey`], [`LabelMasterKey`], intermediate hash outputs) is zeroized on drop and has a
//! `Debug` that prints nothing secret; secret-dependent operations are straight-line hashing and
//! XOR (no branch or index depends on secret bytes). Tags and labels are not secret to the
//! party that computes them; comparisons on them are ordinary (variable-time) comparisons.

mod consts;
mod derive;
mod error;
mod ids;
mod kanon;
mod label;
mod matcher;
mod records;
mod secrets;
mod table;
mod tag;

pub use consts::{
    CLIENT_ID_MAX_LEN, DST_EPOCH_ID, DST_LABEL, DST_LABEL_KEY, DST_LABEL_MASTER_KEY_ID,
    DST_LABEL_PAD, DST_TAG, EPOCH_ID_LEN, LABEL_KEY_LEN, LABEL_LEN, LABEL_MASTER_KEY_ID_LEN,
    LABEL_MASTER_KEY_LEN, LABEL_TEXT_PREFIX, OPRF_OUTPUT_LEN, RECORD_LEN, TAG_LEN,
};
pub use derive::{decrypt_label, derive_entry_secrets, encrypt_label, label_for, label_pad};
pub use error::TableError;
pub use ids::{ClientId, EpochId};
pub use label::{EncryptedLabel, Label};
pub use matcher::{Matcher, Matches};
pub use records::RecordTable;
pub use secrets::{LabelKey, LabelMasterKey, LabelMasterKeyId};
pub use table::{EpochTable, EpochTableBuilder, TableEntry};
pub use tag::{Tag, TagPrefix};

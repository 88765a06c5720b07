//! Table derivation, versioned labels, digests, deltas and matching for nayose/2 (I/O-free).
//!
//! This crate is the bytes-exact implementation of `protocol-spec/table.md`:
//!
//! ```text
//!  server: number y ──VOPRF(skS of the key period)──▶ o_y ──▶ (tag, label_key) ─┐
//!          person p ──Label(K_L, client, p)──▶ label ─────────────────────────┴▶ tag, version,
//!                                                        label XOR pad(label_key, client, kp, version, tag)
//!  client: held y ──blind/evaluate/verify/finalize──▶ o_y ──▶ (tag, label_key)
//!          base + deltas ──▶ ClientTable ──digest check──▶ look up tag ──▶ decrypt ──▶ group
//! ```
//!
//! * [`derive_entry_secrets`] turns one 64-byte OPRF output `o_y` into the entry's public
//!   [`Tag`] and secret [`LabelKey`]; both are fixed for the whole key period;
//! * [`label_for`] computes a client's pseudonymous [`Label`] for a person under the server's
//!   [`LabelMasterKey`]; [`encrypt_label`] / [`decrypt_label`] bind that label to one entry, one
//!   client, one key period ([`KeyPeriodId`]) and one entry *version* (the epoch in which the
//!   entry's label last changed), so a changed label never reuses a pad;
//! * [`TableEntry`] / [`RecordTable`] (over the server-local 56-byte record format) are the
//!   server's sorted table; [`encrypt_entry`] makes the entry a client receives;
//! * [`ClientTable`] is the client's copy, built from a base and brought forward with deltas
//!   ([`ClientTable::apply_delta`]); [`TableDigest`] commits to a state (tags and versions) so a
//!   client can verify what it reconstructed;
//! * [`match_outputs`] decrypts the labels of the client's own numbers ([`Matches`]).
//!
//! Invariants: no I/O, no clocks, randomness only as a caller-supplied RNG; every secret
//! ([`LabelKey`], [`LabelMasterKey`], intermediate hash outputs) is zeroized on drop and has a
//! `Debug` that prints nothing secret; secret-dependent operations are straight-line hashing and
//! XOR (no branch or index depends on secret bytes). Tags and labels are not secret to the
//! party that computes them; comparisons on them are ordinary (variable-time) comparisons.

mod client_table;
mod consts;
mod derive;
mod digest;
mod error;
mod ids;
mod label;
mod matcher;
mod records;
mod secrets;
mod table;
mod tag;

pub use client_table::{ClientEntry, ClientTable, DeltaCounts};
pub use consts::{
    CLIENT_ENTRY_LEN, CLIENT_ID_MAX_LEN, DST_CACHE_KEY, DST_KEY_PERIOD_ID, DST_LABEL,
    DST_LABEL_KEY, DST_LABEL_MASTER_KEY_ID, DST_LABEL_PAD, DST_TABLE_DIGEST, DST_TAG,
    KEY_PERIOD_ID_LEN, LABEL_KEY_LEN, LABEL_LEN, LABEL_MASTER_KEY_ID_LEN, LABEL_MASTER_KEY_LEN,
    LABEL_TEXT_PREFIX, OPRF_OUTPUT_LEN, RECORD_LEN, TABLE_DIGEST_LEN, TAG_LEN,
};
pub use derive::{decrypt_label, derive_entry_secrets, encrypt_label, label_for, label_pad};
pub use digest::{DigestBuilder, TableDigest, table_digest};
pub use error::TableError;
pub use ids::{ClientId, KeyPeriodId};
pub use label::{EncryptedLabel, Label};
pub use matcher::{Matches, match_outputs};
pub use records::RecordTable;
pub use secrets::{LabelKey, LabelMasterKey, LabelMasterKeyId};
pub use table::{TableEntry, encrypt_entry, sort_entries};
pub use tag::Tag;

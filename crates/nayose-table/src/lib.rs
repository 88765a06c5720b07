//! Table derivation, versioned labels, digests, deltas and matching for nayose/2 (I/O-free).
//!
//! This crate is the bytes-exact implementation of `protocol-spec/table.md`:
//!
//! ```text
//!  server: number y ──VOPRF(skS of the key period)──▶ o_y ──▶ (tag, label_key) ─┐
//!          person serial s ──LabelPermutation(K_L, client)(s)──▶ label ─────────┴▶ tag,
//!                                     label XOR pad(label_key, client, kp, pad epoch, tag)
//!  client: held y ──blind/evaluate/verify/finalize──▶ o_y ──▶ (tag, label_key)
//!          base (entry blocks) + deltas ──▶ ClientTable ──digest check──▶ look up tag
//!          ──▶ decrypt ──▶ group
//! ```
//!
//! * [`derive_entry_secrets`] turns one 64-byte OPRF output `o_y` into the entry's public
//!   [`Tag`] and secret [`LabelKey`]; both are fixed for the whole key period;
//! * [`LabelPermutation`] computes a client's pseudonymous 4-byte [`Label`] for a person serial
//!   under the server's [`LabelMasterKey`] (a keyed permutation: no two persons share a label);
//!   [`encrypt_label`] / [`decrypt_label`] bind that label to one entry, one client, one key
//!   period ([`KeyPeriodId`]) and one *pad epoch* (the epoch whose state carries the
//!   ciphertext), so a changed label never reuses a pad;
//! * [`TableEntry`] / [`RecordTable`] (over the server-local 56-byte record format) are the
//!   server's sorted table; [`encrypt_entry`] makes the entry a client receives;
//! * [`EntryBlock`] codes a run of entries in about 11 bytes each (Rice-coded tag gaps);
//! * [`ClientTable`] is the client's copy, built from a base and brought forward with deltas
//!   ([`ClientTable::apply_delta`]); [`TableDigest`] commits to a state (its tags and, through
//!   the [`UpsertChain`], every upsert of the key period) so a client can verify what it
//!   reconstructed;
//! * [`match_outputs`] decrypts the labels of the client's own numbers ([`Matches`]).
//!
//! Invariants: no I/O, no clocks, randomness only as a caller-supplied RNG; every secret
//! ([`LabelKey`], [`LabelMasterKey`], intermediate hash outputs) is zeroized on drop and has a
//! `Debug` that prints nothing secret; secret-dependent operations are straight-line hashing and
//! XOR (no branch or index depends on secret bytes). Tags and labels are not secret to the
//! party that computes them; comparisons on them are ordinary (variable-time) comparisons.

mod block;
mod client_table;
mod consts;
mod derive;
mod digest;
mod error;
mod ids;
mod label;
mod matcher;
mod perm;
mod records;
mod secrets;
mod table;
mod tag;

pub use block::{EntryBlock, rice_parameter};
pub use client_table::{ClientEntry, ClientTable, DeltaCounts, STATE_BLOCK_ENTRIES, StateBlock};
pub use consts::{
    CLIENT_ID_MAX_LEN, DST_CACHE_KEY, DST_KEY_PERIOD_ID, DST_LABEL, DST_LABEL_KEY,
    DST_LABEL_MASTER_KEY_ID, DST_LABEL_PAD, DST_TABLE_DIGEST, DST_TAG, DST_UPSERT_CHAIN,
    KEY_PERIOD_ID_LEN, LABEL_KEY_LEN, LABEL_LEN, LABEL_MASTER_KEY_ID_LEN, LABEL_MASTER_KEY_LEN,
    LABEL_PERMUTATION_ROUNDS, LABEL_TEXT_PREFIX, MAX_BLOCK_ENTRIES, MAX_RICE_PARAMETER,
    OPRF_OUTPUT_LEN, RECORD_LEN, RECORD_TAG_LEN, TABLE_DIGEST_LEN, TAG_LEN, UPSERT_CHAIN_LEN,
};
pub use derive::{decrypt_label, derive_entry_secrets, encrypt_label, label_for, label_pad};
pub use digest::{ChainBuilder, DigestBuilder, TableDigest, UpsertChain, table_digest};
pub use error::TableError;
pub use ids::{ClientId, KeyPeriodId};
pub use label::{EncryptedLabel, Label};
pub use matcher::{Matches, match_outputs};
pub use perm::{LabelPermutation, label_permutation_key};
pub use records::RecordTable;
pub use secrets::{LabelKey, LabelMasterKey, LabelMasterKeyId};
pub use table::{TableEntry, encrypt_entry, sort_entries};
pub use tag::Tag;

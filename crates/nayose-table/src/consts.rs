//! Constants of nayose/2 table derivation (normative values in `protocol-spec/table.md`).
//!
//! Every domain-separation tag (DST) is ASCII, starts with `"nayose/2 "`, and no DST is a
//! prefix of another; each hash input starts with `I2OSP(len(DST), 2) || DST`.

/// Length of an OPRF output `o_y` (RFC 9497 ristretto255-SHA512 `Finalize`).
pub const OPRF_OUTPUT_LEN: usize = 64;
/// Tag length in bytes (72 bits; table.md §12 gives the collision bounds).
pub const TAG_LEN: usize = 9;
/// Label and encrypted-label length in bytes: a label is a per-client permutation of a 32-bit
/// person serial (table.md §3.2).
pub const LABEL_LEN: usize = 4;
/// Length of the tag field of a server-local record: the tag, then zero bytes (table.md §14).
pub const RECORD_TAG_LEN: usize = 16;
/// Label-key length in bytes.
pub const LABEL_KEY_LEN: usize = 32;
/// Length of the label master key K_L.
pub const LABEL_MASTER_KEY_LEN: usize = 32;
/// Length of K_L's public identifier.
pub const LABEL_MASTER_KEY_ID_LEN: usize = 8;
/// Length of a key period id.
pub const KEY_PERIOD_ID_LEN: usize = 16;
/// Length of a table digest.
pub const TABLE_DIGEST_LEN: usize = 32;
/// Longest client id in bytes (shortest: 1).
pub const CLIENT_ID_MAX_LEN: usize = 64;
/// Length of a server-local record: tag field (16), label key, person serial (u32 LE),
/// version (u32 LE).
pub const RECORD_LEN: usize = RECORD_TAG_LEN + LABEL_KEY_LEN + 4 + 4;
/// Most entries in one entry block (a base chunk on the wire, a block of the client's state).
pub const MAX_BLOCK_ENTRIES: usize = 65_536;
/// Largest Rice parameter of an entry block (tags are 72-bit numbers).
pub const MAX_RICE_PARAMETER: u8 = 71;
/// The letter before the hex digits of a label's text form.
pub const LABEL_TEXT_PREFIX: char = 'g';

/// DST of the tag derivation.
pub const DST_TAG: &[u8] = b"nayose/2 tag";
/// DST of the label-key derivation.
pub const DST_LABEL_KEY: &[u8] = b"nayose/2 label key";
/// DST of the per-client key of the label permutation.
pub const DST_LABEL: &[u8] = b"nayose/2 label";
/// DST of the versioned label pad.
pub const DST_LABEL_PAD: &[u8] = b"nayose/2 label pad";
/// DST of the label master key's public identifier.
pub const DST_LABEL_MASTER_KEY_ID: &[u8] = b"nayose/2 label master key id";
/// DST of the key-period id's key check.
pub const DST_KEY_PERIOD_ID: &[u8] = b"nayose/2 key period id";
/// DST of the table digest.
pub const DST_TABLE_DIGEST: &[u8] = b"nayose/2 table digest";
/// DST of the upsert chain.
pub const DST_UPSERT_CHAIN: &[u8] = b"nayose/2 upsert chain";
/// Length of an upsert-chain value.
pub const UPSERT_CHAIN_LEN: usize = 32;
/// Rounds of the label permutation's Feistel network.
pub const LABEL_PERMUTATION_ROUNDS: u8 = 10;
/// DST of the client's OPRF-cache lookup key (client-local, not on the wire).
pub const DST_CACHE_KEY: &[u8] = b"nayose/2 oprf cache key";

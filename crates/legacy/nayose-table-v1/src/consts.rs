//! Constants of nayose/1 table derivation (normative values in `protocol-spec/table.md`).
//!
//! Every domain-separation tag (DST) is ASCII, starts with `"nayose/1 "`, and no DST is a
//! prefix of another; each hash input starts with `I2OSP(len(DST), 2) || DST`.

/// Length of an OPRF output `o_y` (RFC 9497 ristretto255-SHA512 `Finalize`, `Nh` = 64).
pub const OPRF_OUTPUT_LEN: usize = 64;
/// Length T of a tag in bytes (128 bits; see the collision arithmetic in table.md).
pub const TAG_LEN: usize = 16;
/// Length of a label in bytes (128 bits).
pub const LABEL_LEN: usize = 16;
/// Length of a per-entry label key in bytes.
pub const LABEL_KEY_LEN: usize = 32;
/// Length of the server's label master key K_L in bytes.
pub const LABEL_MASTER_KEY_LEN: usize = 32;
/// Length of the public identifier of a label master key.
pub const LABEL_MASTER_KEY_ID_LEN: usize = 8;
/// Length of an epoch id: `I2OSP(number, 8) || key check (8)`.
pub const EPOCH_ID_LEN: usize = 16;
/// Maximum length of a client id in bytes (minimum is 1).
pub const CLIENT_ID_MAX_LEN: usize = 64;
/// Length of one server-local table record: `tag || label_key || I2OSP_LE(person, 4)`.
pub const RECORD_LEN: usize = TAG_LEN + LABEL_KEY_LEN + 4;
/// First character of a label's text form (`"g"` followed by 32 lowercase hex digits).
pub const LABEL_TEXT_PREFIX: char = 'g';

/// DST of the tag derivation: `tag = SHA-512(I2OSP(12,2) || DST_TAG || o_y)[0..16]`.
pub const DST_TAG: &[u8] = b"nayose/1 tag";
/// DST of the label-key derivation: `label_key = SHA-512(I2OSP(18,2) || DST_LABEL_KEY || o_y)[0..32]`.
pub const DST_LABEL_KEY: &[u8] = b"nayose/1 label key";
/// DST of the label PRF (keyed by K_L, over client id and person id).
pub const DST_LABEL: &[u8] = b"nayose/1 label";
/// DST of the one-time pad that encrypts a label for one (entry, client, epoch).
pub const DST_LABEL_PAD: &[u8] = b"nayose/1 label pad";
/// DST of the public identifier of a label master key.
pub const DST_LABEL_MASTER_KEY_ID: &[u8] = b"nayose/1 label master key id";
/// DST of the key check in an epoch id: `SHA-512(I2OSP(17,2) || DST_EPOCH_ID || pkS)[0..8]`.
pub const DST_EPOCH_ID: &[u8] = b"nayose/1 epoch id";

//! Field lengths and hard limits of nayose/2 (protocol-spec/wire.md, "Constants").
//!
//! Invariant: every value here is normative; changing one changes the protocol and needs a new
//! ALPN. The lengths shared with the table (tag, label, key period id, digest) must equal the ones
//! protocol-spec/table.md and `nayose-table` use.

/// ALPN protocol identifier negotiated in the TLS 1.3 handshake.
pub const ALPN: &[u8] = b"nayose/2";

/// Length in bytes of a ristretto255 element (blinded or evaluated), RFC 9497 `Ne`.
pub const ELEMENT_LEN: usize = 32;

/// Length in bytes of a serialized VOPRF public key (a ristretto255 element).
pub const PUBLIC_KEY_LEN: usize = 32;

/// Length in bytes of a batched DLEQ proof `c || s` (two scalars), RFC 9497 `2 * Ns`.
pub const PROOF_LEN: usize = 64;

/// Length in bytes of a table tag (protocol-spec/table.md).
pub const TAG_LEN: usize = 9;

/// Length in bytes of an encrypted label (protocol-spec/table.md).
pub const LABEL_LEN: usize = 4;

/// Length in bytes of a delta upsert on the wire: tag followed by encrypted label.
pub const ENTRY_LEN: usize = TAG_LEN + LABEL_LEN;

/// Length in bytes of an upsert-chain value (protocol-spec/table.md).
pub const UPSERT_CHAIN_LEN: usize = 32;

/// Largest Rice parameter of a base chunk's entry block.
pub const MAX_RICE_PARAMETER: u8 = 71;

/// Length in bytes of a key period id (opaque to the wire; protocol-spec/table.md derives it).
pub const KEY_PERIOD_ID_LEN: usize = 16;

/// Length in bytes of a table digest.
pub const TABLE_DIGEST_LEN: usize = 32;

/// Length in bytes of a signed key period statement carried in Info (opaque to the wire;
/// protocol-spec/announcements.md §4: a 96-byte statement and a 64-byte Ed25519 signature).
pub const SIGNED_KEY_PERIOD_STATEMENT_LEN: usize = 160;

/// Length in bytes of a signed epoch statement carried in Info (opaque to the wire;
/// protocol-spec/announcements.md §4: a 140-byte statement and a 64-byte Ed25519 signature).
pub const SIGNED_EPOCH_STATEMENT_LEN: usize = 204;

/// Largest request payload: an Evaluate of [`MAX_BATCH_ELEMENTS`] elements
/// (4 + 16 + 8 + 4096 · 32 bytes). A server refuses a request frame announcing more.
pub const MAX_REQUEST_LEN: usize = 4 + KEY_PERIOD_ID_LEN + 8 + MAX_BATCH_ELEMENTS * ELEMENT_LEN;

/// Largest frame payload, in bytes (the 4-byte length header is not counted).
pub const MAX_FRAME_LEN: usize = 4 * 1024 * 1024;

/// Length in bytes of the frame length header.
pub const FRAME_HEADER_LEN: usize = 4;

/// Most elements in one `Evaluate` request (and therefore in one `Evaluated` response).
pub const MAX_BATCH_ELEMENTS: usize = 4096;

/// Most entries in one `BaseChunk`; also the most removed tags and upserts together in one
/// `DeltaChunk` (and so the most items of either list).
pub const MAX_ENTRIES_PER_CHUNK: usize = 65_536;

/// Longest entity id (Info `entity`), in bytes; the shortest is 1 (table.md §6).
pub const MAX_ENTITY_ID_LEN: usize = 64;

/// Longest `Error` message, in bytes of UTF-8.
pub const MAX_ERROR_MESSAGE_LEN: usize = 1024;

/// Default and recommended number of concurrently open bidirectional streams per connection
/// (the QUIC `initial_max_streams_bidi` a server advertises).
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 32;

/// Default number of simultaneous connections a server accepts from one client id.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: u32 = 4;

/// Default QUIC idle timeout in milliseconds (`max_idle_timeout` transport parameter).
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 30_000;

/// Default interval in milliseconds at which a client sends QUIC PINGs to keep a connection alive
/// while it has no request in flight but intends to send more.
pub const DEFAULT_KEEP_ALIVE_MS: u64 = 10_000;

/// Default time in milliseconds a server waits for a complete request frame on a new stream.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;

//! Field lengths and hard limits of nayose/1 (protocol-spec/wire.md, "Constants").
//!
//! Invariant: every value here is normative; changing one changes the protocol and needs a new
//! ALPN. The lengths shared with the table (tag, label, epoch id) must equal the ones
//! protocol-spec/table.md and `nayose-table` use.

/// ALPN protocol identifier negotiated in the TLS 1.3 handshake.
pub const ALPN: &[u8] = b"nayose/1";

/// Length in bytes of a ristretto255 element (blinded or evaluated), RFC 9497 `Ne`.
pub const ELEMENT_LEN: usize = 32;

/// Length in bytes of a serialized VOPRF public key (a ristretto255 element).
pub const PUBLIC_KEY_LEN: usize = 32;

/// Length in bytes of a batched DLEQ proof `c || s` (two scalars), RFC 9497 `2 * Ns`.
pub const PROOF_LEN: usize = 64;

/// Length in bytes of a table tag (protocol-spec/table.md).
pub const TAG_LEN: usize = 16;

/// Length in bytes of an encrypted label (protocol-spec/table.md).
pub const LABEL_LEN: usize = 16;

/// Length in bytes of an entry on the wire: tag followed by encrypted label.
pub const ENTRY_LEN: usize = TAG_LEN + LABEL_LEN;

/// Length in bytes of an epoch id (opaque to the wire; protocol-spec/table.md derives it).
pub const EPOCH_ID_LEN: usize = 16;

/// Length in bytes of a tag-prefix value: prefixes of at most 64 bits are expressible.
pub const PREFIX_LEN: usize = 8;

/// Largest prefix length, in bits, a `FetchRange` can name.
pub const MAX_PREFIX_BITS: u8 = 64;

/// Largest frame payload, in bytes (the 4-byte length header is not counted).
pub const MAX_FRAME_LEN: usize = 4 * 1024 * 1024;

/// Length in bytes of the frame length header.
pub const FRAME_HEADER_LEN: usize = 4;

/// Most elements in one `Evaluate` request (and therefore in one `Evaluated` response).
pub const MAX_BATCH_ELEMENTS: usize = 4096;

/// Most entries in one `TableChunk` or `Range` response.
pub const MAX_ENTRIES_PER_CHUNK: usize = 65_536;

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

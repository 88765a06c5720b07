//! The audit log: one hash-chained record per request, durable before the answer is sent.
//!
//! `DATA_DIR/audit/audit.log` (and the segments a rotation closed, below) holds one JSON object
//! per line ([`AuditRecord`]). Each record's
//! `prev` is the SHA-256 (hex) of the previous line's bytes (without its newline); the first
//! record's `prev` is 64 zeros; `seq` counts from 1. `DATA_DIR/audit/audit.head` holds the number
//! of records and the SHA-256 of the last line ([`AuditHead`]); it is replaced atomically after
//! every append. Appending a record = write the line, `sync_data`, then replace the head; only
//! then is the answer sent.
//!
//! What verification detects ([`verify_audit`]):
//! - an edited record: its hash changes, so the next record's `prev` (or, for the last record,
//!   the head's hash) no longer matches;
//! - a removed record: a `seq` gap and a `prev` mismatch at the following record;
//! - a truncated log (last records removed): fewer records than the head counts, or a last
//!   hash different from the head's.
//!
//! Limits: someone able to rewrite both files consistently (recompute the whole chain and the
//! head) is not detected by the files alone. The server therefore writes the head (count and
//! hash) into its status log line at every status interval; shipping that log off the machine
//! anchors the chain: a later verification must reproduce every anchored (count, hash) pair.
//!
//! **Keyed records.** With `audit_key_file` in server.toml ([`AuditKey`]: at least 32 bytes,
//! owner-only, outside the data directory) every record carries `key_id` (16 hex digits of
//! SHA-256 over a label and the key) and its link is HMAC-SHA256 under the key instead of
//! SHA-256: the next record's `prev` and the head hold it. Without the key nobody can edit,
//! insert or replace a record and recompute the chain; a log rewritten from some record on as an
//! unkeyed chain is refused ([`verify_audit_with`]: no unkeyed record after a keyed one, and a
//! given key must authenticate the last record). Someone holding only the files can still cut
//! records off the end and rewrite the head to the last kept record's link: keep the head
//! values the status log lines print (`audit_records`, `audit_head`) off the machine.
//!
//! Crash behaviour: a crash between the line's sync and the head's replacement leaves records
//! after the head that chain correctly ("unanchored"); a crash or a full disk mid-line leaves a
//! last line that is not a whole record (no newline, or not a record): a torn tail.
//! Verification reports both without failing; the server, when it opens the log, cuts a torn
//! tail off (never joining it to the next record), reports it in its log (a warning with the
//! bytes removed), and advances the head over unanchored records. An append that fails (disk full) cuts
//! its partial line off at once.
//!
//! **Rotation** (`rotate.rs`). When `audit.log` reaches `audit_rotate_bytes` (server.toml,
//! default 256 MiB; 0: never), or on `nayose server audit rotate` with no server running, it
//! is renamed to a segment `audit/audit.<seq of its first record, 20 digits>.log` and a new
//! `audit.log` starts with a `rotated` record that links to the segment's last record: `seq`,
//! links and the audit key continue across files, and the head file always names the last
//! record of the whole chain. Every file but the one starting at record 1 begins with a
//! `rotated` record. A crash at any step leaves a state the server completes at its next start
//! and that verification accepts (with a note). Verification walks every segment in order, then
//! `audit.log`, and detects an edited, removed (a gap), copied or renamed (an overlap, or a name
//! that is not its first record) and reordered segment. Old segments may be moved away
//! (archived): verification then starts at the oldest segment present, whose `rotated` record
//! is taken as the start, and says so ("records 1..S-1 ... NOT CHECKED", and the anchors older
//! than that not checked); `--archive DIR` verifies the archived segments with the rest. The
//! server's start reads only `audit.log` (and, after an interrupted rotation, the last
//! segment), not the whole history. The PostgreSQL audit table of replicas is not rotated.
//!
//! **Peer text never enters a record.** A connection's close reason and a malformed request's
//! bytes are the peer's free text (a client once closed with a patient's number as the reason):
//! records keep only codes and lengths (`closed by peer: code 7 (reason of 33 bytes not
//! recorded)`, `undecodable request of N bytes`).
//!
//! Records carry what protocol-spec/security.md §5.2 requires (time, client id, certificate
//! fingerprint, peer, connection and stream, request type, key periods and epochs requested and
//! current, counts, offsets, bytes, duration, both quotas before and after, outcome) and never a
//! number, element, proof, OPRF output, tag, label key, label, encrypted label, person id or
//! key.
//!
//! The module's files: `record.rs` (the record, the head file, the plain link), `key.rs` (the
//! operator's audit key), `scan.rs` (the chain walk), `verify.rs` (`audit verify`), `log.rs`
//! (the running server's writer), `segment.rs` (segment file names), `rotate.rs` (rotation and
//! `audit rotate`) and `anchor.rs` (anchors files).

mod anchor;
mod key;
mod log;
mod record;
mod rotate;
mod scan;
mod segment;
mod verify;

pub use anchor::{AuditAnchor, anchor_audit, check_anchor_path, read_anchors};
pub(crate) use anchor::{append_anchor, parse_anchors};
pub use key::{AUDIT_KEY_MIN_LEN, AuditKey};
pub(crate) use log::AuditLog;
pub(crate) use record::{AuditEntry, line_hash, write_head};
pub use record::{AuditHead, AuditRecord, GENESIS_HASH, ROTATED_EVENT};
pub use rotate::{AuditRotation, rotate_audit};
pub(crate) use scan::scan;
pub use verify::{
    AuditSummary, VerifyOptions, verify_audit, verify_audit_anchored, verify_audit_opts,
    verify_audit_with,
};

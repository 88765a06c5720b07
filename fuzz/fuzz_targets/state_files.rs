//! The server's state files: `state/quota.json` (first byte even) and the audit log with its
//! head and an anchors file (first byte odd: the rest is `audit.log`, NUL, `audit.head`, NUL,
//! anchors; a first byte of 3 mod 4 verifies with an audit key). The decoders must never
//! panic, and a quota file they accept must re-encode to JSON that decodes and re-encodes to
//! itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nayose_server::fuzzing;

/// The audit key of the seeds (`fuzz/seeds/state_files/`): 32 bytes of 0x42.
const KEY: [u8; 32] = [0x42; 32];

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    if kind % 2 == 0 {
        if let Ok((a, b)) = fuzzing::quota_file(rest) {
            assert_eq!(a, b, "quota.json is not stable under decode and encode");
        }
        return;
    }
    let mut parts = rest.splitn(3, |&b| b == 0);
    let log = parts.next().unwrap_or_default();
    let head = parts.next().unwrap_or_default();
    let anchors = parts.next().unwrap_or_default();
    let key = (kind % 4 == 3).then_some(KEY.as_slice());
    let _ = fuzzing::audit_files(log, head, anchors, key);
});

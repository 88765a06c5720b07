//! The client's OPRF-output cache (`oprf.bin`). The first byte's low bit asks for every whole
//! record's check to be recomputed (so that the decoder sees records that pass it); the rest is
//! the file. The decoder must never panic; the good prefix it keeps is whole records after the
//! header, never more than the file; what it decoded re-encodes to a file it keeps whole and
//! that decodes and re-encodes to itself.
//!
//! The client's table cache and partial base have no target yet (the compact base format is
//! being rewritten; see fuzz/README.md).

#![no_main]

use libfuzzer_sys::fuzz_target;
use nayose_client::fuzzing::{OPRF_HEADER_LEN, OPRF_RECORD_LEN, oprf_cache};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, file)) = data.split_first() else {
        return;
    };
    if let Ok(c) = oprf_cache(file, mode & 1 == 1) {
        assert!(c.good <= c.len, "good prefix past the end");
        assert!(c.good >= OPRF_HEADER_LEN);
        assert_eq!(
            (c.good - OPRF_HEADER_LEN) % OPRF_RECORD_LEN,
            0,
            "partial record kept"
        );
        assert_eq!(
            c.second_good,
            c.first.len(),
            "a re-encoded record failed its check"
        );
        assert_eq!(c.first, c.second, "not stable under decode and encode");
        if mode & 1 == 1 {
            // Every whole record was sealed, so only a trailing partial record is cut.
            assert_eq!(c.len - c.good, (c.len - OPRF_HEADER_LEN) % OPRF_RECORD_LEN);
        }
    }
});

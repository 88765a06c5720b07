//! The server's epoch files: `manifest.toml`, `keyperiod.toml`, `table.bin`, `persons.bin`,
//! `index.bin`, `deltas/<n>.bin`, the key files and `current`. The first byte picks the file;
//! the rest is its content (for `table.bin`, after the manifest's epoch and person count as two
//! u32 LE; for a sealed delta, without its SHA-256, which is appended here so that the decoder
//! gets past its checksum). Decoders must never panic; a binary file they accept must
//! re-encode to exactly its bytes (those formats are canonical), a TOML file to text that
//! decodes and re-encodes to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nayose_server::fuzzing;
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let result = match kind % 10 {
        0 => fuzzing::manifest(rest),
        1 => fuzzing::key_period_meta(rest),
        2 => {
            let Some((head, file)) = rest.split_first_chunk::<8>() else {
                return;
            };
            // Bytes 4..8 once held a person count; kept so the corpus still means the same.
            let epoch = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
            fuzzing::table_file(file, epoch)
        }
        3 => fuzzing::persons_file(rest),
        4 => fuzzing::index_file(rest),
        5 => fuzzing::delta_file(rest),
        6 => {
            let mut sealed = rest.to_vec();
            sealed.extend_from_slice(Sha256::digest(rest).as_slice());
            fuzzing::delta_file(&sealed)
        }
        7 => fuzzing::label_master_key_file(rest),
        8 => fuzzing::oprf_key_file(rest),
        _ => fuzzing::current_file(rest),
    };
    if let Ok((a, b)) = result {
        assert_eq!(a, b, "file kind {kind}: not re-encoded to the same bytes");
    }
});

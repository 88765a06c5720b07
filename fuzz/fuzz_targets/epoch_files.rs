//! The server's epoch files: `manifest.toml`, `keyperiod.toml`, `table.bin`, `persons.bin`,
//! `index.bin`, `deltas/<n>.bin`, the key files and `current`. The first byte picks the file;
//! the rest is its content (for `table.bin`, after the manifest's epoch as a u32 LE and 4 bytes
//! that are ignored; for a sealed delta, without its SHA-256, which is appended here so that the
//! decoder gets past its checksum; for a format-2 `persons.bin`, without the key check after its
//! magic, which is put in here). Decoders must never panic; a binary file they accept must
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
        3 => {
            // A format-2 map starts with its person-id key's check value, which a fuzzer cannot
            // guess: it is put in here, so the entries get parsed.
            let mut map = rest.to_vec();
            if map.starts_with(b"nayose-persons2\n") {
                map.splice(16..16, fuzzing::person_map_key_check());
            }
            fuzzing::persons_file(&map)
        }
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

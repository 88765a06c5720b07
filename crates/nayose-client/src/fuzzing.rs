//! Entry points for the cargo-fuzz targets in `fuzz/` (not an API: hidden from the docs, may
//! change at any time): the decoders of the client's cache files, without the files.

use nayose_oprf::Output;
use nayose_table::KeyPeriodId;

use crate::cache::{decode_oprf, encode_oprf};

/// Bytes of an `oprf.bin` header.
pub const OPRF_HEADER_LEN: usize = 32;
/// Bytes of one `oprf.bin` record.
pub const OPRF_RECORD_LEN: usize = 88;

/// What the OPRF-cache decoder made of one input.
#[derive(Debug)]
pub struct OprfCache {
    /// The length of the good prefix the client keeps (it cuts the file back to it).
    pub good: usize,
    /// The input's length (after sealing).
    pub len: usize,
    /// The decoded outputs, re-encoded in key order under the same header.
    pub first: Vec<u8>,
    /// `first` decoded and re-encoded again: must equal `first`.
    pub second: Vec<u8>,
    /// The good prefix `second`'s decoding found: must be all of it.
    pub second_good: usize,
}

fn sorted(map: std::collections::HashMap<[u8; 16], Output>) -> Vec<([u8; 16], Output)> {
    let mut v: Vec<_> = map.into_iter().collect();
    v.sort_by_key(|(k, _)| *k);
    v
}

/// `oprf.bin` of the key period `bytes[16..32]` names (`Err` for a wrong header). With `seal`,
/// the check of every whole record is recomputed first, so that the decoder sees records that
/// pass it and not only damaged ones.
pub fn oprf_cache(bytes: &[u8], seal: bool) -> Result<OprfCache, String> {
    let kp = bytes
        .get(16..OPRF_HEADER_LEN)
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .map(KeyPeriodId::from_bytes)
        .ok_or("no header")?;
    let mut bytes = bytes.to_vec();
    if seal {
        let records: Vec<([u8; 16], Output)> = bytes[OPRF_HEADER_LEN..]
            .chunks_exact(OPRF_RECORD_LEN)
            .map(|r| {
                let mut k = [0u8; 16];
                k.copy_from_slice(&r[..16]);
                let mut o = [0u8; 64];
                o.copy_from_slice(&r[16..80]);
                (k, Output::from_bytes(o))
            })
            .collect();
        let tail = bytes[OPRF_HEADER_LEN + records.len() * OPRF_RECORD_LEN..].to_vec();
        let mut sealed = bytes[..OPRF_HEADER_LEN].to_vec();
        encode_oprf(kp, false, &records, &mut sealed);
        sealed.extend_from_slice(&tail);
        bytes = sealed;
    }
    let (outputs, good) = decode_oprf(kp, &bytes).ok_or("wrong header")?;
    let mut first = Vec::new();
    encode_oprf(kp, true, &sorted(outputs), &mut first);
    let (again, second_good) = decode_oprf(kp, &first).ok_or("re-encoding refused")?;
    let mut second = Vec::new();
    encode_oprf(kp, true, &sorted(again), &mut second);
    Ok(OprfCache {
        good,
        len: bytes.len(),
        first,
        second,
        second_good,
    })
}

//! Entry points for the cargo-fuzz targets in `fuzz/` (not an API: hidden from the docs, may
//! change at any time). Each hands bytes to the decoder the server uses for one of its files,
//! without the file: the decoders are the same functions `serve`, `check`, `build` and `audit
//! verify` call after reading. A rejected input is `Err` with the decoder's message; an accepted
//! one comes back re-encoded by the server's own encoder, as a pair the target asserts equal:
//! (input, re-encoding) for the binary formats, which are canonical, and (re-encoding,
//! re-encoding of its decoding) for the TOML and JSON files, which are not.

use std::collections::HashSet;
use std::path::Path;

use nayose_oprf::ServerKey;
use nayose_table::{KeyPeriodId, LabelMasterKey, RecordTable};

use crate::audit::{AuditAnchor, AuditHead, AuditKey, parse_anchors, scan};
use crate::epoch::{
    KeyPeriodMeta, Manifest, TABLE_MAGIC, decode_delta, decode_index, encode_delta, encode_index,
    to_toml,
};
use crate::layout::{epoch_dir_name, parse_epoch_dir_name};
use crate::person_map::{
    PersonIdKey, PersonKey, PersonMapError, PersonMapFormat, encode_person_map, person_map_format,
    read_person_map,
};
use crate::quota::QuotaFile;

/// Two encodings the target asserts equal.
pub type Pair = (Vec<u8>, Vec<u8>);

fn path() -> &'static Path {
    Path::new("fuzz-input")
}

/// `epochs/<n>/manifest.toml` (format 2), parsed as `read_manifest` does.
pub fn manifest(bytes: &[u8]) -> Result<Pair, String> {
    fn parse(text: &str) -> Result<Manifest, String> {
        let m: Manifest = toml::from_str(text).map_err(|e| e.to_string())?;
        if m.format != 2 {
            return Err(format!("format {}", m.format));
        }
        Ok(m)
    }
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let first = to_toml(&parse(text)?).map_err(|e| e.to_string())?;
    let second = to_toml(&parse(&first)?).map_err(|e| e.to_string())?;
    Ok((first.into_bytes(), second.into_bytes()))
}

/// `keyperiods/<n>/keyperiod.toml`, parsed as `KeyPeriod::load` does.
pub fn key_period_meta(bytes: &[u8]) -> Result<Pair, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let parse = |t: &str| toml::from_str::<KeyPeriodMeta>(t).map_err(|e| e.to_string());
    let first = to_toml(&parse(text)?).map_err(|e| e.to_string())?;
    let second = to_toml(&parse(&first)?).map_err(|e| e.to_string())?;
    Ok((first.into_bytes(), second.into_bytes()))
}

/// `table.bin` of an epoch with `epoch` from its manifest (the entry count is the file's): the
/// header and length check of `Epoch::load`, then nayose-table's record check and the digest.
pub fn table_file(bytes: &[u8], epoch: u32) -> Result<Pair, String> {
    let records = bytes
        .strip_prefix(TABLE_MAGIC.as_slice())
        .ok_or("wrong file header")?;
    let rt = RecordTable::new(KeyPeriodId::from_bytes([7; 16]), epoch, records)
        .map_err(|e| e.to_string())?;
    let _ = rt.digest(&nayose_table::UpsertChain([0; 32]));
    let mut out = TABLE_MAGIC.to_vec();
    for i in 0..rt.len() {
        out.extend_from_slice(rt.entry(i).to_record().as_slice());
    }
    Ok((bytes.to_vec(), out))
}

/// The person-id key of the fuzzed maps (a format-2 input must carry its key check to get past
/// the header; [`person_map_key_check`] gives it to the target's seeds).
fn fuzz_person_key() -> PersonIdKey {
    PersonIdKey::from_bytes(&zeroize::Zeroizing::new([7; 32]))
}

/// The key check a fuzzed format-2 map must carry.
pub fn person_map_key_check() -> [u8; 16] {
    fuzz_person_key().key_check()
}

/// `persons.bin` (format 2, or format 1 keyed under a fixed test key), checked against the count
/// its own header holds (the manifest's, in a build) and re-encoded in format 2; the pair is
/// (input, re-encoding) for format 2 and (re-encoding, re-encoding of that) for format 1.
pub fn persons_file(bytes: &[u8]) -> Result<Pair, String> {
    fn read(mut r: &[u8]) -> Result<Vec<u8>, String> {
        let err = |e: PersonMapError| match e {
            PersonMapError::Io(e) => e.to_string(),
            PersonMapError::Corrupt(r) => r,
            PersonMapError::WrongKey => "made with another person-id key".into(),
        };
        let head = r.split_off(..16).ok_or("truncated header")?;
        let format = person_map_format(head.try_into().map_err(|_| "header")?).map_err(err)?;
        // The count follows the key check in format 2.
        let at = if format == PersonMapFormat::Keyed {
            16
        } else {
            0
        };
        let expected = r
            .get(at..at + 8)
            .and_then(|c| <[u8; 8]>::try_from(c).ok())
            .and_then(|c| u32::try_from(u64::from_le_bytes(c)).ok())
            .ok_or("count")?;
        let key = fuzz_person_key();
        let mut entries: Vec<(PersonKey, u32)> = Vec::new();
        let (mut keys, mut serials) = (HashSet::new(), HashSet::new());
        read_person_map(&mut r, format, expected, &key, &mut |k, s| {
            entries.push((k, s));
            keys.insert(k) && serials.insert(s)
        })
        .map_err(err)?;
        if !r.is_empty() {
            return Err("bytes after the last entry".into());
        }
        entries.sort_unstable();
        Ok(encode_person_map(
            &fuzz_person_key(),
            entries.len(),
            entries.iter().map(|(k, s)| (k, *s)),
        ))
    }
    let out = read(bytes)?;
    if bytes.starts_with(crate::person_map::PERSONS_MAGIC) {
        Ok((bytes.to_vec(), out))
    } else {
        let again = read(&out)?;
        Ok((out, again))
    }
}

/// `index.bin`, as the next build's diff reads it.
pub fn index_file(bytes: &[u8]) -> Result<Pair, String> {
    let index = decode_index("fuzz", path(), bytes).map_err(|e| e.to_string())?;
    let out = encode_index(index.len(), (0..index.len()).map(|i| index.get(i)));
    Ok((bytes.to_vec(), out.to_vec()))
}

/// `deltas/<epoch>.bin` (checksum included).
pub fn delta_file(bytes: &[u8]) -> Result<Pair, String> {
    let d = decode_delta("fuzz", path(), bytes).map_err(|e| e.to_string())?;
    // Each upsert as the 56-byte record the build hands to encode_delta (the version is not
    // stored in a delta: the delta's epoch is).
    let records: Vec<_> = d
        .upserts
        .iter()
        .map(|u| {
            nayose_table::TableEntry {
                tag: u.tag,
                label_key: u.label_key.clone(),
                person: u.person,
                version: d.epoch,
            }
            .to_record()
        })
        .collect();
    let upserts: Vec<&[u8]> = records.iter().map(|r| &r[..]).collect();
    let out = encode_delta(d.key_period, d.epoch, d.previous, &d.removed, &upserts);
    Ok((bytes.to_vec(), out.to_vec()))
}

fn key_bytes(bytes: &[u8]) -> Result<&[u8; 32], String> {
    bytes
        .try_into()
        .map_err(|_| format!("{} bytes, a key file holds 32", bytes.len()))
}

/// A key period's `label-master.key` (or the data directory's).
pub fn label_master_key_file(bytes: &[u8]) -> Result<Pair, String> {
    let k = LabelMasterKey::from_bytes(key_bytes(bytes)?).map_err(|e| e.to_string())?;
    Ok((bytes.to_vec(), k.to_bytes().to_vec()))
}

/// A key period's `oprf.key` (skS).
pub fn oprf_key_file(bytes: &[u8]) -> Result<Pair, String> {
    let k = ServerKey::from_bytes(key_bytes(bytes)?).map_err(|e| e.to_string())?;
    Ok((bytes.to_vec(), k.to_bytes().to_vec()))
}

/// `DATA_DIR/current` (the epoch directory name and a newline).
pub fn current_file(bytes: &[u8]) -> Result<Pair, String> {
    let name = std::str::from_utf8(bytes)
        .map_err(|e| e.to_string())?
        .trim_end_matches('\n');
    let n = parse_epoch_dir_name(name).ok_or("not an epoch directory name")?;
    Ok((
        name.as_bytes().to_vec(),
        epoch_dir_name(u64::from(n)).into_bytes(),
    ))
}

/// `state/quota.json`, parsed as `QuotaBook::open` does.
pub fn quota_file(bytes: &[u8]) -> Result<Pair, String> {
    let parse = |b: &[u8]| serde_json::from_slice::<QuotaFile>(b).map_err(|e| e.to_string());
    let encode = |q: &QuotaFile| serde_json::to_vec_pretty(q).map_err(|e| e.to_string());
    let first = encode(&parse(bytes)?)?;
    let second = encode(&parse(&first)?)?;
    Ok((first, second))
}

/// `audit/audit.log` with the head file's bytes and an anchors file's bytes, walked as `audit
/// verify` walks them (with the audit key `key`, if given).
pub fn audit_files(
    log: &[u8],
    head: &[u8],
    anchors: &[u8],
    key: Option<&[u8]>,
) -> Result<(), String> {
    let key = key.and_then(AuditKey::from_bytes);
    let head_count = if head.is_empty() {
        0
    } else {
        serde_json::from_slice::<AuditHead>(head)
            .map_err(|e| e.to_string())?
            .count
    };
    let anchors: Vec<AuditAnchor> = match std::str::from_utf8(anchors) {
        Ok(text) => parse_anchors(path(), text).map_err(|e| e.to_string())?,
        Err(_) => Vec::new(),
    };
    scan(path(), log, head_count, key.as_ref(), &anchors)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

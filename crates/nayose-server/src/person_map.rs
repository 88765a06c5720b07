//! The person map: which serial each person of the registry has (table.md §3.2), without the
//! registry's person ids.
//!
//! A person id (the registry's identifier of a person, possibly a national identifier) is
//! turned, on the build's parsing threads, into a **person key**: the first 16 bytes of
//! HMAC-SHA256 under the data directory's person-id key K_P (`DATA_DIR/person-id.key`, 32
//! bytes from the OS RNG, owner-only, never rotated: it and the map are what keeps labels
//! stable). Each person key gets a **serial** drawn uniformly at random among the unused 32-bit
//! values when the person is first seen, and keeps it while the data directory lives. So no file
//! the server writes holds a person id, a serial says nothing about the person or about when it
//! was first seen, and nobody without K_P can test a guessed id against the map.
//!
//! `persons.bin` (format 2; server-local, never on the wire):
//!
//! ```text
//! magic "nayose-persons2\n" (16) || key check (16) || count n (u64 LE)
//!   || n × (person key (16) || serial (u32 LE))
//! ```
//!
//! the key check is HMAC-SHA256(K_P, "nayose person-id key check")[0..16], so a build given
//! another K_P (a wrong backup, a key made up to get past a missing one) refuses the map instead
//! of silently giving every person a new serial; entries strictly ascending by person key,
//! serials pairwise distinct, n equal to the manifest's `persons` and at most [`MAX_PERSONS`].
//! The order is by key, not by first appearance, so the file does not tell in which order
//! persons appeared either.
//!
//! Format 1 (`nayose-persons1\n`: count, n + 1 u64 LE offsets, the raw ids back to back; the
//! serial of an id is its position) is still read, once, by the first build after an upgrade:
//! each id is keyed and keeps its serial, so no label changes, and the new epoch is written in
//! format 2. Those persons keep their sequential serials (in first-seen order); only persons
//! first seen after the upgrade get random ones. The format-1 file stays in the previous epoch's
//! directory until that epoch is pruned (and in any backup made before the upgrade).

use std::io::{self, Read};

use hmac::{KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// First 16 bytes of `persons.bin` (format 2).
pub(crate) const PERSONS_MAGIC: &[u8; 16] = b"nayose-persons2\n";
/// First 16 bytes of a format-1 `persons.bin` (raw ids; read only to migrate).
pub(crate) const PERSONS_MAGIC_V1: &[u8; 16] = b"nayose-persons1\n";
/// Longest person id accepted, in bytes.
pub(crate) const MAX_PERSON_ID_LEN: usize = 1024;
/// Bytes of a person key.
pub(crate) const PERSON_KEY_LEN: usize = 16;
/// Bytes of one format-2 entry: person key and serial.
pub(crate) const PERSON_ENTRY_LEN: usize = PERSON_KEY_LEN + 4;
/// Length of K_P.
pub(crate) const PERSON_ID_KEY_LEN: usize = 32;
/// Bytes of the format-2 header: magic, key check, count.
pub(crate) const PERSON_MAP_HEADER_LEN: usize = 16 + PERSON_KEY_LEN + 8;
/// At most this many persons: a random draw among the free serials then succeeds with
/// probability at least 1/2 (the national registry has about 2^27).
pub(crate) const MAX_PERSONS: u32 = 1 << 31;
/// What K_P keys to make the key check of a map.
const KEY_CHECK_INPUT: &[u8] = b"nayose person-id key check";

/// A person key: HMAC-SHA256(K_P, person id)[0..16].
pub(crate) type PersonKey = [u8; PERSON_KEY_LEN];

/// K_P, the data directory's person-id key. Zeroized on drop; `Debug` prints nothing of it.
#[derive(Clone)]
pub(crate) struct PersonIdKey {
    /// HMAC-SHA256 keyed once (inner and outer pads absorbed), cloned per id.
    mac: Hmac,
}

type Hmac = hmac::Hmac<Sha256>;

impl std::fmt::Debug for PersonIdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PersonIdKey(..)")
    }
}

impl PersonIdKey {
    /// The key of 32 bytes (the caller zeroizes its copy).
    pub(crate) fn from_bytes(bytes: &Zeroizing<[u8; PERSON_ID_KEY_LEN]>) -> Self {
        // HMAC accepts keys of any length.
        let mac = <Hmac as KeyInit>::new_from_slice(bytes.as_slice())
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        PersonIdKey { mac }
    }

    /// The key check value a format-2 map made with this key carries.
    pub(crate) fn key_check(&self) -> PersonKey {
        self.person_key(KEY_CHECK_INPUT)
    }

    /// The person key of `id`.
    pub(crate) fn person_key(&self, id: &[u8]) -> PersonKey {
        let mut mac = self.mac.clone();
        mac.update(id);
        let full = mac.finalize().into_bytes();
        let mut k = [0u8; PERSON_KEY_LEN];
        k.copy_from_slice(&full[..PERSON_KEY_LEN]);
        k
    }
}

/// Writes `persons.bin` (format 2) of a map made with `key` through `put`: `entries` must be
/// ascending by key. The one definition of the layout: the build streams it to its file,
/// [`encode_person_map`] into memory.
pub(crate) fn put_person_map<'a, E>(
    key: &PersonIdKey,
    count: usize,
    entries: impl Iterator<Item = (&'a PersonKey, u32)>,
    put: &mut impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    put(PERSONS_MAGIC)?;
    put(&key.key_check())?;
    put(&(count as u64).to_le_bytes())?;
    let mut e = [0u8; PERSON_ENTRY_LEN];
    for (key, serial) in entries {
        e[..PERSON_KEY_LEN].copy_from_slice(key);
        e[PERSON_KEY_LEN..].copy_from_slice(&serial.to_le_bytes());
        put(&e)?;
    }
    Ok(())
}

/// `persons.bin` in memory ([`put_person_map`]).
pub(crate) fn encode_person_map<'a>(
    key: &PersonIdKey,
    count: usize,
    entries: impl Iterator<Item = (&'a PersonKey, u32)>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(PERSON_MAP_HEADER_LEN + count * PERSON_ENTRY_LEN);
    put_person_map::<std::convert::Infallible>(key, count, entries, &mut |b| {
        out.extend_from_slice(b);
        Ok(())
    })
    .unwrap_or_else(|never| match never {});
    out
}

/// Why a person map could not be read.
#[derive(Debug)]
pub(crate) enum PersonMapError {
    /// Reading failed.
    Io(io::Error),
    /// The bytes break the format (the reason names what).
    Corrupt(String),
    /// The map was made with another person-id key.
    WrongKey,
}

impl From<io::Error> for PersonMapError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            PersonMapError::Corrupt("the file ends early".into())
        } else {
            PersonMapError::Io(e)
        }
    }
}

/// Which format a map was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PersonMapFormat {
    /// Format 2: person keys and random serials.
    Keyed,
    /// Format 1: raw person ids, serial = position (migrated by the reading build).
    RawIds,
}

/// The format of a `persons.bin` whose first 16 bytes are `magic`.
pub(crate) fn person_map_format(magic: &[u8; 16]) -> Result<PersonMapFormat, PersonMapError> {
    match magic {
        m if m == PERSONS_MAGIC => Ok(PersonMapFormat::Keyed),
        m if m == PERSONS_MAGIC_V1 => Ok(PersonMapFormat::RawIds),
        _ => Err(PersonMapError::Corrupt(
            "wrong file header (not a person map)".into(),
        )),
    }
}

/// Reads a person map after its 16-byte header (`format` from [`person_map_format`]) from `r`,
/// handing each (person key, serial) to `add` in file order; `add` returns `false` for a key or
/// serial already present. `expected` is the manifest's person count; `key` must be the key a
/// format-2 map was made with (its key check) and keys format-1 ids. The caller checks that
/// nothing follows and the file's checksum.
pub(crate) fn read_person_map(
    r: &mut impl Read,
    format: PersonMapFormat,
    expected: u32,
    key: &PersonIdKey,
    add: &mut impl FnMut(PersonKey, u32) -> bool,
) -> Result<(), PersonMapError> {
    if format == PersonMapFormat::Keyed {
        let mut check = [0u8; PERSON_KEY_LEN];
        r.read_exact(&mut check)?;
        if check != key.key_check() {
            return Err(PersonMapError::WrongKey);
        }
    }
    let mut count = [0u8; 8];
    r.read_exact(&mut count)?;
    let count = u64::from_le_bytes(count);
    if count != u64::from(expected) {
        return Err(PersonMapError::Corrupt(format!(
            "{count} persons, the manifest says {expected}"
        )));
    }
    if count > u64::from(MAX_PERSONS) {
        return Err(PersonMapError::Corrupt(format!(
            "{count} persons, more than the {MAX_PERSONS} a map may hold"
        )));
    }
    match format {
        PersonMapFormat::Keyed => {
            let mut last: Option<PersonKey> = None;
            let mut e = [0u8; PERSON_ENTRY_LEN];
            for i in 0..count {
                r.read_exact(&mut e)?;
                let mut k = [0u8; PERSON_KEY_LEN];
                k.copy_from_slice(&e[..PERSON_KEY_LEN]);
                if last.is_some_and(|l| l >= k) {
                    return Err(PersonMapError::Corrupt(format!(
                        "person keys are not strictly ascending at entry {i}"
                    )));
                }
                last = Some(k);
                let serial = u32::from_le_bytes([e[16], e[17], e[18], e[19]]);
                if !add(k, serial) {
                    return Err(PersonMapError::Corrupt(format!(
                        "serial {serial} is given twice (entry {i})"
                    )));
                }
            }
        }
        PersonMapFormat::RawIds => {
            // Format 1: offsets first (8 bytes per person, for this one migration), then ids.
            let n = usize::try_from(count)
                .map_err(|_| PersonMapError::Corrupt("more persons than memory".into()))?;
            let mut offsets = Vec::with_capacity(n.saturating_add(1).min(1 << 24));
            let mut b = [0u8; 8];
            for i in 0..=n {
                r.read_exact(&mut b)?;
                let o = u64::from_le_bytes(b);
                let last = offsets.last().copied().unwrap_or(0);
                if (i == 0 && o != 0) || o < last || o - last > MAX_PERSON_ID_LEN as u64 {
                    return Err(PersonMapError::Corrupt(format!("bad offset of person {i}")));
                }
                offsets.push(o);
            }
            let mut id = Zeroizing::new(Vec::with_capacity(MAX_PERSON_ID_LEN));
            for (serial, w) in offsets.windows(2).enumerate() {
                id.resize((w[1] - w[0]) as usize, 0);
                r.read_exact(&mut id)?;
                let serial = u32::try_from(serial)
                    .map_err(|_| PersonMapError::Corrupt("more than 2^32 persons".into()))?;
                if !add(key.person_key(&id), serial) {
                    return Err(PersonMapError::Corrupt(format!(
                        "person {serial} repeats an earlier id"
                    )));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PersonIdKey {
        PersonIdKey::from_bytes(&Zeroizing::new([9u8; 32]))
    }

    fn read_all(bytes: &[u8], expected: u32) -> Result<Vec<(PersonKey, u32)>, PersonMapError> {
        let mut r = bytes;
        let mut head = [0u8; 16];
        r.read_exact(&mut head)?;
        let format = person_map_format(&head)?;
        let mut out: Vec<(PersonKey, u32)> = Vec::new();
        read_person_map(&mut r, format, expected, &key(), &mut |k, s| {
            let fresh = out.iter().all(|(k2, s2)| *k2 != k && *s2 != s);
            out.push((k, s));
            fresh
        })?;
        if !r.is_empty() {
            return Err(PersonMapError::Corrupt("trailing bytes".into()));
        }
        Ok(out)
    }

    #[test]
    fn person_keys_are_hmac_sha256_truncated() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut k = Zeroizing::new([0u8; 32]);
        k[..4].copy_from_slice(b"Jefe");
        // HMAC pads a short key with zeros to the block size, so "Jefe" and "Jefe" || 0^28
        // are the same key.
        let got = PersonIdKey::from_bytes(&k).person_key(b"what do ya want for nothing?");
        assert_eq!(hex::encode(got), "5bdcc146bf60754e6a042426089575c7");
    }

    #[test]
    fn keyed_map_round_trips_and_rejects_disorder_and_repeats() {
        let a = ([1u8; 16], 7u32);
        let b = ([2u8; 16], 3u32);
        let bytes = encode_person_map(&key(), 2, [(&a.0, a.1), (&b.0, b.1)].into_iter());
        assert_eq!(bytes.len(), PERSON_MAP_HEADER_LEN + 2 * PERSON_ENTRY_LEN);
        assert_eq!(read_all(&bytes, 2).expect("read"), vec![a, b]);
        assert!(
            matches!(read_all(&bytes, 3), Err(PersonMapError::Corrupt(m)) if m.contains("manifest says 3"))
        );
        let disorder = encode_person_map(&key(), 2, [(&b.0, b.1), (&a.0, a.1)].into_iter());
        assert!(
            matches!(read_all(&disorder, 2), Err(PersonMapError::Corrupt(m)) if m.contains("ascending"))
        );
        let twice = encode_person_map(&key(), 2, [(&a.0, 5), (&b.0, 5)].into_iter());
        assert!(
            matches!(read_all(&twice, 2), Err(PersonMapError::Corrupt(m)) if m.contains("twice"))
        );
        assert!(matches!(
            read_all(&bytes[..bytes.len() - 1], 2),
            Err(PersonMapError::Corrupt(m)) if m.contains("ends early")
        ));
        // Made with another key: refused before any entry is used.
        let other = PersonIdKey::from_bytes(&Zeroizing::new([8u8; 32]));
        let foreign = encode_person_map(&other, 2, [(&a.0, a.1), (&b.0, b.1)].into_iter());
        assert!(matches!(
            read_all(&foreign, 2),
            Err(PersonMapError::WrongKey)
        ));
    }

    #[test]
    fn raw_id_maps_are_keyed_and_keep_their_positions_as_serials() {
        let mut v1 = PERSONS_MAGIC_V1.to_vec();
        v1.extend_from_slice(&3u64.to_le_bytes());
        for o in [0u64, 2, 5, 5] {
            v1.extend_from_slice(&o.to_le_bytes());
        }
        v1.extend_from_slice(b"P1P22");
        let got = read_all(&v1, 3).expect("read");
        let k = key();
        assert_eq!(
            got,
            vec![
                (k.person_key(b"P1"), 0),
                (k.person_key(b"P22"), 1),
                (k.person_key(b""), 2)
            ]
        );
        let mut bad = v1.clone();
        bad[24..32].copy_from_slice(&1u64.to_le_bytes());
        assert!(
            matches!(read_all(&bad, 3), Err(PersonMapError::Corrupt(m)) if m.contains("offset of person 0"))
        );
    }

    #[test]
    fn debug_prints_no_key() {
        assert_eq!(format!("{:?}", key()), "PersonIdKey(..)");
    }
}

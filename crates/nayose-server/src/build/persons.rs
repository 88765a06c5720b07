//! Person ids → stable serials, interned while the registry is read.
//!
//! A person's serial is its index in the data directory's person list (`persons.bin`), which
//! only grows: the previous epoch's list (the seed, also across key periods) keeps its order,
//! and ids the registry names for the first time get the next serials in the order they are
//! first seen. So a person's serial — and the labels every client derives from it — never
//! changes while the data directory lives (table.md §3.2).
//!
//! Memory: the seed's ids stay in their verified map; the table holds one `u32` per id (a
//! `hashbrown::HashTable` of serials hashed by the id they name) and the new ids are kept back
//! to back with their end offsets — about 25 bytes per person instead of a map of owned
//! strings (about 70).

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;
use std::hash::BuildHasher;

use crate::epoch::PersonsView;

/// The ids by serial: the seed's (in their map), then the new ones back to back.
struct Ids<'a> {
    seed: Option<PersonsView<'a>>,
    seed_len: u32,
    new_bytes: Vec<u8>,
    new_ends: Vec<u64>,
}

impl Ids<'_> {
    fn len(&self) -> u32 {
        self.seed_len + self.new_ends.len() as u32
    }

    fn get(&self, k: u32) -> &[u8] {
        match (k.checked_sub(self.seed_len), &self.seed) {
            (None, Some(s)) => s.get(k as usize),
            (None, None) => &[],
            (Some(j), _) => {
                let j = j as usize;
                let start = if j == 0 {
                    0
                } else {
                    self.new_ends[j - 1] as usize
                };
                &self.new_bytes[start..self.new_ends[j] as usize]
            }
        }
    }
}

/// The person list of a build: the seed's ids, then the new ones, and a lookup table.
pub(super) struct PersonTable<'a> {
    ids: Ids<'a>,
    table: HashTable<u32>,
}

/// More persons than serials (u32).
#[derive(Debug)]
pub(super) struct TooManyPersons;

/// The registry comes from the operator, so hash flooding is not a threat and FxHash serves
/// (SipHash was a tenth of the read).
fn hash(id: &[u8]) -> u64 {
    FxBuildHasher.hash_one(id)
}

impl<'a> PersonTable<'a> {
    /// A table holding the seed's ids with their serials (0, 1, …).
    pub(super) fn new(seed: Option<PersonsView<'a>>) -> Result<Self, TooManyPersons> {
        let seed_len = u32::try_from(seed.map_or(0, |s| s.len())).map_err(|_| TooManyPersons)?;
        let mut t = PersonTable {
            ids: Ids {
                seed,
                seed_len,
                new_bytes: Vec::new(),
                new_ends: Vec::new(),
            },
            table: HashTable::with_capacity(seed_len as usize),
        };
        let ids = &t.ids;
        for k in 0..seed_len {
            // A seed list holds every id once (the build that wrote it interned them).
            t.table
                .insert_unique(hash(ids.get(k)), k, |&k| hash(ids.get(k)));
        }
        Ok(t)
    }

    /// Number of persons (seed and new).
    pub(super) fn len(&self) -> u32 {
        self.ids.len()
    }

    /// The id of serial `i` (`i < len()`; panics otherwise, like slice indexing).
    pub(super) fn get(&self, i: u32) -> &[u8] {
        self.ids.get(i)
    }

    /// The serial of `id`, a new one if it was not seen before.
    pub(super) fn intern(&mut self, id: &[u8]) -> Result<u32, TooManyPersons> {
        let h = hash(id);
        let ids = &self.ids;
        if let Some(&k) = self.table.find(h, |&k| ids.get(k) == id) {
            return Ok(k);
        }
        let k = self.ids.len();
        if k == u32::MAX {
            return Err(TooManyPersons);
        }
        self.ids.new_bytes.extend_from_slice(id);
        self.ids.new_ends.push(self.ids.new_bytes.len() as u64);
        let ids = &self.ids;
        self.table.insert_unique(h, k, |&k| hash(ids.get(k)));
        Ok(k)
    }

    /// Frees the lookup table once no more ids will be interned (the ids stay).
    pub(super) fn seal(&mut self) {
        self.table = HashTable::new();
    }

    /// Every id in serial order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &[u8]> + Clone + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::epoch::encode_persons;

    #[test]
    fn seed_serials_are_kept_and_new_ids_follow_in_first_seen_order() {
        let seed_ids: [&[u8]; 3] = [b"P1", b"P2", b"P3"];
        let bytes = encode_persons(3, seed_ids.iter().copied());
        let seed = PersonsView::split(&bytes).expect("seed");
        let mut t = PersonTable::new(Some(seed)).expect("table");
        assert_eq!(t.intern(b"P2").expect("intern"), 1);
        assert_eq!(t.intern(b"N1").expect("intern"), 3);
        assert_eq!(t.intern(b"P1").expect("intern"), 0);
        assert_eq!(t.intern(b"N2").expect("intern"), 4);
        assert_eq!(t.intern(b"N1").expect("intern"), 3);
        assert_eq!((t.len(), t.ids.seed_len), (5, 3));
        t.seal();
        let all: Vec<&[u8]> = t.iter().collect();
        assert_eq!(all, [&b"P1"[..], b"P2", b"P3", b"N1", b"N2"]);
    }

    #[test]
    fn many_ids_without_a_seed() {
        let mut t = PersonTable::new(None).expect("table");
        for round in 0..2 {
            for i in 0..10_000u32 {
                let id = format!("person-{i}");
                assert_eq!(t.intern(id.as_bytes()).expect("intern"), i, "round {round}");
            }
        }
        assert_eq!(t.get(9_999), b"person-9999");
    }
}

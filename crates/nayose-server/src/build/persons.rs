//! Person keys → stable random serials, interned while the registry is read.
//!
//! The table starts with the previous person map (the seed, also across key periods: serials,
//! and so labels, outlive key periods), read from `persons.bin` (`crate::person_map`). A person
//! key the registry names for the first time gets a serial drawn uniformly at random among the
//! 32-bit values no person holds; a known key keeps its serial. So a person's serial — and the
//! labels every client derives from it — never changes while the data directory lives
//! (table.md §3.2), and a serial tells nothing about the person or the order of arrival (except
//! for persons migrated from a format-1 list, who keep their sequential serials).
//!
//! Within a build, a person is named by its **index** (seed persons first, then new ones in
//! order of first appearance): rows carry the index, records the serial (`serials()[index]`).
//!
//! Memory: 20 bytes per person (key and serial) plus two `hashbrown::HashTable<u32>` of about
//! 5.7 bytes each (one finds a key, one tells whether a serial is taken): about 32 bytes per
//! person, about 10 per number at the national ratio of 3.2 numbers per person.

use hashbrown::HashTable;
use rand::RngCore;

use crate::person_map::{MAX_PERSONS, PersonKey};

/// The person list of a build and its lookup tables.
pub(super) struct PersonTable {
    keys: Vec<PersonKey>,
    serials: Vec<u32>,
    /// Indices, hashed by their person key.
    by_key: HashTable<u32>,
    /// Serials in use, hashed by value.
    taken: HashTable<u32>,
}

/// More persons than [`MAX_PERSONS`].
#[derive(Debug)]
pub(super) struct TooManyPersons;

/// Person keys are HMAC outputs: their first 8 bytes are already uniform and unknown to whoever
/// wrote the registry.
fn key_hash(k: &PersonKey) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&k[..8]);
    u64::from_le_bytes(b)
}

/// Serials are uniform in 32 bits; the multiplication spreads them over the 64-bit hash,
/// whose top bits hashbrown uses as its tag.
fn serial_hash(s: u32) -> u64 {
    u64::from(s).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl PersonTable {
    /// An empty table with room for `capacity` persons.
    pub(super) fn with_capacity(capacity: usize) -> Self {
        PersonTable {
            keys: Vec::with_capacity(capacity),
            serials: Vec::with_capacity(capacity),
            by_key: HashTable::with_capacity(capacity),
            taken: HashTable::with_capacity(capacity),
        }
    }

    /// Adds a seed person with its serial; `false` (and nothing added) if the key or the serial
    /// is already in the table.
    pub(super) fn insert_seed(&mut self, key: PersonKey, serial: u32) -> bool {
        if self.len() >= MAX_PERSONS || self.find(&key).is_some() || self.is_taken(serial) {
            return false;
        }
        self.push(key, serial);
        true
    }

    fn find(&self, key: &PersonKey) -> Option<u32> {
        let keys = &self.keys;
        self.by_key
            .find(key_hash(key), |&i| keys[i as usize] == *key)
            .copied()
    }

    fn is_taken(&self, serial: u32) -> bool {
        self.taken
            .find(serial_hash(serial), |&s| s == serial)
            .is_some()
    }

    fn push(&mut self, key: PersonKey, serial: u32) -> u32 {
        let i = self.keys.len() as u32;
        self.keys.push(key);
        self.serials.push(serial);
        let keys = &self.keys;
        self.by_key
            .insert_unique(key_hash(&key), i, |&j| key_hash(&keys[j as usize]));
        self.taken
            .insert_unique(serial_hash(serial), serial, |&s| serial_hash(s));
        i
    }

    /// Number of persons (seed and new).
    pub(super) fn len(&self) -> u32 {
        self.keys.len() as u32
    }

    /// The index of the person `key`; a new person gets a fresh random serial from `rng`.
    pub(super) fn intern(
        &mut self,
        key: &PersonKey,
        rng: &mut impl RngCore,
    ) -> Result<u32, TooManyPersons> {
        if let Some(i) = self.find(key) {
            return Ok(i);
        }
        if self.len() >= MAX_PERSONS {
            return Err(TooManyPersons);
        }
        let serial = loop {
            let s = rng.next_u32();
            if !self.is_taken(s) {
                break s;
            }
        };
        Ok(self.push(*key, serial))
    }

    /// Frees the lookup tables once no more persons will be interned.
    pub(super) fn seal(&mut self) {
        self.by_key = HashTable::new();
        self.taken = HashTable::new();
    }

    /// Serial by index.
    pub(super) fn serials(&self) -> &[u32] {
        &self.serials
    }

    /// Every (person key, serial), ascending by key (the order of `persons.bin`).
    pub(super) fn sorted(&self) -> impl Iterator<Item = (&PersonKey, u32)> + '_ {
        let mut order: Vec<u32> = (0..self.len()).collect();
        order.sort_unstable_by_key(|&i| self.keys[i as usize]);
        order
            .into_iter()
            .map(|i| (&self.keys[i as usize], self.serials[i as usize]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn k(i: u32) -> PersonKey {
        let mut k = [0u8; 16];
        k[..4].copy_from_slice(&i.to_be_bytes());
        k[15] = 0xa5;
        k
    }

    #[test]
    fn seed_serials_are_kept_and_new_persons_get_fresh_random_serials() {
        let mut t = PersonTable::with_capacity(0);
        assert!(t.insert_seed(k(1), 10));
        assert!(t.insert_seed(k(2), 20));
        assert!(!t.insert_seed(k(1), 30), "a key twice");
        assert!(!t.insert_seed(k(3), 20), "a serial twice");
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(t.intern(&k(2), &mut rng).expect("intern"), 1);
        assert_eq!(t.intern(&k(7), &mut rng).expect("intern"), 2);
        assert_eq!(t.intern(&k(1), &mut rng).expect("intern"), 0);
        assert_eq!(t.intern(&k(7), &mut rng).expect("intern"), 2);
        assert_eq!(t.len(), 3);
        let s = t.serials().to_vec();
        assert_eq!(&s[..2], &[10, 20]);
        assert!(s[2] != 10 && s[2] != 20);
        t.seal();
        let sorted: Vec<_> = t.sorted().map(|(k, s)| (*k, s)).collect();
        assert_eq!(sorted, vec![(k(1), 10), (k(2), 20), (k(7), s[2])]);
    }

    #[test]
    fn draws_skip_taken_serials() {
        // An RNG whose first draws are taken serials: the table draws again.
        struct Fixed(Vec<u32>);
        impl RngCore for Fixed {
            fn next_u32(&mut self) -> u32 {
                self.0.remove(0)
            }
            fn next_u64(&mut self) -> u64 {
                u64::from(self.next_u32())
            }
            fn fill_bytes(&mut self, dst: &mut [u8]) {
                for b in dst {
                    *b = self.next_u32() as u8;
                }
            }
        }
        let mut t = PersonTable::with_capacity(0);
        assert!(t.insert_seed(k(1), 5));
        let mut rng = Fixed(vec![5, 5, 9, 9, 11]);
        assert_eq!(t.intern(&k(2), &mut rng).expect("intern"), 1);
        assert_eq!(t.intern(&k(3), &mut rng).expect("intern"), 2);
        assert_eq!(t.serials(), &[5, 9, 11]);
    }

    #[test]
    fn many_persons_get_distinct_serials_that_do_not_follow_their_order() {
        let mut t = PersonTable::with_capacity(0);
        let mut rng = StdRng::seed_from_u64(2);
        for round in 0..2 {
            for i in 0..20_000u32 {
                assert_eq!(
                    t.intern(&k(i), &mut rng).expect("intern"),
                    i,
                    "round {round}"
                );
            }
        }
        let mut s = t.serials().to_vec();
        // Not first-seen order: about half the neighbours descend.
        let descents = s.windows(2).filter(|w| w[0] > w[1]).count();
        assert!((8_000..12_000).contains(&descents), "{descents}");
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), 20_000);
    }
}

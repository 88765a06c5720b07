//! Property tests of prefix ranges and the k-anonymity helper.

#![allow(clippy::unwrap_used)] // tests may unwrap (team rules)

mod common;

use common::*;
use nayose_table_v1::*;
use proptest::prelude::*;

fn arb_table() -> impl Strategy<Value = EpochTable> {
    (0u64..1000, 0u64..400).prop_map(|(salt, n)| table(1, salt, n, 1).0)
}

/// Brute force: the number of entries with each of the 2^bits prefixes.
fn bucket_counts(t: &EpochTable, bits: u8) -> Vec<usize> {
    let mut c = vec![0usize; 1 << bits];
    for e in t.entries() {
        let b = if bits == 0 {
            0
        } else {
            (u16::from_be_bytes([e.tag.0[0], e.tag.0[1]]) >> (16 - bits)) as usize
        };
        c[b] += 1;
    }
    c
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn entries_are_strictly_sorted(t in arb_table()) {
        for w in t.entries().windows(2) {
            prop_assert!(w[0].tag < w[1].tag);
        }
    }

    #[test]
    fn prefix_range_is_exactly_the_matching_entries(
        t in arb_table(), bits in 0u8..=128, probe in any::<[u8; 16]>(), pick in any::<prop::sample::Index>()
    ) {
        // Probe both a random tag and (if any) a tag that is in the table.
        let mut tags = vec![Tag(probe)];
        if !t.is_empty() {
            tags.push(t.entries()[pick.index(t.len())].tag);
        }
        for tag in tags {
            let p = TagPrefix::of_tag(&tag, bits).unwrap();
            let r = t.range_for_prefix(&p);
            prop_assert!(r.start <= r.end && r.end <= t.len());
            for (i, e) in t.entries().iter().enumerate() {
                prop_assert_eq!(p.contains(&e.tag), r.contains(&i));
            }
            // The canonical bytes round-trip.
            prop_assert_eq!(TagPrefix::new(bits.into(), p.as_bytes()).unwrap(), p);
        }
    }

    #[test]
    fn prefix_ranges_partition_the_table(t in arb_table(), bits in 0u8..=10) {
        let mut next = 0;
        for b in 0u32..(1 << bits) {
            let v = if bits == 0 { 0u16 } else { (b << (16 - u32::from(bits))) as u16 };
            let p = TagPrefix::new(bits.into(), &v.to_be_bytes()[..usize::from(bits).div_ceil(8)]).unwrap();
            let r = t.range_for_prefix(&p);
            prop_assert_eq!(r.start, next);
            next = r.end;
        }
        prop_assert_eq!(next, t.len());
    }

    #[test]
    fn min_prefix_range_len_matches_brute_force(t in arb_table(), bits in 0u8..=12) {
        let brute = bucket_counts(&t, bits).into_iter().min().unwrap_or(0);
        prop_assert_eq!(t.min_prefix_range_len(bits), brute);
    }

    #[test]
    fn k_anonymous_prefix_bits_is_the_largest_valid_length(t in arb_table(), k in 1u64..50) {
        let got = t.k_anonymous_prefix_bits(k).unwrap();
        let valid = |bits: u8| bucket_counts(&t, bits).into_iter().min().unwrap_or(0) as u64 >= k;
        match got {
            None => prop_assert!((t.len() as u64) < k),
            Some(l) => {
                prop_assert!(valid(l));
                if l < 12 {
                    prop_assert!(!valid(l + 1));
                }
            }
        }
    }
}

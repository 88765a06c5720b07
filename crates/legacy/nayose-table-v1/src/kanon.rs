//! The k-anonymity helper: minimum prefix-range size and the largest k-anonymous prefix length.
//!
//! Definition (table.md): for a sorted table of N entries and a length L, the 2^L prefixes of
//! length L partition the tag space; `min_len(L)` is the smallest number of entries in any of
//! them, empty ones included (an empty range also tells the server something). `min_len` is
//! non-increasing in L (each range of length L splits into two of length L+1), so the largest L
//! with `min_len(L) >= k` is found by binary search. Any L with 2^L > N has an empty range.

use crate::error::TableError;
use crate::table::SortedRows;

pub(crate) fn min_prefix_range_len<R: SortedRows + ?Sized>(rows: &R, bits: u8) -> usize {
    let n = rows.row_count();
    if bits == 0 {
        return n;
    }
    // Pigeonhole: more prefixes than entries means some prefix range is empty.
    if bits >= 64 || (n as u128) < (1u128 << bits) {
        return 0;
    }
    let shift = 64 - u32::from(bits);
    let last = (1u64 << bits) - 1;
    let (mut cur, mut count, mut min) = (0u64, 0usize, usize::MAX);
    for i in 0..n {
        let b = rows.tag_at(i).high_u64() >> shift;
        if b == cur {
            count += 1;
        } else {
            if b != cur + 1 {
                return 0; // an empty range between cur and b
            }
            min = min.min(count);
            cur = b;
            count = 1;
        }
    }
    if cur != last {
        return 0; // the ranges after the last entry are empty
    }
    min.min(count)
}

pub(crate) fn k_anonymous_prefix_bits<R: SortedRows + ?Sized>(
    rows: &R,
    k: u64,
) -> Result<Option<u8>, TableError> {
    if k == 0 {
        return Err(TableError::ZeroMinimumRange);
    }
    let n = rows.row_count() as u128;
    if n < u128::from(k) {
        return Ok(None);
    }
    // Upper bound: k * 2^L <= N.
    let mut hi: u8 = 0;
    while hi < 63 && u128::from(k) << (hi + 1) <= n {
        hi += 1;
    }
    // Invariant: min_len(lo) >= k; answer in lo..=hi.
    let mut lo: u8 = 0;
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if min_prefix_range_len(rows, mid) as u128 >= u128::from(k) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Ok(Some(lo))
}

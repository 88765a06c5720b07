//! Entry blocks: a run of entries ascending by tag, coded in about 11 bytes per entry
//! (table.md §9.5). A base download is a sequence of entry blocks, and the client keeps its state
//! as entry blocks.
//!
//! ```text
//! EntryBlock = count u32 (1 ..= 65,536) || rice u8 (0 ..= 71) || first_tag (9)
//!           || gaps: the count-1 Rice codes of tag_i - tag_{i-1} - 1, i = 1 .. count-1
//!           || labels: count encrypted labels (4 bytes each), in tag order
//! Rice code of v with parameter k: q = v >> k one-bits, a zero-bit, then the k low bits of v
//!   (least significant first); bit j of the stream is bit (j mod 8) of byte j / 8; the last
//!   byte is padded with zero bits; no byte follows the last code.
//! ```
//!
//! Tags are 72-bit big-endian numbers; sorted random tags differ by about 2^72 / N, so a code
//! costs about log2(2^72 / N) + 1.5 bits, against 72 for the tag itself. Invariants: a decoded
//! block's tags are strictly ascending and below 2^72; decoding accepts exactly one byte string
//! per (entries, rice parameter) — the encoding is canonical — and rejects everything else with
//! [`TableError::InvalidBlock`] naming the block's first entry; decoding never allocates more
//! than the block's own count allows.

use crate::consts::{LABEL_LEN, MAX_BLOCK_ENTRIES, MAX_RICE_PARAMETER, TAG_LEN};
use crate::error::TableError;
use crate::label::EncryptedLabel;
use crate::tag::Tag;

/// Most bits of gap codes an encoder writes (4 MiB: one wire frame).
const MAX_GAP_BITS: u128 = 8 * 4 * 1024 * 1024;

/// One entry block (see the module documentation for the layout).
#[derive(Clone, PartialEq, Eq)]
pub struct EntryBlock {
    /// Entries in the block (at least 1).
    pub count: u32,
    /// The Rice parameter of the gap codes.
    pub rice: u8,
    /// The tag of the first entry.
    pub first: Tag,
    /// The Rice-coded gaps between consecutive tags.
    pub gaps: Vec<u8>,
    /// The encrypted labels, 4 bytes per entry, in tag order.
    pub labels: Vec<u8>,
}

impl std::fmt::Debug for EntryBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryBlock")
            .field("count", &self.count)
            .field("rice", &self.rice)
            .field("first", &self.first)
            .field("gaps_len", &self.gaps.len())
            .finish_non_exhaustive()
    }
}

/// The Rice parameter an encoder uses (table.md §9.5): floor(log2 of the mean gap), 0 for a
/// block of one entry or a mean gap below 2.
pub fn rice_parameter(first: &Tag, last: &Tag, count: usize) -> u8 {
    if count < 2 {
        return 0;
    }
    let mean = (last.to_u128() - first.to_u128()) / (count as u128 - 1);
    if mean < 2 {
        0
    } else {
        (127 - mean.leading_zeros() as u8).min(MAX_RICE_PARAMETER)
    }
}

struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitWriter {
    fn bits(&mut self, v: u64, n: u32) {
        debug_assert!(n <= 56);
        if n == 0 {
            return;
        }
        self.acc |= (v & ((1u64 << n) - 1)) << self.n;
        self.n += n;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    fn ones(&mut self, mut q: u128) {
        while q >= 56 {
            self.bits(u64::MAX, 56);
            q -= 56;
        }
        self.bits((1u64 << q) - 1, q as u32);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    n: u32,
}

impl BitReader<'_> {
    fn refill(&mut self) {
        while self.n <= 56 && self.pos < self.data.len() {
            self.acc |= u64::from(self.data[self.pos]) << self.n;
            self.n += 8;
            self.pos += 1;
        }
    }

    fn bits(&mut self, k: u32) -> Option<u64> {
        debug_assert!(k <= 56);
        if k == 0 {
            return Some(0);
        }
        self.refill();
        if self.n < k {
            return None;
        }
        let v = self.acc & ((1u64 << k) - 1);
        self.acc >>= k;
        self.n -= k;
        Some(v)
    }

    /// One-bits up to the next zero-bit (consumed); `None` at the end of the data.
    fn unary(&mut self) -> Option<u64> {
        let mut q = 0u64;
        loop {
            self.refill();
            if self.n == 0 {
                return None;
            }
            let t = self.acc.trailing_ones().min(self.n);
            if t < self.n {
                q += u64::from(t);
                self.acc = self.acc.checked_shr(t + 1).unwrap_or(0);
                self.n -= t + 1;
                return Some(q);
            }
            q += u64::from(self.n);
            self.acc = 0;
            self.n = 0;
        }
    }

    /// True when nothing but zero padding (less than a byte) remains.
    fn at_clean_end(&self) -> bool {
        self.pos == self.data.len() && self.n < 8 && self.acc == 0
    }
}

impl EntryBlock {
    /// Encodes `entries` (1 to 65,536, strictly ascending by tag) with the recommended Rice
    /// parameter.
    pub fn encode(entries: &[(Tag, EncryptedLabel)]) -> Result<EntryBlock, TableError> {
        let rice = match (entries.first(), entries.last()) {
            (Some(f), Some(l)) if f.0 < l.0 => rice_parameter(&f.0, &l.0, entries.len()),
            _ => 0,
        };
        Self::encode_with(entries, rice)
    }

    /// Encodes `entries` with Rice parameter `rice` (0 ..= 71).
    pub fn encode_with(
        entries: &[(Tag, EncryptedLabel)],
        rice: u8,
    ) -> Result<EntryBlock, TableError> {
        let bad = |reason: String| TableError::InvalidBlock { offset: 0, reason };
        if entries.is_empty() || entries.len() > MAX_BLOCK_ENTRIES {
            return Err(bad(format!(
                "{} entries (1 to 65536 allowed)",
                entries.len()
            )));
        }
        if rice > MAX_RICE_PARAMETER {
            return Err(bad(format!("Rice parameter {rice} above 71")));
        }
        let mut w = BitWriter {
            out: Vec::with_capacity(entries.len() * (usize::from(rice) + 3) / 8 + 1),
            acc: 0,
            n: 0,
        };
        let mut labels = Vec::with_capacity(entries.len() * LABEL_LEN);
        let mut prev: Option<u128> = None;
        for (i, (tag, label)) in entries.iter().enumerate() {
            let t = tag.to_u128();
            if let Some(p) = prev {
                if t <= p {
                    return Err(TableError::NotAscending {
                        index: i as u64,
                        tag: tag.to_string(),
                    });
                }
                let v = t - p - 1;
                let q = v >> rice;
                if q > MAX_GAP_BITS || w.out.len() as u128 * 8 + q > MAX_GAP_BITS {
                    return Err(bad(format!(
                        "Rice parameter {rice} is too small for these gaps (more than 4 MiB of codes)"
                    )));
                }
                w.ones(q);
                w.bits(0, 1);
                let low = v & ((1u128 << rice) - 1);
                let k = u32::from(rice);
                w.bits(low as u64, k.min(56));
                if k > 56 {
                    w.bits((low >> 56) as u64, k - 56);
                }
            }
            prev = Some(t);
            labels.extend_from_slice(label.as_bytes());
        }
        Ok(EntryBlock {
            count: entries.len() as u32,
            rice,
            first: entries[0].0,
            gaps: w.finish(),
            labels,
        })
    }

    /// Decodes the tags, checking every rule of the layout; `offset` (the index in the table of
    /// the block's first entry) only names the block in errors.
    pub fn decode_tags(&self, offset: u64, out: &mut Vec<Tag>) -> Result<(), TableError> {
        let bad = |reason: &str| TableError::InvalidBlock {
            offset,
            reason: reason.to_string(),
        };
        let count = self.count as usize;
        if count == 0 || count > MAX_BLOCK_ENTRIES {
            return Err(bad("its entry count is not between 1 and 65536"));
        }
        if self.rice > MAX_RICE_PARAMETER {
            return Err(bad("its Rice parameter is above 71"));
        }
        if self.labels.len() != count * LABEL_LEN {
            return Err(bad("its label bytes are not 4 per entry"));
        }
        out.clear();
        out.reserve(count);
        out.push(self.first);
        let mut r = BitReader {
            data: &self.gaps,
            pos: 0,
            acc: 0,
            n: 0,
        };
        let k = u32::from(self.rice);
        let mut t = self.first.to_u128();
        for _ in 1..count {
            let q = r.unary().ok_or_else(|| bad("its gap codes end early"))?;
            let mut low = u128::from(
                r.bits(k.min(56))
                    .ok_or_else(|| bad("its gap codes end early"))?,
            );
            if k > 56 {
                let hi = r
                    .bits(k - 56)
                    .ok_or_else(|| bad("its gap codes end early"))?;
                low |= u128::from(hi) << 56;
            }
            // v = q * 2^k + low must stay below 2^72 (and q * 2^k must not overflow).
            if u128::from(q) >= 1u128 << (8 * TAG_LEN as u32 - k) {
                return Err(bad("a gap takes a tag beyond 72 bits"));
            }
            let v = (u128::from(q) << k) | low;
            t = t
                .checked_add(v + 1)
                .filter(|x| x >> (8 * TAG_LEN) == 0)
                .ok_or_else(|| bad("a gap takes a tag beyond 72 bits"))?;
            out.push(Tag::from_u128(t).ok_or_else(|| bad("a gap takes a tag beyond 72 bits"))?);
        }
        if !r.at_clean_end() {
            return Err(bad("bytes or non-zero padding follow its last gap code"));
        }
        Ok(())
    }

    /// The encrypted label of entry `i` of the block (`i < count`; checked by
    /// [`EntryBlock::decode_tags`]).
    pub fn label(&self, i: usize) -> EncryptedLabel {
        let mut l = [0u8; LABEL_LEN];
        l.copy_from_slice(&self.labels[i * LABEL_LEN..(i + 1) * LABEL_LEN]);
        EncryptedLabel(l)
    }

    /// Appends the block's stored form (client caches, table.md §9.5):
    /// `count u32 LE || rice u8 || first_tag (9) || len(gaps) u32 LE || gaps || labels`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.count.to_le_bytes());
        out.push(self.rice);
        out.extend_from_slice(self.first.as_bytes());
        out.extend_from_slice(&(self.gaps.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.gaps);
        out.extend_from_slice(&self.labels);
    }

    /// Reads one stored block from the front of `bytes`: the block and the rest, or `None` if
    /// `bytes` ends inside the block or its count is out of range. The block is not decoded
    /// (callers check it with [`EntryBlock::decode_tags`] before they use it).
    pub fn read_from(bytes: &[u8]) -> Option<(EntryBlock, &[u8])> {
        let (count, rest) = bytes.split_first_chunk::<4>()?;
        let count = u32::from_le_bytes(*count);
        if count == 0 || count as usize > MAX_BLOCK_ENTRIES {
            return None;
        }
        let (rice, rest) = rest.split_first()?;
        let (first, rest) = rest.split_first_chunk::<TAG_LEN>()?;
        let (glen, rest) = rest.split_first_chunk::<4>()?;
        let (gaps, rest) = rest.split_at_checked(u32::from_le_bytes(*glen) as usize)?;
        let (labels, rest) = rest.split_at_checked(count as usize * LABEL_LEN)?;
        Some((
            EntryBlock {
                count,
                rice: *rice,
                first: Tag(*first),
                gaps: gaps.to_vec(),
                labels: labels.to_vec(),
            },
            rest,
        ))
    }

    /// Bytes of the block in its encoding (without any length prefixes the container adds).
    pub fn encoded_len(&self) -> usize {
        4 + 1 + TAG_LEN + self.gaps.len() + self.labels.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entries(tags: &[u128]) -> Vec<(Tag, EncryptedLabel)> {
        tags.iter()
            .enumerate()
            .map(|(i, t)| {
                (
                    Tag::from_u128(*t).unwrap(),
                    EncryptedLabel((i as u32).to_be_bytes()),
                )
            })
            .collect()
    }

    fn roundtrip(tags: &[u128], rice: u8) {
        let e = entries(tags);
        let b = EntryBlock::encode_with(&e, rice).unwrap();
        let mut out = Vec::new();
        b.decode_tags(0, &mut out).unwrap();
        assert_eq!(out, e.iter().map(|x| x.0).collect::<Vec<_>>());
        for (i, x) in e.iter().enumerate() {
            assert_eq!(b.label(i), x.1);
        }
    }

    #[test]
    fn extremes_roundtrip() {
        let max = (1u128 << 72) - 1;
        roundtrip(&[0], 0);
        roundtrip(&[max], 71);
        roundtrip(&[0, max], 71);
        roundtrip(&[0, max], 57);
        roundtrip(&[0, 1, 2, 3, max - 1, max], 50);
        roundtrip(&[0, 1, 2, 3, 9, 40], 3);
        roundtrip(&[5, 1 << 60, (1 << 60) + 1], 56);
    }

    #[test]
    fn worked_example() {
        // Gaps 3 and 6 with k = 2: v = 2 -> "0" + "01" (bits 0,1 LSB first: 0,1),
        // v = 5 -> "1" "0" + "10"... see table.md §9.5 for the same example.
        let b = EntryBlock::encode_with(&entries(&[10, 13, 19]), 2).unwrap();
        // v1 = 2: q=0 -> 0; low 2 -> bits 0,1 ; v2 = 5: q=1 -> 1,0; low 1 -> 1,0
        // stream: 0 0 1 1 0 1 0 -> byte 0b0010_1100 = 0x2c
        assert_eq!(b.gaps, vec![0x2c]);
        assert_eq!(b.encoded_len(), 4 + 1 + 9 + 1 + 12);
    }

    #[test]
    fn malformed_blocks_are_refused() {
        let good = EntryBlock::encode_with(&entries(&[10, 13, 19]), 2).unwrap();
        let mut out = Vec::new();
        let mut b = good.clone();
        b.gaps.push(0);
        assert!(b.decode_tags(7, &mut out).is_err());
        let mut b = good.clone();
        b.gaps[0] |= 0x80; // a set padding bit
        assert!(b.decode_tags(7, &mut out).is_err());
        let mut b = good.clone();
        b.gaps.clear();
        assert!(b.decode_tags(7, &mut out).is_err());
        let mut b = good.clone();
        b.labels.pop();
        assert!(b.decode_tags(7, &mut out).is_err());
        let mut b = good.clone();
        b.rice = 72;
        assert!(b.decode_tags(7, &mut out).is_err());
        let mut b = good.clone();
        b.count = 0;
        assert!(b.decode_tags(7, &mut out).is_err());
        // A gap beyond 2^72.
        let mut b =
            EntryBlock::encode_with(&entries(&[(1u128 << 72) - 2, (1u128 << 72) - 1]), 0).unwrap();
        b.gaps = vec![0b0000_0011]; // v = 2: tag 2^72
        let e = b.decode_tags(7, &mut out).unwrap_err();
        assert!(e.to_string().contains("entry 7"), "{e}");
        assert!(EntryBlock::encode_with(&entries(&[3, 3]), 0).is_err());
        // A Rice parameter far too small is refused, not written out as 2^70 one-bits.
        assert!(EntryBlock::encode_with(&entries(&[0, 1 << 70]), 0).is_err());
    }

    proptest! {
        #[test]
        fn any_ascending_tags_roundtrip(mut tags in proptest::collection::vec(0u128..(1u128 << 72), 1..300), rice in 50u8..=71) {
            tags.sort_unstable();
            tags.dedup();
            let e = entries(&tags);
            let b = EntryBlock::encode_with(&e, rice).unwrap();
            let mut out = Vec::new();
            b.decode_tags(0, &mut out).unwrap();
            prop_assert_eq!(out, e.iter().map(|x| x.0).collect::<Vec<_>>());
            let r = EntryBlock::encode(&e).unwrap();
            let mut out2 = Vec::new();
            r.decode_tags(0, &mut out2).unwrap();
            prop_assert_eq!(out2.len(), e.len());
        }
    }
}

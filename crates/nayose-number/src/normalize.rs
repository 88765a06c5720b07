//! The normalization rule of `protocol-spec/numbers.md` §3, applied to one field value.
//!
//! Invariants:
//! * [`normalize`] is Unicode NFKC followed by trimming ASCII whitespace (U+0020, TAB, CR, LF,
//!   FF) at both ends. U+3000 IDEOGRAPHIC SPACE and U+00A0 are folded to U+0020 by NFKC and so
//!   are trimmed too. Nothing else is folded here: case, leading zeros and inner characters are
//!   kept; whether they are *allowed* is decided by validation, not by normalization.
//! * It is idempotent: `normalize(&normalize(s)) == normalize(s)` (property-tested).
//! * Dashes are handled by the combined-form parser only ([`is_dash`], [`is_dash_at`]).

use unicode_normalization::UnicodeNormalization;

/// True for the whitespace that [`normalize`] trims (after NFKC).
pub fn is_trimmed_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n' | '\u{0C}')
}

/// Normalizes one field value: NFKC, then trim [`is_trimmed_space`] characters at both ends.
pub fn normalize(raw: &str) -> String {
    let trimmed = if raw.is_ascii() {
        // NFKC is the identity on ASCII: skip the allocation-heavy path (hot in the reader).
        raw.trim_matches(is_trimmed_space).to_owned()
    } else {
        let nfkc: String = raw.nfkc().collect();
        nfkc.trim_matches(is_trimmed_space).to_owned()
    };
    // Trimming a starter from an NFKC string leaves an NFKC string, except when the trimmed
    // space had absorbed nothing and what follows is a lone combining mark; re-normalizing in
    // that rare case keeps the function idempotent by construction.
    if trimmed.is_ascii() || unicode_normalization::is_nfkc(&trimmed) {
        trimmed
    } else {
        normalize(&trimmed)
    }
}

/// True for the characters that, after NFKC, are dash or minus variants and serve as separators
/// in the dashed combined form: U+002D HYPHEN-MINUS (also the NFKC image of U+FF0D and U+FE63),
/// U+2010 HYPHEN (image of U+2011), U+2012 FIGURE DASH, U+2013 EN DASH, U+2014 EM DASH (image of
/// U+FE58), U+2015 HORIZONTAL BAR, U+2043 HYPHEN BULLET, U+2212 MINUS SIGN and U+2500 BOX
/// DRAWINGS LIGHT HORIZONTAL. U+30FC (ー, also the image of U+FF70 ｰ) is contextual: see
/// [`is_dash_at`].
pub fn is_dash(c: char) -> bool {
    matches!(
        c,
        '-' | '\u{2010}'..='\u{2015}' | '\u{2043}' | '\u{2212}' | '\u{2500}'
    )
}

/// True for kana after which U+30FC is a prolonged-sound mark (chōon) rather than a dash:
/// hiragana, katakana, their iteration marks, and U+30FC itself.
pub fn is_kana(c: char) -> bool {
    matches!(c, '\u{3041}'..='\u{3096}' | '\u{309D}' | '\u{309E}' | '\u{30A1}'..='\u{30FA}'
        | '\u{30FC}'..='\u{30FE}')
}

/// True when `c`, preceded by `prev`, is a separator in the dashed form: a dash of [`is_dash`],
/// or U+30FC not preceded by kana (an IME typing "-" in full-width mode yields ー).
pub fn is_dash_at(prev: Option<char>, c: char) -> bool {
    is_dash(c) || (c == '\u{30FC}' && !prev.is_some_and(is_kana))
}

/// `value` split at its dash separators ([`is_dash_at`]): the parts of the dashed form.
pub fn split_at_dashes(value: &str) -> Vec<&str> {
    let mut parts = Vec::with_capacity(4);
    let mut start = 0;
    let mut prev = None;
    for (i, c) in value.char_indices() {
        if is_dash_at(prev, c) {
            parts.push(&value[start..i]);
            start = i + c.len_utf8();
        }
        prev = Some(c);
    }
    parts.push(&value[start..]);
    parts
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn full_width_digits_and_letters_fold_to_ascii() {
        assert_eq!(normalize("０１１３００１２"), "01130012");
        assert_eq!(normalize("ＡＢＣ１２"), "ABC12");
        assert_eq!(normalize("札幌東１２"), "札幌東12");
    }

    #[test]
    fn ideographic_and_ascii_spaces_are_trimmed_not_inner() {
        assert_eq!(normalize("\u{3000}0647 \u{3000}"), "0647");
        assert_eq!(normalize(" \t0647\r\n"), "0647");
        assert_eq!(normalize("06\u{3000}47"), "06 47");
        assert_eq!(normalize("\u{00A0}12\u{00A0}"), "12");
    }

    #[test]
    fn half_width_katakana_becomes_full_width() {
        assert_eq!(normalize("ｱｲｳ"), "アイウ");
        assert_eq!(normalize("ｶﾞ"), "ガ");
        assert_eq!(normalize("ｰ"), "ー");
    }

    #[test]
    fn case_and_leading_zeros_are_kept() {
        assert_eq!(normalize("ab0012"), "ab0012");
        assert_eq!(normalize("００４７"), "0047");
    }

    #[test]
    fn dash_variants() {
        for c in [
            '-', '\u{2010}', '\u{2011}', '\u{2012}', '\u{2013}', '\u{2014}', '\u{2015}',
            '\u{2212}', '\u{FF0D}', '\u{FE63}', '\u{FE58}', '\u{2043}', '\u{2500}',
        ] {
            let n = normalize(&c.to_string());
            let d = n.chars().next().unwrap();
            assert!(is_dash(d), "U+{:04X} -> {n:?}", u32::from(c));
        }
        assert!(is_dash_at(Some('2'), 'ー'));
        assert!(is_dash_at(None, 'ー'));
        assert!(is_dash_at(Some('東'), 'ー'));
        assert!(!is_dash_at(Some('カ'), 'ー'));
        assert!(!is_dash_at(Some('あ'), 'ー'));
        assert!(!is_dash('~'));
        assert!(!is_dash('\u{301C}'));
    }
}

//! Property tests: normalization is idempotent, printed forms parse back, encoding is injective.

#![allow(clippy::unwrap_used)] // tests unwrap on data they built themselves

use nayose_number::{InsuredNumber, check_digit, normalize};
use proptest::prelude::*;

fn insurer() -> impl Strategy<Value = String> {
    prop_oneof![
        // 8-digit, any law code except 00 and 39 handled separately.
        "[0-9]{7}".prop_filter("law code 00 is 国保, 39 has its own shape", |s| {
            !s.starts_with("00") && !s.starts_with("39")
        }),
        "00[0-9]{5}",
    ]
    .prop_map(|body| {
        let c = check_digit(body.as_bytes()).unwrap();
        format!("{body}{c}")
    })
}

fn symbol_char() -> impl Strategy<Value = char> {
    prop_oneof![
        proptest::char::range('0', '9'),
        proptest::char::range('A', 'Z'),
        proptest::char::range('a', 'z'),
        proptest::char::range('あ', 'ん'),
        proptest::char::range('ア', 'ン'),
        proptest::char::range('一', '龥'),
        Just('々'),
    ]
}

fn symbol() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        proptest::collection::vec(symbol_char(), 1..12).prop_map(|v| v.into_iter().collect()),
    ]
}

prop_compose! {
    fn number()(n in "[0-9A-Za-z]{1,20}") -> String { n }
}

fn insured() -> impl Strategy<Value = InsuredNumber> {
    prop_oneof![
        3 => (insurer(), symbol(), number(), "[0-9]{2}")
            .prop_map(|(i, s, n, b)| InsuredNumber::from_fields(&i, &s, &n, &b).unwrap()),
        1 => ("[0-9]{5}", "[0-9]{1,20}").prop_map(|(body, n)| {
            let body = format!("39{body}");
            let c = check_digit(body.as_bytes()).unwrap();
            InsuredNumber::from_fields(&format!("{body}{c}"), "", &n, "").unwrap()
        }),
    ]
}

/// The full-width (and ideographic-space padded) spelling of an ASCII string.
fn widen(s: &str) -> String {
    let inner: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() {
                char::from_u32(u32::from(c) - 0x21 + 0xFF01).unwrap()
            } else {
                c
            }
        })
        .collect();
    format!("\u{3000}{inner} ")
}

proptest! {
    #[test]
    fn normalization_is_idempotent(s in any::<String>()) {
        let once = normalize(&s);
        prop_assert_eq!(normalize(&once), once);
    }

    #[test]
    fn normalization_is_idempotent_on_japanese_text(s in "[\\u{3000}-\\u{30FF}\\u{FF00}-\\u{FFEF} 0-9a-z\\u{2010}-\\u{2015}]{0,20}") {
        let once = normalize(&s);
        prop_assert_eq!(normalize(&once), once);
    }

    #[test]
    fn printed_forms_parse_back(n in insured()) {
        prop_assert_eq!(&InsuredNumber::parse(&n.to_string()).unwrap(), &n);
        prop_assert_eq!(&InsuredNumber::parse(&n.dashed()).unwrap(), &n);
        prop_assert_eq!(&InsuredNumber::from_canonical_bytes(&n.canonical_bytes()).unwrap(), &n);
    }

    #[test]
    fn width_and_spacing_do_not_matter(n in insured()) {
        let w = InsuredNumber::from_fields(
            &widen(n.insurer().as_str()),
            &n.symbol().map(|s| widen(s.as_str())).unwrap_or_default(),
            &widen(n.number().as_str()),
            &n.branch().map(|b| widen(b.as_str())).unwrap_or_default(),
        ).unwrap();
        prop_assert_eq!(w, n);
    }

    #[test]
    fn distinct_numbers_never_share_an_encoding(a in insured(), b in insured()) {
        prop_assert_eq!(a == b, a.canonical_bytes() == b.canonical_bytes());
    }

    #[test]
    fn near_collisions_differ(n in insured(), cut in 0usize..20) {
        // Move characters between 記号 and 番号: the encodings must differ.
        if let Some(sym) = n.symbol() {
            let joined = format!("{}{}", sym.as_str(), n.number().as_str());
            let chars: Vec<char> = joined.chars().collect();
            let k = 1 + cut % chars.len().max(1);
            if k < chars.len() {
                let s2: String = chars[..k].iter().collect();
                let n2: String = chars[k..].iter().collect();
                if let Ok(m) = InsuredNumber::from_fields(n.insurer().as_str(), &s2, &n2, n.branch().unwrap().as_str()) {
                    prop_assert_eq!(m == n, m.canonical_bytes() == n.canonical_bytes());
                }
            }
        }
    }

    #[test]
    fn single_digit_typos_in_the_insurer_are_caught(n in insured(), pos in 2usize..8, delta in 1u8..10) {
        // Any single-digit substitution in the 8 digits (beyond a leading 00 of 国保) is caught.
        let mut d = *n.insurer().as_bytes();
        d[pos] = b'0' + (d[pos] - b'0' + delta) % 10;
        prop_assert!(nayose_number::InsurerNumber::from_digits(d).is_err());
    }

    #[test]
    fn garbage_never_panics(s in any::<String>()) {
        let _ = InsuredNumber::parse(&s);
        let _ = InsuredNumber::from_fields(&s, &s, &s, &s);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..80)) {
        if let Ok(n) = InsuredNumber::from_canonical_bytes(&b) {
            prop_assert_eq!(n.canonical_bytes(), b);
        }
    }
}

//! Each rule of `protocol-spec/numbers.md` on real-looking examples.

#![allow(clippy::unwrap_used)] // tests unwrap on data they built themselves

use nayose_number::{Field, InsuredNumber, NumberError, ParseOptions};

fn p(s: &str) -> InsuredNumber {
    InsuredNumber::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn f(i: &str, s: &str, n: &str, b: &str) -> InsuredNumber {
    InsuredNumber::from_fields(i, s, n, b).unwrap_or_else(|e| panic!("{i}/{s}/{n}/{b}: {e}"))
}

#[test]
fn dashed_form_of_the_policy_papers() {
    let n = p("01130012－0647－095075903");
    assert_eq!(n.insurer().as_str(), "01130012");
    assert_eq!(n.symbol().map(|s| s.as_str()), Some("0647"));
    assert_eq!(n.number().as_str(), "0950759");
    assert_eq!(n.branch().map(|b| b.as_str()), Some("03"));
    assert_eq!(n, f("01130012", "0647", "0950759", "03"));
    assert_eq!(n.to_string(), "01130012:0647:0950759:03");
    assert_eq!(n.dashed(), "01130012-0647-095075903");
}

#[test]
fn every_dash_variant_is_a_separator() {
    let want = p("01130012-0647-095075903");
    for d in [
        "-", "\u{2010}", "\u{2011}", "\u{2012}", "\u{2013}", "\u{2014}", "\u{2015}", "\u{2212}",
        "\u{FF0D}", "\u{FE63}", "\u{FE58}", "\u{2043}", "\u{2500}", "ー", "ｰ",
    ] {
        let s = format!("01130012{d}0647{d}095075903");
        assert_eq!(
            p(&s),
            want,
            "separator U+{:04X}",
            u32::from(d.chars().next().unwrap())
        );
    }
    // Mixed separators, full-width digits and spaces around the separators.
    assert_eq!(p("０１１３００１２ － ０６４７ ‐ ０９５０７５９０３"), want);
    assert_eq!(p("\u{3000}01130012—0647−095075903\u{3000}"), want);
}

#[test]
fn choon_after_kana_is_part_of_the_symbol() {
    let n = p("01130012ーサービス－123403");
    assert_eq!(n.symbol().unwrap().as_str(), "サービス");
    assert_eq!(n.number().as_str(), "1234");
    // Half-width katakana with half-width chōon fold to the same number.
    assert_eq!(p("01130012-ｻｰﾋﾞｽ-123403"), n);
    // A ー directly after kana is a chōon, never a separator: the string is rejected (the 番号
    // part holds kana), not split somewhere else.
    let e = p_err("01130012ーサービスー123403");
    assert!(
        matches!(
            e,
            NumberError::InvalidChar {
                field: Field::Number,
                ch: 'サ',
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn dashed_form_explicit_branch_and_no_symbol() {
    assert_eq!(p("01130012-0647-0950759-03"), p("01130012-0647-095075903"));
    let n = p("01130012-095075903");
    assert!(n.symbol().is_none());
    assert_eq!(n.number().as_str(), "0950759");
    assert_eq!(n.branch().unwrap().as_str(), "03");
}

#[test]
fn late_elderly_has_number_only() {
    let n = p("39131016－12345678");
    assert!(n.symbol().is_none() && n.branch().is_none());
    assert_eq!(n.number().as_str(), "12345678");
    assert_eq!(n, f("39131016", "", "12345678", ""));
    assert_eq!(n.to_string(), "39131016::12345678:");
    assert_eq!(p("39131016::12345678:"), n);
    assert_eq!(p("39131016::12345678"), n);
    // A 枝番 or 記号 under 39 is rejected with its reason.
    assert!(matches!(
        InsuredNumber::from_fields("39131016", "", "12345678", "01"),
        Err(NumberError::UnexpectedBranch { .. })
    ));
    assert!(matches!(
        InsuredNumber::from_fields("39131016", "12", "12345678", ""),
        Err(NumberError::UnexpectedSymbol { .. })
    ));
    assert!(matches!(
        p_err("39131016-12-12345678"),
        NumberError::UnexpectedSymbol { .. }
    ));
}

fn p_err(s: &str) -> NumberError {
    InsuredNumber::parse(s).unwrap_err()
}

#[test]
fn colon_form_of_jp_core() {
    // JP Core's example shape, with an insurer number whose check digit is right (the profile's
    // own example, 00012345, fails it and is rejected).
    let n = p("00012344:あいう:１８７:05");
    assert_eq!(n.symbol().unwrap().as_str(), "あいう");
    assert_eq!(n.number().as_str(), "187");
    assert_eq!(n, p("０００１２３４４：あいう：１８７：０５"));
    assert_eq!(n, p("012344:あいう:187:05"));
    assert!(matches!(
        p_err("00012345:あいう:１８７:05"),
        NumberError::CheckDigit {
            found: 5,
            expected: 4,
            ..
        }
    ));
    assert!(matches!(
        p_err("00012344:あいう:187:05:1"),
        NumberError::CombinedForm { .. }
    ));
    assert!(matches!(
        p_err("00012344:あいう"),
        NumberError::CombinedForm { .. }
    ));
}

#[test]
fn full_width_kanji_symbols_meet() {
    // 国保 (6-digit insurer) with a kanji 記号 written full-width on the card.
    let card = f("０１００１７", "札幌東１２", "３４５６", "０１");
    let typed = f("00010017", "札幌東12", "3456", "01");
    assert_eq!(card, typed);
    assert_eq!(card.canonical_bytes(), typed.canonical_bytes());
    assert_eq!(card.insurer().as_str(), "00010017");
    assert!(card.insurer().is_national_health_insurance());
}

#[test]
fn six_digit_kokuho_is_padded_and_unambiguous() {
    assert_eq!(
        f("138222", "12", "345", "01"),
        f("00138222", "12", "345", "01")
    );
    assert_eq!(p("138222-12-34501"), f("00138222", "12", "345", "01"));
}

#[test]
fn leading_zeros_of_symbol_and_number_are_significant() {
    assert_ne!(
        f("01130012", "0647", "0950759", "03"),
        f("01130012", "647", "0950759", "03")
    );
    assert_ne!(
        f("01130012", "0647", "0950759", "03"),
        f("01130012", "0647", "950759", "03")
    );
    // An absent 記号 is not an empty one and not "0".
    assert_ne!(
        f("01130012", "", "0950759", "03"),
        f("01130012", "0", "0950759", "03")
    );
}

#[test]
fn household_level_numbers_are_reported_never_guessed() {
    let e = InsuredNumber::from_fields("01130012", "0647", "0950759", "").unwrap_err();
    assert!(e.is_household_level());
    assert_eq!(e.field(), Field::Branch);
    assert!(e.to_string().contains("household"), "{e}");
    assert!(p_err("01130012:0647:0950759:").is_household_level());
    assert!(p_err("01130012:0647:0950759").is_household_level());
}

#[test]
fn check_digit_failures() {
    for s in [
        "01130013-0647-095075903",
        "10130012-0647-095075903",
        "01130021:0647:0950759:03",
    ] {
        assert!(matches!(p_err(s), NumberError::CheckDigit { .. }), "{s}");
    }
    let e = InsuredNumber::from_fields("33120016", "1", "2", "01").unwrap_err();
    assert_eq!(e.field(), Field::Insurer);
    assert!(e.to_string().contains("33120016"));
}

#[test]
fn repairs_are_opt_in_checked_and_reported() {
    let opts = ParseOptions { repair: true };
    // Without repair: an error that points at the repair.
    let e = InsuredNumber::from_fields("1130012", "0647", "0950759", "3").unwrap_err();
    assert!(matches!(e, NumberError::InsurerLength { digits: 7, .. }));
    let fields = nayose_number::Fields {
        insurer: "1130012",
        symbol: "0647",
        number: "0950759",
        branch: "3",
    };
    let parsed = InsuredNumber::from_fields_with(fields, opts).unwrap();
    assert_eq!(parsed.number, f("01130012", "0647", "0950759", "03"));
    assert_eq!(parsed.repairs.len(), 2);
    assert_eq!(parsed.repairs[0].field, Field::Insurer);
    assert_eq!(parsed.repairs[1].field, Field::Branch);
    assert!(parsed.repairs[0].to_string().contains("01130012"));
    // 5-digit 国保 (010017 lost its zero).
    let parsed = InsuredNumber::parse_with("10017-札幌東12-345601", opts).unwrap();
    assert_eq!(parsed.number.insurer().as_str(), "00010017");
    assert_eq!(parsed.repairs[0].to, "010017");
    // Failing check digit: no repair.
    assert!(matches!(
        InsuredNumber::parse_with("1130013-0647-095075903", opts),
        Err(NumberError::CheckDigit { .. })
    ));
    // No damage: no repairs reported.
    assert!(
        InsuredNumber::parse_with("01130012-0647-095075903", opts)
            .unwrap()
            .repairs
            .is_empty()
    );
}

#[test]
fn malformed_combined_strings() {
    for (s, field) in [
        ("011300120647095075903", Field::Combined),
        ("01130012--0647-095075903", Field::Combined),
        ("01130012-0647-09-50-75903", Field::Combined),
        ("01130012-0647-3", Field::Combined),
        ("01130012-0647-09507590A", Field::Combined),
        ("01130012-06 47-095075903", Field::Symbol),
        ("01130012-0647-0950759あ03", Field::Number),
        ("", Field::Combined),
    ] {
        let e = InsuredNumber::parse(s).unwrap_err();
        assert_eq!(e.field(), field, "{s}: {e}");
    }
}

#[test]
fn encoding_distinguishes_absent_from_present_fields() {
    let a = f("01130012", "", "12345", "01").canonical_bytes();
    let b = f("01130012", "1", "2345", "01").canonical_bytes();
    let c = f("01130012", "12", "345", "01").canonical_bytes();
    assert_ne!(a, b);
    assert_ne!(b, c);
    for n in [
        f("01130012", "", "12345", "01"),
        p("39131016-12345678"),
        f("00010017", "札幌東12", "3456", "01"),
    ] {
        assert_eq!(
            InsuredNumber::from_canonical_bytes(&n.canonical_bytes()).unwrap(),
            n
        );
    }
    let mut bad = a.clone();
    bad.push(0);
    assert!(matches!(
        InsuredNumber::from_canonical_bytes(&bad),
        Err(NumberError::Encoding { .. })
    ));
    assert!(InsuredNumber::from_canonical_bytes(&a[..a.len() - 1]).is_err());
    let mut v2 = a;
    v2[0] = 2;
    assert!(InsuredNumber::from_canonical_bytes(&v2).is_err());
}

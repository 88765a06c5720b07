//! The test vectors of `protocol-spec/numbers.md` §10, parsed from the spec itself so the spec
//! and the implementation cannot drift apart.

#![allow(clippy::unwrap_used)] // tests unwrap on data they built themselves

use nayose_number::InsuredNumber;

const SPEC: &str = include_str!("../../../protocol-spec/numbers.md");

fn parse_line(line: &str) -> InsuredNumber {
    if let Some(s) = line.strip_prefix("input: ") {
        InsuredNumber::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    } else if let Some(s) = line.strip_prefix("fields: ") {
        let f: Vec<&str> = s.split('|').collect();
        assert_eq!(f.len(), 4, "{s}");
        InsuredNumber::from_fields(f[0], f[1], f[2], f[3]).unwrap_or_else(|e| panic!("{s}: {e}"))
    } else {
        panic!("not a vector input line: {line}")
    }
}

#[test]
fn spec_vectors_hold() {
    let lines: Vec<&str> = SPEC.lines().collect();
    let mut checked = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("input: ") || line.starts_with("fields: ") {
            let n = parse_line(line);
            let display = lines[i + 1].strip_prefix("display: ").unwrap();
            let encoding = lines[i + 2].strip_prefix("encoding: ").unwrap();
            assert_eq!(n.to_string(), display, "{line}");
            assert_eq!(hex::encode(n.canonical_bytes()), encoding, "{line}");
            assert_eq!(InsuredNumber::parse(display).unwrap(), n);
            assert_eq!(
                InsuredNumber::from_canonical_bytes(&hex::decode(encoding).unwrap()).unwrap(),
                n
            );
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} vectors found");
}

#[test]
fn spec_rejections_hold() {
    let mut checked = 0;
    for line in SPEC.lines() {
        if let Some(rest) = line.strip_prefix("reject: ") {
            let input = rest.split("  #").next().unwrap().trim_end();
            assert!(
                InsuredNumber::parse(input).is_err(),
                "{input} must be rejected"
            );
            checked += 1;
        }
    }
    assert!(checked >= 9, "only {checked} rejections found");
}

#[test]
fn spec_size_example() {
    let n = InsuredNumber::parse("01130012:0647:0950759:03").unwrap();
    assert_eq!(n.canonical_bytes().len(), 48);
}

//! nayose-number's parsers: a combined number (dashed or colon form, with and without repair),
//! four separate fields (split from the input at NULs), and the canonical encoding (the OPRF
//! input). They must never panic; a number parsed from text must print (colon form and dashed
//! form) to text that parses back to the same number, and its canonical encoding must decode
//! back to it; bytes `from_canonical_bytes` accepts must be exactly the number's encoding.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nayose_number::{Fields, InsuredNumber, ParseOptions};

fn round_trips(n: &InsuredNumber) {
    let bytes = n.canonical_bytes();
    assert_eq!(InsuredNumber::from_canonical_bytes(&bytes).as_ref(), Ok(n));
    assert_eq!(
        InsuredNumber::parse(&n.to_string()).as_ref(),
        Ok(n),
        "colon form"
    );
    assert_eq!(
        InsuredNumber::parse(&n.dashed()).as_ref(),
        Ok(n),
        "dashed form"
    );
}

fuzz_target!(|data: &[u8]| {
    if let Ok(n) = InsuredNumber::from_canonical_bytes(data) {
        assert_eq!(
            n.canonical_bytes(),
            data,
            "canonical decoding accepted other bytes"
        );
        round_trips(&n);
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for repair in [false, true] {
        let opts = ParseOptions { repair };
        if let Ok(p) = InsuredNumber::parse_with(text, opts) {
            round_trips(&p.number);
        }
        let mut parts = text.split('\0');
        let fields = Fields {
            insurer: parts.next().unwrap_or_default(),
            symbol: parts.next().unwrap_or_default(),
            number: parts.next().unwrap_or_default(),
            branch: parts.next().unwrap_or_default(),
        };
        if let Ok(p) = InsuredNumber::from_fields_with(fields, opts) {
            round_trips(&p.number);
        }
    }
});

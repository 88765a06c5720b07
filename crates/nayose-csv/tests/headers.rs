//! Header recognition: Japanese and English names, full-width and annotated variants, named
//! columns winning, ambiguity refused, the registry mapped the same way.

#![allow(clippy::unwrap_used)] // tests unwrap on data they built themselves

use nayose_csv::mapping::header_key;
use nayose_csv::*;
use nayose_number::InsuredNumber;

fn cp932(s: &str) -> Vec<u8> {
    let (b, _, bad) = encoding_rs::SHIFT_JIS.encode(s);
    assert!(!bad);
    b.into_owned()
}

fn held<'a>(
    text: &'a [u8],
    enc: TextEncoding,
    spec: &ColumnSpec,
) -> Result<HeldReader<&'a [u8]>, CsvError> {
    HeldReader::from_reader_mapped(text, enc, spec, &ReadOptions::default())
}

fn utf8() -> TextEncoding {
    TextEncoding::Utf8 { bom: false }
}

fn headers_of(mapping: &ColumnMapping) -> Vec<(ColumnRole, &str, MatchedBy)> {
    mapping
        .columns
        .iter()
        .map(|c| (c.role, c.header.as_str(), c.matched_by))
        .collect()
}

#[test]
fn header_keys_fold_width_case_spacing_and_notes() {
    assert_eq!(header_key("保険者番号（８桁）"), "保険者番号");
    assert_eq!(header_key(" 保険者番号(8桁) "), "保険者番号");
    assert_eq!(header_key("Insurer Number"), "insurernumber");
    assert_eq!(header_key("ＩＮＳＵＲＥＲ＿ＮＵＭＢＥＲ"), "insurernumber");
    assert_eq!(header_key("insurer-number"), "insurernumber");
    assert_eq!(header_key("保険者No."), "保険者no");
    assert_eq!(header_key("個人ＩＤ"), "個人id");
    // A name that is only a note is kept.
    assert_eq!(header_key("(8桁)"), "(8桁)");
}

#[test]
fn japanese_headers_in_cp932_are_recognised() {
    let text = "患者ID,氏名,保険者番号（８桁）,記号,番号,枝番\r\n\
1,山田太郎,０１１３００１２,０６４７,０９５０７５９,０３\r\n";
    let bytes = cp932(text);
    let reader = held(&bytes, TextEncoding::Cp932, &ColumnSpec::default()).unwrap();
    use ColumnRole::*;
    use MatchedBy::Recognised;
    assert_eq!(
        headers_of(reader.mapping()),
        vec![
            (Insurer, "保険者番号（８桁）", Recognised),
            (Symbol, "記号", Recognised),
            (Number, "番号", Recognised),
            (Branch, "枝番", Recognised),
        ]
    );
    assert_eq!(reader.mapping().get(Insurer).unwrap().index, 2);
    let shown = reader.mapping().to_string();
    assert!(
        shown.contains(
            "保険者番号 (insurer number) <- \"保険者番号（８桁）\" (column 3, recognised)"
        ),
        "{shown}"
    );
    assert_eq!(
        reader.mapping().held_columns(),
        Some(HeldColumns::Fields {
            insurer: "保険者番号（８桁）".into(),
            symbol: "記号".into(),
            number: "番号".into(),
            branch: "枝番".into(),
        })
    );
    let rows: Vec<HeldRow> = reader.map(Result::unwrap).collect();
    assert_eq!(
        rows[0].number.as_ref().unwrap(),
        &InsuredNumber::from_fields("01130012", "0647", "0950759", "03").unwrap()
    );
}

#[test]
fn english_and_full_width_english_headers_are_recognised() {
    let text = "Insurer Number,SYMBOL,Number,Branch\n01130012,0647,0950759,03\n";
    let r = held(text.as_bytes(), utf8(), &ColumnSpec::default()).unwrap();
    assert_eq!(r.mapping().columns.len(), 4);
    assert!(!r.mapping().is_combined());
    let text = "ｉｎｓｕｒｅｒ＿ｎｕｍｂｅｒ,ｓｙｍｂｏｌ,ｎｕｍｂｅｒ,ｂｒａｎｃｈ\n01130012,0647,0950759,03\n";
    let r = held(text.as_bytes(), utf8(), &ColumnSpec::default()).unwrap();
    assert_eq!(r.mapping().columns.len(), 4);
}

#[test]
fn the_combined_column_is_recognised_and_hihokenshabangou_depends_on_a_kigou_column() {
    let text = "ID,被保険者番号\n1,01130012-0647-095075903\n";
    let r = held(text.as_bytes(), utf8(), &ColumnSpec::default()).unwrap();
    assert!(r.mapping().is_combined());
    assert_eq!(
        r.mapping().get(ColumnRole::Combined).unwrap().header,
        "被保険者番号"
    );
    let rows: Vec<HeldRow> = r.map(Result::unwrap).collect();
    assert!(rows[0].number.is_ok());
    let text = "ID,被保険者番号等\n1,01130012:0647:0950759:03\n";
    let r = held(text.as_bytes(), utf8(), &ColumnSpec::default()).unwrap();
    assert!(r.mapping().is_combined());
    // Beside 保険者番号 and 被保険者記号, 被保険者番号 is the 番号.
    let text = "保険者番号,被保険者記号,被保険者番号,枝番\n01130012,0647,0950759,03\n";
    let r = held(text.as_bytes(), utf8(), &ColumnSpec::default()).unwrap();
    assert!(!r.mapping().is_combined());
    assert_eq!(
        r.mapping().get(ColumnRole::Number).unwrap().header,
        "被保険者番号"
    );
    assert_eq!(
        r.mapping().get(ColumnRole::Symbol).unwrap().header,
        "被保険者記号"
    );
    // Beside a 番号 column, 被保険者番号 is neither: it is carried through untouched.
    let text = "保険者番号,記号,番号,枝番,被保険者番号\n01130012,0647,0950759,03,x\n";
    let r = held(text.as_bytes(), utf8(), &ColumnSpec::default()).unwrap();
    assert_eq!(r.mapping().get(ColumnRole::Number).unwrap().header, "番号");
    assert!(!r.mapping().is_combined());
    // Separate columns win over a combined column in the same file.
    let text = "保険者番号,記号,番号,枝番,被保険者番号等\n01130012,0647,0950759,03,x\n";
    let r = held(text.as_bytes(), utf8(), &ColumnSpec::default()).unwrap();
    assert!(!r.mapping().is_combined());
}

#[test]
fn named_columns_win_and_may_be_partial() {
    // Two columns look like the 番号; naming one settles it, the rest is recognised.
    let text = "保険者番号,記号,番号,保険証番号,枝番\n01130012,0647,9999,0950759,03\n";
    let err = held(text.as_bytes(), utf8(), &ColumnSpec::default())
        .err()
        .unwrap();
    assert!(
        matches!(&err, CsvError::AmbiguousColumn { option: "--number-column", columns, .. }
            if columns == &["番号".to_owned(), "保険証番号".to_owned()]),
        "{err}"
    );
    assert!(err.to_string().contains("--number-column"), "{err}");
    let spec = ColumnSpec {
        number: Some("保険証番号".into()),
        ..ColumnSpec::default()
    };
    let r = held(text.as_bytes(), utf8(), &spec).unwrap();
    let number = r.mapping().get(ColumnRole::Number).unwrap();
    assert_eq!((number.index, number.matched_by), (3, MatchedBy::Named));
    assert_eq!(
        r.mapping().get(ColumnRole::Insurer).unwrap().matched_by,
        MatchedBy::Recognised
    );
    let rows: Vec<HeldRow> = r.map(Result::unwrap).collect();
    assert_eq!(
        rows[0].number.as_ref().unwrap(),
        &InsuredNumber::from_fields("01130012", "0647", "0950759", "03").unwrap()
    );
    // A named column that is not there is named in the error.
    let spec = ColumnSpec {
        symbol: Some("kigo".into()),
        ..ColumnSpec::default()
    };
    let err = held(text.as_bytes(), utf8(), &spec).err().unwrap();
    assert!(
        matches!(&err, CsvError::MissingColumn { column, .. } if column == "kigo"),
        "{err}"
    );
    // A combined column and separate columns cannot both be named.
    let spec = ColumnSpec {
        combined: Some("x".into()),
        insurer: Some("保険者番号".into()),
        ..ColumnSpec::default()
    };
    let err = held(text.as_bytes(), utf8(), &spec).err().unwrap();
    assert!(matches!(err, CsvError::ConflictingColumns { .. }), "{err}");
}

#[test]
fn the_old_all_named_api_still_requires_its_columns() {
    let text = "hoken,kigo,bango,edaban\n01130012,0647,0950759,03\n";
    let cols = HeldColumns::Fields {
        insurer: "hoken".into(),
        symbol: "kigo".into(),
        number: "bango".into(),
        branch: "edaban".into(),
    };
    let r =
        HeldReader::from_reader(text.as_bytes(), utf8(), &cols, &ReadOptions::default()).unwrap();
    assert!(
        r.mapping()
            .columns
            .iter()
            .all(|c| c.matched_by == MatchedBy::Named)
    );
    let err = HeldReader::from_reader(
        text.as_bytes(),
        utf8(),
        &HeldColumns::default(),
        &ReadOptions::default(),
    )
    .err()
    .unwrap();
    assert!(
        matches!(&err, CsvError::MissingColumn { column, .. } if column == "insurer_number"),
        "{err}"
    );
}

#[test]
fn unrecognised_headers_say_which_option_names_the_column() {
    let text = "a,b,c,d\n01130012,0647,0950759,03\n";
    let err = held(text.as_bytes(), utf8(), &ColumnSpec::default())
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(msg.contains("--insurer-column"), "{msg}");
    assert!(msg.contains("[\"a\", \"b\", \"c\", \"d\"]"), "{msg}");
}

#[test]
fn registry_with_japanese_headers_and_the_fixed_english_header() {
    let jp = "共通ID,保険者番号,記号,番号,枝番\r\nP1,01130012,0647,0950759,03\r\n";
    let en = "person_id,insurer_number,symbol,number,branch\r\nP1,01130012,0647,0950759,03\r\n";
    let read = |bytes: &[u8], enc| -> (Vec<(String, InsuredNumber)>, ColumnMapping) {
        let r = RegistryReader::from_reader(bytes, enc, &ReadOptions::default()).unwrap();
        let mapping = r.mapping().clone();
        let entries = r
            .map(|e| e.unwrap())
            .map(|e| (e.person_id, e.number))
            .collect();
        (entries, mapping)
    };
    let (a, ma) = read(&cp932(jp), TextEncoding::Cp932);
    let (b, mb) = read(en.as_bytes(), utf8());
    assert_eq!(a, b);
    assert_eq!(a.len(), 1);
    assert_eq!(ma.get(ColumnRole::PersonId).unwrap().header, "共通ID");
    assert_eq!(mb.get(ColumnRole::PersonId).unwrap().header, "person_id");
    // The person id column can be named.
    let text = "研究番号,保険者番号,記号,番号,枝番\r\nR9,01130012,0647,0950759,03\r\n";
    let err = RegistryReader::from_reader(text.as_bytes(), utf8(), &ReadOptions::default())
        .err()
        .unwrap();
    assert!(
        matches!(&err, CsvError::MissingColumn { column, .. } if column == "person_id"),
        "{err}"
    );
    assert!(err.to_string().contains("--person-id-column"), "{err}");
    let spec = ColumnSpec {
        person_id: Some("研究番号".into()),
        ..ColumnSpec::default()
    };
    let r =
        RegistryReader::from_reader_mapped(text.as_bytes(), utf8(), &spec, &ReadOptions::default())
            .unwrap();
    let ids: Vec<String> = r.map(|e| e.unwrap().person_id).collect();
    assert_eq!(ids, vec!["R9"]);
}

#[test]
fn registry_errors_and_repairs_name_the_files_own_headers() {
    let text = "個人ID,保険者番号,記号,番号,枝番\n\
P1,1130012,0647,0950759,03\n\
P2,01130013,0647,0950759,03\n";
    let opts = ReadOptions {
        repair: true,
        ..ReadOptions::default()
    };
    let reader = RegistryReader::from_reader(text.as_bytes(), utf8(), &opts).unwrap();
    let report = reader.for_each_valid(InvalidRows::Skip, |_| {}).unwrap();
    assert_eq!(report.repairs.len(), 1);
    assert_eq!(report.repairs[0].column, "保険者番号");
    assert_eq!(report.invalid.len(), 1);
    assert_eq!(report.invalid[0].column.as_deref(), Some("保険者番号"));
    assert_eq!(report.invalid[0].line, 3);
}

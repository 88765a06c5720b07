//! Golden bytes: every message of protocol-spec/wire.md, checked against
//! protocol-spec/vectors/wire-vectors.json and against the hex blocks of wire.md §10 itself.
//!
//! Regenerate the JSON (after a deliberate, spec-versioned change only):
//! `NAYOSE_WRITE_VECTORS=1 cargo test -p nayose-wire --test golden`
//! and print the annotated blocks for wire.md §10:
//! `NAYOSE_PRINT_BLOCKS=1 cargo test -p nayose-wire --test golden -- --nocapture print_blocks`

#![allow(clippy::unwrap_used)] // tests unwrap on data they built themselves

use std::path::PathBuf;

use nayose_wire::*;
use serde_json::{Value, json};

// RFC 9497 Appendix A.1.2, VOPRF mode, test vector 3 (batch size 2).
const RFC_PKS: &str = "c803e2cc6b05fc15064549b5920659ca4a77b2cca6f04f6b357009335476ad4e";
const RFC_BLINDED: [&str; 2] = [
    "863f330cc1a1259ed5a5998a23acfd37fb4351a793a5b3c090b642ddc439b945",
    "90a0145ea9da29254c3a56be4fe185465ebb3bf2a1801f7124bbbadac751e654",
];
const RFC_EVALUATED: [&str; 2] = [
    "aa8fa048764d5623868679402ff6108d2521884fa138cd7f9c7669a9a014267e",
    "cc5ac221950a49ceaa73c8db41b82c20372a4c8d63e5dded2db920b7eee36a2a",
];
const RFC_PROOF: &str = "cc203910175d786927eeb44ea847328047892ddf8590e723c37205cb74600b0a5ab5337c8eb4ceae0494c2cf89529dcf94572ed267473d567aeed6ab873dee08";
// RFC 9497 Appendix A.1.3 (POPRF mode) pkS: another valid key, for the next key period.
const RFC_POPRF_PKS: &str = "c647bef38497bc6ec077c22af65b696efa43bff3b4a1975a3e8e0a1c5a79d631";

/// Illustrative table digest (the chunks below are not a whole table).
const DIGEST: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn arr<const N: usize>(hex_str: &str) -> [u8; N] {
    let v = hex::decode(hex_str).unwrap();
    v.try_into().unwrap()
}

fn seq<const N: usize>(start: u8) -> [u8; N] {
    std::array::from_fn(|i| start.wrapping_add(i as u8))
}

/// Key period 7 of the RFC key, derived by `nayose-table` (protocol-spec/table.md §4).
fn key_period() -> KeyPeriodId {
    KeyPeriodId(nayose_table::KeyPeriodId::new(7, &arr(RFC_PKS)).to_bytes())
}

/// Key period 8, under the RFC 9497 POPRF-mode key (the next key period has a fresh key).
fn next_key_period() -> KeyPeriodId {
    KeyPeriodId(nayose_table::KeyPeriodId::new(8, &arr(RFC_POPRF_PKS)).to_bytes())
}

const TAG_A: &str = "3a7011223344556677";
const TAG_B: &str = "3a7f00000000000001";
const TAG_REMOVED: &str = "1a2b3c4d5e6f708192";
/// Illustrative upsert chain.
const CHAIN: &str = "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf";

/// The BaseChunk example: the entry block of tags 10, 13, 19 with Rice parameter 2 (the worked
/// example of protocol-spec/table.md §9.5).
fn base_labels() -> ChunkList<EncryptedLabel> {
    ChunkList::new(vec![
        EncryptedLabel(seq(0x40)),
        EncryptedLabel(seq(0x50)),
        EncryptedLabel(seq(0x60)),
    ])
    .unwrap()
}

fn upserts() -> ChunkList<Entry> {
    ChunkList::new(vec![
        Entry {
            tag: Tag(arr(TAG_A)),
            label: EncryptedLabel(seq(0x40)),
        },
        Entry {
            tag: Tag(arr(TAG_B)),
            label: EncryptedLabel(seq(0x50)),
        },
    ])
    .unwrap()
}

/// The two signed statements of protocol-spec/vectors/announcement-vectors.json (made and
/// verified by nayose-proto; opaque bytes to the codec), which state the facts of the Info
/// example.
fn announcement() -> Announcement {
    let path = spec_dir().join("vectors/announcement-vectors.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).unwrap();
    Announcement {
        key_period_statement: SignedKeyPeriodStatement(arr(v["key_period_statement"]["signed"]
            .as_str()
            .unwrap())),
        epoch_statement: SignedEpochStatement(arr(v["epoch_statement"]["signed"]
            .as_str()
            .unwrap())),
    }
}

enum Msg {
    Req(Request),
    Resp(Response),
}

/// The examples, in the order of wire.md §10.
fn examples() -> Vec<(&'static str, Msg)> {
    let blinded = ElementBatch::new(RFC_BLINDED.iter().map(|h| Element(arr(h))).collect()).unwrap();
    let evaluated =
        ElementBatch::new(RFC_EVALUATED.iter().map(|h| Element(arr(h))).collect()).unwrap();
    vec![
        ("request-info", Msg::Req(Request::Info)),
        (
            "request-evaluate",
            Msg::Req(Request::Evaluate(EvaluateRequest {
                key_period: key_period(),
                elements: blinded,
            })),
        ),
        (
            "request-fetch-base",
            Msg::Req(Request::FetchBase(FetchBaseRequest {
                key_period: key_period(),
                epoch: 100,
                offset: 4096,
            })),
        ),
        (
            "request-fetch-delta",
            Msg::Req(Request::FetchDelta(FetchDeltaRequest {
                key_period: key_period(),
                from_epoch: 98,
            })),
        ),
        (
            "response-info",
            Msg::Resp(Response::Info(InfoResponse {
                key_period: key_period(),
                public_key: PublicKeyBytes(arr(RFC_PKS)),
                epoch: 100,
                table_entries: 2_000_000,
                table_digest: TableDigest(arr(DIGEST)),
                upsert_chain: UpsertChain(arr(CHAIN)),
                oldest_delta_base: 10,
                max_batch: 1024,
                quota_left_today: 49_998,
                quota_reset_secs: 3600,
                quota_left_key_period: 1_950_000,
                announcement: None,
                entity: EntityId::new("research-db-01").unwrap(),
            })),
        ),
        (
            "response-info-announced",
            Msg::Resp(Response::Info(InfoResponse {
                key_period: key_period(),
                public_key: PublicKeyBytes(arr(RFC_PKS)),
                epoch: 100,
                table_entries: 2_000_000,
                table_digest: TableDigest(arr(DIGEST)),
                upsert_chain: UpsertChain(arr(CHAIN)),
                oldest_delta_base: 10,
                max_batch: 1024,
                quota_left_today: 49_998,
                quota_reset_secs: 3600,
                quota_left_key_period: 1_950_000,
                announcement: Some(Box::new(announcement())),
                entity: EntityId::new("research-db-01").unwrap(),
            })),
        ),
        (
            "response-evaluated",
            Msg::Resp(Response::Evaluated(EvaluateResponse {
                key_period: key_period(),
                elements: evaluated,
                proof: Proof(arr(RFC_PROOF)),
            })),
        ),
        (
            "response-base-chunk",
            Msg::Resp(Response::BaseChunk(BaseChunk {
                key_period: key_period(),
                epoch: 100,
                offset: 4096,
                total: 4099,
                rice: 2,
                first_tag: Tag(arr("00000000000000000a")),
                gaps: GapBytes::new(vec![0x2c]).unwrap(),
                labels: base_labels(),
            })),
        ),
        (
            "response-base-end",
            Msg::Resp(Response::BaseEnd(BaseEnd {
                key_period: key_period(),
                epoch: 100,
                total: 4098,
            })),
        ),
        (
            "response-delta-chunk",
            Msg::Resp(Response::DeltaChunk(DeltaChunk {
                key_period: key_period(),
                epoch: 99,
                removed: ChunkList::new(vec![Tag(arr(TAG_REMOVED))]).unwrap(),
                upserts: upserts(),
            })),
        ),
        (
            "response-delta-end",
            Msg::Resp(Response::DeltaEnd(DeltaEnd {
                key_period: key_period(),
                epoch: 100,
                total: 2_000_000,
            })),
        ),
        (
            "response-error-epoch-changed",
            Msg::Resp(Response::Error(ErrorResponse::with_current(
                ErrorCode::EpochChanged,
                CurrentState {
                    key_period: key_period(),
                    epoch: 101,
                },
                "epoch changed",
            ))),
        ),
        (
            "response-error-key-period-changed",
            Msg::Resp(Response::Error(ErrorResponse::with_current(
                ErrorCode::KeyPeriodChanged,
                CurrentState {
                    key_period: next_key_period(),
                    epoch: 101,
                },
                "key period changed",
            ))),
        ),
        (
            "response-error-quota-exhausted",
            Msg::Resp(Response::Error(ErrorResponse {
                retry_after_secs: 3600,
                ..ErrorResponse::new(ErrorCode::QuotaExhausted, "quota: 0 left")
            })),
        ),
        (
            "response-error-hard-cap-reached",
            Msg::Resp(Response::Error(ErrorResponse::new(
                ErrorCode::HardCapReached,
                "hard cap reached",
            ))),
        ),
    ]
}

fn hexes(items: &[Element]) -> Value {
    items.iter().map(|e| json!(e.to_string())).collect()
}

fn entries_json(list: &ChunkList<Entry>) -> Value {
    list.as_slice()
        .iter()
        .map(|e| json!({"tag": e.tag.to_string(), "label": e.label.to_string()}))
        .collect()
}

/// The message's fields as the JSON file writes them (what an independent decoder must get).
fn describe_request(r: &Request) -> Value {
    match r {
        Request::Info => json!({}),
        Request::Evaluate(e) => json!({
            "key_period": e.key_period.to_string(),
            "elements": hexes(e.elements.as_slice()),
        }),
        Request::FetchBase(f) => json!({
            "key_period": f.key_period.to_string(),
            "epoch": f.epoch,
            "offset": f.offset,
        }),
        Request::FetchDelta(f) => json!({
            "key_period": f.key_period.to_string(),
            "from_epoch": f.from_epoch,
        }),
    }
}

fn describe_response(r: &Response) -> Value {
    match r {
        Response::Info(i) => json!({
            "key_period": i.key_period.to_string(),
            "public_key": i.public_key.to_string(),
            "epoch": i.epoch,
            "table_entries": i.table_entries,
            "table_digest": i.table_digest.to_string(),
            "upsert_chain": i.upsert_chain.to_string(),
            "oldest_delta_base": i.oldest_delta_base,
            "max_batch": i.max_batch,
            "quota_left_today": i.quota_left_today,
            "quota_reset_secs": i.quota_reset_secs,
            "quota_left_key_period": i.quota_left_key_period,
            "tag_len": TAG_LEN,
            "label_len": LABEL_LEN,
            "announcement": i.announcement.as_ref().map(|a| json!({
                "key_period_statement": a.key_period_statement.to_string(),
                "epoch_statement": a.epoch_statement.to_string(),
            })),
            "entity": i.entity.as_str(),
        }),
        Response::Evaluated(e) => json!({
            "key_period": e.key_period.to_string(),
            "elements": hexes(e.elements.as_slice()),
            "proof": e.proof.to_string(),
        }),
        Response::BaseChunk(c) => json!({
            "key_period": c.key_period.to_string(),
            "epoch": c.epoch,
            "offset": c.offset,
            "total": c.total,
            "rice": c.rice,
            "first_tag": c.first_tag.to_string(),
            "gaps": hex::encode(c.gaps.as_slice()),
            "labels": c.labels.as_slice().iter().map(|l| json!(l.to_string())).collect::<Vec<_>>(),
        }),
        Response::BaseEnd(b) => json!({
            "key_period": b.key_period.to_string(),
            "epoch": b.epoch,
            "total": b.total,
        }),
        Response::DeltaChunk(c) => json!({
            "key_period": c.key_period.to_string(),
            "epoch": c.epoch,
            "removed": c.removed.as_slice().iter().map(|t| json!(t.to_string())).collect::<Value>(),
            "upserts": entries_json(&c.upserts),
        }),
        Response::DeltaEnd(d) => json!({
            "key_period": d.key_period.to_string(),
            "epoch": d.epoch,
            "total": d.total,
        }),
        Response::Error(e) => json!({
            "code": e.code.to_u16(),
            "code_name": format!("{:?}", e.code),
            "retry_after_secs": e.retry_after_secs,
            "current": e.current.map(|c| json!({
                "key_period": c.key_period.to_string(),
                "epoch": c.epoch,
            })),
            "message": e.message.as_str(),
        }),
    }
}

fn spec_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../protocol-spec")
}

fn payload_of(msg: &Msg) -> Vec<u8> {
    match msg {
        Msg::Req(r) => encode_request(r).unwrap(),
        Msg::Resp(r) => encode_response(r).unwrap(),
    }
}

fn vector_json(name: &str, msg: &Msg) -> Value {
    let (direction, message, fields) = match msg {
        Msg::Req(r) => ("request", r.name(), describe_request(r)),
        Msg::Resp(r) => ("response", r.name(), describe_response(r)),
    };
    let payload = payload_of(msg);
    json!({
        "name": name,
        "direction": direction,
        "message": message,
        "type": u32::from_le_bytes(payload[..4].try_into().unwrap()),
        "fields": fields,
        "payload_len": payload.len(),
        "payload": hex::encode(&payload),
        "frame": hex::encode(encode_frame(&payload).unwrap()),
    })
}

fn load_vectors() -> Value {
    let path = spec_dir().join("vectors/wire-vectors.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn vectors_file_matches_the_codec() {
    let generated: Vec<Value> = examples().iter().map(|(n, m)| vector_json(n, m)).collect();
    if std::env::var_os("NAYOSE_WRITE_VECTORS").is_some() {
        let doc = json!({
            "protocol": "nayose/2",
            "description": "One encoded example of every nayose/2 message, produced by crates/nayose-wire and checked by its tests (tests/golden.rs). `payload` is the message (protocol-spec/wire.md §5); `frame` is the payload with its 4-byte little-endian length header (wire.md §3). `fields` gives the decoded value: byte strings as lowercase hex, integers as numbers. The Evaluate and Evaluated examples carry the blinded elements, evaluated elements, proof and public key of RFC 9497 Appendix A.1.2 VOPRF test vector 3. The key period id 00000000000000074eb7a0b064e017f2 is key period 7 of that public key (protocol-spec/table.md §4); the KeyPeriodChanged example names key period 8 of the RFC 9497 Appendix A.1.3 public key c647bef38497bc6ec077c22af65b696efa43bff3b4a1975a3e8e0a1c5a79d631. Epoch numbers, tags, labels, the table digest and the upsert chain are illustrative; the BaseChunk carries the worked entry block of protocol-spec/table.md §9.5 (tags 10, 13, 19; Rice parameter 2).",
            "bincode_config": "bincode 2 serde API: standard().with_little_endian().with_fixed_int_encoding().with_limit::<4194304>()",
            "vectors": generated,
        });
        let path = spec_dir().join("vectors/wire-vectors.json");
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
    }
    let file = load_vectors();
    assert_eq!(file["protocol"], "nayose/2");
    let vectors = file["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), generated.len(), "one vector per example");
    for (v, g) in vectors.iter().zip(&generated) {
        assert_eq!(v, g, "vector {} differs from the codec's output", g["name"]);
    }
}

#[test]
fn every_message_type_has_a_vector() {
    let examples = examples();
    let names = |req: bool| -> Vec<&'static str> {
        let mut v: Vec<_> = examples
            .iter()
            .filter_map(|(_, m)| match (m, req) {
                (Msg::Req(r), true) => Some(r.name()),
                (Msg::Resp(r), false) => Some(r.name()),
                _ => None,
            })
            .collect();
        v.dedup();
        v
    };
    assert_eq!(names(true), ["Info", "Evaluate", "FetchBase", "FetchDelta"]);
    assert_eq!(
        names(false),
        [
            "Info",
            "Evaluated",
            "BaseChunk",
            "BaseEnd",
            "DeltaChunk",
            "DeltaEnd",
            "Error"
        ]
    );
    // The message types are their wire indices, in the order of wire.md §5.
    for (_, m) in &examples {
        let payload = payload_of(m);
        let t = u32::from_le_bytes(payload[..4].try_into().unwrap());
        let expected = match m {
            Msg::Req(r) => ["Info", "Evaluate", "FetchBase", "FetchDelta"]
                .iter()
                .position(|n| *n == r.name()),
            Msg::Resp(r) => [
                "Info",
                "Evaluated",
                "BaseChunk",
                "BaseEnd",
                "DeltaChunk",
                "DeltaEnd",
                "Error",
            ]
            .iter()
            .position(|n| *n == r.name()),
        };
        assert_eq!(Some(t as usize), expected);
    }
}

#[test]
fn vectors_decode_to_their_fields_and_reencode() {
    let file = load_vectors();
    let vectors = file["vectors"].as_array().unwrap();
    let examples = examples();
    assert_eq!(vectors.len(), examples.len());
    for (v, (name, msg)) in vectors.iter().zip(&examples) {
        assert_eq!(v["name"], *name);
        let payload = hex::decode(v["payload"].as_str().unwrap()).unwrap();
        let frame = hex::decode(v["frame"].as_str().unwrap()).unwrap();
        assert_eq!(v["payload_len"], payload.len());
        assert_eq!(&frame[..4], &(payload.len() as u32).to_le_bytes());
        assert_eq!(&frame[4..], &payload[..]);
        match msg {
            Msg::Req(expected) => {
                let got = decode_request(&payload).unwrap();
                assert_eq!(&got, expected, "{name}");
                assert_eq!(decode_request_frame(&frame).unwrap(), got);
                assert_eq!(describe_request(&got), v["fields"], "{name}");
                assert_eq!(encode_request(&got).unwrap(), payload, "{name}");
                assert_eq!(encode_request_frame(&got).unwrap(), frame, "{name}");
            }
            Msg::Resp(expected) => {
                let got = decode_response(&payload).unwrap();
                assert_eq!(&got, expected, "{name}");
                assert_eq!(decode_response_frame(&frame).unwrap(), got);
                assert_eq!(describe_response(&got), v["fields"], "{name}");
                assert_eq!(encode_response(&got).unwrap(), payload, "{name}");
                assert_eq!(encode_response_frame(&got).unwrap(), frame, "{name}");
            }
        }
    }
}

/// The key period ids of the vectors are the real ones, bound to their public keys.
#[test]
fn vector_key_periods_are_real() {
    let kp = nayose_table::KeyPeriodId::from_bytes(key_period().0);
    assert_eq!(kp.number(), 7);
    assert!(kp.matches_public_key(&arr(RFC_PKS)));
    assert_eq!(key_period().to_string(), "00000000000000074eb7a0b064e017f2");
    let next = nayose_table::KeyPeriodId::from_bytes(next_key_period().0);
    assert_eq!(next.number(), 8);
    assert!(next.matches_public_key(&arr(RFC_POPRF_PKS)));
    assert!(!next.matches_public_key(&arr(RFC_PKS)));
}

/// The documented payload sizes of wire.md §5 hold for the examples.
#[test]
fn vector_sizes_follow_the_layout_tables() {
    let sizes: Vec<(&str, usize)> = examples()
        .iter()
        .map(|(n, m)| (*n, payload_of(m).len()))
        .collect();
    assert_eq!(
        sizes,
        [
            ("request-info", 4),
            ("request-evaluate", 28 + 32 * 2),
            ("request-fetch-base", 32),
            ("request-fetch-delta", 24),
            ("response-info", 159 + 8 + 14),
            ("response-info-announced", 159 + 160 + 204 + 8 + 14),
            ("response-evaluated", 92 + 32 * 2),
            ("response-base-chunk", 66 + 1 + 4 * 3),
            ("response-base-end", 32),
            ("response-delta-chunk", 40 + 9 + 13 * 2),
            ("response-delta-end", 32),
            ("response-error-epoch-changed", 39 + 13),
            ("response-error-key-period-changed", 39 + 18),
            ("response-error-quota-exhausted", 19 + 13),
            ("response-error-hard-cap-reached", 19 + 16),
        ]
    );
}

/// Every `<!-- vector: NAME -->` block of wire.md: the hex before `|` on each line.
fn spec_blocks() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(spec_dir().join("wire.md")).unwrap();
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .trim()
            .strip_prefix("<!-- vector: ")
            .and_then(|r| r.strip_suffix(" -->"))
        else {
            continue;
        };
        assert_eq!(lines.next().map(str::trim), Some("```"), "block {name}");
        let mut hex = String::new();
        for l in lines.by_ref() {
            if l.trim() == "```" {
                break;
            }
            let bytes = l.split('|').next().unwrap();
            hex.extend(bytes.chars().filter(|c| !c.is_whitespace()));
        }
        out.push((name.to_owned(), hex));
    }
    out
}

#[test]
fn wire_md_shows_the_same_bytes() {
    let file = load_vectors();
    let vectors = file["vectors"].as_array().unwrap();
    let blocks = spec_blocks();
    for (name, _) in &blocks {
        assert_eq!(
            blocks.iter().filter(|(n, _)| n == name).count(),
            1,
            "wire.md has one block named {name}"
        );
    }
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let frame_name = format!("{name}/frame");
        let block = blocks
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("wire.md has no block for {name}"));
        assert_eq!(
            block.1,
            v["payload"].as_str().unwrap(),
            "wire.md block {name}"
        );
        if let Some((_, hex)) = blocks.iter().find(|(n, _)| *n == frame_name) {
            assert_eq!(
                hex,
                v["frame"].as_str().unwrap(),
                "wire.md block {frame_name}"
            );
        }
    }
    // Every block is a vector or the framed form of one, and the Info request is shown framed.
    for (name, _) in &blocks {
        let base = name.strip_suffix("/frame").unwrap_or(name);
        assert!(
            vectors.iter().any(|v| v["name"] == base),
            "wire.md block {name} names no vector"
        );
    }
    assert!(
        blocks.iter().any(|(n, _)| n == "request-info/frame"),
        "wire.md shows the framed Info request"
    );
}

/// The annotated blocks of wire.md §10, as this crate lays the examples out. Printed on demand
/// (see the top of this file) and checked against wire.md's hex by `wire_md_shows_the_same_bytes`.
#[test]
fn print_blocks() {
    let blocks = annotated_blocks();
    // The annotation is complete: the hex column of every block is the payload.
    for ((name, msg), (block_name, lines)) in examples().iter().zip(&blocks[1..]) {
        assert_eq!(name, block_name);
        let hex: String = lines.iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(hex, hex::encode(payload_of(msg)), "{name}");
    }
    if std::env::var_os("NAYOSE_PRINT_BLOCKS").is_none() {
        return;
    }
    for (name, lines) in &blocks {
        let width = lines.iter().map(|(h, _)| h.len()).max().unwrap_or(0);
        println!("<!-- vector: {name} -->\n```");
        for (h, note) in lines {
            println!("{h:<width$} | {note}");
        }
        println!("```\n");
    }
}

/// (name, [(hex, annotation)]) for the framed Info request and every example.
fn annotated_blocks() -> Vec<(String, Vec<(String, String)>)> {
    let mut out = vec![(
        "request-info/frame".to_owned(),
        vec![
            (
                "04000000".to_owned(),
                "frame header: payload length = 4, u32 LE".to_owned(),
            ),
            (
                "00000000".to_owned(),
                "@0   type = 0 (Info), u32 LE".to_owned(),
            ),
        ],
    )];
    for (name, msg) in examples() {
        let mut a = Annotator::default();
        match &msg {
            Msg::Req(r) => {
                let t = match r {
                    Request::Info => 0,
                    Request::Evaluate(_) => 1,
                    Request::FetchBase(_) => 2,
                    Request::FetchDelta(_) => 3,
                };
                a.u32(t, &format!("type = {t} ({}), u32 LE", r.name()));
                match r {
                    Request::Info => {}
                    Request::Evaluate(e) => {
                        a.kp(&e.key_period, "key_period");
                        a.elements(&e.elements, "blinded element");
                    }
                    Request::FetchBase(f) => {
                        a.kp(&f.key_period, "key_period");
                        a.u32(f.epoch, &format!("epoch = {}, u32 LE", f.epoch));
                        a.u64(f.offset, &format!("offset = {}, u64 LE", f.offset));
                    }
                    Request::FetchDelta(f) => {
                        a.kp(&f.key_period, "key_period");
                        let e = f.from_epoch;
                        a.u32(e, &format!("from_epoch = {e}, u32 LE"));
                    }
                }
            }
            Msg::Resp(r) => {
                let t = match r {
                    Response::Info(_) => 0,
                    Response::Evaluated(_) => 1,
                    Response::BaseChunk(_) => 2,
                    Response::BaseEnd(_) => 3,
                    Response::DeltaChunk(_) => 4,
                    Response::DeltaEnd(_) => 5,
                    Response::Error(_) => 6,
                };
                a.u32(t, &format!("type = {t} ({}), u32 LE", r.name()));
                annotate_response(&mut a, r);
            }
        }
        out.push((name.to_owned(), a.lines));
    }
    out
}

fn annotate_response(a: &mut Annotator, r: &Response) {
    match r {
        Response::Info(i) => {
            a.kp(&i.key_period, "key_period");
            a.bytes(i.public_key.as_bytes(), "public_key (pkS), 32 bytes");
            a.u32(i.epoch, &format!("epoch = {}, u32 LE", i.epoch));
            let n = i.table_entries;
            a.u64(n, &format!("table_entries = {n}, u64 LE"));
            a.bytes(
                i.table_digest.as_bytes(),
                "table_digest (illustrative), 32 bytes",
            );
            a.bytes(
                i.upsert_chain.as_bytes(),
                "upsert_chain (illustrative), 32 bytes",
            );
            let o = i.oldest_delta_base;
            a.u32(o, &format!("oldest_delta_base = {o}, u32 LE"));
            a.u32(i.max_batch, &format!("max_batch = {}, u32 LE", i.max_batch));
            let q = i.quota_left_today;
            a.u64(q, &format!("quota_left_today = {q}, u64 LE"));
            let s = i.quota_reset_secs;
            a.u32(s, &format!("quota_reset_secs = {s}, u32 LE"));
            let q = i.quota_left_key_period;
            a.u64(q, &format!("quota_left_key_period = {q}, u64 LE"));
            a.bytes(&[TAG_LEN as u8], &format!("tag_len = {TAG_LEN}, u8"));
            a.bytes(&[LABEL_LEN as u8], &format!("label_len = {LABEL_LEN}, u8"));
            match &i.announcement {
                None => a.bytes(&[0], "announcement: Option tag = 0 (None)"),
                Some(an) => {
                    a.bytes(&[1], "announcement: Option tag = 1 (Some)");
                    annotate_statement(a, an.key_period_statement.as_bytes(), "key period");
                    annotate_statement(a, an.epoch_statement.as_bytes(), "epoch");
                }
            }
            let e = i.entity.as_str();
            a.u64(
                e.len() as u64,
                &format!("entity: length = {}, u64 LE", e.len()),
            );
            a.bytes(e.as_bytes(), &format!("entity = \"{e}\" (ASCII)"));
        }
        Response::Evaluated(e) => {
            a.kp(&e.key_period, "key_period");
            a.elements(&e.elements, "evaluated element");
            a.bytes(
                &e.proof.as_bytes()[..32],
                "proof.c (challenge scalar, LE), 32 bytes",
            );
            a.bytes(
                &e.proof.as_bytes()[32..],
                "proof.s (response scalar, LE), 32 bytes",
            );
        }
        Response::BaseChunk(c) => {
            a.kp(&c.key_period, "key_period");
            a.u32(c.epoch, &format!("epoch = {}, u32 LE", c.epoch));
            a.u64(c.offset, &format!("offset = {}, u64 LE", c.offset));
            a.u64(c.total, &format!("total = {}, u64 LE", c.total));
            a.bytes(&[c.rice], &format!("rice = {}, u8", c.rice));
            a.bytes(c.first_tag.as_bytes(), "first_tag, 9 bytes");
            let g = c.gaps.as_slice().len();
            a.u64(g as u64, &format!("gaps: length = {g}, u64 LE"));
            a.bytes(
                c.gaps.as_slice(),
                "gaps: Rice codes of the tag gaps 2 and 5",
            );
            let n = c.labels.len();
            a.u64(n as u64, &format!("labels: count = {n}, u64 LE"));
            for (i, l) in c.labels.as_slice().iter().enumerate() {
                a.bytes(
                    l.as_bytes(),
                    &format!("labels[{i}] (encrypted label), 4 bytes"),
                );
            }
        }
        Response::BaseEnd(b) => {
            a.kp(&b.key_period, "key_period");
            a.u32(b.epoch, &format!("epoch = {}, u32 LE", b.epoch));
            a.u64(b.total, &format!("total = {}, u64 LE", b.total));
        }
        Response::DeltaChunk(c) => {
            a.kp(&c.key_period, "key_period");
            a.u32(c.epoch, &format!("epoch = {}, u32 LE", c.epoch));
            let r = c.removed.len();
            a.u64(r as u64, &format!("removed: count = {r}, u64 LE"));
            for (i, t) in c.removed.as_slice().iter().enumerate() {
                a.bytes(t.as_bytes(), &format!("removed[{i}] (tag), 9 bytes"));
            }
            let u = c.upserts.len();
            a.u64(u as u64, &format!("upserts: count = {u}, u64 LE"));
            for (i, e) in c.upserts.as_slice().iter().enumerate() {
                a.bytes(e.tag.as_bytes(), &format!("upserts[{i}].tag, 9 bytes"));
                a.bytes(
                    e.label.as_bytes(),
                    &format!("upserts[{i}].encrypted_label, 4 bytes"),
                );
            }
        }
        Response::DeltaEnd(d) => {
            a.kp(&d.key_period, "key_period");
            a.u32(d.epoch, &format!("epoch = {}, u32 LE", d.epoch));
            a.u64(d.total, &format!("total = {}, u64 LE", d.total));
        }
        Response::Error(e) => {
            let c = e.code.to_u16();
            a.bytes(
                &c.to_le_bytes(),
                &format!("code = {c} ({:?}), u16 LE", e.code),
            );
            let s = e.retry_after_secs;
            a.u32(s, &format!("retry_after_secs = {s}, u32 LE"));
            match &e.current {
                None => a.bytes(&[0], "current: Option tag = 0 (None)"),
                Some(cur) => {
                    a.bytes(&[1], "current: Option tag = 1 (Some)");
                    a.kp(&cur.key_period, "current.key_period");
                    let ep = cur.epoch;
                    a.u32(ep, &format!("current.epoch = {ep}, u32 LE"));
                }
            }
            let m = e.message.as_str();
            a.u64(
                m.len() as u64,
                &format!("message: length = {} bytes, u64 LE", m.len()),
            );
            a.bytes(m.as_bytes(), &format!("message, UTF-8: {m:?}"));
        }
    }
}

/// Builds the `hex | @offset description` lines of one block.
#[derive(Default)]
struct Annotator {
    at: usize,
    lines: Vec<(String, String)>,
}

/// One signed statement of protocol-spec/announcements.md §4, field by field (its integers
/// are big-endian: they are signed bytes, not wire integers).
fn annotate_statement(a: &mut Annotator, b: &[u8], kind: &str) {
    let p = format!("{kind} statement:");
    a.bytes(
        &b[..23],
        &format!("{p} I2OSP(21, 2) ‖ \"nayose/2 announcement\""),
    );
    a.bytes(&b[23..24], &format!("{p} kind = {}", b[23]));
    a.bytes(&b[24..32], &format!("{p} signer key id"));
    let be = |r: std::ops::Range<usize>| u64::from_be_bytes(b[r].try_into().unwrap());
    a.bytes(
        &b[32..40],
        &format!("{p} not_before = {}, u64 BE", be(32..40)),
    );
    a.bytes(
        &b[40..48],
        &format!("{p} not_after = {}, u64 BE", be(40..48)),
    );
    a.bytes(&b[48..64], &format!("{p} key_period (kp 7)"));
    let sig_at = if b[23] == 1 {
        a.bytes(&b[64..96], &format!("{p} public_key (pkS)"));
        96
    } else {
        let e = u32::from_be_bytes(b[64..68].try_into().unwrap());
        a.bytes(&b[64..68], &format!("{p} epoch = {e}, u32 BE"));
        a.bytes(
            &b[68..76],
            &format!("{p} table_entries = {}, u64 BE", be(68..76)),
        );
        a.bytes(&b[76..108], &format!("{p} table_digest"));
        a.bytes(&b[108..140], &format!("{p} upsert_chain"));
        140
    };
    a.bytes(&b[sig_at..sig_at + 32], &format!("{p} Ed25519 signature R"));
    a.bytes(&b[sig_at + 32..], &format!("{p} Ed25519 signature S"));
}

impl Annotator {
    fn bytes(&mut self, b: &[u8], note: &str) {
        let off = format!("@{}", self.at);
        self.lines
            .push((hex::encode(b), format!("{off:<4} {note}")));
        self.at += b.len();
    }

    fn u32(&mut self, v: u32, note: &str) {
        self.bytes(&v.to_le_bytes(), note);
    }

    fn u64(&mut self, v: u64, note: &str) {
        self.bytes(&v.to_le_bytes(), note);
    }

    fn kp(&mut self, kp: &KeyPeriodId, field: &str) {
        let n = nayose_table::KeyPeriodId::from_bytes(kp.0).number();
        self.bytes(kp.as_bytes(), &format!("{field} (kp {n}), 16 bytes"));
    }

    fn elements(&mut self, batch: &ElementBatch, what: &str) {
        let n = batch.len();
        self.u64(n as u64, &format!("elements: count = {n}, u64 LE"));
        for (i, e) in batch.as_slice().iter().enumerate() {
            self.bytes(e.as_bytes(), &format!("elements[{i}] ({what}), 32 bytes"));
        }
    }
}

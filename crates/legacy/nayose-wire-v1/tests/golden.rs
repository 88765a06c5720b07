//! Golden bytes: every message of protocol-spec/wire.md, checked against
//! protocol-spec/vectors/wire-vectors.json and against the hex blocks of wire.md itself.
//!
//! Regenerate the JSON (after a deliberate, spec-versioned change only):
//! `NAYOSE_WRITE_VECTORS=1 cargo test -p nayose-wire --test golden`

#![allow(clippy::unwrap_used)] // tests unwrap on data they built themselves

use std::path::PathBuf;

use nayose_wire_v1::*;
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

fn arr<const N: usize>(hex_str: &str) -> [u8; N] {
    let v = hex::decode(hex_str).unwrap();
    v.try_into().unwrap()
}

fn seq<const N: usize>(start: u8) -> [u8; N] {
    std::array::from_fn(|i| start.wrapping_add(i as u8))
}

/// Epoch 7 of the RFC key: big-endian number, then the key check of protocol-spec/table.md
/// (first 8 bytes of SHA-512(I2OSP(17, 2) || "nayose/1 epoch id" || pkS)).
fn epoch() -> EpochId {
    EpochId(arr("00000000000000076b717ee884e7cff7"))
}

/// Epoch 8, under another key (its check bytes are illustrative).
fn next_epoch() -> EpochId {
    EpochId(arr("0000000000000008a1b2c3d4e5f60718"))
}

fn prefix() -> TagPrefix {
    // 12 bits: 0x3a7.
    TagPrefix::new(12, [0x3a, 0x70, 0, 0, 0, 0, 0, 0]).unwrap()
}

fn entries() -> EntryList {
    EntryList::new(vec![
        Entry {
            tag: Tag(arr("3a7011223344556677889900aabbccdd")),
            label: EncryptedLabel(seq(0x40)),
        },
        Entry {
            tag: Tag(arr("3a7f0000000000000000000000000001")),
            label: EncryptedLabel(seq(0x50)),
        },
    ])
    .unwrap()
}

enum Msg {
    Req(Request),
    Resp(Response),
}

/// The examples, in the order of wire.md.
fn examples() -> Vec<(&'static str, Msg)> {
    let blinded = ElementBatch::new(RFC_BLINDED.iter().map(|h| Element(arr(h))).collect()).unwrap();
    let evaluated =
        ElementBatch::new(RFC_EVALUATED.iter().map(|h| Element(arr(h))).collect()).unwrap();
    vec![
        ("request-info", Msg::Req(Request::Info)),
        (
            "request-evaluate",
            Msg::Req(Request::Evaluate(EvaluateRequest {
                epoch: epoch(),
                elements: blinded,
            })),
        ),
        (
            "request-fetch-range",
            Msg::Req(Request::FetchRange(FetchRangeRequest {
                epoch: epoch(),
                prefix: prefix(),
            })),
        ),
        (
            "request-fetch-all",
            Msg::Req(Request::FetchAll(FetchAllRequest {
                epoch: epoch(),
                offset: 4096,
            })),
        ),
        (
            "response-info",
            Msg::Resp(Response::Info(InfoResponse {
                epoch: epoch(),
                public_key: PublicKeyBytes(arr(RFC_PKS)),
                table_entries: 2_000_000,
                max_prefix_bits: Some(12),
                min_range_entries: 256,
                max_batch: 1024,
                quota_left: 49_998,
                quota_reset_secs: 3600,
            })),
        ),
        (
            "response-evaluated",
            Msg::Resp(Response::Evaluated(EvaluateResponse {
                epoch: epoch(),
                elements: evaluated,
                proof: Proof(arr(RFC_PROOF)),
            })),
        ),
        (
            "response-range",
            Msg::Resp(Response::Range(RangeResponse {
                epoch: epoch(),
                prefix: prefix(),
                entries: entries(),
            })),
        ),
        (
            "response-table-chunk",
            Msg::Resp(Response::TableChunk(TableChunk {
                epoch: epoch(),
                offset: 4096,
                total: 4098,
                entries: entries(),
            })),
        ),
        (
            "response-table-end",
            Msg::Resp(Response::TableEnd(TableEnd {
                epoch: epoch(),
                total: 4098,
            })),
        ),
        (
            "response-error-epoch-changed",
            Msg::Resp(Response::Error(ErrorResponse::epoch_changed(
                next_epoch(),
                "epoch changed",
            ))),
        ),
        (
            "response-error-quota-exhausted",
            Msg::Resp(Response::Error(ErrorResponse {
                retry_after_secs: 3600,
                ..ErrorResponse::new(ErrorCode::QuotaExhausted, "quota: 0 left")
            })),
        ),
    ]
}

fn hexes(items: &[Element]) -> Value {
    items.iter().map(|e| json!(e.to_string())).collect()
}

fn entries_json(list: &EntryList) -> Value {
    list.as_slice()
        .iter()
        .map(|e| json!({"tag": e.tag.to_string(), "label": e.label.to_string()}))
        .collect()
}

fn prefix_json(p: &TagPrefix) -> Value {
    json!({"bits": p.bits(), "value": hex::encode(p.value())})
}

/// The message's fields as the JSON file writes them (what an independent decoder must get).
fn describe_request(r: &Request) -> Value {
    match r {
        Request::Info => json!({}),
        Request::Evaluate(e) => {
            json!({"epoch": e.epoch.to_string(), "elements": hexes(e.elements.as_slice())})
        }
        Request::FetchRange(f) => {
            json!({"epoch": f.epoch.to_string(), "prefix": prefix_json(&f.prefix)})
        }
        Request::FetchAll(f) => json!({"epoch": f.epoch.to_string(), "offset": f.offset}),
    }
}

fn describe_response(r: &Response) -> Value {
    match r {
        Response::Info(i) => json!({
            "epoch": i.epoch.to_string(),
            "public_key": i.public_key.to_string(),
            "table_entries": i.table_entries,
            "tag_len": TAG_LEN,
            "label_len": LABEL_LEN,
            "max_prefix_bits": i.max_prefix_bits,
            "min_range_entries": i.min_range_entries,
            "max_batch": i.max_batch,
            "quota_left": i.quota_left,
            "quota_reset_secs": i.quota_reset_secs,
        }),
        Response::Evaluated(e) => json!({
            "epoch": e.epoch.to_string(),
            "elements": hexes(e.elements.as_slice()),
            "proof": e.proof.to_string(),
        }),
        Response::Range(r) => json!({
            "epoch": r.epoch.to_string(),
            "prefix": prefix_json(&r.prefix),
            "entries": entries_json(&r.entries),
        }),
        Response::TableChunk(c) => json!({
            "epoch": c.epoch.to_string(),
            "offset": c.offset,
            "total": c.total,
            "entries": entries_json(&c.entries),
        }),
        Response::TableEnd(t) => json!({"epoch": t.epoch.to_string(), "total": t.total}),
        Response::Error(e) => json!({
            "code": e.code.to_u16(),
            "code_name": format!("{:?}", e.code),
            "retry_after_secs": e.retry_after_secs,
            "current_epoch": e.current_epoch.map(|x| x.to_string()),
            "message": e.message.as_str(),
        }),
    }
}

fn spec_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec-v1")
}

fn vector_json(name: &str, msg: &Msg) -> Value {
    let (direction, message, fields, payload) = match msg {
        Msg::Req(r) => (
            "request",
            r.name(),
            describe_request(r),
            encode_request(r).unwrap(),
        ),
        Msg::Resp(r) => (
            "response",
            r.name(),
            describe_response(r),
            encode_response(r).unwrap(),
        ),
    };
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
            "protocol": "nayose/1",
            "description": "One encoded example of every nayose/1 message, produced by crates/nayose-wire and checked by its tests (tests/golden.rs). `payload` is the message (protocol-spec/wire.md, Messages); `frame` is the payload with its 4-byte little-endian length header (wire.md, Framing). `fields` gives the decoded value: byte strings as lowercase hex, integers as numbers. The Evaluate and Evaluated examples carry the blinded elements, evaluated elements, proof and public key of RFC 9497 Appendix A.1.2 VOPRF test vector 3.",
            "bincode_config": "bincode 2 serde API: standard().with_little_endian().with_fixed_int_encoding().with_limit::<4194304>()",
            "vectors": generated,
        });
        let path = spec_dir().join("vectors/wire-vectors.json");
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
    }
    let file = load_vectors();
    let vectors = file["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), generated.len(), "one vector per example");
    for (v, g) in vectors.iter().zip(&generated) {
        assert_eq!(v, g, "vector {} differs from the codec's output", g["name"]);
    }
}

#[test]
fn vectors_decode_to_their_fields_and_reencode() {
    let file = load_vectors();
    let vectors = file["vectors"].as_array().unwrap();
    let examples = examples();
    for (v, (name, msg)) in vectors.iter().zip(&examples) {
        assert_eq!(v["name"], *name);
        let payload = hex::decode(v["payload"].as_str().unwrap()).unwrap();
        let frame = hex::decode(v["frame"].as_str().unwrap()).unwrap();
        assert_eq!(&frame[..4], &(payload.len() as u32).to_le_bytes());
        assert_eq!(&frame[4..], &payload[..]);
        match msg {
            Msg::Req(expected) => {
                let got = decode_request(&payload).unwrap();
                assert_eq!(&got, expected, "{name}");
                assert_eq!(decode_request_frame(&frame).unwrap(), got);
                assert_eq!(describe_request(&got), v["fields"], "{name}");
                assert_eq!(encode_request(&got).unwrap(), payload, "{name}");
            }
            Msg::Resp(expected) => {
                let got = decode_response(&payload).unwrap();
                assert_eq!(&got, expected, "{name}");
                assert_eq!(decode_response_frame(&frame).unwrap(), got);
                assert_eq!(describe_response(&got), v["fields"], "{name}");
                assert_eq!(encode_response(&got).unwrap(), payload, "{name}");
            }
        }
    }
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
    let blocks = spec_blocks();
    for v in file["vectors"].as_array().unwrap() {
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
    assert!(
        blocks.len() >= file["vectors"].as_array().unwrap().len(),
        "every vector is shown"
    );
}

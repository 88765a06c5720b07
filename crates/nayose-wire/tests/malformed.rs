//! Every way a frame or message is rejected, with the exact typed error the spec promises.

#![allow(clippy::unwrap_used)] // tests unwrap on data they built themselves

use nayose_wire::*;

fn kp() -> KeyPeriodId {
    KeyPeriodId([0xe0; KEY_PERIOD_ID_LEN])
}

/// A payload built field by field, as wire.md §5 lays it out.
#[derive(Default, Clone)]
struct P(Vec<u8>);

impl P {
    fn ty(t: u32) -> P {
        P(t.to_le_bytes().to_vec())
    }
    fn u8(mut self, v: u8) -> P {
        self.0.push(v);
        self
    }
    fn u16(mut self, v: u16) -> P {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(mut self, v: u32) -> P {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> P {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(mut self, b: &[u8]) -> P {
        self.0.extend_from_slice(b);
        self
    }
    fn repeat(mut self, byte: u8, n: usize) -> P {
        self.0.extend(std::iter::repeat_n(byte, n));
        self
    }
    fn kp(self) -> P {
        self.bytes(&kp().0)
    }
}

fn evaluate_with(count: u64, elements: usize) -> Vec<u8> {
    P::ty(1)
        .kp()
        .u64(count)
        .repeat(0x11, elements * ELEMENT_LEN)
        .0
}

/// A BaseChunk (type 2) up to its label count, announcing `count` labels (rice 0, first tag
/// 11…11, no gap bytes); the labels follow.
fn base_chunk_header(offset: u64, total: u64, count: u64) -> P {
    P::ty(2)
        .kp()
        .u32(100)
        .u64(offset)
        .u64(total)
        .u8(0)
        .repeat(0x11, TAG_LEN)
        .u64(0)
        .u64(count)
}

/// A DeltaChunk (type 4) with `removed` removed tags and `upserts` upserts, all present.
fn delta_chunk(removed: usize, upserts: usize) -> Vec<u8> {
    P::ty(4)
        .kp()
        .u32(99)
        .u64(removed as u64)
        .repeat(0xa0, removed * TAG_LEN)
        .u64(upserts as u64)
        .repeat(0xb0, upserts * ENTRY_LEN)
        .0
}

fn valid_requests() -> Vec<Request> {
    vec![
        Request::Info,
        Request::Evaluate(EvaluateRequest {
            key_period: kp(),
            elements: ElementBatch::new(vec![Element([7; 32]); 3]).unwrap(),
        }),
        Request::FetchBase(FetchBaseRequest {
            key_period: kp(),
            epoch: 12,
            offset: 77,
        }),
        Request::FetchDelta(FetchDeltaRequest {
            key_period: kp(),
            from_epoch: 11,
        }),
    ]
}

fn base_chunk(offset: u64, total: u64, n: usize) -> BaseChunk {
    BaseChunk {
        key_period: kp(),
        epoch: 100,
        offset,
        total,
        rice: 0,
        first_tag: Tag([0x11; TAG_LEN]),
        gaps: GapBytes::new(vec![0; n.saturating_sub(1).div_ceil(8)]).unwrap(),
        labels: ChunkList::new(
            (0..n)
                .map(|i| EncryptedLabel([i as u8; LABEL_LEN]))
                .collect(),
        )
        .unwrap(),
    }
}

fn entry(i: u8) -> Entry {
    Entry {
        tag: Tag([i; TAG_LEN]),
        label: EncryptedLabel([!i; LABEL_LEN]),
    }
}

fn info() -> InfoResponse {
    InfoResponse {
        key_period: kp(),
        public_key: PublicKeyBytes([2; 32]),
        epoch: 12,
        table_entries: 10,
        table_digest: TableDigest([3; 32]),
        upsert_chain: UpsertChain([4; 32]),
        oldest_delta_base: 5,
        max_batch: 16,
        quota_left_today: 5,
        quota_reset_secs: 6,
        quota_left_key_period: 7,
        announcement: None,
        entity: EntityId::new("hosp-a").unwrap(),
    }
}

fn current() -> CurrentState {
    CurrentState {
        key_period: kp(),
        epoch: 13,
    }
}

fn valid_responses() -> Vec<Response> {
    vec![
        Response::Info(info()),
        Response::Evaluated(EvaluateResponse {
            key_period: kp(),
            elements: ElementBatch::new(vec![Element([8; 32])]).unwrap(),
            proof: Proof([9; 64]),
        }),
        Response::BaseChunk(BaseChunk {
            epoch: 12,
            ..base_chunk(8, 10, 2)
        }),
        Response::BaseEnd(BaseEnd {
            key_period: kp(),
            epoch: 12,
            total: 10,
        }),
        Response::DeltaChunk(DeltaChunk {
            key_period: kp(),
            epoch: 12,
            removed: ChunkList::new(vec![Tag([5; TAG_LEN])]).unwrap(),
            upserts: ChunkList::new(vec![entry(1), entry(2)]).unwrap(),
        }),
        Response::DeltaEnd(DeltaEnd {
            key_period: kp(),
            epoch: 12,
            total: 10,
        }),
        Response::Error(ErrorResponse::new(ErrorCode::Busy, "busy: try later ☕")),
        Response::Error(ErrorResponse::with_current(
            ErrorCode::KeyPeriodChanged,
            current(),
            "key period changed",
        )),
    ]
}

/// `result` is `InvalidField` of `message`.`field` with `value`, and its reason says `needle`.
#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(
    result: Result<T, WireError>,
    message: &str,
    field: &str,
    value: u64,
    needle: &str,
) {
    match result {
        Err(WireError::InvalidField {
            message: m,
            field: f,
            value: v,
            reason,
        }) => {
            assert_eq!((m, f, v), (message, field, value));
            assert!(
                reason.contains(needle),
                "reason {reason:?} lacks {needle:?}"
            );
        }
        other => panic!("expected InvalidField {message}.{field} = {value}, got {other:?}"),
    }
}

/// `result` is `OutOfSpec` of `field` with `value` (an encoder refusing what a decoder rejects).
#[track_caller]
fn assert_out_of_spec<T: std::fmt::Debug>(result: Result<T, WireError>, field: &str, value: u64) {
    match result {
        Err(WireError::OutOfSpec {
            field: f, value: v, ..
        }) => assert_eq!((f, v), (field, value)),
        other => panic!("expected OutOfSpec {field} = {value}, got {other:?}"),
    }
}

#[test]
fn short_payloads_have_no_type() {
    for len in 0..4 {
        let p = vec![0u8; len];
        assert_eq!(
            decode_request(&p),
            Err(WireError::MissingType {
                direction: "request",
                len
            })
        );
        assert_eq!(
            decode_response(&p),
            Err(WireError::MissingType {
                direction: "response",
                len
            })
        );
    }
}

#[test]
fn unknown_types_are_rejected() {
    // Requests 0..=3 exist; 4 and up do not (nayose/1's FetchRange and FetchAll were 2 and 3 and
    // are gone: 2 and 3 are now FetchBase and FetchDelta).
    for t in [4u32, 5, 6, 0x100, u32::MAX] {
        let p = P::ty(t).kp().u32(0).u64(0).0;
        assert_eq!(
            decode_request(&p),
            Err(WireError::UnknownMessageType {
                direction: "request",
                value: t
            })
        );
        assert_eq!(
            decode_request(&P::ty(t).0),
            Err(WireError::UnknownMessageType {
                direction: "request",
                value: t
            })
        );
    }
    // Responses 0..=6 exist.
    for t in [7u32, 8, 0x100, u32::MAX] {
        let p = P::ty(t).repeat(0, 40).0;
        assert_eq!(
            decode_response(&p),
            Err(WireError::UnknownMessageType {
                direction: "response",
                value: t
            })
        );
    }
    // A type that exists in the other direction only.
    assert!(matches!(
        decode_request(&P::ty(6).u16(4).0),
        Err(WireError::UnknownMessageType { value: 6, .. })
    ));
}

#[test]
fn trailing_bytes_are_rejected() {
    for r in valid_requests() {
        let mut p = encode_request(&r).unwrap();
        p.push(0);
        assert_eq!(
            decode_request(&p),
            Err(WireError::TrailingBytes {
                message: r.name(),
                count: 1
            })
        );
    }
    for r in valid_responses() {
        let mut p = encode_response(&r).unwrap();
        p.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            decode_response(&p),
            Err(WireError::TrailingBytes {
                message: r.name(),
                count: 3
            })
        );
    }
}

#[test]
fn every_truncation_is_rejected() {
    for r in valid_requests() {
        let p = encode_request(&r).unwrap();
        for cut in 4..p.len() {
            assert!(
                matches!(decode_request(&p[..cut]), Err(WireError::Truncated { message, missing }) if message == r.name() && missing > 0),
                "{} cut at {cut}",
                r.name()
            );
        }
        assert_eq!(decode_request(&p), Ok(r));
    }
    for r in valid_responses() {
        let p = encode_response(&r).unwrap();
        for cut in 4..p.len() {
            assert!(
                matches!(decode_response(&p[..cut]), Err(WireError::Truncated { message, missing }) if message == r.name() && missing > 0),
                "{} cut at {cut}",
                r.name()
            );
        }
        assert_eq!(decode_response(&p), Ok(r));
    }
}

#[test]
fn truncation_reports_the_missing_bytes_of_fixed_fields() {
    // FetchBase: 32 bytes; cut inside the offset (u64 at 24).
    let p = encode_request(&valid_requests()[2]).unwrap();
    assert_eq!(
        decode_request(&p[..28]),
        Err(WireError::Truncated {
            message: "FetchBase",
            missing: 4
        })
    );
    // FetchDelta: 24 bytes; cut inside the key period.
    let p = encode_request(&valid_requests()[3]).unwrap();
    assert_eq!(
        decode_request(&p[..10]),
        Err(WireError::Truncated {
            message: "FetchDelta",
            missing: 1
        })
    );
}

#[test]
fn batch_counts_are_checked_before_reading_elements() {
    let err = |count: u64| WireError::CountOutOfRange {
        message: "Evaluate",
        field: "elements",
        count,
        min: 1,
        max: MAX_BATCH_ELEMENTS as u64,
    };
    let e = decode_request(&evaluate_with(0, 0)).unwrap_err();
    assert_eq!(e, err(0));
    assert_eq!(e.error_code(), ErrorCode::BadRequest);
    // Announced counts over the limit fail before a single element is read or allocated.
    for count in [MAX_BATCH_ELEMENTS as u64 + 1, 1 << 40, u64::MAX] {
        let e = decode_request(&evaluate_with(count, 1)).unwrap_err();
        assert_eq!(e, err(count));
        assert_eq!(e.error_code(), ErrorCode::BatchTooLarge);
    }
    // The largest batch is accepted; one element short of it is truncated.
    let max = MAX_BATCH_ELEMENTS;
    assert!(decode_request(&evaluate_with(max as u64, max)).is_ok());
    assert_eq!(
        decode_request(&evaluate_with(max as u64, max - 1)),
        Err(WireError::Truncated {
            message: "Evaluate",
            missing: 1
        })
    );
    // The same limits apply to Evaluated.
    let evaluated = |count: u64, n: usize| {
        P::ty(1)
            .kp()
            .u64(count)
            .repeat(0x22, n * ELEMENT_LEN)
            .repeat(0x33, PROOF_LEN)
            .0
    };
    assert!(decode_response(&evaluated(1, 1)).is_ok());
    for count in [0, MAX_BATCH_ELEMENTS as u64 + 1, u64::MAX] {
        assert_eq!(
            decode_response(&evaluated(count, 1)),
            Err(WireError::CountOutOfRange {
                message: "Evaluated",
                field: "elements",
                count,
                min: 1,
                max: MAX_BATCH_ELEMENTS as u64,
            })
        );
    }
}

fn chunk_count_err(message: &'static str, count: u64) -> WireError {
    WireError::CountOutOfRange {
        message,
        field: "entries",
        count,
        min: 0,
        max: MAX_ENTRIES_PER_CHUNK as u64,
    }
}

fn labels_count_err(count: u64) -> WireError {
    WireError::CountOutOfRange {
        message: "BaseChunk",
        field: "labels",
        count,
        min: 1,
        max: MAX_ENTRIES_PER_CHUNK as u64,
    }
}

#[test]
fn chunk_list_counts_are_checked_before_reading_items() {
    for count in [MAX_ENTRIES_PER_CHUNK as u64 + 1, 1 << 40, u64::MAX] {
        // BaseChunk entries.
        // (the list's own bound names it `entries`, like the other chunk lists)
        let p = base_chunk_header(0, u64::MAX, count).repeat(0, LABEL_LEN).0;
        assert_eq!(
            decode_response(&p),
            Err(chunk_count_err("BaseChunk", count))
        );
        // DeltaChunk removed tags.
        let p = P::ty(4).kp().u32(9).u64(count).repeat(0, TAG_LEN).0;
        assert_eq!(
            decode_response(&p),
            Err(chunk_count_err("DeltaChunk", count))
        );
        // DeltaChunk upserts (after an empty removed list).
        let p = P::ty(4)
            .kp()
            .u32(9)
            .u64(0)
            .u64(count)
            .repeat(0, ENTRY_LEN)
            .0;
        assert_eq!(
            decode_response(&p),
            Err(chunk_count_err("DeltaChunk", count))
        );
    }
    // An empty delta list is fine; a base chunk carries at least one entry.
    assert_eq!(
        decode_response(&base_chunk_header(3, 3, 0).0),
        Err(labels_count_err(0))
    );
    assert!(decode_response(&delta_chunk(0, 0)).is_ok());
}

#[test]
fn delta_chunks_hold_at_most_65536_items_together() {
    let max = MAX_ENTRIES_PER_CHUNK;
    for (r, u) in [(max, 0), (0, max), (30_000, max - 30_000)] {
        let d = decode_response(&delta_chunk(r, u)).unwrap();
        let Response::DeltaChunk(c) = &d else {
            panic!("not a DeltaChunk: {}", d.name())
        };
        assert_eq!((c.removed.len(), c.upserts.len()), (r, u));
        assert_eq!(encode_response(&d).unwrap(), delta_chunk(r, u));
    }
    for (r, u) in [(max, 1), (1, max), (max / 2, max / 2 + 1), (max, max)] {
        assert_invalid(
            decode_response(&delta_chunk(r, u)),
            "DeltaChunk",
            "removed+upserts",
            (r + u) as u64,
            "65536",
        );
        let chunk = DeltaChunk {
            key_period: kp(),
            epoch: 99,
            removed: ChunkList::new(vec![Tag([0xa0; TAG_LEN]); r]).unwrap(),
            upserts: ChunkList::new(vec![entry(0xb0); u]).unwrap(),
        };
        assert_out_of_spec(
            encode_response(&Response::DeltaChunk(chunk)),
            "removed+upserts",
            (r + u) as u64,
        );
    }
}

#[test]
fn base_chunks_stay_within_the_table() {
    // offset + n = total is fine.
    for (offset, total, n) in [
        (8u64, 10u64, 2usize),
        (9, 10, 1),
        (u64::MAX - 2, u64::MAX, 2),
    ] {
        let chunk = Response::BaseChunk(base_chunk(offset, total, n));
        let p = encode_response(&chunk).unwrap();
        assert_eq!(decode_response(&p), Ok(chunk));
    }
    for (offset, total, n) in [
        (9u64, 10u64, 2usize),
        (10, 10, 1),
        (1, 0, 1),
        (u64::MAX, u64::MAX, 2),
        (u64::MAX - 1, 0, 2),
    ] {
        assert_out_of_spec(
            encode_response(&Response::BaseChunk(base_chunk(offset, total, n))),
            "offset",
            offset,
        );
        // Hand-encode it to check the decoder too.
        let p = base_chunk_header(offset, total, n as u64).repeat(7, n * LABEL_LEN);
        assert_invalid(
            decode_response(&p.0),
            "BaseChunk",
            "offset",
            offset,
            "total",
        );
    }
    // A Rice parameter above 71 is refused both ways.
    let mut c = base_chunk(0, 1, 1);
    c.rice = MAX_RICE_PARAMETER + 1;
    assert_out_of_spec(encode_response(&Response::BaseChunk(c)), "rice", 72);
    let p = P::ty(2)
        .kp()
        .u32(100)
        .u64(0)
        .u64(1)
        .u8(72)
        .repeat(0x11, TAG_LEN)
        .u64(0)
        .u64(1)
        .repeat(0, LABEL_LEN);
    assert_invalid(decode_response(&p.0), "BaseChunk", "rice", 72, "71");
}

/// Byte offsets of the Info response fields (wire.md §5.2.1).
const INFO_EPOCH_AT: usize = 52;
const INFO_OLDEST_AT: usize = 128;
const INFO_MAX_BATCH_AT: usize = 132;
const INFO_TAG_LEN_AT: usize = 156;
const INFO_ANNOUNCEMENT_AT: usize = 158;
/// Offset of `entity` in an Info without an announcement (523 with one).
const INFO_ENTITY_AT: usize = 159;

#[test]
fn info_layout_is_the_specs() {
    let p = encode_response(&Response::Info(info())).unwrap();
    assert_eq!(p.len(), 159 + 8 + 6);
    assert_eq!(&p[4..20], &kp().0);
    assert_eq!(&p[20..52], &[2; 32]);
    assert_eq!(&p[INFO_EPOCH_AT..56], &12u32.to_le_bytes());
    assert_eq!(&p[56..64], &10u64.to_le_bytes());
    assert_eq!(&p[64..96], &[3; 32]);
    assert_eq!(&p[96..128], &[4; 32]);
    assert_eq!(&p[INFO_OLDEST_AT..132], &5u32.to_le_bytes());
    assert_eq!(&p[INFO_MAX_BATCH_AT..136], &16u32.to_le_bytes());
    assert_eq!(&p[136..144], &5u64.to_le_bytes());
    assert_eq!(&p[144..148], &6u32.to_le_bytes());
    assert_eq!(&p[148..156], &7u64.to_le_bytes());
    assert_eq!(p[INFO_TAG_LEN_AT], TAG_LEN as u8);
    assert_eq!(p[INFO_TAG_LEN_AT + 1], LABEL_LEN as u8);
    assert_eq!(p[INFO_ANNOUNCEMENT_AT], 0, "announcement: absent");
    // entity: u64 LE length, then the id's bytes; nothing after it.
    assert_eq!(&p[INFO_ENTITY_AT..INFO_ENTITY_AT + 8], &6u64.to_le_bytes());
    assert_eq!(&p[INFO_ENTITY_AT + 8..], b"hosp-a");
    // With an announcement: option tag 01, then 160 + 204 opaque bytes, then the entity.
    let mut i = info();
    i.announcement = Some(Box::new(Announcement {
        key_period_statement: SignedKeyPeriodStatement([0xa1; SIGNED_KEY_PERIOD_STATEMENT_LEN]),
        epoch_statement: SignedEpochStatement([0xe2; SIGNED_EPOCH_STATEMENT_LEN]),
    }));
    let q = encode_response(&Response::Info(i.clone())).unwrap();
    assert_eq!(q.len(), 523 + 8 + 6);
    assert_eq!(&q[..INFO_ANNOUNCEMENT_AT], &p[..INFO_ANNOUNCEMENT_AT]);
    assert_eq!(q[INFO_ANNOUNCEMENT_AT], 1);
    assert_eq!(&q[159..319], &[0xa1; 160]);
    assert_eq!(&q[319..523], &[0xe2; 204]);
    assert_eq!(&q[523..], &p[INFO_ENTITY_AT..]);
    assert_eq!(decode_response(&q), Ok(Response::Info(i)));
}

#[test]
fn info_announcement_is_checked() {
    let good = encode_response(&Response::Info(info())).unwrap();
    // An option tag other than 00/01.
    let mut p = good.clone();
    p[INFO_ANNOUNCEMENT_AT] = 2;
    assert!(matches!(
        decode_response(&p),
        Err(WireError::InvalidEncoding {
            message: "Info",
            ..
        })
    ));
    // Present but cut short: the statements are fixed-length.
    let mut p = good[..=INFO_ANNOUNCEMENT_AT].to_vec();
    p[INFO_ANNOUNCEMENT_AT] = 1;
    p.extend_from_slice(&[0; 363]);
    assert!(matches!(
        decode_response(&p),
        Err(WireError::Truncated {
            message: "Info",
            ..
        })
    ));
    // The 158-byte Info of the 2026-11-29 draft (no option byte) and the 159-byte one of the
    // 2026-11-30 draft (no entity) are truncated, not accepted.
    for len in [158, 159] {
        assert!(matches!(
            decode_response(&good[..len]),
            Err(WireError::Truncated {
                message: "Info",
                ..
            })
        ));
    }
}

#[test]
fn info_entity_is_checked() {
    let with_entity = |id: &[u8]| {
        let mut p = encode_response(&Response::Info(info())).unwrap();
        p.truncate(INFO_ENTITY_AT);
        p.extend_from_slice(&(id.len() as u64).to_le_bytes());
        p.extend_from_slice(id);
        p
    };
    let longest = [b'a'; 64];
    let Ok(Response::Info(i)) = decode_response(&with_entity(&longest)) else {
        panic!("a 64-byte entity id decodes")
    };
    assert_eq!(i.entity.as_str().len(), 64);
    // Empty or longer than 64 bytes: refused by count, before anything is allocated.
    for id in [&b""[..], &[b'a'; 65][..]] {
        assert!(
            matches!(
                decode_response(&with_entity(id)),
                Err(WireError::CountOutOfRange {
                    field: "entity",
                    ..
                })
            ),
            "{:?}",
            decode_response(&with_entity(id))
        );
    }
    // A byte outside A-Z a-z 0-9 . _ - (a space, a slash, a non-ASCII byte): refused.
    for id in [&b"hosp a"[..], b"../etc", "病院".as_bytes()] {
        assert_invalid(
            decode_response(&with_entity(id)),
            "Info",
            "entity",
            u64::from(
                *id.iter()
                    .find(|b| !(b.is_ascii_alphanumeric() || b"._-".contains(b)))
                    .unwrap(),
            ),
            "A-Z a-z 0-9",
        );
    }
    // A length beyond the bytes present: truncated.
    let mut p = with_entity(b"hosp-a");
    p.pop();
    assert!(matches!(
        decode_response(&p),
        Err(WireError::Truncated {
            message: "Info",
            ..
        })
    ));
    // The constructor applies the same rule.
    assert!(EntityId::new("").is_err() && EntityId::new("a b").is_err());
    assert!(EntityId::new("research-db.01_x").is_ok());
}

#[test]
fn info_fields_are_checked() {
    let good = encode_response(&Response::Info(info())).unwrap();
    let with = |at: usize, bytes: &[u8]| {
        let mut p = good.clone();
        p[at..at + bytes.len()].copy_from_slice(bytes);
        p
    };
    for v in [0u8, 8, 10, 16, 0xff] {
        assert_invalid(
            decode_response(&with(INFO_TAG_LEN_AT, &[v])),
            "Info",
            "tag_len",
            u64::from(v),
            "9",
        );
        assert_invalid(
            decode_response(&with(INFO_TAG_LEN_AT + 1, &[v])),
            "Info",
            "label_len",
            u64::from(v),
            "4",
        );
    }
    // max_batch: 1..=4096.
    for ok in [1u32, MAX_BATCH_ELEMENTS as u32] {
        assert!(decode_response(&with(INFO_MAX_BATCH_AT, &ok.to_le_bytes())).is_ok());
    }
    for max_batch in [0u32, MAX_BATCH_ELEMENTS as u32 + 1, u32::MAX] {
        assert_invalid(
            decode_response(&with(INFO_MAX_BATCH_AT, &max_batch.to_le_bytes())),
            "Info",
            "max_batch",
            u64::from(max_batch),
            "4096",
        );
        // The same value is refused when encoding.
        let mut i = info();
        i.max_batch = max_batch;
        assert_out_of_spec(
            encode_response(&Response::Info(i)),
            "max_batch",
            u64::from(max_batch),
        );
    }
    // oldest_delta_base ≤ epoch (12).
    for ok in [0u32, 12] {
        assert!(decode_response(&with(INFO_OLDEST_AT, &ok.to_le_bytes())).is_ok());
    }
    for oldest in [13u32, u32::MAX] {
        assert_invalid(
            decode_response(&with(INFO_OLDEST_AT, &oldest.to_le_bytes())),
            "Info",
            "oldest_delta_base",
            u64::from(oldest),
            "epoch",
        );
        let mut i = info();
        i.oldest_delta_base = oldest;
        assert_out_of_spec(
            encode_response(&Response::Info(i)),
            "oldest_delta_base",
            u64::from(oldest),
        );
    }
    // Lowering the epoch below oldest_delta_base is the same violation.
    assert_invalid(
        decode_response(&with(INFO_EPOCH_AT, &4u32.to_le_bytes())),
        "Info",
        "oldest_delta_base",
        5,
        "epoch",
    );
    // epoch ≥ 1 (wire.md §5.2.1: 0 never names an epoch), checked before oldest_delta_base,
    // on decoding and on encoding.
    assert!(decode_response(&with(INFO_EPOCH_AT, &5u32.to_le_bytes())).is_ok());
    let zero_epoch = with(INFO_EPOCH_AT, &0u32.to_le_bytes());
    assert_invalid(
        decode_response(&zero_epoch),
        "Info",
        "epoch",
        0,
        "at least 1",
    );
    let mut zero_both = zero_epoch.clone();
    zero_both[INFO_OLDEST_AT..INFO_OLDEST_AT + 4].copy_from_slice(&0u32.to_le_bytes());
    assert_invalid(
        decode_response(&zero_both),
        "Info",
        "epoch",
        0,
        "at least 1",
    );
    let mut framed = (zero_both.len() as u32).to_le_bytes().to_vec();
    framed.extend_from_slice(&zero_both);
    assert_invalid(
        decode_response_frame(&framed),
        "Info",
        "epoch",
        0,
        "at least 1",
    );
    let mut i = info();
    i.epoch = 0;
    i.oldest_delta_base = 0;
    assert_out_of_spec(encode_response(&Response::Info(i)), "epoch", 0);
}

/// An Error payload: code, retry_after_secs 0, the option bytes, a message length and text.
fn error_payload(code: u16, option: &[u8], message: &[u8], len: u64) -> Vec<u8> {
    P::ty(6)
        .u16(code)
        .u32(0)
        .bytes(option)
        .u64(len)
        .bytes(message)
        .0
}

fn some_current() -> Vec<u8> {
    P::default().u8(1).kp().u32(13).0
}

#[test]
fn error_codes_are_checked() {
    // Every defined code decodes (with `current` where it is required).
    for code in ErrorCode::ALL {
        let option = match code {
            ErrorCode::EpochChanged | ErrorCode::KeyPeriodChanged => some_current(),
            _ => vec![0],
        };
        let r = decode_response(&error_payload(code.to_u16(), &option, b"hi", 2)).unwrap();
        let Response::Error(e) = r else {
            panic!("not an Error")
        };
        assert_eq!(e.code, code);
    }
    // Undefined codes, 13 (nayose/1's ModeNotOffered) among them.
    for code in [0u16, 13, 16, 0x100, 0xffff] {
        assert_invalid(
            decode_response(&error_payload(code, &[0], b"", 0)),
            "Error",
            "code",
            u64::from(code),
            "error code",
        );
        assert_eq!(ErrorCode::from_u16(code), None);
    }
}

#[test]
fn epoch_and_key_period_changed_carry_the_current_state() {
    for code in [ErrorCode::EpochChanged, ErrorCode::KeyPeriodChanged] {
        assert_invalid(
            decode_response(&error_payload(code.to_u16(), &[0], b"", 0)),
            "Error",
            "current",
            0,
            "current state",
        );
        let got = decode_response(&error_payload(code.to_u16(), &some_current(), b"x", 1));
        assert_eq!(
            got,
            Ok(Response::Error(ErrorResponse::with_current(
                code,
                current(),
                "x"
            )))
        );
        // The encoder refuses the same.
        let mut e = ErrorResponse::new(code, "x");
        assert_out_of_spec(encode_response(&Response::Error(e.clone())), "current", 0);
        e.current = Some(current());
        assert!(encode_response(&Response::Error(e)).is_ok());
    }
    // Other codes may carry it.
    let e = ErrorResponse::with_current(ErrorCode::DeltaUnavailable, current(), "gone");
    let p = encode_response(&Response::Error(e.clone())).unwrap();
    assert_eq!(p.len(), 39 + 4);
    assert_eq!(decode_response(&p), Ok(Response::Error(e)));
}

#[test]
fn option_tags_are_0_or_1() {
    for tag in [2u8, 0x80, 0xff] {
        for code in [ErrorCode::Busy, ErrorCode::EpochChanged] {
            let mut option = some_current();
            option[0] = tag;
            match decode_response(&error_payload(code.to_u16(), &option, b"", 0)) {
                Err(WireError::InvalidEncoding { message, detail }) => {
                    assert_eq!(message, "Error");
                    assert!(
                        detail.contains("Option") && detail.contains(&format!("found: {tag}")),
                        "{detail}"
                    );
                }
                other => panic!("option tag {tag}: {other:?}"),
            }
        }
    }
}

#[test]
fn error_messages_are_checked() {
    assert!(decode_response(&error_payload(9, &[0], b"hi", 2)).is_ok());
    // The longest text is accepted, one byte more is not (present in full).
    let longest = vec![b'a'; MAX_ERROR_MESSAGE_LEN];
    assert!(decode_response(&error_payload(9, &[0], &longest, longest.len() as u64)).is_ok());
    let long = vec![b'a'; MAX_ERROR_MESSAGE_LEN + 1];
    assert_eq!(
        decode_response(&error_payload(9, &[0], &long, long.len() as u64)),
        Err(WireError::CountOutOfRange {
            message: "Error",
            field: "message",
            count: long.len() as u64,
            min: 0,
            max: MAX_ERROR_MESSAGE_LEN as u64
        })
    );
    // Lengths beyond the bytes present or beyond any frame.
    assert_eq!(
        decode_response(&error_payload(9, &[0], b"abc", 4)),
        Err(WireError::Truncated {
            message: "Error",
            missing: 1
        })
    );
    // A length beyond any frame is refused before anything is read or allocated.
    for len in [MAX_FRAME_LEN as u64 + 1, u64::MAX] {
        match decode_response(&error_payload(9, &[0], b"abc", len)) {
            Err(WireError::InvalidEncoding { message, detail }) => {
                assert_eq!(message, "Error");
                assert!(detail.contains(&MAX_FRAME_LEN.to_string()), "{detail}");
            }
            other => panic!("length {len}: {other:?}"),
        }
    }
    // Not UTF-8.
    match decode_response(&error_payload(9, &[0], &[0xff, 0xfe], 2)) {
        Err(WireError::InvalidEncoding { message, detail }) => {
            assert_eq!(message, "Error");
            assert!(detail.contains("Utf8"), "{detail}");
        }
        other => panic!("not UTF-8: {other:?}"),
    }
}

#[test]
fn constructors_enforce_limits() {
    assert!(ElementBatch::new(vec![]).is_err());
    assert!(ElementBatch::new(vec![Element([0; 32]); MAX_BATCH_ELEMENTS]).is_ok());
    assert_out_of_spec(
        ElementBatch::new(vec![Element([0; 32]); MAX_BATCH_ELEMENTS + 1]),
        "elements",
        MAX_BATCH_ELEMENTS as u64 + 1,
    );
    assert!(ChunkList::<EncryptedLabel>::new(vec![]).is_ok());
    assert!(ChunkList::new(vec![EncryptedLabel([0; LABEL_LEN]); MAX_ENTRIES_PER_CHUNK]).is_ok());
    assert!(GapBytes::new(vec![0; MAX_FRAME_LEN]).is_ok());
    assert!(GapBytes::new(vec![0; MAX_FRAME_LEN + 1]).is_err());
    assert_out_of_spec(
        ChunkList::new(vec![
            EncryptedLabel([0; LABEL_LEN]);
            MAX_ENTRIES_PER_CHUNK + 1
        ]),
        "entries",
        MAX_ENTRIES_PER_CHUNK as u64 + 1,
    );
    assert!(ChunkList::new(vec![entry(0); MAX_ENTRIES_PER_CHUNK + 1]).is_err());
    assert!(ChunkList::new(vec![Tag([0; TAG_LEN]); MAX_ENTRIES_PER_CHUNK + 1]).is_err());
    assert!(ErrorMessage::new("a".repeat(MAX_ERROR_MESSAGE_LEN)).is_ok());
    assert_out_of_spec(
        ErrorMessage::new("a".repeat(MAX_ERROR_MESSAGE_LEN + 1)),
        "message",
        MAX_ERROR_MESSAGE_LEN as u64 + 1,
    );
    // Truncation respects UTF-8: 'あ' is 3 bytes, 1024 = 3 * 341 + 1.
    let t = ErrorMessage::truncating(&"あ".repeat(400));
    assert_eq!(t.as_str().len(), 1023);
    assert_eq!(ErrorMessage::truncating("short").as_str(), "short");
    assert_eq!(
        ErrorResponse::new(ErrorCode::Internal, &"x".repeat(2000))
            .message
            .as_str()
            .len(),
        MAX_ERROR_MESSAGE_LEN
    );
}

#[test]
fn largest_messages_fit_a_frame_and_round_trip() {
    let eval = Response::Evaluated(EvaluateResponse {
        key_period: kp(),
        elements: ElementBatch::new(vec![Element([0xee; 32]); MAX_BATCH_ELEMENTS]).unwrap(),
        proof: Proof([1; 64]),
    });
    let base = Response::BaseChunk(base_chunk(
        0,
        MAX_ENTRIES_PER_CHUNK as u64,
        MAX_ENTRIES_PER_CHUNK,
    ));
    let upserts = Response::DeltaChunk(DeltaChunk {
        key_period: kp(),
        epoch: 2,
        removed: ChunkList::default(),
        upserts: ChunkList::new(vec![entry(4); MAX_ENTRIES_PER_CHUNK]).unwrap(),
    });
    let removed = Response::DeltaChunk(DeltaChunk {
        key_period: kp(),
        epoch: 2,
        removed: ChunkList::new(vec![Tag([5; TAG_LEN]); MAX_ENTRIES_PER_CHUNK]).unwrap(),
        upserts: ChunkList::default(),
    });
    let err = Response::Error(ErrorResponse::with_current(
        ErrorCode::EpochChanged,
        current(),
        &"x".repeat(MAX_ERROR_MESSAGE_LEN),
    ));
    // The documented sizes (wire.md §4.3, §5.2).
    // The base chunk: 65,536 labels and 8,192 gap bytes (65,535 one-bit codes).
    let sizes = [
        92 + 32 * 4096,
        66 + 8192 + 4 * 65_536,
        40 + 13 * 65_536,
        40 + 9 * 65_536,
        39 + 1024,
    ];
    assert_eq!(sizes[2], 852_008);
    for (r, size) in [eval, base, upserts, removed, err].into_iter().zip(sizes) {
        let frame = encode_response_frame(&r).unwrap();
        assert_eq!(frame.len(), FRAME_HEADER_LEN + size, "{}", r.name());
        assert!(frame.len() <= FRAME_HEADER_LEN + MAX_FRAME_LEN);
        assert_eq!(decode_response_frame(&frame).unwrap(), r);
    }
    let r = Request::Evaluate(EvaluateRequest {
        key_period: kp(),
        elements: ElementBatch::new(vec![Element([0; 32]); MAX_BATCH_ELEMENTS]).unwrap(),
    });
    let frame = encode_request_frame(&r).unwrap();
    assert_eq!(frame.len() - FRAME_HEADER_LEN, MAX_REQUEST_LEN);
    assert_eq!(MAX_REQUEST_LEN, 131_100);
    assert_eq!(decode_request_frame(&frame), Ok(r));
}

#[test]
fn oversize_frames_are_rejected_before_reading() {
    let too_big = (MAX_FRAME_LEN as u32 + 1).to_le_bytes();
    assert_eq!(
        frame_len(too_big),
        Err(WireError::FrameTooLarge {
            len: MAX_FRAME_LEN as u64 + 1,
            max: MAX_FRAME_LEN
        })
    );
    assert_eq!(
        frame_len((MAX_FRAME_LEN as u32).to_le_bytes()),
        Ok(MAX_FRAME_LEN)
    );
    assert_eq!(
        decode_response_frame(&too_big),
        Err(WireError::FrameTooLarge {
            len: MAX_FRAME_LEN as u64 + 1,
            max: MAX_FRAME_LEN
        })
    );
    assert_eq!(
        split_single_frame(&u32::MAX.to_le_bytes()),
        Err(WireError::FrameTooLarge {
            len: u64::from(u32::MAX),
            max: MAX_FRAME_LEN
        })
    );
    let big = vec![0u8; MAX_FRAME_LEN + 1];
    assert_eq!(
        decode_response(&big),
        Err(WireError::FrameTooLarge {
            len: MAX_FRAME_LEN as u64 + 1,
            max: MAX_FRAME_LEN
        })
    );
    assert!(matches!(
        encode_frame(&big),
        Err(WireError::FrameTooLarge { .. })
    ));
}

#[test]
fn request_frames_are_limited_to_the_largest_request() {
    // A header announcing one byte more than an Evaluate of 4096 elements is refused from the
    // header alone, whatever follows it, and answered with FrameTooLarge.
    let announced = MAX_REQUEST_LEN as u32 + 1;
    for rest in [vec![], vec![0u8; 10], vec![0u8; MAX_REQUEST_LEN + 1]] {
        let mut frame = announced.to_le_bytes().to_vec();
        frame.extend_from_slice(&rest);
        let e = decode_request_frame(&frame).unwrap_err();
        assert_eq!(
            e,
            WireError::FrameTooLarge {
                len: u64::from(announced),
                max: MAX_REQUEST_LEN
            }
        );
        assert_eq!(e.error_code(), ErrorCode::FrameTooLarge);
    }
    // A payload over the limit, even if it starts like a request.
    let mut p = evaluate_with(MAX_BATCH_ELEMENTS as u64, MAX_BATCH_ELEMENTS);
    assert_eq!(p.len(), MAX_REQUEST_LEN);
    p.push(0);
    assert_eq!(
        decode_request(&p),
        Err(WireError::FrameTooLarge {
            len: MAX_REQUEST_LEN as u64 + 1,
            max: MAX_REQUEST_LEN
        })
    );
    // A server's stream decoder with the request limit refuses the header before the payload.
    let mut dec = FrameDecoder::with_max_len(MAX_REQUEST_LEN);
    dec.push(&announced.to_le_bytes());
    assert_eq!(
        dec.next_frame(),
        Err(WireError::FrameTooLarge {
            len: u64::from(announced),
            max: MAX_REQUEST_LEN
        })
    );
}

#[test]
fn a_request_stream_holds_exactly_one_frame() {
    let frame = encode_request_frame(&Request::Info).unwrap();
    assert_eq!(frame, [4, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(decode_request_frame(&frame), Ok(Request::Info));
    let mut two = frame.clone();
    two.extend_from_slice(&frame);
    assert_eq!(
        decode_request_frame(&two),
        Err(WireError::TrailingBytes {
            message: "frame",
            count: 8
        })
    );
    for cut in 0..frame.len() {
        assert_eq!(
            decode_request_frame(&frame[..cut]),
            Err(WireError::IncompleteFrame { buffered: cut })
        );
    }
    // A frame holding a malformed request reports the request's error.
    assert_eq!(
        decode_request_frame(&encode_frame(&evaluate_with(0, 0)).unwrap())
            .unwrap_err()
            .error_code(),
        ErrorCode::BadRequest
    );
}

#[test]
fn frame_decoder_fed_byte_by_byte() {
    let responses = valid_responses();
    let mut stream = Vec::new();
    for r in &responses {
        stream.extend(encode_response_frame(r).unwrap());
    }
    let mut dec = FrameDecoder::new();
    let mut got = Vec::new();
    for b in &stream {
        dec.push(std::slice::from_ref(b));
        while let Some(payload) = dec.next_frame().unwrap() {
            got.push(decode_response(&payload).unwrap());
        }
    }
    dec.finish().unwrap();
    assert_eq!(got, responses);

    // Pushed all at once.
    let mut dec = FrameDecoder::new();
    dec.push(&stream);
    let mut n = 0;
    while dec.next_frame().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, responses.len());
    assert_eq!(dec.buffered(), 0);

    // FIN inside a frame.
    let mut dec = FrameDecoder::new();
    dec.push(&stream[..stream.len() - 1]);
    while dec.next_frame().unwrap().is_some() {}
    assert!(matches!(
        dec.finish(),
        Err(WireError::IncompleteFrame { .. })
    ));
}

#[test]
fn frame_decoder_refuses_oversize_headers_for_good() {
    let mut dec = FrameDecoder::with_max_len(100);
    dec.push(&101u32.to_le_bytes());
    assert_eq!(
        dec.next_frame(),
        Err(WireError::FrameTooLarge { len: 101, max: 100 })
    );
    assert_eq!(dec.buffered(), 0, "nothing of the oversize frame is kept");
    dec.push(&[0; 16]);
    assert!(dec.next_frame().is_err());
    assert!(dec.finish().is_err());
    // The default limit is the spec's, and no decoder goes above it.
    for mut dec in [FrameDecoder::new(), FrameDecoder::with_max_len(usize::MAX)] {
        dec.push(&(MAX_FRAME_LEN as u32 + 1).to_le_bytes());
        assert_eq!(
            dec.next_frame(),
            Err(WireError::FrameTooLarge {
                len: MAX_FRAME_LEN as u64 + 1,
                max: MAX_FRAME_LEN
            })
        );
    }
}

#[test]
fn responses_pair_with_their_requests() {
    let reqs = valid_requests();
    let resps = valid_responses();
    let expected = [
        ("Info", vec!["Info", "Error"]),
        ("Evaluate", vec!["Evaluated", "Error"]),
        ("FetchBase", vec!["BaseChunk", "BaseEnd", "Error"]),
        ("FetchDelta", vec!["DeltaChunk", "DeltaEnd", "Error"]),
    ];
    assert_eq!(reqs.len(), expected.len());
    for (req, (name, ok)) in reqs.iter().zip(expected) {
        assert_eq!(req.name(), name);
        for resp in &resps {
            assert_eq!(
                req.accepts(resp),
                ok.contains(&resp.name()),
                "{name} / {}",
                resp.name()
            );
        }
    }
}

#[test]
fn key_periods_and_final_frames() {
    for r in valid_requests() {
        match r {
            Request::Info => assert_eq!(r.key_period(), None),
            _ => assert_eq!(r.key_period(), Some(&kp()), "{}", r.name()),
        }
    }
    for r in valid_responses() {
        match r {
            Response::Error(_) => assert_eq!(r.key_period(), None),
            _ => assert_eq!(r.key_period(), Some(&kp()), "{}", r.name()),
        }
        assert_eq!(
            r.is_final(),
            !matches!(r, Response::BaseChunk(_) | Response::DeltaChunk(_)),
            "{}",
            r.name()
        );
    }
}

#[test]
fn error_codes_and_close_codes_round_trip() {
    let values: Vec<u16> = ErrorCode::ALL.iter().map(|c| c.to_u16()).collect();
    assert_eq!(values, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15]);
    for c in ErrorCode::ALL {
        assert_eq!(ErrorCode::from_u16(c.to_u16()), Some(c));
        assert_eq!(
            c.is_retryable(),
            matches!(
                c,
                ErrorCode::Busy | ErrorCode::Internal | ErrorCode::ShuttingDown
            )
        );
        // Each code survives the wire.
        let e = ErrorResponse::with_current(c, current(), "m");
        let p = encode_response(&Response::Error(e.clone())).unwrap();
        assert_eq!(&p[4..6], &c.to_u16().to_le_bytes());
        assert_eq!(decode_response(&p), Ok(Response::Error(e)));
    }
    assert_eq!(ErrorCode::KeyPeriodChanged.to_u16(), 5);
    assert_eq!(ErrorCode::DeltaUnavailable.to_u16(), 6);
    assert_eq!(ErrorCode::InvalidElement.to_u16(), 14);
    assert_eq!(ErrorCode::from_u16(0), None);
    assert_eq!(ErrorCode::from_u16(13), None);
    for (i, c) in CloseCode::ALL.iter().enumerate() {
        assert_eq!(c.to_u32() as usize, i);
        assert_eq!(CloseCode::from_u64(i as u64), Some(*c));
    }
    assert_eq!(CloseCode::from_u64(6), None);
    assert_eq!(StreamCode::from_u64(2), Some(StreamCode::Timeout));
}

#[test]
fn decode_failures_map_to_the_specs_error_codes() {
    assert_eq!(
        decode_request(&P::ty(9).0).unwrap_err().error_code(),
        ErrorCode::BadRequest
    );
    assert_eq!(
        decode_request(&evaluate_with(MAX_BATCH_ELEMENTS as u64 + 1, 0))
            .unwrap_err()
            .error_code(),
        ErrorCode::BatchTooLarge
    );
    assert_eq!(
        decode_request(&evaluate_with(0, 0))
            .unwrap_err()
            .error_code(),
        ErrorCode::BadRequest
    );
    assert_eq!(
        frame_len(u32::MAX.to_le_bytes()).unwrap_err().error_code(),
        ErrorCode::FrameTooLarge
    );
    let mut p = encode_request(&Request::Info).unwrap();
    p.push(1);
    assert_eq!(
        decode_request(&p).unwrap_err().error_code(),
        ErrorCode::BadRequest
    );
}

#[test]
fn rejection_texts_name_the_real_constants() {
    // The requirement strings in the crate spell these numbers out.
    assert_eq!((TAG_LEN, LABEL_LEN, MAX_RICE_PARAMETER), (9, 4, 71));
    assert_eq!(
        (
            MAX_BATCH_ELEMENTS,
            MAX_ENTRIES_PER_CHUNK,
            MAX_ERROR_MESSAGE_LEN
        ),
        (4096, 65536, 1024)
    );
    assert_eq!(
        (
            KEY_PERIOD_ID_LEN,
            TABLE_DIGEST_LEN,
            UPSERT_CHAIN_LEN,
            ENTRY_LEN
        ),
        (16, 32, 32, 13)
    );
    assert_eq!(ALPN, b"nayose/2");
}

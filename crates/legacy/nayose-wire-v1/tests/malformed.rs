//! Every way a frame or message is rejected, with the exact typed error the spec promises.

#![allow(clippy::unwrap_used)] // tests unwrap on data they built themselves

use nayose_wire_v1::*;

fn epoch() -> EpochId {
    EpochId([0xe0; EPOCH_ID_LEN])
}

fn le32(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

fn le64(v: u64) -> [u8; 8] {
    v.to_le_bytes()
}

fn evaluate_with(count: u64, elements: usize) -> Vec<u8> {
    let mut p = le32(1).to_vec();
    p.extend_from_slice(&epoch().0);
    p.extend_from_slice(&le64(count));
    p.extend(std::iter::repeat_n(0x11, elements * ELEMENT_LEN));
    p
}

fn valid_requests() -> Vec<Request> {
    vec![
        Request::Info,
        Request::Evaluate(EvaluateRequest {
            epoch: epoch(),
            elements: ElementBatch::new(vec![Element([7; 32]); 3]).unwrap(),
        }),
        Request::FetchRange(FetchRangeRequest {
            epoch: epoch(),
            prefix: TagPrefix::new(9, [0xab, 0x80, 0, 0, 0, 0, 0, 0]).unwrap(),
        }),
        Request::FetchAll(FetchAllRequest {
            epoch: epoch(),
            offset: 77,
        }),
    ]
}

fn entry(i: u8) -> Entry {
    Entry {
        tag: Tag([i; TAG_LEN]),
        label: EncryptedLabel([!i; LABEL_LEN]),
    }
}

fn info() -> InfoResponse {
    InfoResponse {
        epoch: epoch(),
        public_key: PublicKeyBytes([2; 32]),
        table_entries: 10,
        max_prefix_bits: Some(3),
        min_range_entries: 2,
        max_batch: 16,
        quota_left: 5,
        quota_reset_secs: 6,
    }
}

fn valid_responses() -> Vec<Response> {
    vec![
        Response::Info(info()),
        Response::Evaluated(EvaluateResponse {
            epoch: epoch(),
            elements: ElementBatch::new(vec![Element([8; 32])]).unwrap(),
            proof: Proof([9; 64]),
        }),
        Response::Range(RangeResponse {
            epoch: epoch(),
            prefix: TagPrefix::new(0, [0; 8]).unwrap(),
            entries: EntryList::new(vec![entry(1), entry(2)]).unwrap(),
        }),
        Response::TableChunk(TableChunk {
            epoch: epoch(),
            offset: 8,
            total: 10,
            entries: EntryList::new(vec![entry(1), entry(2)]).unwrap(),
        }),
        Response::TableEnd(TableEnd {
            epoch: epoch(),
            total: 10,
        }),
        Response::Error(ErrorResponse::new(ErrorCode::Busy, "busy: try later ☕")),
    ]
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
        assert!(matches!(
            decode_response(&p),
            Err(WireError::MissingType { len: l, .. }) if l == len
        ));
    }
}

#[test]
fn unknown_types_are_rejected() {
    for t in [4u32, 5, 0x100, u32::MAX] {
        assert_eq!(
            decode_request(&le32(t)),
            Err(WireError::UnknownMessageType {
                direction: "request",
                value: t
            })
        );
    }
    for t in [6u32, 7, u32::MAX] {
        let mut p = le32(t).to_vec();
        p.extend_from_slice(&[0; 40]);
        assert_eq!(
            decode_response(&p),
            Err(WireError::UnknownMessageType {
                direction: "response",
                value: t
            })
        );
    }
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
                matches!(decode_request(&p[..cut]), Err(WireError::Truncated { message, .. }) if message == r.name()),
                "{} cut at {cut}",
                r.name()
            );
        }
    }
    for r in valid_responses() {
        let p = encode_response(&r).unwrap();
        for cut in 4..p.len() {
            assert!(
                matches!(decode_response(&p[..cut]), Err(WireError::Truncated { .. })),
                "{} cut at {cut}",
                r.name()
            );
        }
    }
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
    assert_eq!(decode_request(&evaluate_with(0, 0)), Err(err(0)));
    // Announced counts over the limit fail before a single element is read or allocated.
    for count in [MAX_BATCH_ELEMENTS as u64 + 1, 1 << 40, u64::MAX] {
        let e = decode_request(&evaluate_with(count, 1)).unwrap_err();
        assert_eq!(e, err(count));
        assert_eq!(e.error_code(), ErrorCode::BatchTooLarge);
    }
    // The largest batch is accepted; one element short of it is truncated.
    let max = MAX_BATCH_ELEMENTS;
    assert!(decode_request(&evaluate_with(max as u64, max)).is_ok());
    assert!(matches!(
        decode_request(&evaluate_with(max as u64, max - 1)),
        Err(WireError::Truncated { missing: 1, .. })
    ));
}

#[test]
fn entry_counts_are_checked() {
    let mut p = le32(4).to_vec(); // TableEnd has no list: use TableChunk (3).
    p[0] = 3;
    p.extend_from_slice(&epoch().0);
    p.extend_from_slice(&le64(0));
    p.extend_from_slice(&le64(u64::MAX));
    p.extend_from_slice(&le64(MAX_ENTRIES_PER_CHUNK as u64 + 1));
    assert_eq!(
        decode_response(&p),
        Err(WireError::CountOutOfRange {
            message: "TableChunk",
            field: "entries",
            count: MAX_ENTRIES_PER_CHUNK as u64 + 1,
            min: 0,
            max: MAX_ENTRIES_PER_CHUNK as u64,
        })
    );
}

fn error_payload(code: u16, option: &[u8], message: &[u8], len: u64) -> Vec<u8> {
    let mut p = le32(5).to_vec();
    p.extend_from_slice(&code.to_le_bytes());
    p.extend_from_slice(&le32(0));
    p.extend_from_slice(option);
    p.extend_from_slice(&le64(len));
    p.extend_from_slice(message);
    p
}

#[test]
fn error_response_fields_are_checked() {
    // Well-formed baseline.
    assert!(decode_response(&error_payload(9, &[0], b"hi", 2)).is_ok());
    // Undefined codes.
    for code in [0u16, 15, 0xffff] {
        assert!(matches!(
            decode_response(&error_payload(code, &[0], b"", 0)),
            Err(WireError::InvalidField { field: "code", value, .. }) if value == u64::from(code)
        ));
    }
    // EpochChanged must carry the epoch.
    assert!(matches!(
        decode_response(&error_payload(4, &[0], b"", 0)),
        Err(WireError::InvalidField {
            field: "current_epoch",
            ..
        })
    ));
    let mut some = vec![1];
    some.extend_from_slice(&epoch().0);
    assert!(decode_response(&error_payload(4, &some, b"", 0)).is_ok());
    // Option tags other than 0 and 1.
    assert!(matches!(
        decode_response(&error_payload(9, &[2], b"", 0)),
        Err(WireError::InvalidEncoding { .. })
    ));
    // Over-long text, present in full.
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
    assert!(matches!(
        decode_response(&error_payload(9, &[0], b"abc", 4)),
        Err(WireError::Truncated { .. })
    ));
    assert!(decode_response(&error_payload(9, &[0], b"abc", u64::MAX)).is_err());
    // Not UTF-8.
    assert!(matches!(
        decode_response(&error_payload(9, &[0], &[0xff, 0xfe], 2)),
        Err(WireError::InvalidEncoding { .. })
    ));
}

#[test]
fn prefix_fields_are_checked() {
    let payload = |bits: u8, value: [u8; 8]| {
        let mut p = le32(2).to_vec();
        p.extend_from_slice(&epoch().0);
        p.push(bits);
        p.extend_from_slice(&value);
        p
    };
    assert!(decode_request(&payload(64, [0xff; 8])).is_ok());
    assert!(decode_request(&payload(0, [0; 8])).is_ok());
    assert!(matches!(
        decode_request(&payload(65, [0; 8])),
        Err(WireError::InvalidField {
            field: "prefix.bits",
            value: 65,
            ..
        })
    ));
    // Bits after the prefix length must be zero.
    assert!(matches!(
        decode_request(&payload(12, [0x3a, 0x78, 0, 0, 0, 0, 0, 0])),
        Err(WireError::InvalidField {
            field: "prefix.value",
            ..
        })
    ));
    assert!(matches!(
        decode_request(&payload(1, [0x80, 0, 0, 0, 0, 0, 0, 1])),
        Err(WireError::InvalidField { .. })
    ));
}

#[test]
fn prefixes_match_tags() {
    let tag = Tag([0x3a, 0x7f, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let p = TagPrefix::of_tag(&tag, 12).unwrap();
    assert_eq!(p.value(), [0x3a, 0x70, 0, 0, 0, 0, 0, 0]);
    assert!(p.matches(&tag));
    assert!(!p.matches(&Tag([0x3a, 0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])));
    assert!(
        TagPrefix::of_tag(&tag, 0)
            .unwrap()
            .matches(&Tag([0xff; 16]))
    );
    assert!(TagPrefix::of_tag(&tag, 65).is_err());
    assert!(TagPrefix::new(3, [0x10, 0, 0, 0, 0, 0, 0, 0]).is_err());
}

#[test]
fn info_fields_are_checked() {
    let good = encode_response(&Response::Info(info())).unwrap();
    // Layout: type 4, epoch 16, public key 32, table_entries 8, then tag_len at 60.
    let tag_len_at = 4 + EPOCH_ID_LEN + PUBLIC_KEY_LEN + 8;
    assert_eq!(good[tag_len_at], TAG_LEN as u8);
    assert_eq!(good[tag_len_at + 1], LABEL_LEN as u8);
    let mut bad = good.clone();
    bad[tag_len_at] = 32;
    assert!(matches!(
        decode_response(&bad),
        Err(WireError::InvalidField {
            field: "tag_len",
            value: 32,
            ..
        })
    ));
    let mut bad = good.clone();
    bad[tag_len_at + 1] = 0;
    assert!(matches!(
        decode_response(&bad),
        Err(WireError::InvalidField {
            field: "label_len",
            ..
        })
    ));
    let mut bad = good.clone();
    bad[tag_len_at + 2] = 2; // Option tag
    assert!(matches!(
        decode_response(&bad),
        Err(WireError::InvalidEncoding { .. })
    ));
    let mut bad = good.clone();
    bad[tag_len_at + 3] = 65;
    assert!(matches!(
        decode_response(&bad),
        Err(WireError::InvalidField {
            field: "max_prefix_bits",
            ..
        })
    ));
    for max_batch in [0u32, MAX_BATCH_ELEMENTS as u32 + 1] {
        let mut bad = good.clone();
        let at = tag_len_at + 4 + 4;
        bad[at..at + 4].copy_from_slice(&max_batch.to_le_bytes());
        assert!(matches!(
            decode_response(&bad),
            Err(WireError::InvalidField {
                field: "max_batch",
                ..
            })
        ));
        // The same value is refused when encoding.
        let mut i = info();
        i.max_batch = max_batch;
        assert!(matches!(
            encode_response(&Response::Info(i)),
            Err(WireError::OutOfSpec {
                field: "max_batch",
                ..
            })
        ));
    }
}

#[test]
fn chunks_must_stay_within_the_table() {
    for (offset, total) in [(9u64, 10u64), (u64::MAX, u64::MAX), (u64::MAX - 1, 0)] {
        let chunk = TableChunk {
            epoch: epoch(),
            offset,
            total,
            entries: EntryList::new(vec![entry(1), entry(2)]).unwrap(),
        };
        assert!(encode_response(&Response::TableChunk(chunk.clone())).is_err());
        // Hand-encode it to check the decoder too.
        let mut p = le32(3).to_vec();
        p.extend_from_slice(&epoch().0);
        p.extend_from_slice(&le64(offset));
        p.extend_from_slice(&le64(total));
        p.extend_from_slice(&le64(2));
        for e in chunk.entries.as_slice() {
            p.extend_from_slice(&e.tag.0);
            p.extend_from_slice(&e.label.0);
        }
        assert!(matches!(
            decode_response(&p),
            Err(WireError::InvalidField {
                field: "offset",
                ..
            })
        ));
    }
}

#[test]
fn epoch_changed_needs_an_epoch_to_encode() {
    let mut e = ErrorResponse::new(ErrorCode::EpochChanged, "x");
    assert!(encode_response(&Response::Error(e.clone())).is_err());
    e.current_epoch = Some(epoch());
    assert!(encode_response(&Response::Error(e)).is_ok());
}

#[test]
fn constructors_enforce_limits() {
    assert!(ElementBatch::new(vec![]).is_err());
    assert!(ElementBatch::new(vec![Element([0; 32]); MAX_BATCH_ELEMENTS]).is_ok());
    assert!(ElementBatch::new(vec![Element([0; 32]); MAX_BATCH_ELEMENTS + 1]).is_err());
    assert!(EntryList::new(vec![]).is_ok());
    assert!(EntryList::new(vec![entry(0); MAX_ENTRIES_PER_CHUNK + 1]).is_err());
    assert!(ErrorMessage::new("a".repeat(MAX_ERROR_MESSAGE_LEN)).is_ok());
    assert!(ErrorMessage::new("a".repeat(MAX_ERROR_MESSAGE_LEN + 1)).is_err());
    // Truncation respects UTF-8: 'あ' is 3 bytes, 1024 = 3 * 341 + 1.
    let t = ErrorMessage::truncating(&"あ".repeat(400));
    assert_eq!(t.as_str().len(), 1023);
    assert_eq!(ErrorMessage::truncating("short").as_str(), "short");
}

#[test]
fn largest_messages_fit_a_frame_and_round_trip() {
    let eval = Response::Evaluated(EvaluateResponse {
        epoch: epoch(),
        elements: ElementBatch::new(vec![Element([0xee; 32]); MAX_BATCH_ELEMENTS]).unwrap(),
        proof: Proof([1; 64]),
    });
    let chunk = Response::TableChunk(TableChunk {
        epoch: epoch(),
        offset: 0,
        total: MAX_ENTRIES_PER_CHUNK as u64,
        entries: EntryList::new(vec![entry(3); MAX_ENTRIES_PER_CHUNK]).unwrap(),
    });
    let err = Response::Error(ErrorResponse::new(
        ErrorCode::Internal,
        &"x".repeat(MAX_ERROR_MESSAGE_LEN),
    ));
    for r in [eval, chunk, err] {
        let frame = encode_response_frame(&r).unwrap();
        assert!(frame.len() <= FRAME_HEADER_LEN + MAX_FRAME_LEN);
        assert_eq!(decode_response_frame(&frame).unwrap(), r);
    }
    // The documented sizes: 4 + 16 + 8 + 4096*32 + 64 and 4 + 16 + 8 + 8 + 8 + 65536*32.
    let r = Request::Evaluate(EvaluateRequest {
        epoch: epoch(),
        elements: ElementBatch::new(vec![Element([0; 32]); MAX_BATCH_ELEMENTS]).unwrap(),
    });
    assert_eq!(encode_request(&r).unwrap().len(), 4 + 16 + 8 + 4096 * 32);
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
        decode_request_frame(&too_big).unwrap_err().error_code(),
        ErrorCode::FrameTooLarge
    );
    let big = vec![0u8; MAX_FRAME_LEN + 1];
    assert!(matches!(
        decode_request(&big),
        Err(WireError::FrameTooLarge { .. })
    ));
    assert!(matches!(
        encode_frame(&big),
        Err(WireError::FrameTooLarge { .. })
    ));
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
    // The default limit is the spec's.
    let mut dec = FrameDecoder::new();
    dec.push(&u32::MAX.to_le_bytes());
    assert!(matches!(
        dec.next_frame(),
        Err(WireError::FrameTooLarge { .. })
    ));
}

#[test]
fn responses_pair_with_their_requests() {
    let reqs = valid_requests();
    let resps = valid_responses();
    let expected = [
        ("Info", vec!["Info", "Error"]),
        ("Evaluate", vec!["Evaluated", "Error"]),
        ("FetchRange", vec!["Range", "Error"]),
        ("FetchAll", vec!["TableChunk", "TableEnd", "Error"]),
    ];
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
fn error_codes_and_close_codes_round_trip() {
    for (i, c) in ErrorCode::ALL.iter().enumerate() {
        assert_eq!(c.to_u16() as usize, i + 1);
        assert_eq!(ErrorCode::from_u16(c.to_u16()), Some(*c));
    }
    assert_eq!(ErrorCode::from_u16(0), None);
    for (i, c) in CloseCode::ALL.iter().enumerate() {
        assert_eq!(c.to_u32() as usize, i);
        assert_eq!(CloseCode::from_u64(i as u64), Some(*c));
    }
    assert_eq!(CloseCode::from_u64(6), None);
    assert_eq!(StreamCode::from_u64(2), Some(StreamCode::Timeout));
}

#[test]
fn rejection_texts_name_the_real_constants() {
    // The requirement strings in the crate spell these numbers out.
    assert_eq!((TAG_LEN, LABEL_LEN, MAX_PREFIX_BITS), (16, 16, 64));
    assert_eq!(
        (
            MAX_BATCH_ELEMENTS,
            MAX_ENTRIES_PER_CHUNK,
            MAX_ERROR_MESSAGE_LEN
        ),
        (4096, 65536, 1024)
    );
}

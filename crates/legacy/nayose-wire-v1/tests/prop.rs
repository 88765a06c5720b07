//! Properties: every valid message round-trips; any bytes at all decode without panicking; and
//! the encoding is canonical (an accepted payload re-encodes to exactly itself).

#![allow(clippy::unwrap_used)] // tests unwrap on data they built themselves

use nayose_wire_v1::*;
use proptest::collection::vec;
use proptest::prelude::*;

fn epoch() -> impl Strategy<Value = EpochId> {
    any::<[u8; EPOCH_ID_LEN]>().prop_map(EpochId)
}

fn element() -> impl Strategy<Value = Element> {
    any::<[u8; ELEMENT_LEN]>().prop_map(Element)
}

fn batch() -> impl Strategy<Value = ElementBatch> {
    vec(element(), 1..40).prop_map(|v| ElementBatch::new(v).unwrap())
}

fn entries() -> impl Strategy<Value = EntryList> {
    vec(
        (any::<[u8; TAG_LEN]>(), any::<[u8; LABEL_LEN]>()).prop_map(|(t, l)| Entry {
            tag: Tag(t),
            label: EncryptedLabel(l),
        }),
        0..40,
    )
    .prop_map(|v| EntryList::new(v).unwrap())
}

fn prefix() -> impl Strategy<Value = TagPrefix> {
    (any::<[u8; TAG_LEN]>(), 0..=MAX_PREFIX_BITS)
        .prop_map(|(t, bits)| TagPrefix::of_tag(&Tag(t), bits).unwrap())
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::Info),
        (epoch(), batch())
            .prop_map(|(epoch, elements)| Request::Evaluate(EvaluateRequest { epoch, elements })),
        (epoch(), prefix())
            .prop_map(|(epoch, prefix)| Request::FetchRange(FetchRangeRequest { epoch, prefix })),
        (epoch(), any::<u64>())
            .prop_map(|(epoch, offset)| Request::FetchAll(FetchAllRequest { epoch, offset })),
    ]
}

fn error_response() -> impl Strategy<Value = ErrorResponse> {
    (
        0..ErrorCode::ALL.len(),
        any::<u32>(),
        proptest::option::of(epoch()),
        epoch(),
        ".{0,300}",
    )
        .prop_map(|(i, retry, cur, fallback, text)| {
            let code = ErrorCode::ALL[i];
            let current_epoch = if code == ErrorCode::EpochChanged {
                Some(cur.unwrap_or(fallback))
            } else {
                cur
            };
            ErrorResponse {
                code,
                retry_after_secs: retry,
                current_epoch,
                message: ErrorMessage::truncating(&text),
            }
        })
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        (
            epoch(),
            any::<[u8; 32]>(),
            any::<u64>(),
            proptest::option::of(0..=MAX_PREFIX_BITS),
            any::<u32>(),
            1..=MAX_BATCH_ELEMENTS as u32,
            any::<(u64, u32)>()
        )
            .prop_map(|(epoch, pk, n, bits, k, max_batch, (q, reset))| {
                Response::Info(InfoResponse {
                    epoch,
                    public_key: PublicKeyBytes(pk),
                    table_entries: n,
                    max_prefix_bits: bits,
                    min_range_entries: k,
                    max_batch,
                    quota_left: q,
                    quota_reset_secs: reset,
                })
            }),
        (epoch(), batch(), any::<[u8; 64]>()).prop_map(|(epoch, elements, p)| {
            Response::Evaluated(EvaluateResponse {
                epoch,
                elements,
                proof: Proof(p),
            })
        }),
        (epoch(), prefix(), entries()).prop_map(|(epoch, prefix, entries)| {
            Response::Range(RangeResponse {
                epoch,
                prefix,
                entries,
            })
        }),
        (epoch(), any::<u64>(), any::<u64>(), entries()).prop_map(|(epoch, a, b, entries)| {
            let offset = a.min(u64::MAX - entries.len() as u64);
            let end = offset + entries.len() as u64;
            Response::TableChunk(TableChunk {
                epoch,
                offset,
                total: end.saturating_add(b % 1000),
                entries,
            })
        }),
        (epoch(), any::<u64>())
            .prop_map(|(epoch, total)| Response::TableEnd(TableEnd { epoch, total })),
        error_response().prop_map(Response::Error),
    ]
}

/// Bytes that start like a real message more often than pure noise would.
fn noisy_payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..200),
        (0u32..7, vec(any::<u8>(), 0..400)).prop_map(|(t, rest)| {
            let mut p = t.to_le_bytes().to_vec();
            p.extend(rest);
            p
        }),
    ]
}

proptest! {
    #[test]
    fn requests_round_trip(r in request()) {
        let payload = encode_request(&r).unwrap();
        prop_assert_eq!(decode_request(&payload).unwrap(), r.clone());
        let frame = encode_request_frame(&r).unwrap();
        prop_assert_eq!(decode_request_frame(&frame).unwrap(), r);
    }

    #[test]
    fn responses_round_trip(r in response()) {
        let payload = encode_response(&r).unwrap();
        prop_assert_eq!(decode_response(&payload).unwrap(), r.clone());
        let frame = encode_response_frame(&r).unwrap();
        prop_assert_eq!(decode_response_frame(&frame).unwrap(), r);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_accepted_ones_are_canonical(p in noisy_payload()) {
        if let Ok(r) = decode_request(&p) {
            prop_assert_eq!(encode_request(&r).unwrap(), p.clone());
        }
        if let Ok(r) = decode_response(&p) {
            prop_assert_eq!(encode_response(&r).unwrap(), p.clone());
        }
        let _ = decode_request_frame(&p);
        let _ = decode_response_frame(&p);
        let mut dec = FrameDecoder::new();
        dec.push(&p);
        while let Ok(Some(f)) = dec.next_frame() {
            let _ = decode_response(&f);
        }
        let _ = dec.finish();
    }

    #[test]
    fn mutated_messages_never_panic_and_stay_canonical(
        r in response(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut p = encode_response(&r).unwrap();
        for (i, x) in flips {
            let at = i.index(p.len());
            p[at] ^= x;
        }
        if let Ok(d) = decode_response(&p) {
            prop_assert_eq!(encode_response(&d).unwrap(), p);
        }
    }

    #[test]
    fn frame_decoder_splits_any_chunking(
        rs in vec(response(), 1..6),
        cuts in vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let mut stream = Vec::new();
        for r in &rs {
            stream.extend(encode_response_frame(r).unwrap());
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        points.push(0);
        points.push(stream.len());
        points.sort_unstable();
        let mut dec = FrameDecoder::new();
        let mut got = Vec::new();
        for w in points.windows(2) {
            dec.push(&stream[w[0]..w[1]]);
            while let Some(f) = dec.next_frame().unwrap() {
                got.push(decode_response(&f).unwrap());
            }
        }
        dec.finish().unwrap();
        prop_assert_eq!(got, rs);
    }
}

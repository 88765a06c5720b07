//! Properties: every valid message round-trips; any bytes at all decode without panicking; and
//! the encoding is canonical (an accepted payload re-encodes to exactly itself).

#![allow(clippy::unwrap_used)] // tests unwrap on data they built themselves

use nayose_wire::*;
use proptest::collection::vec;
use proptest::prelude::*;

fn key_period() -> impl Strategy<Value = KeyPeriodId> {
    any::<[u8; KEY_PERIOD_ID_LEN]>().prop_map(KeyPeriodId)
}

fn element() -> impl Strategy<Value = Element> {
    any::<[u8; ELEMENT_LEN]>().prop_map(Element)
}

fn batch() -> impl Strategy<Value = ElementBatch> {
    vec(element(), 1..40).prop_map(|v| ElementBatch::new(v).unwrap())
}

fn tag() -> impl Strategy<Value = Tag> {
    any::<[u8; TAG_LEN]>().prop_map(Tag)
}

fn label() -> impl Strategy<Value = EncryptedLabel> {
    any::<[u8; LABEL_LEN]>().prop_map(EncryptedLabel)
}

fn base_labels() -> impl Strategy<Value = ChunkList<EncryptedLabel>> {
    vec(label(), 1..40).prop_map(|v| ChunkList::new(v).unwrap())
}

fn removed() -> impl Strategy<Value = ChunkList<Tag>> {
    vec(tag(), 0..40).prop_map(|v| ChunkList::new(v).unwrap())
}

fn upserts() -> impl Strategy<Value = ChunkList<Entry>> {
    vec(
        (tag(), label()).prop_map(|(tag, label)| Entry { tag, label }),
        0..40,
    )
    .prop_map(|v| ChunkList::new(v).unwrap())
}

fn current() -> impl Strategy<Value = CurrentState> {
    (key_period(), any::<u32>()).prop_map(|(key_period, epoch)| CurrentState { key_period, epoch })
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::Info),
        (key_period(), batch()).prop_map(|(key_period, elements)| {
            Request::Evaluate(EvaluateRequest {
                key_period,
                elements,
            })
        }),
        (key_period(), any::<u32>(), any::<u64>()).prop_map(|(key_period, epoch, offset)| {
            Request::FetchBase(FetchBaseRequest {
                key_period,
                epoch,
                offset,
            })
        }),
        (key_period(), any::<u32>()).prop_map(|(key_period, from_epoch)| {
            Request::FetchDelta(FetchDeltaRequest {
                key_period,
                from_epoch,
            })
        }),
    ]
}

fn error_response() -> impl Strategy<Value = ErrorResponse> {
    (
        0..ErrorCode::ALL.len(),
        any::<u32>(),
        proptest::option::of(current()),
        current(),
        ".{0,300}",
    )
        .prop_map(|(i, retry, cur, fallback, text)| {
            let code = ErrorCode::ALL[i];
            let current = if matches!(code, ErrorCode::EpochChanged | ErrorCode::KeyPeriodChanged) {
                Some(cur.unwrap_or(fallback))
            } else {
                cur
            };
            ErrorResponse {
                code,
                retry_after_secs: retry,
                current,
                message: ErrorMessage::truncating(&text),
            }
        })
}

fn info() -> impl Strategy<Value = InfoResponse> {
    (
        // An Info epoch is at least 1 (wire.md §5.2.1).
        (key_period(), any::<[u8; PUBLIC_KEY_LEN]>(), 1..=u32::MAX),
        (any::<u64>(), any::<[u8; TABLE_DIGEST_LEN]>(), any::<u32>()),
        1..=MAX_BATCH_ELEMENTS as u32,
        (any::<u64>(), any::<u32>(), any::<u64>()),
    )
        .prop_map(
            |((key_period, pk, epoch), (n, digest, back), max_batch, (today, reset, period))| {
                InfoResponse {
                    key_period,
                    public_key: PublicKeyBytes(pk),
                    epoch,
                    table_entries: n,
                    table_digest: TableDigest(digest),
                    upsert_chain: UpsertChain(digest.map(|b| b ^ 0x5a)),
                    // Any value from 0 up to the epoch.
                    oldest_delta_base: u32::try_from(
                        u64::from(epoch) - u64::from(back) % (u64::from(epoch) + 1),
                    )
                    .unwrap(),
                    max_batch,
                    quota_left_today: today,
                    quota_reset_secs: reset,
                    quota_left_key_period: period,
                    announcement: (today % 2 == 0).then(|| {
                        Box::new(Announcement {
                            key_period_statement: SignedKeyPeriodStatement(
                                [digest[0]; SIGNED_KEY_PERIOD_STATEMENT_LEN],
                            ),
                            epoch_statement: SignedEpochStatement(
                                [digest[1]; SIGNED_EPOCH_STATEMENT_LEN],
                            ),
                        })
                    }),
                    entity: EntityId::new(format!("entity-{}", today % 1000)).unwrap(),
                }
            },
        )
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        info().prop_map(Response::Info),
        (key_period(), batch(), any::<[u8; PROOF_LEN]>()).prop_map(|(key_period, elements, p)| {
            Response::Evaluated(EvaluateResponse {
                key_period,
                elements,
                proof: Proof(p),
            })
        }),
        (
            key_period(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            (0u8..=MAX_RICE_PARAMETER, tag(), vec(any::<u8>(), 0..64)),
            base_labels()
        )
            .prop_map(
                |(key_period, epoch, a, b, (rice, first_tag, gaps), labels)| {
                    let offset = a.min(u64::MAX - labels.len() as u64);
                    let end = offset + labels.len() as u64;
                    Response::BaseChunk(BaseChunk {
                        key_period,
                        epoch,
                        offset,
                        total: end.saturating_add(b % 1000),
                        rice,
                        first_tag,
                        gaps: GapBytes::new(gaps).unwrap(),
                        labels,
                    })
                }
            ),
        (key_period(), any::<u32>(), any::<u64>()).prop_map(|(key_period, epoch, total)| {
            Response::BaseEnd(BaseEnd {
                key_period,
                epoch,
                total,
            })
        }),
        (key_period(), any::<u32>(), removed(), upserts()).prop_map(
            |(key_period, epoch, removed, upserts)| {
                Response::DeltaChunk(DeltaChunk {
                    key_period,
                    epoch,
                    removed,
                    upserts,
                })
            }
        ),
        (key_period(), any::<u32>(), any::<u64>()).prop_map(|(key_period, epoch, total)| {
            Response::DeltaEnd(DeltaEnd {
                key_period,
                epoch,
                total,
            })
        }),
        error_response().prop_map(Response::Error),
    ]
}

/// Bytes that start like a real message more often than pure noise would.
fn noisy_payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..200),
        (0u32..8, vec(any::<u8>(), 0..400)).prop_map(|(t, rest)| {
            let mut p = t.to_le_bytes().to_vec();
            p.extend(rest);
            p
        }),
        // A real message with its tail replaced by noise.
        (
            prop_oneof![
                request().prop_map(|r| encode_request(&r).unwrap()),
                response().prop_map(|r| encode_response(&r).unwrap()),
            ],
            any::<prop::sample::Index>(),
            vec(any::<u8>(), 0..64),
        )
            .prop_map(|(mut p, cut, tail)| {
                p.truncate(cut.index(p.len() + 1));
                p.extend(tail);
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
        prop_assert_eq!(&frame[..4], &(payload.len() as u32).to_le_bytes());
        prop_assert_eq!(&frame[4..], &payload[..]);
        prop_assert_eq!(decode_request_frame(&frame).unwrap(), r);
    }

    #[test]
    fn responses_round_trip(r in response()) {
        let payload = encode_response(&r).unwrap();
        prop_assert_eq!(decode_response(&payload).unwrap(), r.clone());
        let frame = encode_response_frame(&r).unwrap();
        prop_assert_eq!(&frame[4..], &payload[..]);
        prop_assert_eq!(decode_response_frame(&frame).unwrap(), r);
    }

    #[test]
    fn encoded_sizes_follow_the_layout_tables(r in response(), q in request()) {
        let expected = match &r {
            Response::Info(i) => {
                159 + if i.announcement.is_some() { 364 } else { 0 } + 8 + i.entity.as_str().len()
            }
            Response::Evaluated(e) => 92 + 32 * e.elements.len(),
            Response::BaseChunk(c) => 66 + c.gaps.as_slice().len() + LABEL_LEN * c.labels.len(),
            Response::BaseEnd(_) | Response::DeltaEnd(_) => 32,
            Response::DeltaChunk(c) => 40 + TAG_LEN * c.removed.len() + ENTRY_LEN * c.upserts.len(),
            Response::Error(e) => {
                19 + e.message.as_str().len() + if e.current.is_some() { 20 } else { 0 }
            }
        };
        prop_assert_eq!(encode_response(&r).unwrap().len(), expected);
        let expected = match &q {
            Request::Info => 4,
            Request::Evaluate(e) => 28 + 32 * e.elements.len(),
            Request::FetchBase(_) => 32,
            Request::FetchDelta(_) => 24,
        };
        prop_assert_eq!(encode_request(&q).unwrap().len(), expected);
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
            let _ = decode_request(&f);
        }
        let _ = dec.finish();
    }

    #[test]
    fn mutated_responses_never_panic_and_stay_canonical(
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
    fn mutated_requests_never_panic_and_stay_canonical(
        r in request(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut p = encode_request(&r).unwrap();
        for (i, x) in flips {
            let at = i.index(p.len());
            p[at] ^= x;
        }
        if let Ok(d) = decode_request(&p) {
            prop_assert_eq!(encode_request(&d).unwrap(), p);
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

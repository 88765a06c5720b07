//! Feeds arbitrary bytes to every decoder of nayose-wire. The decoders must never panic, and
//! whatever they accept must re-encode to exactly the bytes they accepted (the encoding is
//! canonical), so a panic here is a bug either way.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nayose_wire::{
    FrameDecoder, decode_request, decode_request_frame, decode_response, decode_response_frame,
    encode_request, encode_response,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = decode_request(data) {
        assert_eq!(encode_request(&request).ok().as_deref(), Some(data));
    }
    if let Ok(response) = decode_response(data) {
        assert_eq!(encode_response(&response).ok().as_deref(), Some(data));
    }
    let _ = decode_request_frame(data);
    let _ = decode_response_frame(data);

    // The stream decoder, fed in uneven pieces whose sizes come from the data itself.
    let mut frames = FrameDecoder::new();
    let mut rest = data;
    while !rest.is_empty() {
        let take = (usize::from(rest[0]) % 64 + 1).min(rest.len());
        frames.push(&rest[..take]);
        rest = &rest[take..];
        while let Ok(Some(payload)) = frames.next_frame() {
            let _ = decode_response(&payload);
            let _ = decode_request(&payload);
        }
    }
    let _ = frames.finish();
});

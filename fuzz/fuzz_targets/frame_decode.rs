//! Fuzzes everything the server and the clients do with bytes read from a socket: the frame
//! splitter, the flatbuffers verifier and the conversion to plain messages, under the default
//! limits. Properties checked beyond "no panic": frames never exceed the limit, and any frame
//! that decodes re-encodes and decodes to the same message.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tern::net::codec::decode_frame;
use tern::net::{Encoder, FrameDecoder, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();

    // 1. The input as one frame payload (reaches the verifier directly).
    check_payload(&Bytes::copy_from_slice(data), &limits);

    // 2. The input as a byte stream, split into frames, fed in two chunks.
    let mut dec = FrameDecoder::new(limits.max_frame_len);
    let cut = data.len() / 2;
    for chunk in [&data[..cut], &data[cut..]] {
        dec.push(chunk);
        loop {
            match dec.next_frame() {
                Ok(Some(f)) => {
                    assert!(!f.is_empty() && f.len() <= limits.max_frame_len);
                    check_payload(&f, &limits);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = dec.finish();
});

fn check_payload(frame: &Bytes, limits: &Limits) {
    if let Ok(env) = decode_frame(frame, limits) {
        let mut enc = Encoder::new(*limits);
        let again = Bytes::copy_from_slice(enc.encode(&env).expect("a decoded message re-encodes"));
        let back = decode_frame(&again, limits).expect("a re-encoded message decodes");
        assert_eq!(back, env);
    }
}

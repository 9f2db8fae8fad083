//! HTTP responses as iprepd (or anything on its port) may send them:
//! the head parser and the chunked decoder never panic and stay in bounds.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_core::net::http::{decode_chunked, parse_head};

fuzz_target!(|data: &[u8]| {
    for head in [false, true] {
        let _ = parse_head(data, head);
    }
    if let Ok(Some((body, used))) = decode_chunked(data, 1 << 16) {
        assert!(used <= data.len());
        assert!(body.len() <= 1 << 16);
    }
});

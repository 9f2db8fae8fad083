//! HTTP responses as iprepd (or anything on its port) may send them:
//! the head parser and the chunked decoder never panic and stay in bounds.
//! The same bytes as an iprepd URL and as an audit_uri_list pattern: never
//! a panic, and a URL that parses prints back to one that parses alike.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_core::net::http::{decode_chunked, parse_head, Url};
use warden_core::reputation::options::lua_pattern;

fuzz_target!(|data: &[u8]| {
    for head in [false, true] {
        let _ = parse_head(data, head);
    }
    if let Ok(Some((body, used))) = decode_chunked(data, 1 << 16) {
        assert!(used <= data.len());
        assert!(body.len() <= 1 << 16);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(u) = Url::parse(s) {
            let again = Url::parse(&u.to_string()).expect("a printed URL parses");
            assert_eq!((again.tls, again.host, again.port), (u.tls, u.host, u.port));
        }
        let _ = lua_pattern(s);
    }
});

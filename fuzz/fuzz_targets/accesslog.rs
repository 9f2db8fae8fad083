//! Access-log lines for /security/analyze: never a panic; the fields of a
//! parsed line come from the line.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_core::admin::accesslog::parse;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(l) = parse(s) {
            assert!(s.contains(l.method));
            assert!((100..=999).contains(&l.status));
        }
    }
});

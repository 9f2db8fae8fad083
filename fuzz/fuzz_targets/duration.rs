//! Durations: never a panic; what parses is bounded and stable.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_core::options::parse_duration;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(ms) = parse_duration(s) {
            assert!(ms <= warden_core::options::MAX_DURATION_MS);
            // the same duration written in ms parses to the same value
            assert_eq!(parse_duration(&format!("{ms}ms")), Ok(ms));
        }
    }
});

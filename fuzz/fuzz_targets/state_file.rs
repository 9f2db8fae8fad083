//! The state file: never a panic; a file that loads re-saves identically.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_core::persist::state::{parse, serialize};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = parse(data) {
        let once = serialize(&s);
        let back = parse(&once).expect("a saved state loads");
        assert_eq!(back, s);
        assert_eq!(serialize(&back), once);
    }
});

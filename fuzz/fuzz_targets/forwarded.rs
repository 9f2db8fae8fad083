//! X-Forwarded-For elements: whatever is taken is a valid address that
//! prints back to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_core::net::addr::Addr;

fuzz_target!(|data: &[u8]| {
    for element in data.split(|&b| b == b',') {
        if let Some(a) = Addr::parse_forwarded(element) {
            assert_eq!(Addr::parse(&a.to_string()), Ok(a));
        }
    }
});

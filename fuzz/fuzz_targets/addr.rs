//! Addresses and networks: a parsed address prints back to an equal one.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_core::net::addr::{Addr, Net};

fuzz_target!(|data: &[u8]| {
    let _ = Addr::from_binary(data);
    let _ = Addr::parse_bytes(data);
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(a) = Addr::parse(s) {
            assert_eq!(Addr::parse(&a.to_string()), Ok(a), "{s:?}");
            let mut buf = [0u8; 16];
            let n = a.to_bytes(&mut buf);
            assert_eq!(Addr::from_binary(&buf[..n]), Some(a));
        }
        if let Ok(n) = Net::parse(s) {
            assert_eq!(Net::parse(&n.to_string()), Ok(n), "{s:?}");
            assert!(n.contains(n.first()));
        }
    }
});

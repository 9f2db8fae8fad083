//! Scanner user-agent tokens: never a panic; a match is one of the
//! patterns.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_core::detect::agents::Agents;

fuzz_target!(|data: &[u8]| {
    let cut = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (pats, ua) = (&data[..cut], data.get(cut + 1..).unwrap_or(&[]));
    let Ok(pats) = std::str::from_utf8(pats) else {
        return;
    };
    let list: Vec<&str> = pats.split('\n').collect();
    if let Ok(a) = Agents::new(&list) {
        if let Some(m) = a.find_bytes(ua) {
            assert!(a.patterns().iter().any(|p| p == m));
        }
    }
});

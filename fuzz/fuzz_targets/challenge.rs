//! The challenge's parsers: cookies, tokens and answers never panic; a
//! cookie or token that verifies is one this secret made for this client;
//! a return path is always local.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use warden_core::challenge::{back_path, pow_ok, Answer, Challenge, Options};
use warden_core::net::addr::Addr;

fn challenge() -> &'static Challenge {
    static C: OnceLock<Challenge> = OnceLock::new();
    C.get_or_init(|| {
        let o = Options::from_value(&serde_json::json!({
            "secret": "fuzzing secret 0123456789", "difficulty": 0,
        }))
        .unwrap();
        Challenge::new(o, 64)
    })
}

fuzz_target!(|data: &[u8]| {
    let c = challenge();
    let a = Addr::parse("192.0.2.7").unwrap();
    // nothing but what the secret made verifies
    if c.cookie_ok(a, data, 1_000) {
        let text = std::str::from_utf8(data).unwrap();
        let expires: u64 = text.split('.').next().unwrap().parse().unwrap();
        assert_eq!(c.cookie(a, expires - 86_400), text);
    }
    if c.verify_token(a, data, 1_000).is_ok() {
        let text = std::str::from_utf8(data).unwrap();
        let issued: u64 = text.split('.').next().unwrap().parse().unwrap();
        assert_eq!(c.token(a, issued), text);
    }
    if let Ok(answer) = Answer::parse(data) {
        let back = back_path(&answer.back, "/.warden/challenge");
        assert!(back == "/" || (back.starts_with('/') && !back.starts_with("//")));
        let _ = pow_ok(answer.token.as_bytes(), answer.nonce.as_bytes(), 8);
    }
});

//! Request targets as the detector decodes and scans them: never a panic;
//! a resolved path starts with '/' and holds no empty, '.' or '..'
//! segment; a plain path decodes to itself; the payload scan of the same
//! text always gives the same classes, within the six bits.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use warden_core::detect::payload::{normalize_into, Payloads};
use warden_core::path::uri::{decode_fully, decode_into, plain_path, resolve_into, split};

static PAYLOADS: OnceLock<Payloads> = OnceLock::new();

fuzz_target!(|target: &[u8]| {
    let p = PAYLOADS.get_or_init(Payloads::new);
    let (path, query) = split(target);
    let (mut decoded, mut tmp, mut resolved, mut text) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    decode_fully(path, &mut decoded, &mut tmp, false, 3);
    resolve_into(&decoded, &mut resolved);
    assert_eq!(resolved.first(), Some(&b'/'));
    let inner =
        &resolved[1..resolved.len() - usize::from(resolved.len() > 1 && resolved.ends_with(b"/"))];
    if !inner.is_empty() {
        for seg in inner.split(|&b| b == b'/') {
            assert!(!matches!(seg, b"" | b"." | b".."), "{resolved:?}");
        }
    }
    if plain_path(path) && path.starts_with(b"/") {
        assert!(!decode_into(path, &mut tmp, false));
    }
    normalize_into(&decoded, &mut text);
    let at = text.len();
    if let Some(q) = query {
        text.push(b'?');
        decode_fully(q, &mut decoded, &mut tmp, true, 3);
        normalize_into(&decoded, &mut text);
    }
    let classes = p.scan(&text, at);
    assert_eq!(classes & !63, 0);
    assert_eq!(p.scan(&text, at), classes);
});

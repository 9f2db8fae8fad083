//! Path globs, path rules and path normalization: never a panic;
//! normalizing a normalized path without '%' changes nothing (with '%' it
//! may: like nginx's $uri, one pass decodes once, so "%2541" gives "%41");
//! a literal rule covers its own path.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_core::path::glob::Glob;
use warden_core::policy::{normalize_path, PathRule};

fuzz_target!(|data: &[u8]| {
    let cut = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (pattern, path) = (&data[..cut], data.get(cut + 1..).unwrap_or(&[]));
    let norm = normalize_path(path);
    if !norm.contains(&b'%') {
        assert_eq!(normalize_path(&norm), norm);
    }
    if let Ok(p) = std::str::from_utf8(pattern) {
        for caseless in [false, true] {
            if let Ok(g) = Glob::new(p, caseless) {
                let _ = g.matches(path);
            }
        }
        if let Ok(r) = PathRule::new(p) {
            let _ = r.matches(&norm);
            if !p.contains(['*', '?', '[']) && p.starts_with('/') {
                let own = normalize_path(p.as_bytes());
                if own == p.as_bytes() {
                    assert!(r.matches(&own), "{p:?}");
                }
            }
        }
    }
});

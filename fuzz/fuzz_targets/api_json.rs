//! Admin API bodies: whitelist entries, protected routes and site policies
//! never panic; what is accepted compiles into a policy.
#![no_main]
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use warden_core::policy::{route_entry, site_entry, whitelist_entry, Policy};

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Ok(e) = whitelist_entry(&v) {
        let doc = json!({ "whitelist": [e] });
        assert!(Policy::compile(&Value::Null, &doc).is_ok(), "{doc}");
    }
    if let Ok(e) = route_entry(&v) {
        let doc = json!({ "routes": [e] });
        assert!(Policy::compile(&Value::Null, &doc).is_ok(), "{doc}");
    }
    if let Ok(e) = site_entry(&v) {
        let doc = json!({ "sites": { "s": e } });
        assert!(Policy::compile(&Value::Null, &doc).is_ok(), "{doc}");
    }
    let _ = Policy::compile(&Value::Null, &v);
});

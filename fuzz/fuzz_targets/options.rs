//! Option tables through the config layer (JSON stands for the Lua table):
//! never a panic; an error names an option.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_core::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        match Config::from_value(&v) {
            Ok(c) => {
                let _ = warden_core::policy::Policy::compile(&c.policy, &serde_json::Value::Null);
            }
            Err(e) => assert!(e.to_string().starts_with("opts.")),
        }
    }
});

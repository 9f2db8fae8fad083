//! The commands, each one or a few requests to the admin API and the view
//! of their answers (tables for people, JSON for scripts).

pub mod blocks;
pub mod events;
pub mod status;
pub mod why;

use crate::addr::Target;
use crate::error::Error;
use serde_json::Value;

/// The text of `v[key]` (numbers printed as they are, null as empty).
pub fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// `v[key]` as a number (0 when absent).
pub fn num(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

/// `v[key]` as an array (empty when absent).
pub fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
}

/// A number of bytes for people: `512 B`, `3.5 KiB`, `64.0 MiB`.
pub fn bytes(n: f64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024.0 {
        return format!("{n} B");
    }
    let mut v = n / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// The pretty JSON of `v`, with a newline.
pub fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    s
}

/// An IP address or CIDR argument, checked; the error is a usage error
/// naming the value.
pub fn target_arg(s: &str) -> Result<Target, Error> {
    Target::parse(s).map_err(Error::usage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_as_text() {
        let v = json!({"s": "x", "n": 3, "f": 1.5, "z": null, "b": true});
        assert_eq!(
            ["s", "n", "f", "z", "b", "missing"].map(|k| text(&v, k)),
            ["x", "3", "1.5", "", "true", ""]
        );
        assert_eq!(num(&v, "n"), 3.0);
        assert_eq!(num(&v, "s"), 0.0);
        assert!(list(&v, "s").is_empty());
    }

    #[test]
    fn bytes_for_people() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(3584.0), "3.5 KiB");
        assert_eq!(bytes(64.0 * 1024.0 * 1024.0), "64.0 MiB");
        assert_eq!(bytes(3.0 * 1024.0 * 1024.0 * 1024.0), "3.0 GiB");
    }

    #[test]
    fn target_arguments_are_usage_errors() {
        let e = target_arg("1.2.3.256").unwrap_err();
        assert_eq!(e.kind, crate::error::Kind::Usage);
        assert_eq!(e.message, "invalid IP address or CIDR '1.2.3.256'");
    }
}

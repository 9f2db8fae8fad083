//! iprepd-nginx's audit line for requests below the reputation threshold:
//! formatting, redaction and base64 live here; the Lua side only writes
//! the line.

use base64::Engine as _;

/// The request body as the audit line shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// Buffered in memory: shown base64-encoded.
    Data(&'a [u8]),
    /// Written to a temporary file by nginx: its name.
    File(&'a str),
    /// Neither.
    Unreadable,
}

/// Headers never written to the audit log.
pub const REDACTED: [&str; 2] = ["authorization", "proxy-authorization"];

/// iprepd-nginx's audit line: `FoxSec Audit || ip: <ip>, headers:
/// <headers>, body: <base64 | body file | "unable to read body">`, where
/// `<headers>` is the base64 of `"name": "value", ` repeated for each
/// header (names in lower case, credentials removed; one entry per value
/// of a repeated header, where iprepd-nginx wrote `table: 0x...`), and of
/// the empty string when `headers` is `None` (`audit_include_headers` off).
///
/// ```
/// use warden_core::reputation::audit::{audit_line, Body};
/// let h = vec![("Authorization".to_string(), "APIKey x".to_string()),
///              ("X-A".to_string(), "b".to_string())];
/// assert_eq!(audit_line("192.0.2.1", Some(&h), Body::Data(b"hi")),
///     "FoxSec Audit || ip: 192.0.2.1, headers: IngtYSI6ICJiIiwg, body: aGk=");
/// assert_eq!(audit_line("192.0.2.1", None, Body::Unreadable),
///     "FoxSec Audit || ip: 192.0.2.1, headers: , body: unable to read body");
/// ```
pub fn audit_line(ip: &str, headers: Option<&[(String, String)]>, body: Body<'_>) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut all = String::new();
    for (k, v) in headers.unwrap_or_default() {
        let k = k.to_ascii_lowercase();
        if !REDACTED.contains(&k.as_str()) {
            all.push_str(&format!("\"{k}\": \"{v}\", "));
        }
    }
    let headers = b64.encode(all);
    let body = match body {
        Body::Data(d) => b64.encode(d),
        Body::File(f) => f.to_string(),
        Body::Unreadable => "unable to read body".to_string(),
    };
    format!("FoxSec Audit || ip: {ip}, headers: {headers}, body: {body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_redacts_and_marks_bodies() {
        let h = vec![
            ("PROXY-AUTHORIZATION".to_string(), "x".to_string()),
            ("Cookie".to_string(), "a".to_string()),
            ("cookie".to_string(), "b".to_string()),
        ];
        let line = audit_line("2001:db8::1", Some(&h), Body::File("/tmp/0001"));
        let b64 = base64::engine::general_purpose::STANDARD;
        let enc = line
            .split("headers: ")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap();
        let dec = String::from_utf8(b64.decode(enc).unwrap()).unwrap();
        assert_eq!(dec, r#""cookie": "a", "cookie": "b", "#);
        assert!(line.ends_with("body: /tmp/0001"));
        assert!(audit_line("x", None, Body::Unreadable)
            .ends_with("headers: , body: unable to read body"));
        assert!(audit_line("x", Some(&[]), Body::Data(b"")).ends_with("headers: , body: "));
    }
}

//! `security/analyze`: access-log lines fed to the detector, as text
//! (one line each) or as nginx-defender's JSON (`{"log_entry": "..."}`,
//! `{"lines": [...]}`, `{"log_entries": [...]}` or an array of lines).

use serde_json::{json, Value};

use super::accesslog;
use super::backend::Backend;
use super::exchange::Response;
use crate::error::{Error, Kind};
use crate::net::addr::Addr;

/// Lines one request may carry.
pub const MAX_LINES: usize = 100_000;
/// Rejected lines listed in the answer (the rest are counted).
pub const MAX_ERRORS: usize = 100;

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// The fields a JSON body takes.
pub const ANALYZE_FIELDS: &[&str] = &["log_entry", "ip", "line", "lines", "log_entries"];

/// nginx-defender's log-shipping script sends
/// `-d "{\"log_entry\":\"$line\",\"ip\":\"$IP\"}"`: the raw access-log
/// line, its quotes unescaped, inside a JSON string. Not JSON; but its
/// shape is exact: `{"log_entry":"<line>","ip":"<address>"}`, the line
/// running to the last `","ip":"`. The line and the address, or `None`
/// for anything else.
pub fn defender_body(body: &str) -> Option<(&str, &str)> {
    let s = body.trim().strip_prefix('{')?.strip_suffix('}')?.trim();
    let s = s.strip_prefix("\"log_entry\"")?.trim_start();
    let s = s.strip_prefix(':')?.trim_start().strip_prefix('"')?;
    let at = s.rfind("\"ip\"")?;
    let (entry, ip) = s.split_at(at);
    let entry = entry.trim_end().strip_suffix(',')?.trim_end();
    let entry = entry.strip_suffix('"')?;
    let ip = ip["\"ip\"".len()..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let ip = ip.strip_prefix('"')?.strip_suffix('"')?;
    if ip.contains('"') || entry.contains('\n') {
        return None;
    }
    Some((entry, ip))
}

/// The lines of a JSON body, and the client it names (`ip`), if any.
fn json_lines(body: &[u8]) -> Result<(Vec<String>, Option<String>), Error> {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            let text = std::str::from_utf8(body).ok();
            return match text.and_then(defender_body) {
                Some((line, ip)) => Ok((vec![line.to_string()], Some(ip.to_string()))),
                None => Err(Error::invalid("body", format!("invalid JSON: {e}"))),
            };
        }
    };
    let mut ip = None;
    if let Value::Object(m) = &v {
        super::only_fields(m, ANALYZE_FIELDS)?;
        ip = match m.get("ip") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(Error::invalid("ip", "ip must be a string")),
        };
    }
    let items: Vec<&Value> = match &v {
        Value::Array(a) if !a.is_empty() => a.iter().collect(),
        _ => {
            let list = ["lines", "log_entries"]
                .iter()
                .find_map(|k| v.get(k).filter(|x| !x.is_null()));
            match list {
                Some(Value::Array(a)) => a.iter().collect(),
                Some(other) => vec![other],
                None => ["log_entry", "line"]
                    .iter()
                    .find_map(|k| v.get(k).filter(|x| !x.is_null()))
                    .into_iter()
                    .collect(),
            }
        }
    };
    let mut lines = Vec::with_capacity(items.len());
    for l in items {
        match l {
            Value::String(s) => lines.push(s.clone()),
            _ => return Err(Error::invalid("log_entry", "log lines must be strings")),
        }
    }
    if lines.is_empty() {
        return Err(Error::invalid(
            "log_entry",
            "no log line: send text lines, or JSON {\"log_entry\": \"...\"} or \
             {\"lines\": [...]}",
        ));
    }
    Ok((lines, ip))
}

/// `POST security/analyze`
pub(super) fn analyze(b: &dyn Backend, body: &[u8]) -> Result<Response, Error> {
    let joined;
    let text: &[u8] = match body.iter().find(|c| !is_space(**c)) {
        Some(b'{') | Some(b'[') => {
            // `ip` (nginx-defender's) repeats the line's address, the
            // one that counts
            joined = json_lines(body)?.0.join("\n");
            joined.as_bytes()
        }
        _ => body,
    };
    let mut analyzed = 0;
    let mut rejected = 0;
    let mut errors = Vec::new();
    let mut first: Option<Error> = None;
    let mut tripped = Vec::new();
    let mut reports = Vec::new();
    let lines = text.split(|c| *c == b'\n').filter(|l| !l.is_empty());
    for (i, raw) in lines.enumerate() {
        let n = i + 1;
        if n > MAX_LINES {
            return Err(Error::new(
                Kind::TooLarge,
                "body",
                format!("more than {MAX_LINES} lines"),
            ));
        }
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(|c| is_space(*c)) {
            continue;
        }
        let line = String::from_utf8_lossy(raw);
        let parsed = accesslog::parse(&line)
            .map_err(|e| Error::invalid(e.field(), e.to_string()))
            .and_then(|l| match Addr::parse(l.addr) {
                Ok(a) => Ok((l, a)),
                Err(e) => Err(Error::invalid("remote_addr", format!("remote_addr: {e}"))),
            });
        match parsed {
            Err(e) => {
                if errors.len() < MAX_ERRORS {
                    errors.push(json!({ "line": n, "error": e.message(), "field": e.field() }));
                    rejected += 1;
                }
                if first.is_none() {
                    first = Some(Error::invalid(
                        e.field().unwrap_or(""),
                        format!("line {n}: {}", e.message()),
                    ));
                }
            }
            Ok((l, a)) => {
                analyzed += 1;
                if let Some(t) = b.observe_line(a, &l)? {
                    let e = &t.event;
                    tripped.push(json!({ "ip": e.ip, "rule": e.rule, "action": e.action }));
                    reports.extend(t.report.map(|(a, rule)| (a.to_string(), rule)));
                }
            }
        }
    }
    if let (0, Some(e)) = (analyzed, first) {
        return Err(e);
    }
    let mut res = Response::json(
        200,
        &json!({
            "analyzed": analyzed,
            "rejected": rejected,
            "errors": errors,
            "tripped": tripped,
        }),
    );
    res.reports = reports;
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_forms() {
        let one = |s: &str| json_lines(s.as_bytes()).map(|(l, _)| l);
        assert_eq!(one(r#"{"log_entry": "a"}"#).unwrap(), ["a"]);
        assert_eq!(one(r#"{"line": "a", "ip": "x"}"#).unwrap(), ["a"]);
        assert_eq!(one(r#"{"lines": ["a", "b"]}"#).unwrap(), ["a", "b"]);
        assert_eq!(one(r#"{"log_entries": ["a"]}"#).unwrap(), ["a"]);
        assert_eq!(one(r#"["a", "b"]"#).unwrap(), ["a", "b"]);
        let e = one(r#"{"lines": [1]}"#).unwrap_err();
        assert_eq!(
            (e.message(), e.field()),
            ("log lines must be strings", Some("log_entry"))
        );
        for empty in ["{}", "[]", r#"{"lines": []}"#, r#"{"log_entry": null}"#] {
            let e = one(empty).unwrap_err();
            assert!(e.message().starts_with("no log line"), "{empty}");
        }
        let e = one("{").unwrap_err();
        assert!(e.message().starts_with("invalid JSON: "));
        assert_eq!(e.field(), Some("body"));
        let e = one(r#"{"log_entry": "a", "host": "x"}"#).unwrap_err();
        assert_eq!(
            (e.message(), e.field()),
            (
                "host: is not a known field (known: log_entry, ip, line, lines, log_entries)",
                Some("host")
            )
        );
        let (_, ip) = json_lines(br#"{"log_entry": "a", "ip": "192.0.2.1"}"#).unwrap();
        assert_eq!(ip.as_deref(), Some("192.0.2.1"));
    }

    #[test]
    fn nginx_defenders_unescaped_body() {
        // its script: -d "{\"log_entry\":\"$line\",\"ip\":\"$IP\"}"
        let line = r#"192.0.2.7 - - [21/Nov/2026:10:15:31 +0000] "GET /wp-login.php HTTP/1.1" 404 153 "-" "Mozilla/5.0 "ip" x""#;
        let body = format!(r#"{{"log_entry":"{line}","ip":"192.0.2.7"}}"#);
        assert!(serde_json::from_str::<Value>(&body).is_err());
        assert_eq!(defender_body(&body), Some((line, "192.0.2.7")));
        let (lines, ip) = json_lines(body.as_bytes()).unwrap();
        assert_eq!(
            (lines, ip.as_deref()),
            (vec![line.to_string()], Some("192.0.2.7"))
        );
        let spaced = format!("  {{ \"log_entry\" : \"{line}\" , \"ip\" : \"::1\" }}\n");
        assert_eq!(defender_body(&spaced), Some((line, "::1")));
        for other in [
            r#"{"log_entry":"a"}"#,
            r#"{"line":"a "b" c","ip":"1.2.3.4"}"#,
            r#"{"log_entry":"a","ip":"1.2"3"}"#,
            r#"{"log_entry":"a","ip":"1.2.3.4""#,
            "{\"log_entry\":\"a\nb\",\"ip\":\"1.2.3.4\"}",
        ] {
            assert_eq!(defender_body(other), None, "{other}");
        }
    }
}

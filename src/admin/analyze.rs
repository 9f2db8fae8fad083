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

/// The lines of a JSON body.
fn json_lines(body: &[u8]) -> Result<Vec<String>, Error> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Error::invalid("body", format!("invalid JSON: {e}")))?;
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
    Ok(lines)
}

/// `POST security/analyze`
pub(super) fn analyze(b: &dyn Backend, body: &[u8]) -> Result<Response, Error> {
    let joined;
    let text: &[u8] = match body.iter().find(|c| !is_space(**c)) {
        Some(b'{') | Some(b'[') => {
            joined = json_lines(body)?.join("\n");
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
        let one = |s: &str| json_lines(s.as_bytes());
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
    }
}

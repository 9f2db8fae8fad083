//! The admin API over HTTP: requests with the token, answers as JSON, and
//! every failure as an [`Error`] whose kind gives the exit code.
//!
//! The client is `ureq`: blocking (one request at a time is all a command
//! line needs), no async runtime, a few small dependencies, and TLS only
//! when asked for (`--features tls`).

use crate::config::Settings;
use crate::error::{Error, Kind};
use serde_json::Value;
use std::time::Duration;

/// The admin API at one URL.
pub struct Api {
    base: String,
    token: Option<String>,
    token_from: Option<String>,
    timeout_secs: u64,
    agent: ureq::Agent,
}

/// An answer: its status and its body as JSON.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Value,
}

/// The HTTP methods the API uses.
#[derive(Clone, Copy, Debug)]
enum Method {
    Get,
    Post,
    Delete,
}

/// `s` escaped for a query string.
pub fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `path?k=v&...` for the parameters that are set.
pub fn with_query(path: &str, params: &[(&str, Option<String>)]) -> String {
    let q: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", query_escape(v))))
        .collect();
    if q.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", q.join("&"))
    }
}

impl Api {
    /// The API described by `s`.
    pub fn new(s: &Settings) -> Api {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(s.timeout_secs)))
            .http_status_as_error(false)
            // a redirect means a wrong URL; following it could send the
            // token elsewhere
            .max_redirects(0)
            .user_agent(concat!("warden-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Api {
            base: s.url.clone(),
            token: s.token.clone(),
            token_from: s.token_from.clone(),
            timeout_secs: s.timeout_secs,
            agent,
        }
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// `GET path`; an error status is an error.
    pub fn get(&self, path: &str) -> Result<Value, Error> {
        self.expect(self.call(Method::Get, path, None)?, path)
    }

    /// `POST path` with a JSON body; an error status is an error.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, Error> {
        self.expect(self.call(Method::Post, path, Some(body))?, path)
    }

    /// `DELETE path`; an error status is an error.
    pub fn delete(&self, path: &str) -> Result<Value, Error> {
        self.expect(self.call(Method::Delete, path, None)?, path)
    }

    /// `POST path` with a JSON body; any JSON answer is returned as it is
    /// (for `/security/check`, whose 401 and 403 are verdicts).
    pub fn post_answer(&self, path: &str, body: &Value) -> Result<Answer, Error> {
        self.call(Method::Post, path, Some(body))
    }

    fn expect(&self, a: Answer, path: &str) -> Result<Value, Error> {
        if (200..300).contains(&a.status) {
            Ok(a.body)
        } else {
            Err(self.refused(&a, path))
        }
    }

    /// The error for an error answer.
    fn refused(&self, a: &Answer, path: &str) -> Error {
        let api_msg = a.body.get("error").and_then(Value::as_str);
        let field = a.body.get("field").and_then(Value::as_str);
        let (kind, message) = match (a.status, api_msg) {
            (401, msg) => {
                let hint = match &self.token_from {
                    Some(from) => format!("the token from {from} was refused"),
                    None => "no token was given: set WARDEN_TOKEN or WARDEN_TOKEN_FILE, \
                             --token-file, or token in the config file"
                        .to_string(),
                };
                (
                    Kind::Auth,
                    format!("{} ({hint})", msg.unwrap_or("401 Unauthorized")),
                )
            }
            // nginx's `deny` (an HTML page, not the API's JSON)
            (403, None) => (
                Kind::Auth,
                format!(
                    "403 Forbidden from {}: nginx refuses this host there \
                     (the location's allow/deny)",
                    self.base
                ),
            ),
            (404, Some(m)) if m.starts_with("no such endpoint") => (
                Kind::Api,
                format!("{m}: is {} the location serving warden:api()?", self.base),
            ),
            (s, Some(m)) => (
                Kind::Api,
                match field {
                    Some(f) if !m.starts_with(f) => format!("{m} (field {f}, status {s})"),
                    _ => format!("{m} (status {s})"),
                },
            ),
            (s, None) => (
                Kind::Api,
                format!(
                    "{}{path} answered {s} without an error message: is {} the \
                     location serving warden:api()?",
                    self.base, self.base
                ),
            ),
        };
        Error {
            kind,
            status: Some(a.status),
            message,
        }
    }

    fn call(&self, m: Method, path: &str, body: Option<&Value>) -> Result<Answer, Error> {
        let url = format!("{}{path}", self.base);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let result = match m {
            Method::Get | Method::Delete => {
                let mut req = match m {
                    Method::Get => self.agent.get(&url),
                    _ => self.agent.delete(&url),
                };
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                req.header("Accept", "application/json").call()
            }
            Method::Post => {
                let mut req = self.agent.post(&url);
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                let text = body.map(Value::to_string).unwrap_or_default();
                req.header("Accept", "application/json")
                    .header("Content-Type", "application/json")
                    .send(text)
            }
        };
        let mut resp = result.map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        if (300..400).contains(&status) {
            let to = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .to_string();
            return Err(Error {
                kind: Kind::Api,
                status: Some(status),
                message: format!(
                    "{url} redirects ({status}) to {to}: set the URL to the location \
                     serving warden:api() itself"
                ),
            });
        }
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| self.unreachable(e))?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            match serde_json::from_str(&text) {
                Ok(v) => v,
                // an error page: the status tells what happened
                Err(_) if status >= 400 => Value::Null,
                Err(_) => {
                    return Err(Error {
                        kind: Kind::Api,
                        status: Some(status),
                        message: format!(
                            "{url} answered {status} with something that is not JSON: \
                             is {} the location serving warden:api()?",
                            self.base
                        ),
                    })
                }
            }
        };
        Ok(Answer { status, body })
    }

    /// The error for a request that got no answer.
    fn unreachable(&self, e: ureq::Error) -> Error {
        let why = match &e {
            ureq::Error::Timeout(_) => format!("no answer within {}s", self.timeout_secs),
            ureq::Error::HostNotFound => "host not found".to_string(),
            ureq::Error::Io(io) => match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                std::io::ErrorKind::TimedOut => format!("no answer within {}s", self.timeout_secs),
                _ => io.to_string(),
            },
            other => other.to_string(),
        };
        let kind = match &e {
            ureq::Error::BadUri(_) | ureq::Error::Http(_) => Kind::Usage,
            _ => Kind::Unreachable,
        };
        Error::new(
            kind,
            format!(
                "cannot reach the admin API at {}: {why} (is nginx running, and is the \
                 URL right? set it with --url, WARDEN_URL or the config file)",
                self.base
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn api(token_from: Option<&str>) -> Api {
        Api::new(&Settings {
            url: "http://127.0.0.1:1/api".into(),
            url_from: "--url".into(),
            token: token_from.map(|_| "t".into()),
            token_from: token_from.map(str::to_string),
            timeout_secs: 1,
            warnings: vec![],
        })
    }

    #[test]
    fn queries_are_escaped() {
        assert_eq!(
            with_query(
                "/security/events",
                &[
                    ("type", Some("blocked_ip".into())),
                    ("ip", Some("2001:db8::/64".into())),
                    ("since", None),
                    ("x", Some("a b&c".into())),
                ]
            ),
            "/security/events?type=blocked_ip&ip=2001:db8::%2F64&x=a%20b%26c"
        );
        assert_eq!(with_query("/p", &[("a", None)]), "/p");
    }

    #[test]
    fn error_answers_become_errors_of_a_kind() {
        let a = api(Some("WARDEN_TOKEN"));
        let e = a.refused(
            &Answer {
                status: 401,
                body: json!({"error": "invalid token", "field": "Authorization"}),
            },
            "/security/stats",
        );
        assert_eq!(e.kind, Kind::Auth);
        assert_eq!(
            e.message,
            "invalid token (the token from WARDEN_TOKEN was refused)"
        );
        let e = api(None).refused(
            &Answer {
                status: 401,
                body: json!({"error": "missing Authorization: Bearer <token>"}),
            },
            "/x",
        );
        assert!(e.message.contains("no token was given: set WARDEN_TOKEN"));
        let e = a.refused(
            &Answer {
                status: 403,
                body: Value::Null,
            },
            "/x",
        );
        assert_eq!(e.kind, Kind::Auth);
        assert!(e.message.contains("allow/deny"));
        let e = a.refused(
            &Answer {
                status: 404,
                body: json!({"error": "198.51.100.0/24 is not blocked", "field": "ip"}),
            },
            "/x",
        );
        assert_eq!(
            (e.kind, e.status, e.message.as_str()),
            (
                Kind::Api,
                Some(404),
                "198.51.100.0/24 is not blocked (field ip, status 404)"
            )
        );
        let e = a.refused(
            &Answer {
                status: 400,
                body: json!({"error": "limit must be a positive integer", "field": "limit"}),
            },
            "/x",
        );
        assert_eq!(e.message, "limit must be a positive integer (status 400)");
        let e = a.refused(
            &Answer {
                status: 404,
                body: json!({"error": "no such endpoint: /x/security/stats", "field": null}),
            },
            "/security/stats",
        );
        assert!(e
            .message
            .ends_with("is http://127.0.0.1:1/api the location serving warden:api()?"));
    }

    #[test]
    fn nothing_listening_is_unreachable() {
        let e = api(None).get("/health").unwrap_err();
        assert_eq!(e.kind, Kind::Unreachable);
        assert!(
            e.message.starts_with(
                "cannot reach the admin API at http://127.0.0.1:1/api: connection refused"
            ),
            "{}",
            e.message
        );
    }
}

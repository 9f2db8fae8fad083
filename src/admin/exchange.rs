//! What the Lua side hands over about a request to the admin API, and
//! what it gets back to send.
//!
//! Lua reads the request's nginx variables named in [`VARIABLES`], the
//! query arguments as nginx parses them, and, only when asked
//! ([`Reply::NeedBody`]), the body. Rust answers with a [`Response`] to
//! send as is, or asks for something only Lua can get: the body (reading
//! it may yield) or an address's reputation (a cosocket), then Lua calls
//! again with the same request and what was asked for. Nothing before a
//! request for more has side effects, so the call is simply repeated.

use crate::error::Error;

/// The nginx variables Lua reads for every request to the API, by name.
pub const VARIABLES: [&str; 11] = [
    "request_method",
    "uri",
    "remote_addr",
    "http_authorization",
    "http_content_length",
    "http_x_forwarded_for",
    "http_x_real_ip",
    "http_x_original_uri",
    "http_x_original_method",
    "http_x_warden_site",
    "http_if_none_match",
];

/// A query argument as nginx parses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg {
    /// `name=value`, decoded.
    Text(String),
    /// `name` without `=`.
    Flag,
    /// The name given more than once.
    Many,
}

/// One request to the admin API.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The method (`GET`, ...).
    pub method: String,
    /// The path, decoded (nginx's `$uri`).
    pub path: String,
    /// The peer's address as nginx has it (`$remote_addr`).
    pub peer: String,
    /// `Authorization`.
    pub authorization: Option<String>,
    /// `Content-Length`.
    pub content_length: Option<String>,
    /// `X-Forwarded-For`.
    pub x_forwarded_for: Option<String>,
    /// `X-Real-IP`.
    pub x_real_ip: Option<String>,
    /// `X-Original-URI` (a request checked through `auth_request`).
    pub x_original_uri: Option<String>,
    /// `X-Original-Method`.
    pub x_original_method: Option<String>,
    /// `X-Warden-Site`.
    pub x_warden_site: Option<String>,
    /// `If-None-Match` (the dashboard's page).
    pub if_none_match: Option<String>,
    /// The query arguments.
    pub args: Vec<(String, Arg)>,
    /// The body, once read (at most the limit + 1 bytes).
    pub body: Option<Vec<u8>>,
    /// iprepd's threshold when iprepd is configured: reputations at or
    /// below it are refused.
    pub reputation_threshold: Option<f64>,
    /// The reputation asked for with [`Reply::NeedReputation`]: `Some(None)`
    /// when the lookup failed (fail open).
    pub reputation: Option<Option<f64>>,
    /// How many times Lua waited and called again ([`Reply::Retry`]).
    pub retries: u32,
    /// When the request started, in ms since the epoch (0: not known).
    pub started_ms: u64,
    /// False when the location mounts the API without a token
    /// (`warden:api{ token = false }`, an internal listener): every
    /// endpoint is then served without `Authorization`.
    pub token_required: bool,
}

impl Default for Request {
    fn default() -> Request {
        Request {
            method: String::new(),
            path: String::new(),
            peer: String::new(),
            authorization: None,
            content_length: None,
            x_forwarded_for: None,
            x_real_ip: None,
            x_original_uri: None,
            x_original_method: None,
            x_warden_site: None,
            if_none_match: None,
            args: Vec::new(),
            body: None,
            reputation_threshold: None,
            reputation: None,
            retries: 0,
            started_ms: 0,
            token_required: true,
        }
    }
}

/// How long Lua waits before calling again after [`Reply::Retry`], in ms.
pub const RETRY_MS: u64 = 5;
/// How long a change waits for another worker's, from the start of its
/// request, in ms.
pub const WAIT_MS: u64 = 3_000;
/// How many times it tries at most (a request whose start is not known:
/// this × [`RETRY_MS`] is [`WAIT_MS`] on an idle machine).
pub const MAX_RETRIES: u32 = 600;

impl Request {
    /// True when the caller will not try again after this call, at
    /// `now_ms`: [`WAIT_MS`] after the request started (on a loaded
    /// machine each wait takes longer than [`RETRY_MS`]: time, not the
    /// count, ends it), or after [`MAX_RETRIES`].
    pub fn last_try(&self, now_ms: u64) -> bool {
        self.retries >= MAX_RETRIES
            || (self.started_ms != 0 && now_ms.saturating_sub(self.started_ms) >= WAIT_MS)
    }
}

impl Request {
    /// Sets the variable `name` (one of [`VARIABLES`]); others are ignored.
    pub fn set_var(&mut self, name: &str, value: String) {
        let slot = match name {
            "request_method" => {
                self.method = value;
                return;
            }
            "uri" => {
                self.path = value;
                return;
            }
            "remote_addr" => {
                self.peer = value;
                return;
            }
            "http_authorization" => &mut self.authorization,
            "http_content_length" => &mut self.content_length,
            "http_x_forwarded_for" => &mut self.x_forwarded_for,
            "http_x_real_ip" => &mut self.x_real_ip,
            "http_x_original_uri" => &mut self.x_original_uri,
            "http_x_original_method" => &mut self.x_original_method,
            "http_x_warden_site" => &mut self.x_warden_site,
            "http_if_none_match" => &mut self.if_none_match,
            _ => return,
        };
        *slot = Some(value);
    }

    /// The query argument `name`: `Ok(None)` when absent, an error naming
    /// it when it is given twice or without a value.
    pub fn arg(&self, name: &str) -> Result<Option<&str>, Error> {
        match self.args.iter().find(|(k, _)| k == name) {
            None => Ok(None),
            Some((_, Arg::Text(v))) => Ok(Some(v)),
            Some(_) => Err(Error::invalid(
                name,
                format!("{name} must be given once, with a value"),
            )),
        }
    }
}

/// A response, ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status.
    pub status: u16,
    /// The headers, `Content-Type` and `Cache-Control` included.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: String,
    /// Violations to report to iprepd (address, rule), when it is
    /// configured: rules the request tripped (a cosocket: Lua sends them).
    pub reports: Vec<(String, &'static str)>,
    /// True when the request's own status says nothing of its client
    /// (`/security/check`'s is a verdict on another request): the log
    /// phase must not feed it to the detector.
    pub unobserved: bool,
}

impl Response {
    /// A response of `content_type`.
    pub fn new(status: u16, content_type: &str, body: String) -> Response {
        Response {
            status,
            headers: vec![
                ("Content-Type", content_type.to_string()),
                ("Cache-Control", "no-store".to_string()),
            ],
            body,
            reports: Vec::new(),
            unobserved: false,
        }
    }

    /// A JSON response: the value's text (keys sorted) and a newline.
    pub fn json(status: u16, v: &serde_json::Value) -> Response {
        let mut body = v.to_string();
        body.push('\n');
        Response::new(status, "application/json", body)
    }

    /// The error as the API shows one: `{"error": ..., "field": ... | null}`
    /// with the status of its kind.
    pub fn error(e: &Error) -> Response {
        Response::json(
            e.kind().status(),
            &serde_json::json!({ "error": e.message(), "field": e.field() }),
        )
    }

    /// Adds a header.
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the admin API answers a call with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Send this.
    Done(Response),
    /// Read the body, at most `max` + 1 bytes, and call again with it.
    NeedBody {
        /// The limit (`admin_max_body`).
        max: usize,
    },
    /// Look up iprepd's reputation of `ip` and call again with it.
    NeedReputation {
        /// The address.
        ip: String,
    },
    /// Another worker is changing the same thing: wait `after_ms`, then
    /// call again with `retries` one higher.
    Retry {
        /// How long to wait.
        after_ms: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_and_args() {
        let mut r = Request::default();
        for name in VARIABLES {
            r.set_var(name, format!("v:{name}"));
        }
        r.set_var("unknown", "x".into());
        assert_eq!(r.method, "v:request_method");
        assert_eq!(r.path, "v:uri");
        assert_eq!(r.peer, "v:remote_addr");
        assert_eq!(r.x_warden_site.as_deref(), Some("v:http_x_warden_site"));
        assert_eq!(r.if_none_match.as_deref(), Some("v:http_if_none_match"));
        assert_eq!(r.authorization.as_deref(), Some("v:http_authorization"));
        r.args = vec![
            ("limit".into(), Arg::Text("5".into())),
            ("type".into(), Arg::Flag),
            ("ip".into(), Arg::Many),
        ];
        assert_eq!(r.arg("limit").unwrap(), Some("5"));
        assert_eq!(r.arg("since").unwrap(), None);
        let e = r.arg("type").unwrap_err();
        assert_eq!(
            (e.message(), e.field(), e.kind().status()),
            ("type must be given once, with a value", Some("type"), 400)
        );
        assert!(r.arg("ip").is_err());
    }

    #[test]
    fn errors_as_json() {
        let r = Response::error(&Error::new(
            crate::error::Kind::NotFound,
            "",
            "no such endpoint: /x",
        ));
        assert_eq!(r.status, 404);
        assert_eq!(
            r.body,
            "{\"error\":\"no such endpoint: /x\",\"field\":null}\n"
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("Cache-Control"), Some("no-store"));
    }
}

//! HTTP/1.1 for the cosocket client in `lua/resty/warden/http.lua`
//! (iprepd lookups and reports): URLs, request heads, responses.
//!
//! [`Url`] reads `http://` and `https://` URLs as iprepd-nginx (through
//! lua-resty-http) does; [`request_head`] writes a request's head. The
//! status line and headers of a response are parsed by the `httparse`
//! crate; this module adds what a client needs on top: the body's framing
//! (`Content-Length`, chunked, or until close), whether the connection
//! may be kept alive, and chunked decoding. Everything is incremental:
//! given the bytes received so far, each function says "need more",
//! "done", or "malformed" — never panics, whatever the input.
//!
//! Also the one home of what the pages warden serves itself (the
//! dashboard, the challenge) put in their Content-Security-Policy: the
//! hashes of their inline elements ([`inline_hashes`]).

use std::fmt;

/// The text of every `<tag>...</tag>` element of `page` (the tag written
/// without attributes: `<script type="text/plain">` is not one).
pub fn inline<'a>(page: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = page;
    while let Some(i) = rest.find(&open) {
        let body = &rest[i + open.len()..];
        let Some(j) = body.find(&close) else { break };
        out.push(&body[..j]);
        rest = &body[j + close.len()..];
    }
    out
}

/// SHA-256 of `text`, base64 (as CSP and ETags write it).
pub fn sha256_b64(text: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(text.as_bytes()))
}

/// ` 'sha256-...'` for each inline `<tag>` element of `page`, for a
/// Content-Security-Policy's `script-src` or `style-src`.
pub fn inline_hashes(page: &str, tag: &str) -> String {
    inline(page, tag)
        .iter()
        .map(|s| format!(" 'sha256-{}'", sha256_b64(s)))
        .collect()
}

/// Largest response head accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most headers accepted.
pub const MAX_HEADERS: usize = 64;

/// A response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// Bytes of the head, blank line included: the body starts here.
    pub len: usize,
    /// How the body ends.
    pub body: Framing,
    /// The connection may be reused.
    pub keep_alive: bool,
    /// Headers, names in lower case, values as sent (lossy UTF-8).
    pub headers: Vec<(String, String)>,
}

/// How a response body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// After this many bytes.
    Length(usize),
    /// At the last chunk.
    Chunked,
    /// When the server closes the connection.
    Close,
}

/// A malformed response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpError(String);

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}

fn err(m: impl Into<String>) -> HttpError {
    HttpError(m.into())
}

/// An `http://` or `https://` URL: where to connect, and the path the
/// requests' paths are appended to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// `https://`: the connection is TLS, verified against `host`.
    pub tls: bool,
    /// The host as written (a name or an IPv4 address).
    pub host: String,
    /// The port (80 or 443 when not written).
    pub port: u16,
    /// The path before the requests' own paths, without one trailing `/`
    /// (`""` for `http://host/`).
    pub prefix: String,
}

impl Url {
    /// Parses `scheme://host[:port][/path]` with scheme `http` or `https`,
    /// the grammar lua-resty-http reads for iprepd-nginx: the host is
    /// anything up to `:`, `/` or `?` (so no IPv6 literal). A query, a
    /// fragment or user information are refused: appended paths would
    /// land inside them. One trailing `/` of the path is dropped, as
    /// iprepd-nginx drops it from its `url`. Errors complete a sentence
    /// starting with the URL's name ("url must look like ...").
    ///
    /// ```
    /// use warden_core::net::http::Url;
    /// let u = Url::parse("https://iprepd.example:8443/api/").unwrap();
    /// assert_eq!((u.tls, u.host.as_str(), u.port, u.prefix.as_str()),
    ///            (true, "iprepd.example", 8443, "/api"));
    /// assert_eq!(u.host_header(), "iprepd.example:8443");
    /// assert_eq!(Url::parse("http://127.0.0.1").unwrap().host_header(), "127.0.0.1");
    /// assert!(Url::parse("ftp://x").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Url, String> {
        let shape = || {
            format!(
                "must look like http://host[:port][/path] or \
                 https://host[:port][/path], got '{s}'"
            )
        };
        let (tls, rest) = if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(shape());
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if path.contains(['?', '#']) {
            return Err(format!(
                "must not have a query or a fragment (the lookups' paths are \
                 appended to it), got '{s}'"
            ));
        }
        let (host, port) = match authority.split_once(':') {
            None => (authority, None),
            Some((h, p)) => (h, Some(p)),
        };
        let bad_host =
            |c: char| c.is_ascii_whitespace() || c.is_ascii_control() || "@[]\\".contains(c);
        if host.is_empty() || host.contains(bad_host) {
            return Err(shape());
        }
        let port = match port {
            None => {
                if tls {
                    443
                } else {
                    80
                }
            }
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(format!("has a bad port: '{s}'")),
            },
        };
        let prefix = path.strip_suffix('/').unwrap_or(path).to_string();
        Ok(Url {
            tls,
            host: host.to_string(),
            port,
            prefix,
        })
    }

    /// The `Host` header: the host, with the port unless it is the
    /// scheme's default.
    pub fn host_header(&self) -> String {
        host_header(&self.host, self.port, self.tls)
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}{}", self.host, self.port, self.prefix)
    }
}

/// The `Host` header for `host` and `port`: the port is left out when it
/// is the default of the scheme (80, or 443 with TLS).
pub fn host_header(host: &str, port: u16, tls: bool) -> String {
    if port == if tls { 443 } else { 80 } {
        host.to_string()
    } else {
        format!("{host}:{port}")
    }
}

/// A request's head: the request line, `Host`, `Connection: keep-alive`,
/// `headers` in their order, `Content-Length` when there is a body, and
/// the blank line. Line breaks in names and values become spaces, so a
/// value cannot add a header.
///
/// ```
/// use warden_core::net::http::request_head;
/// assert_eq!(request_head("PUT", "/v", "h:81", &[("Authorization", "APIKey k")], Some(2)),
///     "PUT /v HTTP/1.1\r\nHost: h:81\r\nConnection: keep-alive\r\n\
///      Authorization: APIKey k\r\nContent-Length: 2\r\n\r\n");
/// ```
pub fn request_head(
    method: &str,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
    body_len: Option<usize>,
) -> String {
    fn clean(s: &str) -> std::borrow::Cow<'_, str> {
        if s.contains(['\r', '\n']) {
            s.replace(['\r', '\n'], " ").into()
        } else {
            s.into()
        }
    }
    let mut h = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: keep-alive\r\n",
        clean(method).replace(' ', ""),
        clean(target).replace(' ', "%20"),
        clean(host)
    );
    for (k, v) in headers {
        h.push_str(&clean(k));
        h.push_str(": ");
        h.push_str(&clean(v));
        h.push_str("\r\n");
    }
    if let Some(n) = body_len {
        h.push_str(&format!("Content-Length: {n}\r\n"));
    }
    h.push_str("\r\n");
    h
}

/// Parses a response head from the bytes received so far: `Ok(None)`
/// when more are needed. `head_request`: the request was HEAD (or the
/// status has no body).
///
/// ```
/// use warden_core::net::http::{parse_head, Framing};
/// let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", false).unwrap().unwrap();
/// assert_eq!((h.status, h.len, h.body, h.keep_alive), (200, 38, Framing::Length(2), true));
/// assert!(parse_head(b"HTTP/1.1 200 OK\r\n", false).unwrap().is_none());
/// assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n", false).is_err());
/// ```
pub fn parse_head(buf: &[u8], head_request: bool) -> Result<Option<Head>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut headers);
    let len = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > MAX_HEAD {
                return Err(err(format!("response head longer than {MAX_HEAD} bytes")));
            }
            return Ok(None);
        }
        Err(e) => return Err(err(format!("malformed response: {e}"))),
    };
    let status = r.code.ok_or_else(|| err("malformed response: no status"))?;
    let http10 = r.version == Some(0);
    let mut keep_alive = !http10;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut out = Vec::with_capacity(r.headers.len());
    for h in r.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        let value = String::from_utf8_lossy(h.value).trim().to_string();
        match name.as_str() {
            "content-length" => {
                let n: usize = value
                    .parse()
                    .map_err(|_| err(format!("malformed Content-Length '{value}'")))?;
                if length.is_some_and(|l| l != n) {
                    return Err(err("conflicting Content-Length headers"));
                }
                length = Some(n);
            }
            "transfer-encoding" => {
                let last = value.rsplit(',').next().unwrap_or("").trim();
                if last.eq_ignore_ascii_case("chunked") {
                    chunked = true;
                } else {
                    return Err(err(format!("unsupported Transfer-Encoding '{value}'")));
                }
            }
            "connection" => {
                for token in value.split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        keep_alive = false;
                    } else if token.eq_ignore_ascii_case("keep-alive") && http10 {
                        keep_alive = true;
                    }
                }
            }
            _ => {}
        }
        out.push((name, value));
    }
    let no_body = head_request || status / 100 == 1 || status == 204 || status == 304;
    let body = if no_body {
        Framing::Length(0)
    } else if chunked {
        // Transfer-Encoding wins over Content-Length (RFC 9112 6.3)
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        keep_alive = false;
        Framing::Close
    };
    Ok(Some(Head {
        status,
        len,
        body,
        keep_alive,
        headers: out,
    }))
}

/// Decodes a complete chunked body from the bytes received after the
/// head: `Ok(Some((body, used)))` once the last chunk and the trailers
/// are in (`used` bytes consumed), `Ok(None)` when more are needed.
/// `max` bounds the decoded size.
///
/// ```
/// use warden_core::net::http::decode_chunked;
/// let (body, used) = decode_chunked(b"2\r\nhi\r\n0\r\n\r\n", 1024).unwrap().unwrap();
/// assert_eq!((body.as_slice(), used), (&b"hi"[..], 12));
/// assert_eq!(decode_chunked(b"2\r\nh", 1024).unwrap(), None);
/// assert!(decode_chunked(b"zz\r\n", 1024).is_err());
/// ```
pub fn decode_chunked(buf: &[u8], max: usize) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let rest = &buf[at..];
        let (size, n) = match httparse::parse_chunk_size(rest) {
            Ok(httparse::Status::Complete((n, size))) => (size, n),
            Ok(httparse::Status::Partial) => {
                if rest.len() > 1024 {
                    return Err(err("chunk size line too long"));
                }
                return Ok(None);
            }
            Err(_) => return Err(err("malformed chunk size")),
        };
        at += n;
        if size == 0 {
            // trailers up to an empty line
            loop {
                let rest = &buf[at..];
                let Some(eol) = memchr::memmem::find(rest, b"\r\n") else {
                    return Ok(None);
                };
                at += eol + 2;
                if eol == 0 {
                    return Ok(Some((body, at)));
                }
            }
        }
        let size = usize::try_from(size).map_err(|_| err("chunk too large"))?;
        if body.len().saturating_add(size) > max {
            return Err(err(format!("body larger than {max} bytes")));
        }
        let Some(end) = at.checked_add(size) else {
            return Err(err("chunk too large"));
        };
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(err("chunk not followed by CRLF"));
        }
        body.extend_from_slice(&buf[at..end]);
        at = end + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn head(s: &str) -> Head {
        parse_head(s.as_bytes(), false).unwrap().unwrap()
    }

    #[test]
    fn framing_and_keepalive() {
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n");
        assert_eq!((h.body, h.keep_alive), (Framing::Chunked, true));
        let h = head("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\n");
        assert_eq!((h.body, h.keep_alive), (Framing::Length(5), false));
        let h = head("HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n");
        assert!(!h.keep_alive);
        let h = head("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 5\r\n\r\n");
        assert!(h.keep_alive);
        let h = head("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((h.body, h.keep_alive), (Framing::Close, false));
        let h = head("HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!((h.body, h.keep_alive), (Framing::Length(0), true));
        let h = head("HTTP/1.1 404 Not Found\r\nX-A: b\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(h.headers[0], ("x-a".to_string(), "b".to_string()));
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
        ] {
            assert!(parse_head(bad.as_bytes(), false).is_err(), "{bad}");
        }
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD));
        assert!(parse_head(huge.as_bytes(), false).is_err());
    }

    #[test]
    fn urls_as_iprepd_nginx_reads_them() {
        let u = Url::parse("http://localhost:8080").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.prefix.as_str()),
            (false, "localhost", 8080, "")
        );
        assert_eq!(u.host_header(), "localhost:8080");
        assert_eq!(u.to_string(), "http://localhost:8080");
        let u = Url::parse("https://iprepd.example/").unwrap();
        assert_eq!(
            (u.port, u.prefix.as_str(), u.host_header().as_str()),
            (443, "", "iprepd.example")
        );
        // one trailing slash is dropped, as iprepd-nginx drops it
        assert_eq!(Url::parse("http://h//").unwrap().prefix, "/");
        assert_eq!(Url::parse("http://h:81/a/b/").unwrap().prefix, "/a/b");
        assert_eq!(Url::parse("https://h:443").unwrap().host_header(), "h");
        assert_eq!(Url::parse("http://h:443").unwrap().host_header(), "h:443");
        for bad in [
            "ftp://x",
            "http://",
            "http:///x",
            "HTTP://h",
            "//h",
            "http://u@h",
            "http://[::1]:80",
        ] {
            assert!(
                Url::parse(bad).unwrap_err().starts_with("must look like"),
                "{bad}"
            );
        }
        for bad in [
            "http://h:0",
            "http://h:99999",
            "http://h:",
            "http://h:+8",
            "http://h:8a",
        ] {
            assert_eq!(
                Url::parse(bad).unwrap_err(),
                format!("has a bad port: '{bad}'")
            );
        }
        assert!(Url::parse("http://h/x?y=1").unwrap_err().contains("query"));
        assert!(Url::parse("http://h#f").unwrap_err().contains("query"));
    }

    #[test]
    fn request_heads_cannot_be_split() {
        let h = request_head(
            "GET",
            "/type/ip/1.2.3.4",
            "h",
            &[("X", "a\r\nEvil: 1")],
            None,
        );
        assert_eq!(h, "GET /type/ip/1.2.3.4 HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nX: a  Evil: 1\r\n\r\n");
        let h = request_head("GE T", "/a b\n", "h", &[], Some(0));
        assert!(
            h.starts_with("GET /a%20b%20 HTTP/1.1\r\n") && h.ends_with("Content-Length: 0\r\n\r\n"),
            "{h}"
        );
    }

    proptest! {
        /// URLs never panic; what parses prints back to a URL that parses
        /// the same.
        #[test]
        fn urls_round_trip(s in "(https?://)?[a-z0-9.:/?#@\\[\\]-]{0,30}") {
            if let Ok(u) = Url::parse(&s) {
                prop_assert_eq!(Url::parse(&u.to_string()).map(|v| (v.tls, v.host, v.port)),
                                Ok((u.tls, u.host, u.port)));
            }
        }

        /// Any body, cut into any chunks, decodes back; every prefix of the
        /// encoding asks for more instead of failing.
        #[test]
        fn chunked_round_trip(body in proptest::collection::vec(any::<u8>(), 0..300),
                              cuts in proptest::collection::vec(1usize..50, 0..10)) {
            let mut enc = Vec::new();
            let mut at = 0usize;
            for c in cuts.iter().chain(std::iter::once(&usize::MAX)) {
                let end = at.saturating_add(*c).min(body.len());
                if end > at {
                    enc.extend_from_slice(format!("{:x}\r\n", end - at).as_bytes());
                    enc.extend_from_slice(&body[at..end]);
                    enc.extend_from_slice(b"\r\n");
                }
                at = end;
            }
            enc.extend_from_slice(b"0\r\nX-Trailer: 1\r\n\r\n");
            let (got, used) = decode_chunked(&enc, 1 << 20).unwrap().unwrap();
            prop_assert_eq!(got, body);
            prop_assert_eq!(used, enc.len());
            for cut in 0..enc.len() {
                prop_assert_eq!(decode_chunked(&enc[..cut], 1 << 20).unwrap(), None);
            }
        }

        /// Garbage never panics.
        #[test]
        fn garbage_is_an_error_or_partial(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_head(&bytes, false);
            let _ = decode_chunked(&bytes, 1 << 20);
        }
    }
}

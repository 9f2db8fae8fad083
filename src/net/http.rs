//! HTTP/1.x responses, for the cosocket client in
//! `lua/resty/warden/http.lua` (iprepd lookups and reports).
//!
//! The status line and headers are parsed by the `httparse` crate; this
//! module adds what a client needs on top: the body's framing
//! (`Content-Length`, chunked, or until close), whether the connection
//! may be kept alive, and chunked decoding. Everything is incremental:
//! given the bytes received so far, each function says "need more",
//! "done", or "malformed" — never panics, whatever the input.

use std::fmt;

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

    proptest! {
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

//! Redis's protocol (RESP2), for the fleet agent's cosockets
//! (`lua/resty/warden/fleet.lua`): commands encoded ([`command`]) and
//! replies parsed from the bytes received so far ([`Wire`]), as
//! [`crate::net::http`] does for HTTP. Parsing is incremental (a reply
//! split across reads is "need more", never an error) and never panics,
//! whatever the input.

use std::fmt;

/// Deepest nesting of arrays accepted (the fleet's replies nest twice).
pub const MAX_DEPTH: usize = 8;
/// Longest bulk string accepted (Redis's own limit, `proto-max-bulk-len`).
pub const MAX_BULK: usize = 512 * 1024 * 1024;
/// Most elements in one array.
pub const MAX_ARRAY: usize = 16 * 1024 * 1024;

/// One reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Status(String),
    /// `-ERR ...`: the message without the `-`.
    Error(String),
    /// `:1`.
    Int(i64),
    /// `$3 abc`; None: the null bulk string (`$-1`).
    Bulk(Option<Vec<u8>>),
    /// `*2 ...`; None: the null array (`*-1`).
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// A bulk or status reply as text (lossy UTF-8).
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Reply::Status(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// The elements of an array reply.
    pub fn items(&self) -> Option<&[Reply]> {
        match self {
            Reply::Array(Some(a)) => Some(a),
            _ => None,
        }
    }
}

/// A malformed reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RespError(String);

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RespError {}

fn err(m: impl Into<String>) -> RespError {
    RespError(m.into())
}

/// Appends one command (an array of bulk strings) to `out`: commands
/// appended one after the other make a pipeline.
///
/// ```
/// let mut out = Vec::new();
/// warden_core::net::resp::command(&mut out, &["GET", "k"]);
/// assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
/// ```
pub fn command<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Parses one reply from the start of `buf`: `Ok(Some((reply, used)))`,
/// or `Ok(None)` when more bytes are needed.
///
/// ```
/// use warden_core::net::resp::{parse, Reply};
/// assert_eq!(parse(b":42\r\n+OK").unwrap(), Some((Reply::Int(42), 5)));
/// assert_eq!(parse(b"$5\r\nhel").unwrap(), None);
/// assert!(parse(b"HTTP/1.1 200 OK\r\n").is_err());
/// ```
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, RespError> {
    let mut at = 0;
    Ok(value(buf, &mut at, 0)?.map(|r| (r, at)))
}

/// The line starting at `*at` (without its CRLF), `*at` moved past it.
fn line<'b>(buf: &'b [u8], at: &mut usize) -> Result<Option<&'b [u8]>, RespError> {
    let rest = &buf[*at..];
    match memchr::memchr(b'\n', rest) {
        Some(n) if n > 0 && rest[n - 1] == b'\r' => {
            *at += n + 1;
            Ok(Some(&rest[..n - 1]))
        }
        Some(_) => Err(err("malformed reply from redis: a line without CR")),
        None if rest.len() > 64 * 1024 => Err(err("malformed reply from redis: line too long")),
        None => Ok(None),
    }
}

fn number(l: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(l)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            err(format!(
                "malformed reply from redis: '{}' is not a number",
                String::from_utf8_lossy(l)
            ))
        })
}

/// A length: -1 (null), or 0..=max.
fn length(l: &[u8], max: usize) -> Result<Option<usize>, RespError> {
    match number(l)? {
        -1 => Ok(None),
        n if n >= 0 && (n as u64) <= max as u64 => Ok(Some(n as usize)),
        n => Err(err(format!("malformed reply from redis: bad length {n}"))),
    }
}

fn value(buf: &[u8], at: &mut usize, depth: usize) -> Result<Option<Reply>, RespError> {
    let start = *at;
    let Some(l) = line(buf, at)? else {
        return Ok(None);
    };
    let Some((&kind, rest)) = l.split_first() else {
        return Err(err("malformed reply from redis: an empty line"));
    };
    let text = || String::from_utf8_lossy(rest).into_owned();
    let reply = match kind {
        b'+' => Reply::Status(text()),
        b'-' => Reply::Error(text()),
        b':' => Reply::Int(number(rest)?),
        b'$' => match length(rest, MAX_BULK)? {
            None => Reply::Bulk(None),
            Some(n) => {
                let end = *at + n;
                if buf.len() < end + 2 {
                    *at = start;
                    return Ok(None);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err(err(
                        "malformed reply from redis: a bulk string without CRLF",
                    ));
                }
                let b = buf[*at..end].to_vec();
                *at = end + 2;
                Reply::Bulk(Some(b))
            }
        },
        b'*' => match length(rest, MAX_ARRAY)? {
            None => Reply::Array(None),
            Some(n) => {
                if depth >= MAX_DEPTH {
                    return Err(err("malformed reply from redis: arrays nested too deep"));
                }
                // each element takes at least 3 bytes: no allocation
                // larger than what was received
                let mut items = Vec::with_capacity(n.min((buf.len() - *at) / 3));
                for _ in 0..n {
                    match value(buf, at, depth + 1)? {
                        Some(v) => items.push(v),
                        None => {
                            *at = start;
                            return Ok(None);
                        }
                    }
                }
                Reply::Array(Some(items))
            }
        },
        other => {
            return Err(err(format!(
                "malformed reply from redis: unexpected byte 0x{other:02x}"
            )))
        }
    };
    Ok(Some(reply))
}

/// One connection's received bytes: complete replies are taken from the
/// front ([`Wire::take`]), the rest waits for more.
#[derive(Debug, Default)]
pub struct Wire {
    buf: Vec<u8>,
    at: usize,
}

impl Wire {
    /// Adds bytes received.
    pub fn feed(&mut self, data: &[u8]) {
        if self.at > 0 && self.at == self.buf.len() {
            self.buf.clear();
            self.at = 0;
        } else if self.at > 64 * 1024 && self.at * 2 > self.buf.len() {
            self.buf.drain(..self.at);
            self.at = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete reply, if any.
    pub fn take(&mut self) -> Result<Option<Reply>, RespError> {
        match parse(&self.buf[self.at..])? {
            Some((r, used)) => {
                self.at += used;
                Ok(Some(r))
            }
            None => Ok(None),
        }
    }

    /// Forgets everything (a new connection).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.at = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(r: &Reply, out: &mut Vec<u8>) {
        match r {
            Reply::Status(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
            Reply::Error(s) => out.extend_from_slice(format!("-{s}\r\n").as_bytes()),
            Reply::Int(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            Reply::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
            Reply::Bulk(Some(b)) => {
                out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Array(None) => out.extend_from_slice(b"*-1\r\n"),
            Reply::Array(Some(a)) => {
                out.extend_from_slice(format!("*{}\r\n", a.len()).as_bytes());
                for r in a {
                    encode(r, out);
                }
            }
        }
    }

    fn reply() -> impl Strategy<Value = Reply> {
        let line = "[a-zA-Z0-9 _.:-]{0,20}";
        let leaf = prop_oneof![
            line.prop_map(Reply::Status),
            line.prop_map(Reply::Error),
            any::<i64>().prop_map(Reply::Int),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40))
                .prop_map(Reply::Bulk),
        ];
        leaf.prop_recursive(3, 40, 8, |inner| {
            proptest::option::of(proptest::collection::vec(inner, 0..8)).prop_map(Reply::Array)
        })
    }

    #[test]
    fn replies_as_redis_sends_them() {
        let hscan = b"*2\r\n$1\r\n0\r\n*4\r\n$9\r\n192.0.2.1\r\n$10\r\n0|manual|x\r\n\
                      $4\r\nnope\r\n$0\r\n\r\n";
        let (r, used) = parse(hscan).unwrap().unwrap();
        assert_eq!(used, hscan.len());
        let items = r.items().unwrap();
        assert_eq!(items[0].text().as_deref(), Some("0"));
        assert_eq!(items[1].items().unwrap()[3], Reply::Bulk(Some(Vec::new())));
        assert_eq!(
            parse(b"-WRONGPASS invalid username-password pair\r\n").unwrap(),
            Some((
                Reply::Error("WRONGPASS invalid username-password pair".into()),
                43
            ))
        );
        assert_eq!(
            parse(b"$-1\r\n*-1\r\n").unwrap(),
            Some((Reply::Bulk(None), 5))
        );
        for bad in [
            &b"?\r\n"[..],
            b"\r\n",
            b":x\r\n",
            b"$-2\r\n",
            b"$3\r\nabcd\r\n",
            b"*1\n",
            b"$99999999999\r\n",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1) + ":1\r\n";
        assert!(parse(deep.as_bytes()).is_err());
        // a huge announced array allocates nothing before its elements come
        assert_eq!(parse(b"*16777216\r\n").unwrap(), None);
    }

    #[test]
    fn a_wire_hands_out_replies_as_they_complete() {
        let mut w = Wire::default();
        w.feed(b"+OK\r\n:1");
        assert_eq!(w.take().unwrap(), Some(Reply::Status("OK".into())));
        assert_eq!(w.take().unwrap(), None);
        w.feed(b"\r\n");
        assert_eq!(w.take().unwrap(), Some(Reply::Int(1)));
        assert_eq!(w.take().unwrap(), None);
        w.feed(b"?\r\n");
        assert!(w.take().is_err());
        w.clear();
        assert_eq!(w.take().unwrap(), None);
    }

    proptest! {
        /// Any replies, encoded and received in any pieces, come out the
        /// same, in order; a cut inside a reply asks for more.
        #[test]
        fn replies_round_trip(replies in proptest::collection::vec(reply(), 1..5),
                              cuts in proptest::collection::vec(1usize..30, 0..20)) {
            let mut enc = Vec::new();
            for r in &replies {
                encode(r, &mut enc);
            }
            let mut w = Wire::default();
            let mut got = Vec::new();
            let mut at = 0usize;
            for c in cuts.iter().chain(std::iter::once(&usize::MAX)) {
                let end = at.saturating_add(*c).min(enc.len());
                w.feed(&enc[at..end]);
                at = end;
                while let Some(r) = w.take().unwrap() {
                    got.push(r);
                }
            }
            prop_assert_eq!(&got, &replies);
            let mut one = Vec::new();
            encode(&replies[0], &mut one);
            for cut in 0..one.len() {
                prop_assert_eq!(parse(&one[..cut]).unwrap(), None);
            }
        }

        /// A command is an array of bulk strings, as the parser reads it.
        #[test]
        fn commands_parse_back(args in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..30), 1..6)) {
            let mut out = Vec::new();
            command(&mut out, &args);
            let want = Reply::Array(Some(args.into_iter().map(|a| Reply::Bulk(Some(a))).collect()));
            prop_assert_eq!(parse(&out).unwrap(), Some((want, out.len())));
        }

        /// Garbage never panics.
        #[test]
        fn garbage_is_an_error_or_partial(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
        }
    }
}

//! Challenge instead of ban: a proof of work a browser solves by itself.
//!
//! A client whose block record says `challenge` ([`crate::blocks::Action`])
//! is let through when it carries a valid cookie ([`COOKIE`]); otherwise a
//! page ([`page.html`](page.html)) makes it find a nonce such that
//! SHA-256(token ‖ nonce) starts with `difficulty` zero bits, posts it to
//! [`options::Options::path`], and gets the cookie. What this module owns,
//! every format written once:
//!
//! - the client a token or cookie is bound to: its IPv4 address, or its
//!   IPv6 network as the detector groups it ([`crate::detect::counters::Key`]);
//! - a token `<issued_s>.<difficulty>.<mac>`: issued with the page, so no
//!   state is kept until it is solved; it may be answered for `page_ttl`;
//! - a cookie `<expires_s>.<difficulty>.<mac>`: verified per request with
//!   no allocation ([`Challenge::cookie_ok`]);
//! - the answer (`token`, `nonce`, `back`), as a form or JSON
//!   ([`Answer::parse`]), and the return path, local only ([`back_path`]);
//! - the replay key of a solved token ([`Challenge::replay_key`]);
//! - which clients are verified crawlers, never challenged ([`crawlers`]).
//!
//! A MAC is HMAC-SHA256 ([`mac`]) with a key derived per format, cut to
//! 128 bits, base64url; compared in constant time.

pub mod crawlers;
pub mod mac;
pub mod options;

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::detect::counters::Key as ClientKey;
use crate::net::addr::{Addr, Net};
use crate::path::glob::GlobSet;

pub use options::Options;

/// The cookie's name (nginx reads it as `$cookie_warden_pass`).
pub const COOKIE: &str = "warden_pass";

/// Bytes of a MAC kept (128 bits).
const MAC_LEN: usize = 16;
/// Characters of a MAC in base64url.
const MAC_TEXT: usize = 22;
/// Longest token or cookie accepted.
const MAX_TEXT: usize = 64;
/// Longest nonce (decimal digits).
const MAX_NONCE: usize = 20;
/// Longest return path.
const MAX_BACK: usize = 2048;
/// Largest answer body read.
pub const MAX_BODY: usize = 4096;

/// The page, with `{{...}}` slots (see [`Challenge::page`]).
pub const PAGE: &str = include_str!("page.html");

/// Why a token, cookie or answer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not in the format.
    Malformed,
    /// Its MAC is wrong: forged, or made for another client.
    Forged,
    /// Too old (or from the future).
    Expired,
    /// The nonce does not give enough zero bits.
    WrongAnswer,
    /// This token was solved already.
    Replayed,
}

impl Refusal {
    /// The name in events and log lines.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::Forged => "forged or another client's",
            Refusal::Expired => "expired",
            Refusal::WrongAnswer => "wrong answer",
            Refusal::Replayed => "replayed",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A token that verified: when it was issued and its difficulty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Issued {
    /// Seconds since the epoch.
    pub issued_s: u64,
    /// Leading zero bits asked for.
    pub difficulty: u8,
}

/// An answer as the page posts it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// The token of the page.
    pub token: String,
    /// The nonce found (decimal).
    pub nonce: String,
    /// Where to go back to (checked by [`back_path`]).
    pub back: String,
}

/// The compiled options: derived keys and globs.
pub struct Challenge {
    token_key: mac::Key,
    cookie_key: mac::Key,
    exempt: GlobSet,
    v6_prefix: u8,
    /// The options.
    pub opts: Options,
}

impl fmt::Debug for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Challenge")
            .field("opts", &self.opts)
            .finish()
    }
}

/// The bytes a MAC binds a client to: family, then the address (IPv6 cut
/// to the detector's prefix).
#[inline]
fn client_bytes(a: Addr, v6_prefix: u8) -> [u8; 17] {
    let k = ClientKey::of(a, v6_prefix);
    let mut out = [0u8; 17];
    out[0] = if k.v6 { 6 } else { 4 };
    out[1..].copy_from_slice(&k.bits.to_be_bytes());
    out
}

/// Parses a decimal number of at most 19 digits, without allocating.
#[inline]
fn digits(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    b.iter().try_fold(0u64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0'))
    })
}

/// Splits `<number>.<difficulty>.<mac>`.
#[inline]
fn fields(b: &[u8]) -> Option<(u64, u8, &[u8])> {
    if b.len() > MAX_TEXT {
        return None;
    }
    let mut it = b.splitn(3, |&c| c == b'.');
    let n = digits(it.next()?)?;
    let d = digits(it.next()?)?;
    let m = it.next()?;
    (d <= u64::from(options::MAX_DIFFICULTY) && m.len() == MAC_TEXT).then_some((n, d as u8, m))
}

/// Leading zero bits of `h`.
#[inline]
pub fn zero_bits(h: &[u8]) -> u32 {
    let mut n = 0;
    for &b in h {
        if b == 0 {
            n += 8;
        } else {
            return n + b.leading_zeros();
        }
    }
    n
}

/// True when SHA-256(`token` ‖ `nonce`) starts with `difficulty` zero
/// bits (the nonce: 1 to 20 decimal digits).
///
/// ```
/// use warden_core::challenge::pow_ok;
/// assert!(pow_ok(b"any", b"0", 0));
/// let n = (0..).find(|n: &u32| pow_ok(b"tok", n.to_string().as_bytes(), 8)).unwrap();
/// assert!(pow_ok(b"tok", n.to_string().as_bytes(), 8));
/// assert!(!pow_ok(b"tok", b"x1", 0));
/// ```
pub fn pow_ok(token: &[u8], nonce: &[u8], difficulty: u8) -> bool {
    if nonce.is_empty() || nonce.len() > MAX_NONCE || !nonce.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut h = Sha256::new();
    h.update(token);
    h.update(nonce);
    zero_bits(&h.finalize()) >= u32::from(difficulty)
}

/// The return path of an answer: a local path (`/...`, never `//` or
/// `/\`, which browsers take for another host), printable ASCII, not the
/// answer path itself; `/` otherwise. No open redirect.
///
/// ```
/// use warden_core::challenge::back_path;
/// assert_eq!(back_path("/a/b?c=d", "/.warden/challenge"), "/a/b?c=d");
/// for bad in ["https://evil.example/", "//evil.example", "/\\evil", "", "/.warden/challenge?x",
///             "/a\nb", "javascript:alert(1)"] {
///     assert_eq!(back_path(bad, "/.warden/challenge"), "/");
/// }
/// ```
pub fn back_path<'a>(back: &'a str, answer_path: &str) -> &'a str {
    let b = back.as_bytes();
    let local = b.first() == Some(&b'/')
        && !matches!(b.get(1), Some(b'/' | b'\\'))
        && b.len() <= MAX_BACK
        && b.iter().all(|c| c.is_ascii_graphic());
    let path = back.split(['?', '#']).next().unwrap_or("");
    if local && path != answer_path {
        back
    } else {
        "/"
    }
}

/// Percent-decodes a form value (`+` is a space); None when not UTF-8.
fn form_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b'%' => return None,
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

impl Answer {
    /// Parses an answer: a form (`token=..&nonce=..&back=..`) or a JSON
    /// object with those fields. At most [`MAX_BODY`] bytes; unknown
    /// fields are ignored.
    ///
    /// ```
    /// use warden_core::challenge::Answer;
    /// let a = Answer::parse(b"token=1.16.abc&nonce=42&back=%2Fa%3Fb%3D1").unwrap();
    /// assert_eq!((a.token.as_str(), a.nonce.as_str(), a.back.as_str()), ("1.16.abc", "42", "/a?b=1"));
    /// let j = Answer::parse(br#"{"token":"1.16.abc","nonce":"42","back":"/"}"#).unwrap();
    /// assert_eq!(j.nonce, "42");
    /// assert!(Answer::parse(b"nonce=1").is_err());
    /// ```
    pub fn parse(body: &[u8]) -> Result<Answer, Refusal> {
        if body.len() > MAX_BODY {
            return Err(Refusal::Malformed);
        }
        let text = std::str::from_utf8(body).map_err(|_| Refusal::Malformed)?;
        let mut a = Answer::default();
        if text.trim_start().starts_with('{') {
            let v: serde_json::Value =
                serde_json::from_str(text).map_err(|_| Refusal::Malformed)?;
            let field = |k: &str| -> Result<String, Refusal> {
                match v.get(k) {
                    None | Some(serde_json::Value::Null) => Ok(String::new()),
                    Some(serde_json::Value::String(s)) => Ok(s.clone()),
                    Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
                    Some(_) => Err(Refusal::Malformed),
                }
            };
            a.token = field("token")?;
            a.nonce = field("nonce")?;
            a.back = field("back")?;
        } else {
            for pair in text.split('&') {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let slot = match k {
                    "token" => &mut a.token,
                    "nonce" => &mut a.nonce,
                    "back" => &mut a.back,
                    _ => continue,
                };
                *slot = form_decode(v).ok_or(Refusal::Malformed)?;
            }
        }
        if a.token.is_empty() || a.nonce.is_empty() {
            return Err(Refusal::Malformed);
        }
        Ok(a)
    }
}

/// What a request of a challenged client gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The answer path: verify the posted answer.
    Answer,
    /// A page: the challenge page.
    Page,
    /// Anything that cannot run the page: 429 with `Retry-After`.
    TooMany,
}

impl Challenge {
    /// Compiles validated options; `v6_prefix`: the detector's IPv6
    /// grouping.
    ///
    /// ```
    /// use warden_core::challenge::{Challenge, Options};
    /// use warden_core::net::addr::Addr;
    /// let o = Options::from_value(&serde_json::json!({"secret": "0123456789abcdef"})).unwrap();
    /// let c = Challenge::new(o, 64);
    /// let a = Addr::parse("192.0.2.7").unwrap();
    /// let cookie = c.cookie(a, 1_000);
    /// assert!(c.cookie_ok(a, cookie.as_bytes(), 1_000));
    /// assert!(!c.cookie_ok(Addr::parse("192.0.2.8").unwrap(), cookie.as_bytes(), 1_000));
    /// ```
    pub fn new(opts: Options, v6_prefix: u8) -> Challenge {
        let root = mac::Key::new(opts.secret.0.as_bytes());
        Challenge {
            token_key: root.derive(b"warden challenge token v1"),
            cookie_key: root.derive(b"warden challenge cookie v1"),
            // validated with the options
            exempt: GlobSet::new(&opts.exempt_paths, false).unwrap_or_default(),
            v6_prefix,
            opts,
        }
    }

    /// The network a client is challenged, counted and escalated as.
    pub fn target(&self, a: Addr) -> Net {
        ClientKey::of(a, self.v6_prefix).net(self.v6_prefix)
    }

    #[inline]
    fn mac(&self, key: &mac::Key, a: Addr, n: u64, d: u8) -> [u8; MAC_TEXT] {
        let m = key.mac(&[&client_bytes(a, self.v6_prefix), &n.to_be_bytes(), &[d]]);
        let mut out = [0u8; MAC_TEXT];
        // 16 bytes are 22 characters: the buffer fits
        let _ = URL_SAFE_NO_PAD.encode_slice(&m[..MAC_LEN], &mut out);
        out
    }

    fn text(&self, key: &mac::Key, a: Addr, n: u64, d: u8) -> String {
        let m = self.mac(key, a, n, d);
        format!("{n}.{d}.{}", std::str::from_utf8(&m).unwrap_or(""))
    }

    /// A token for client `a`, issued at `now_s`.
    pub fn token(&self, a: Addr, now_s: u64) -> String {
        self.text(&self.token_key, a, now_s, self.opts.difficulty)
    }

    /// Verifies token `t` of client `a` at `now_s`: its MAC, and that it
    /// was issued at most `page_ttl` ago.
    pub fn verify_token(&self, a: Addr, t: &[u8], now_s: u64) -> Result<Issued, Refusal> {
        let (issued_s, difficulty, m) = fields(t).ok_or(Refusal::Malformed)?;
        if !mac::ct_eq(&self.mac(&self.token_key, a, issued_s, difficulty), m) {
            return Err(Refusal::Forged);
        }
        let page_s = self.opts.page_ttl_ms / 1000;
        if issued_s > now_s + 5 || issued_s + page_s < now_s {
            return Err(Refusal::Expired);
        }
        Ok(Issued {
            issued_s,
            difficulty,
        })
    }

    /// The cookie of client `a`, solved at `now_s` (valid for `ttl`).
    pub fn cookie(&self, a: Addr, now_s: u64) -> String {
        let expires = now_s + self.opts.ttl_ms / 1000;
        self.text(&self.cookie_key, a, expires, self.opts.difficulty)
    }

    /// True when `c` is a valid cookie of client `a` at `now_s`: its MAC,
    /// not expired, a difficulty at least today's. Allocates nothing.
    #[inline]
    pub fn cookie_ok(&self, a: Addr, c: &[u8], now_s: u64) -> bool {
        let Some((expires_s, d, m)) = fields(c) else {
            return false;
        };
        expires_s > now_s
            && expires_s <= now_s + self.opts.ttl_ms / 1000 + 60
            && d >= self.opts.difficulty
            && mac::ct_eq(&self.mac(&self.cookie_key, a, expires_s, d), m)
    }

    /// The dict key that records a solved token (added once: a second
    /// answer with it is a replay).
    pub fn replay_key(token: &str) -> String {
        format!("a|{}", token.rsplit('.').next().unwrap_or(""))
    }

    /// The dict key counting a client's unsolved challenges.
    pub fn unsolved_key(target: &Net) -> String {
        format!("u|{target}")
    }

    /// What a challenged request gets: the answer (a `POST` to the answer
    /// path), the page (a `GET` or `HEAD` that accepts `text/html`, off the
    /// exempt paths), or a 429.
    pub fn kind(&self, method: &str, path: &[u8], accept: &str) -> Kind {
        if method == "POST" && path == self.opts.path.as_bytes() {
            return Kind::Answer;
        }
        let page = matches!(method, "GET" | "HEAD")
            && accept.to_ascii_lowercase().contains("text/html")
            && !self.exempt.matches(path);
        if page {
            Kind::Page
        } else {
            Kind::TooMany
        }
    }

    /// The page for `token`, going back to `back` (escaped here).
    pub fn page(&self, token: &str, back: &str) -> String {
        PAGE.replace("{{TOKEN}}", &html_escape(token))
            .replace("{{DIFFICULTY}}", &self.opts.difficulty.to_string())
            .replace("{{ACTION}}", &html_escape(&self.opts.path))
            .replace("{{BACK}}", &html_escape(back))
    }
}

/// Escapes text for an HTML attribute or text.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The Content-Security-Policy of the page: its inline script and style
/// by hash, its worker from a `blob:` URL, its form posted to itself.
pub fn csp() -> &'static str {
    static CSP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CSP.get_or_init(|| {
        format!(
            "default-src 'none'; script-src{}; style-src{}; worker-src blob:; \
             connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
            crate::net::http::inline_hashes(PAGE, "script"),
            crate::net::http::inline_hashes(PAGE, "style"),
        )
    })
}

#[cfg(test)]
mod tests;

//! Credentials of protected routes: basic and bearer, plain or hashed.
//!
//! A secret is plain text or an htpasswd hash: bcrypt (`$2y$`, `$2a$`,
//! `$2b$`), `{SHA}` (base64 of SHA-1), `$apr1$` (Apache MD5-crypt) and `$1$`
//! (MD5-crypt). Other crypt hashes (`$5$`, `$6$`, `$argon2id$`...) are
//! refused at set-up rather than taken for plain passwords.
//!
//! Timing: plain secrets are kept as their SHA-256 and every digest is
//! compared in constant time (`ct_eq`), so neither content nor length
//! leaks. For Basic, an unknown user is checked against the first entry's
//! secret (the result is thrown away), so it costs what a known user of that
//! kind costs: in an htpasswd file whose hashes share one kind and cost, as
//! they usually do, timing does not tell users apart. Bearer tokens are checked against every
//! entry, without stopping at a match.
//!
//! bcrypt is slow on purpose (tens to hundreds of milliseconds), so when any
//! entry is bcrypt the outcomes are remembered, keyed by the SHA-256 of the
//! credentials in the header: a client repeating its header (every browser
//! does) pays once. The cache holds 256 outcomes and is emptied when full.
//! It does not bound the work of an attacker sending distinct headers:
//! that is the rate limiter's job. bcrypt reads only the first 72 bytes of a
//! password or token, like every bcrypt implementation.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// How many verified outcomes one [`Credentials`] remembers.
const CACHE_MAX: usize = 256;

/// Standard base64, with or without padding.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

const CRYPT64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// An authentication scheme of the `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Basic,
    Bearer,
}

impl Scheme {
    /// Parses "basic" or "bearer", in any case.
    pub fn parse(s: &str) -> Result<Scheme, CredentialError> {
        if s.eq_ignore_ascii_case("basic") {
            Ok(Scheme::Basic)
        } else if s.eq_ignore_ascii_case("bearer") {
            Ok(Scheme::Bearer)
        } else {
            let message = format!("'{}' is not 'basic' or 'bearer'", clip(s));
            Err(CredentialError {
                field: "auth_type",
                message,
            })
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Scheme::Basic => "basic",
            Scheme::Bearer => "bearer",
        }
    }

    /// The `WWW-Authenticate` challenge of a refusal in `realm`.
    pub fn challenge(&self, realm: &str) -> String {
        match self {
            Scheme::Basic => format!("Basic realm=\"{realm}\", charset=\"UTF-8\""),
            Scheme::Bearer => format!("Bearer realm=\"{realm}\""),
        }
    }
}

/// What [`Credentials::verify`] made of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted; `user` is empty for bearer.
    Ok { user: String },
    /// No header, or another scheme.
    Missing,
    /// The route's scheme, but unreadable credentials (bad base64, no ':').
    Malformed,
    /// Wrong user or secret.
    Denied,
}

/// A bad `auth_type` or `credentials` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialError {
    field: &'static str,
    message: String,
}

impl CredentialError {
    /// The option at fault: "auth_type" or "credentials".
    /// The message without the field.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn field(&self) -> &'static str {
        self.field
    }
}

impl fmt::Display for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// An error of the `credentials` option.
fn bad(message: impl Into<String>) -> CredentialError {
    let message = message.into();
    CredentialError {
        field: "credentials",
        message,
    }
}

impl std::error::Error for CredentialError {}

/// A stored secret.
enum Secret {
    /// SHA-256 of the plain secret.
    Plain([u8; 32]),
    Sha1([u8; 20]),
    Md5Crypt {
        apr1: bool,
        salt: Box<[u8]>,
        hash: [u8; 22],
    },
    Bcrypt(Box<str>),
}

impl Secret {
    fn kind(&self) -> &'static str {
        match self {
            Secret::Plain(_) => "plain",
            Secret::Sha1(_) => "sha1",
            Secret::Md5Crypt { apr1: true, .. } => "apr1",
            Secret::Md5Crypt { apr1: false, .. } => "md5crypt",
            Secret::Bcrypt(_) => "bcrypt",
        }
    }

    fn matches(&self, given: &[u8]) -> bool {
        match self {
            Secret::Plain(d) => ct_eq(&Sha256::digest(given), d),
            Secret::Sha1(d) => ct_eq(&Sha1::digest(given), d),
            Secret::Md5Crypt { apr1, salt, hash } => {
                let magic: &[u8] = if *apr1 { b"$apr1$" } else { b"$1$" };
                ct_eq(&md5_crypt(given, salt, magic), hash)
            }
            Secret::Bcrypt(h) => bcrypt::verify(given, h).unwrap_or(false),
        }
    }

    /// Reads a secret as written in an htpasswd file.
    fn parse(s: &str, user: Option<&str>) -> Result<Secret, CredentialError> {
        let who = user.map_or("a bearer token".into(), |u| format!("user '{u}'"));
        // A user names the entry; a token is named by its hash's start.
        let shown = if user.is_some() {
            String::new()
        } else {
            format!(" '{}'", hash_prefix(s))
        };
        let malformed = |kind| bad(format!("{who} has a malformed {kind} hash{shown}"));
        if s.starts_with("$2a$") || s.starts_with("$2b$") || s.starts_with("$2y$") {
            if !valid_bcrypt(s) {
                return Err(malformed("bcrypt"));
            }
            return Ok(Secret::Bcrypt(s.into()));
        }
        for (magic, apr1) in [("$apr1$", true), ("$1$", false)] {
            if let Some(rest) = s.strip_prefix(magic) {
                let kind = if apr1 { "apr1" } else { "md5crypt" };
                let (salt, hash) = rest.split_once('$').ok_or_else(|| malformed(kind))?;
                let hash = <[u8; 22]>::try_from(hash.as_bytes()).ok();
                let well_formed =
                    |h: &[u8; 22]| salt.len() <= 8 && h.iter().all(|b| CRYPT64.contains(b));
                let hash = hash.filter(well_formed).ok_or_else(|| malformed(kind))?;
                let salt = salt.as_bytes().into();
                return Ok(Secret::Md5Crypt { apr1, salt, hash });
            }
        }
        if let Some(b64) = s.strip_prefix("{SHA}") {
            let digest = STANDARD.decode(b64).ok();
            let digest = digest.and_then(|d| <[u8; 20]>::try_from(d).ok());
            return digest.map(Secret::Sha1).ok_or_else(|| malformed("sha1"));
        }
        if is_crypt(s) {
            let prefix = hash_prefix(s);
            return Err(bad(format!("{who} has an unsupported hash '{prefix}'")));
        }
        Ok(Secret::Plain(Sha256::digest(s).into()))
    }
}

/// One entry of a route's credentials, as written and as parsed.
struct Entry<'a> {
    /// Empty for bearer.
    user: String,
    /// The secret as written (a plain secret whole, a hash without a
    /// trailing ":comment").
    text: &'a str,
    secret: Secret,
}

/// Reads the operator's entries (see [`Credentials::new`]).
fn parse<'a>(scheme: Scheme, entries: &[&'a str]) -> Result<Vec<Entry<'a>>, CredentialError> {
    let mut out = Vec::new();
    for line in entries.iter().flat_map(|e| e.lines()).map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if scheme == Scheme::Bearer {
            if line.bytes().any(|b| b.is_ascii_whitespace()) {
                return Err(bad("a bearer token contains whitespace"));
            }
            let secret = Secret::parse(line, None)?;
            out.push(Entry {
                user: String::new(),
                text: line,
                secret,
            });
            continue;
        }
        let (user, secret) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("'{}' is not 'user:password'", clip(line))))?;
        if user.is_empty() {
            return Err(bad("an entry has an empty user"));
        }
        if secret.is_empty() {
            return Err(bad(format!("user '{user}' has an empty password")));
        }
        let first = secret.split(':').next().unwrap_or(secret);
        let (text, secret) = match Secret::parse(first, Some(user))? {
            Secret::Plain(_) => (secret, Secret::Plain(Sha256::digest(secret).into())),
            hashed => (first, hashed),
        };
        out.push(Entry {
            user: user.to_owned(),
            text,
            secret,
        });
    }
    Ok(out)
}

/// The bcrypt cost of the hashes [`seal`] makes: about 15 ms a hash on
/// one core of a small VM, paid once per distinct `Authorization` header
/// and worker (outcomes are remembered, see the module's documentation).
pub const SEAL_COST: u32 = 8;

/// The entries as they may be stored: every plain secret replaced by its
/// bcrypt hash (comments and blank lines dropped, hashed secrets kept).
/// The admin API seals what it is given before the policy is written to
/// the shared dict and the state file, so no plain secret is kept at rest.
/// Entries are checked as [`Credentials::new`] does.
///
/// ```
/// use warden_core::policy::credentials::{seal, Credentials, Outcome, Scheme};
/// let sealed = seal(Scheme::Basic, &["alice:s3cret"]).unwrap();
/// assert!(sealed[0].starts_with("alice:$2b$") && !sealed[0].contains("s3cret"));
/// let refs: Vec<&str> = sealed.iter().map(String::as_str).collect();
/// let creds = Credentials::new(Scheme::Basic, &refs).unwrap();
/// let ok = creds.verify(Some(b"Basic YWxpY2U6czNjcmV0"));
/// assert_eq!(ok, Outcome::Ok { user: "alice".into() });
/// ```
pub fn seal(scheme: Scheme, entries: &[&str]) -> Result<Vec<String>, CredentialError> {
    Credentials::new(scheme, entries)?;
    let mut out = Vec::new();
    for e in parse(scheme, entries)? {
        let text = match e.secret {
            Secret::Plain(_) => bcrypt::hash(e.text, SEAL_COST)
                .map_err(|err| bad(format!("cannot hash a secret: {err}")))?,
            _ => e.text.to_owned(),
        };
        out.push(match scheme {
            Scheme::Basic => format!("{}:{text}", e.user),
            Scheme::Bearer => text,
        });
    }
    Ok(out)
}

/// One route's accepted credentials.
pub struct Credentials {
    scheme: Scheme,
    /// (user, secret); the user is empty for bearer. Never empty.
    entries: Vec<(String, Secret)>,
    users: HashMap<String, usize>,
    /// Whether outcomes are worth caching (some secret is bcrypt).
    slow: bool,
    /// SHA-256 of the header's credentials → outcome (Ok or Denied).
    cache: RefCell<HashMap<[u8; 32], Outcome>>,
}

impl Credentials {
    /// Builds a route's credentials from the operator's entries: for Basic,
    /// each "user:secret"; for Bearer, each token. Entries may be whole lines
    /// of an htpasswd file: lines are trimmed, blank lines and lines starting
    /// with '#' are skipped, and a hashed secret may be followed by
    /// ":comment" (a plain secret keeps its ':'s).
    ///
    /// ```
    /// use warden_core::policy::credentials::{Credentials, Outcome, Scheme};
    /// let creds = Credentials::new(Scheme::Basic, &["# admins", "alice:s3cret"]).unwrap();
    /// // base64("alice:s3cret")
    /// let ok = creds.verify(Some(b"Basic YWxpY2U6czNjcmV0"));
    /// assert_eq!(ok, Outcome::Ok { user: "alice".into() });
    /// let err = Credentials::new(Scheme::Basic, &["admin"]).unwrap_err();
    /// assert_eq!(err.field(), "credentials");
    /// assert_eq!(err.to_string(), "credentials: 'admin' is not 'user:password'");
    /// ```
    pub fn new(scheme: Scheme, entries: &[&str]) -> Result<Credentials, CredentialError> {
        let mut list: Vec<(String, Secret)> = Vec::new();
        let mut users = HashMap::new();
        for e in parse(scheme, entries)? {
            if scheme == Scheme::Basic && users.insert(e.user.clone(), list.len()).is_some() {
                return Err(bad(format!("user '{}' is listed twice", e.user)));
            }
            list.push((e.user, e.secret));
        }
        if list.is_empty() {
            return Err(bad("at least one is required"));
        }
        Ok(Credentials {
            scheme,
            slow: list.iter().any(|(_, s)| matches!(s, Secret::Bcrypt(_))),
            entries: list,
            users,
            cache: RefCell::new(HashMap::new()),
        })
    }

    /// Checks an `Authorization` header value: `Basic <base64(user:pass)>`
    /// or `Bearer <token>`; the scheme word in any case, spaces around.
    pub fn verify(&self, authorization: Option<&[u8]>) -> Outcome {
        let Some(header) = authorization else {
            return Outcome::Missing;
        };
        let header = trim(header);
        let cut = header.iter().position(|&b| b == b' ' || b == b'\t');
        let (word, rest) = header.split_at(cut.unwrap_or(header.len()));
        if !word.eq_ignore_ascii_case(self.scheme.as_str().as_bytes()) {
            return Outcome::Missing;
        }
        let token = trim(rest);
        if token.is_empty() || token.iter().any(u8::is_ascii_whitespace) {
            return Outcome::Malformed;
        }
        if !self.slow {
            return self.check(token);
        }
        let key: [u8; 32] = Sha256::digest(token).into();
        if let Some(hit) = self
            .cache
            .try_borrow()
            .ok()
            .and_then(|c| c.get(&key).cloned())
        {
            return hit;
        }
        let outcome = self.check(token);
        if matches!(outcome, Outcome::Ok { .. } | Outcome::Denied) {
            if let Ok(mut cache) = self.cache.try_borrow_mut() {
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
                cache.insert(key, outcome.clone());
            }
        }
        outcome
    }

    fn check(&self, token: &[u8]) -> Outcome {
        if self.scheme == Scheme::Bearer {
            let mut ok = false;
            for (_, secret) in &self.entries {
                ok |= secret.matches(token);
            }
            return match std::hint::black_box(ok) {
                true => Outcome::Ok {
                    user: String::new(),
                },
                false => Outcome::Denied,
            };
        }
        let Ok(decoded) = LENIENT.decode(token) else {
            return Outcome::Malformed;
        };
        let Some((user, pass)) = decoded
            .iter()
            .position(|&b| b == b':')
            .map(|i| (&decoded[..i], &decoded[i + 1..]))
        else {
            return Outcome::Malformed;
        };
        let known = std::str::from_utf8(user)
            .ok()
            .and_then(|u| self.users.get(u));
        match known.and_then(|&i| self.entries.get(i)) {
            Some((name, secret)) if secret.matches(pass) => Outcome::Ok { user: name.clone() },
            Some(_) => Outcome::Denied,
            None => {
                // Unknown user: spend what a known one costs, then deny.
                if let Some((_, dummy)) = self.entries.first() {
                    std::hint::black_box(dummy.matches(pass));
                }
                Outcome::Denied
            }
        }
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The entries with their secrets redacted: `user:<bcrypt>`,
    /// `user:<plain>`... for Basic, `<bcrypt token>`... for Bearer.
    pub fn describe(&self) -> Vec<String> {
        let describe = |(user, secret): &(String, Secret)| match self.scheme {
            Scheme::Basic => format!("{user}:<{}>", secret.kind()),
            Scheme::Bearer => format!("<{} token>", secret.kind()),
        };
        self.entries.iter().map(describe).collect()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("scheme", &self.scheme)
            .field("entries", &self.describe())
            .finish()
    }
}

/// Compares two byte strings in a time that depends on their length only.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// MD5-crypt (`$1$`, or Apache's `$apr1$` with that magic): the 22
/// characters after the salt.
fn md5_crypt(pw: &[u8], salt: &[u8], magic: &[u8]) -> [u8; 22] {
    let alt = Md5::new()
        .chain_update(pw)
        .chain_update(salt)
        .chain_update(pw)
        .finalize();
    let mut ctx = Md5::new()
        .chain_update(pw)
        .chain_update(magic)
        .chain_update(salt);
    for chunk in pw.chunks(16) {
        ctx.update(&alt[..chunk.len()]);
    }
    let mut i = pw.len();
    while i > 0 {
        match i & 1 {
            1 => ctx.update([0u8]),
            _ => ctx.update(pw.get(..1).unwrap_or_default()),
        }
        i >>= 1;
    }
    let mut fin = ctx.finalize();
    for round in 0..1000 {
        let mut c = Md5::new();
        let odd = round & 1 == 1;
        c.update(if odd { pw } else { fin.as_slice() });
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(pw);
        }
        c.update(if odd { fin.as_slice() } else { pw });
        fin = c.finalize();
    }
    let f: [u8; 16] = fin.into();
    let v = |a: usize, b: usize, c: usize| {
        (u32::from(f[a]) << 16) | (u32::from(f[b]) << 8) | u32::from(f[c])
    };
    let groups = [
        v(0, 6, 12),
        v(1, 7, 13),
        v(2, 8, 14),
        v(3, 9, 15),
        v(4, 10, 5),
        u32::from(f[11]),
    ];
    let mut out = [0u8; 22];
    for (mut v, chunk) in groups.into_iter().zip(out.chunks_mut(4)) {
        for o in chunk {
            *o = CRYPT64[(v & 63) as usize];
            v >>= 6;
        }
    }
    out
}

/// Whether `s` starts like a crypt hash: `$id$`, id in `[a-z0-9-]{1,12}`.
fn is_crypt(s: &str) -> bool {
    let id = s
        .strip_prefix('$')
        .and_then(|r| r.split_once('$'))
        .map(|p| p.0);
    let id_char = |b: u8| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-');
    id.is_some_and(|id| (1..=12).contains(&id.len()) && id.bytes().all(id_char))
}

/// A well-formed `$2a$`/`$2b$`/`$2y$` hash of cost 4..=31.
fn valid_bcrypt(h: &str) -> bool {
    let Some((cost, body)) = h.get(4..).and_then(|r| r.split_once('$')) else {
        return false;
    };
    let cost_ok = cost.len() == 2
        && cost.bytes().all(|b| b.is_ascii_digit())
        && matches!(cost.parse::<u32>(), Ok(4..=31));
    let decodes = |part: Option<&str>, len: usize| {
        part.and_then(|p| bcrypt::BASE_64.decode(p).ok())
            .is_some_and(|d| d.len() == len)
    };
    cost_ok && body.len() == 53 && decodes(body.get(..22), 16) && decodes(body.get(22..), 23)
}

/// The start of a hash for messages: up to its third '$', never more than
/// ten characters nor half of it.
fn hash_prefix(s: &str) -> String {
    let (mut end, mut dollars) = (0, 0);
    for (i, c) in s.char_indices().take(10) {
        if i + c.len_utf8() > s.len() / 2 {
            break;
        }
        end = i + c.len_utf8();
        dollars += usize::from(c == '$');
        if dollars == 3 {
            break;
        }
    }
    format!("{}...", s.get(..end).unwrap_or(""))
}

/// A value for a message, cut after 24 characters.
fn clip(s: &str) -> String {
    match s.char_indices().nth(24) {
        Some((i, _)) => format!("{}...", s.get(..i).unwrap_or("")),
        None => s.to_owned(),
    }
}

fn trim(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn basic(user: &str, pass: &str) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(format!("{user}:{pass}"))).into_bytes()
    }

    fn ok(user: &str) -> Outcome {
        Outcome::Ok { user: user.into() }
    }

    fn err(scheme: Scheme, entries: &[&str]) -> String {
        Credentials::new(scheme, entries).unwrap_err().to_string()
    }

    #[test]
    fn scheme_parse() {
        assert_eq!(Scheme::parse("BASIC").unwrap(), Scheme::Basic);
        assert_eq!(Scheme::parse("Bearer").unwrap().as_str(), "bearer");
        let e = Scheme::parse("digest").unwrap_err();
        assert_eq!(e.field(), "auth_type");
        assert_eq!(
            e.to_string(),
            "auth_type: 'digest' is not 'basic' or 'bearer'"
        );
    }

    #[test]
    fn basic_plain() {
        let c = Credentials::new(Scheme::Basic, &["alice:s3cret", "bob:a:b c"]).unwrap();
        assert_eq!(c.scheme(), Scheme::Basic);
        assert_eq!(c.verify(Some(&basic("alice", "s3cret"))), ok("alice"));
        assert_eq!(c.verify(Some(&basic("bob", "a:b c"))), ok("bob"));
        assert_eq!(c.verify(Some(&basic("alice", "s3cre"))), Outcome::Denied);
        assert_eq!(c.verify(Some(&basic("alice", ""))), Outcome::Denied);
        assert_eq!(c.verify(Some(&basic("carol", "s3cret"))), Outcome::Denied);
        assert_eq!(c.verify(None), Outcome::Missing);
        assert_eq!(c.verify(Some(b"Bearer s3cret")), Outcome::Missing);
        assert_eq!(c.verify(Some(b"Basicfoo")), Outcome::Missing);
        assert_eq!(c.verify(Some(b"Basic")), Outcome::Malformed);
        assert_eq!(c.verify(Some(b"Basic !!notbase64")), Outcome::Malformed);
        // base64("alice") has no ':'
        assert_eq!(c.verify(Some(b"Basic YWxpY2U=")), Outcome::Malformed);
        let h = STANDARD.encode("alice:s3cret");
        for header in [format!("bAsIc {h}"), format!("  basic \t {h}  ")] {
            assert_eq!(c.verify(Some(header.as_bytes())), ok("alice"), "{header}");
        }
        let unpadded = format!("Basic {}", h.trim_end_matches('='));
        assert_eq!(c.verify(Some(unpadded.as_bytes())), ok("alice"));
        assert_eq!(c.describe(), ["alice:<plain>", "bob:<plain>"]);
    }

    #[test]
    fn sha1_and_md5_crypt() {
        let entries = [
            "s:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
            // openssl passwd -apr1 -salt ...
            "a:$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/",
            "b:$apr1$Xy$wN.SAFdyRlqLuRoSEWzcm0",
            "c:$apr1$zzz$xbC//7bKfpDA8liFNf1I81",
            "d:$apr1$12345678$Oyh1d.IShPq7CRqly2Qs71",
            // openssl passwd -1 -salt abcdefgh secret
            "m:$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1",
        ];
        let c = Credentials::new(Scheme::Basic, &entries).unwrap();
        let good = [
            ("s", "password"),
            ("a", "password"),
            ("b", "p@ss:word"),
            ("c", ""),
            ("d", "a-rather-long-password-over-16-bytes!"),
            ("m", "secret"),
        ];
        for (user, pass) in good {
            assert_eq!(c.verify(Some(&basic(user, pass))), ok(user), "{user}");
            let wrong = format!("{pass}x");
            assert_eq!(c.verify(Some(&basic(user, &wrong))), Outcome::Denied);
        }
        let kinds = ["sha1", "apr1", "apr1", "apr1", "apr1", "md5crypt"];
        let expected: Vec<String> = good
            .iter()
            .zip(kinds)
            .map(|((u, _), k)| format!("{u}:<{k}>"))
            .collect();
        assert_eq!(c.describe(), expected);
    }

    #[test]
    fn bcrypt_hashes() {
        let h = bcrypt::hash("hunter2", 4).unwrap();
        assert!(h.starts_with("$2b$04$"));
        let y = h.replacen("$2b$", "$2y$", 1);
        let a = h.replacen("$2b$", "$2a$", 1);
        // PHP's password_hash documentation example, cost 10.
        let php = "$2y$10$.vGA1O9wmRjrwAVXD98HNOgsNpDczlqm3Jq7KnEd1rVAGv3Fykk1a";
        let entries = [
            format!("b:{h}"),
            format!("y:{y}"),
            format!("a:{a}"),
            format!("p:{php}"),
        ];
        let entries: Vec<&str> = entries.iter().map(String::as_str).collect();
        let c = Credentials::new(Scheme::Basic, &entries).unwrap();
        for user in ["b", "y", "a"] {
            assert_eq!(c.verify(Some(&basic(user, "hunter2"))), ok(user));
            assert_eq!(c.verify(Some(&basic(user, "hunter3"))), Outcome::Denied);
        }
        assert_eq!(c.verify(Some(&basic("p", "rasmuslerdorf"))), ok("p"));
        let long = format!("hunter2{}", "\0".repeat(100));
        assert_eq!(c.verify(Some(&basic("b", &long))), Outcome::Denied);
        assert_eq!(c.verify(Some(&basic("nobody", "hunter2"))), Outcome::Denied);
        assert_eq!(c.describe()[0], "b:<bcrypt>");

        let bad = |hash: &str| err(Scheme::Basic, &[&format!("bob:{hash}")]);
        let msg = "credentials: user 'bob' has a malformed bcrypt hash";
        assert_eq!(bad(&h.replacen("$04$", "$03$", 1)), msg);
        assert_eq!(bad(&h.replacen("$04$", "$32$", 1)), msg);
        assert_eq!(bad(&h.replacen("$04$", "$4$", 1)), msg);
        assert_eq!(bad(&h[..h.len() - 1]), msg);
        assert_eq!(bad(&format!("{}!", &h[..h.len() - 1])), msg);
        assert_eq!(bad("$2y$10$"), msg);
        let e = err(Scheme::Bearer, &[&h[..40]]);
        assert_eq!(
            e,
            "credentials: a bearer token has a malformed bcrypt hash '$2b$04$...'"
        );
    }

    #[test]
    fn bearer() {
        let hash = bcrypt::hash("t0ken-b", 4).unwrap();
        let entries = [
            "t0ken-a",
            &hash,
            "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
            "$apr1$.x/Y$MiL8vZ8irM3GJPqcYXUMl.",
        ];
        let c = Credentials::new(Scheme::Bearer, &entries).unwrap();
        for token in ["t0ken-a", "t0ken-b", "password", "tok3n"] {
            let header = format!("bearer  {token} ");
            assert_eq!(c.verify(Some(header.as_bytes())), ok(""), "{token}");
        }
        assert_eq!(c.verify(Some(b"Bearer t0ken-c")), Outcome::Denied);
        assert_eq!(
            c.verify(Some(b"Bearer t0ken-a t0ken-a")),
            Outcome::Malformed
        );
        assert_eq!(c.verify(Some(b"Bearer ")), Outcome::Malformed);
        assert_eq!(c.verify(Some(&basic("t0ken-a", ""))), Outcome::Missing);
        let described = [
            "<plain token>",
            "<bcrypt token>",
            "<sha1 token>",
            "<apr1 token>",
        ];
        assert_eq!(c.describe(), described);
        assert!(!format!("{c:?}").contains("t0ken"));
    }

    #[test]
    fn htpasswd_content() {
        let file =
            "# users\r\n\r\nalice:$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/:admin\r\n  # bob left\n\
                    carol:plain:text\n";
        let c = Credentials::new(Scheme::Basic, &[file]).unwrap();
        assert_eq!(c.verify(Some(&basic("alice", "password"))), ok("alice"));
        assert_eq!(c.verify(Some(&basic("carol", "plain:text"))), ok("carol"));
        assert_eq!(c.describe(), ["alice:<apr1>", "carol:<plain>"]);
        let lines: Vec<&str> = file.lines().collect();
        let c = Credentials::new(Scheme::Basic, &lines).unwrap();
        assert_eq!(c.describe().len(), 2);
    }

    #[test]
    fn errors() {
        let e = Credentials::new(Scheme::Basic, &[]).unwrap_err();
        assert_eq!(e.field(), "credentials");
        assert_eq!(e.to_string(), "credentials: at least one is required");
        let six = "$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.e";
        let six = format!("bob:{six}");
        let (b, t) = (Scheme::Basic, Scheme::Bearer);
        let cases = [
            (t, "# none\n ", "at least one is required"),
            (b, "admin", "'admin' is not 'user:password'"),
            (
                b,
                "averyveryverylongsecretwithoutcolon",
                "'averyveryverylongsecretw...' is not 'user:password'",
            ),
            (b, ":pw", "an entry has an empty user"),
            (b, "bob:", "user 'bob' has an empty password"),
            (t, "ab cd", "a bearer token contains whitespace"),
            (b, "bob:x\nbob:y", "user 'bob' is listed twice"),
            (
                b,
                &six,
                "user 'bob' has an unsupported hash '$6$saltsal...'",
            ),
            (b, "bob:{SHA}abc", "user 'bob' has a malformed sha1 hash"),
            (
                b,
                "bob:$apr1$toolongsalt$yAAkm4libquA.ZWLHbSBq/",
                "user 'bob' has a malformed apr1 hash",
            ),
            (
                b,
                "bob:$1$salt$short",
                "user 'bob' has a malformed md5crypt hash",
            ),
            // A short secret that only looks like a hash is never printed whole.
            (
                t,
                "$2y$",
                "a bearer token has a malformed bcrypt hash '$2...'",
            ),
        ];
        for (scheme, entry, message) in cases {
            assert_eq!(err(scheme, &[entry]), format!("credentials: {message}"));
        }
    }

    #[test]
    fn cache_is_bounded_and_consistent() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let c = Credentials::new(Scheme::Basic, &[&format!("u:{hash}")]).unwrap();
        let good = basic("u", "pw");
        let bad = basic("u", "nope");
        for _ in 0..3 {
            assert_eq!(c.verify(Some(&good)), ok("u"));
            assert_eq!(c.verify(Some(&bad)), Outcome::Denied);
        }
        assert_eq!(c.cache.borrow().len(), 2);
        for i in 0..CACHE_MAX + 10 {
            assert_eq!(c.verify(Some(&basic("u", &i.to_string()))), Outcome::Denied);
            assert!(c.cache.borrow().len() <= CACHE_MAX);
        }
        assert_eq!(c.verify(Some(&good)), ok("u"));
        assert_eq!(c.verify(Some(b"Basic !!")), Outcome::Malformed);
        let plain = Credentials::new(Scheme::Basic, &["u:pw"]).unwrap();
        assert_eq!(plain.verify(Some(&good)), ok("u"));
        assert!(plain.cache.borrow().is_empty());
    }

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    proptest! {
        #[test]
        fn random_headers_never_panic(header in proptest::collection::vec(any::<u8>(), 0..96), word in 0usize..3) {
            let mut h = [&b"Basic "[..], b"Bearer ", b""][word].to_vec();
            h.extend_from_slice(&header);
            let basic = Credentials::new(Scheme::Basic, &[
                "a:pw", "s:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "m:$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/",
            ]).unwrap();
            let bearer = Credentials::new(Scheme::Bearer, &["tok", "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1"]).unwrap();
            let _ = basic.verify(Some(&h));
            let _ = bearer.verify(Some(&h));
            let _ = basic.verify(Some(&header));
        }

        #[test]
        fn basic_ok_iff_password_matches(
            user in "[A-Za-z0-9_.@-]{1,16}",
            pass in "[!-~]([ -~]{0,22}[!-~])?",
            other in "[ -~]{0,24}",
            same in any::<bool>(),
            apr1 in any::<bool>(),
        ) {
            let secret = if apr1 {
                let hash = md5_crypt(pass.as_bytes(), b"s4lt", b"$apr1$");
                format!("$apr1$s4lt${}", String::from_utf8_lossy(&hash))
            } else {
                pass.clone()
            };
            let entry = format!("{user}:{secret}");
            let c = Credentials::new(Scheme::Basic, &[&entry]);
            prop_assume!(c.is_ok()); // plain secrets such as "$5$..." are refused
            let c = c.unwrap();
            let given = if same { pass.clone() } else { other };
            let expected = if given == pass { ok(&user) } else { Outcome::Denied };
            prop_assert_eq!(c.verify(Some(&basic(&user, &given))), expected);
        }
    }
}
